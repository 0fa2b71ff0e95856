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


def test_init_text_says_what_is_trained(tmp_path, monkeypatch):
    from medadv_lib.config import get_profile

    monkeypatch.setenv("MEDADV_CACHE_DIR", str(tmp_path))  # no downloaded torchvision file there
    assert verdicts.init_text(get_profile("cpu")) == "fine-tuned from ImageNet weights"
    assert verdicts.init_text(get_profile("smoke")) == "trained from scratch"
    assert verdicts.init_text(get_profile("paper")) == "trained from scratch"  # resnet50's file is absent


def test_model_and_stress_scale_numbers():
    results = pd.DataFrame({"model": ["smallcnn", "smallcnn"], "n train": [100, 300]})
    profile = SimpleNamespace(name="smoke", data=SimpleNamespace(image_size=28),
                              train=SimpleNamespace(arch="smallcnn", weights=None))
    assert verdicts.model_numbers(results, profile) == {"arch": "smallcnn", "init": "trained from scratch",
                                                        "image_px": 28, "n_train": 300, "profile_name": "smoke"}
    frame = pd.DataFrame({"dataset": ["n", "n", "m"], "image": [0, 1, 0], "layer": ["p", "p", "p"],
                          "channel": [3, 4, 3]})
    stress = {"n": SimpleNamespace(n_reference=50, layers=["block3", "penultimate"]),
              "m": SimpleNamespace(n_reference=40, layers=["block2", "penultimate"])}
    out = verdicts.stress_scale_numbers(stress, frame, "n")
    assert out == {"n_stats": 50, "n_stress_images": 1, "n_stress_channels": 1, "intermediate": "block2, block3"}


@pytest.mark.parametrize("kd, part", [(0.4, "below chance"), (0.6, "not in clearly low-density"), (0.8, "runs.")])
def test_kd_sentence(kd, part):
    text = verdicts.kd_sentence(kd)
    assert f"{kd:.3f}" in text and part in text


def test_supervised_and_natural_sentences():
    assert "the most reliable" in verdicts.supervised_sentence(0.99, 0.95)
    assert "strong" in verdicts.supervised_sentence(0.90, 0.95) and "0.900" in verdicts.supervised_sentence(0.9, 0.95)
    assert verdicts.natural_sentence(0.2, True).startswith("Feature-space detection is clearly easier")
    assert "even easier" in verdicts.natural_sentence(-0.2, True)
    assert "within 0.05" in verdicts.natural_sentence(0.0, True)
    assert "No natural-image set" in verdicts.natural_sentence(float("nan"), False)


def test_claim_sentence_all_none_some():
    frame = pd.DataFrame({"dataset": ["a", "b"], "attack": ["bim", "pgd"], "detector": ["MAHA", "LID"],
                          "auroc": [0.95, 0.85]})
    assert verdicts.claim_sentence(frame.assign(passed=True)).startswith("It holds on every")
    assert verdicts.claim_sentence(frame.assign(passed=False)).startswith("It does not hold")
    some = verdicts.claim_sentence(frame.assign(passed=[True, False]))
    assert "only in part" in some and "b PGD (best LID, 0.850)" in some


def test_base_attacks_and_alignment():
    assert verdicts.base_attacks(["fgsm", "pgd", "bim"]) == ["bim", "pgd"]
    assert verdicts.base_attacks(["fgsm", "mim"]) == ["fgsm"]
    assert [verdicts.alignment_word(c) for c in (0.2, 0.7, 0.95)] == ["only loosely", "fairly closely", "closely"]


def _detection_results():
    rows = []
    for ds, shift in (("med", 0.3), ("cifar10", 0.0)):
        for det, base in (("KD", 0.6), ("LID", 0.7), ("MAHA", 0.65), ("DNN", 0.7), ("SVM", 0.6)):
            for attack in ("bim", "pgd"):
                a = min(base + shift, 1.0)
                rows.append({"dataset": ds, "detector": det, "attack": attack, "eps": 8 / 256, "auroc": a,
                             "auroc_lo": a - 0.05, "auroc_hi": min(a + 0.05, 1.0)})
    return pd.DataFrame(rows)


def test_detection_claim_and_papers_table():
    results = _detection_results()
    verdict = verdicts.detection_claim(results, ["med"], ["bim", "pgd", "fgsm"])
    assert set(verdict["dataset"]) == {"med"} and len(verdict) == 2
    assert (verdict["detector"] == "LID").all() and verdict["passed"].all()  # LID 1.0 >= 0.90
    table = verdicts.detection_papers_table(results, ["bim", "pgd"], "smallcnn", 28)
    assert len(table) == 2 + 4 and table["source"].iloc[2].startswith("this page:")
