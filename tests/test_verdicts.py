"""The chapters' glued numbers and chosen sentences (medadv_lib.verdicts)."""
from types import SimpleNamespace

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from medadv_lib import verdicts


@given(st.floats(-1, 1, allow_nan=False))
def test_compare_word_follows_the_sign(gap):
    word = verdicts.compare_word(gap)
    assert word == ("about as much as" if abs(gap) < 0.01 else "more than" if gap > 0 else "less than")


def test_compare_word_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        verdicts.compare_word(float("nan"))


@pytest.mark.parametrize("n, total, word", [(3, 3, "reproduces the HFC finding"),
                                             (0, 3, "does not reproduce the HFC finding"),
                                             (1, 3, "reproduces the HFC finding only in part")])
def test_finding_word(n, total, word):
    assert verdicts.finding_word(n, total) == word


@pytest.mark.parametrize("n, total", [(4, 3), (-1, 3), (0, 0)])
def test_finding_word_rejects_impossible_counts(n, total):
    with pytest.raises(ValueError, match="n_agree"):
        verdicts.finding_word(n, total)


def _curves():
    rows = []
    for name, accs in {"cifar10": (0.8, 0.7, 0.2), "a": (0.9, 0.5, 0.1), "b": (0.7, 0.6, 0.3)}.items():
        rows += [{"dataset": name, "eps_k": k, "accuracy": a, "n": 20} for k, a in zip((0.0, 1.0, 8.0), accs)]
    return pd.DataFrame(rows)


def test_curve_numbers():
    out = verdicts.curve_numbers(_curves(), (1, 8), "cifar10")
    assert out["curve_n"] == 20 and out["eps_small"].startswith("1/256") and out["eps_large"].startswith("8/256")
    assert out["drop_small_med"] == pytest.approx((0.4 + 0.1) / 2) and out["drop_small_nat"] == pytest.approx(0.1)
    assert out["acc_large_med_max"] == pytest.approx(0.3) and out["acc_large_nat"] == pytest.approx(0.2)
    assert out["curve_compare"] == "more than"
    with pytest.raises(KeyError, match="natural"):
        verdicts.curve_numbers(_curves(), (1, 8), "svhn")


def _stress_summary():
    rows = []
    for name, (z1, z8, beyond) in {"cifar10": (0.2, 1.0, 0.05), "a": (0.5, 2.0, 0.2), "b": (0.3, 3.0, 0.1)}.items():
        for layer in ("block3", "penultimate"):
            for direction, sign in (("max", 1), ("min", -1)):
                for k, z in ((1.0, z1), (8.0, z8)):
                    rows.append({"dataset": name, "layer": layer, "direction": direction, "eps_k": k,
                                 "median_z": sign * z, "median_shift_z": sign * z, "share_beyond": beyond,
                                 "share_outside_range": beyond / 2, "q25_z": 0.0, "q75_z": 0.0})
    return pd.DataFrame(rows)


def test_stress_numbers_on_a_case_where_every_medical_set_is_farther():
    from medadv_lib import analysis

    summary = _stress_summary()
    comparisons = {d: analysis.stress_comparison(summary, natural="cifar10", direction=d) for d in ("max", "min")}
    out = verdicts.stress_numbers(summary, comparisons, (1, 8), "cifar10")
    assert out["n_comparisons"] == 8 and out["n_all_farther"] == 8
    assert out["stress_finding"] == "reproduces the HFC finding"
    assert out["beyond_pen_med_lo"] == pytest.approx(0.1) and out["beyond_pen_med_hi"] == pytest.approx(0.2)
    assert out["beyond_pen_nat"] == pytest.approx(0.05)
    assert out["max_shift_first"] == pytest.approx(0.5) and out["first_budget_effect"].startswith("stays")
    for key in ("verdict_max_pen_first", "verdict_max_int_first", "verdict_max_pen_last", "verdict_min_pen_first"):
        assert out[key].startswith("every medical set")


def test_stress_table_shows_budgets_and_percentages():
    shown = verdicts.stress_table(_stress_summary()).data
    assert "budget ε" in shown.columns and set(shown["budget ε"]) == {"1/256", "8/256"}
    assert shown["beyond p99 / p1"].iloc[0].endswith("%") and "q25_z" not in shown.columns
    assert list(shown.index) == list(range(len(shown)))


def test_budget_k_to_eps_names_a_missing_column():
    with pytest.raises(KeyError, match="eps_k"):
        verdicts.budget_k_to_eps(pd.DataFrame({"x": [1]}))


def test_model_and_stress_scale_numbers():
    results = pd.DataFrame({"model": ["smallcnn", "smallcnn"], "n train": [100, 300]})
    profile = SimpleNamespace(name="smoke", data=SimpleNamespace(image_size=28))
    assert verdicts.model_numbers(results, profile) == {"arch": "smallcnn", "image_px": 28, "n_train": 300,
                                                        "profile_name": "smoke"}
    frame = pd.DataFrame({"dataset": ["n", "n", "m"], "image": [0, 1, 0], "layer": ["p", "p", "p"],
                          "channel": [3, 4, 3]})
    stress = {"n": SimpleNamespace(n_reference=50, layers=["block3", "penultimate"]),
              "m": SimpleNamespace(n_reference=40, layers=["block2", "penultimate"])}
    out = verdicts.stress_scale_numbers(stress, frame, "n")
    assert out == {"n_stats": 50, "n_stress_images": 1, "n_stress_channels": 1, "intermediate": "block2, block3"}
