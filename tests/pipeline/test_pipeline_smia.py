"""The SMIA chapter's cached stages, statistics and verdicts, on a tiny toy model."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _toy_model import toy_trained_model

from medadv_lib.cache import Cache
from medadv_lib.config import get_profile
from medadv_lib.pipeline.smia import (COMPARED, accuracy_verdict, beta2_sweep, choose_beta2, detectability_verdict,
                                      high_frequency_fraction, perturbation_stats, smia_experiment, spread_verdict,
                                      total_variation)


@pytest.fixture(scope="module")
def toy_tm():
    return toy_trained_model(160, 40, dropout=0.0, steps=30)


@pytest.fixture(scope="module")
def profile():
    return get_profile("smoke", {"attack.eps_k": (4, 16, 32), "attack.steps": 3, "attack.curve_images": 12,
                                 "attack.batch_size": 8})


def test_experiment_tables_bounds_and_cache(toy_tm, profile, tmp_path):
    cache = Cache(tmp_path)
    exp = smia_experiment(toy_tm, profile, restarts=3, n_examples=2, cache=cache)
    assert exp.dataset == "toy" and exp.domain == "medical" and not exp.cached
    assert exp.stability_eps == 16 / 256  # the middle budget
    curve = exp.curve
    assert set(curve["attack"]) == {"clean", *COMPARED}
    assert len(curve) == 1 + len(COMPARED) * 3 and curve["accuracy"].between(0, 1).all()
    assert (curve["n"] == 12).all() and np.allclose(curve["eps_k"], curve["eps"] * 256)
    clean = float(curve.loc[curve["attack"] == "clean", "accuracy"].iloc[0])
    assert (curve.loc[curve["attack"] != "clean", "accuracy"] <= clean + 1e-9).all()  # untargeted: never helps
    # trace: clean image + one row per step for PGD and SMIA; the band holds the mean's images
    assert exp.trace.groupby("attack").size().to_dict() == {"pgd": 4, "smia": 4}
    assert (exp.trace["q25"] <= exp.trace["q75"] + 1e-9).all()
    assert list(exp.spread["attack"]) == ["pgd", "smia"] and (exp.spread["n_restarts"] == 3).all()
    assert (exp.restarts["success_std"] >= 0).all() and (exp.restarts["ce_std"] >= 0).all()
    pert = exp.perturbations
    assert (pert["linf"] <= exp.stability_eps + 1e-6).all() and pert["hf_fraction"].between(0, 1).all()
    assert exp.examples["x"].shape == (2, 1, 8, 8)
    assert float(exp.examples["smia"].abs().max()) <= exp.stability_eps + 1e-6
    again = smia_experiment(toy_tm, profile, restarts=3, n_examples=2, cache=cache)
    assert again.cached
    pd.testing.assert_frame_equal(again.spread, exp.spread)
    with pytest.raises(ValueError, match="restarts"):
        smia_experiment(toy_tm, profile, restarts=1, cache=cache)


def test_restarts_on_the_first_images_only(toy_tm, profile, tmp_path):
    cache = Cache(tmp_path)
    full = smia_experiment(toy_tm, profile, restarts=2, cache=cache)
    part = smia_experiment(toy_tm, profile, restarts=2, restart_images=5, cache=cache)
    assert not part.cached and (part.spread["n_images"] == 5).all() and len(part.restarts) == 2 * 5
    pd.testing.assert_frame_equal(part.curve, full.curve)  # the curves do not depend on the restarts
    # the restarted images are the first ones: their per-image spread is the full run's
    sub = full.restarts[full.restarts["image"] < 5].reset_index(drop=True)
    pd.testing.assert_frame_equal(part.restarts, sub)
    with pytest.raises(ValueError, match="restart_images"):
        smia_experiment(toy_tm, profile, restarts=2, restart_images=1, cache=cache)


def test_trace_starts_at_the_clean_cross_entropy(toy_tm, profile, tmp_path):
    exp = smia_experiment(toy_tm, profile, restarts=2, cache=Cache(tmp_path))
    subset_x = exp.examples["x"]  # the first images of the attacked subset
    assert subset_x.shape[0] > 0
    first = exp.trace[exp.trace["step"] == 0].set_index("attack")["mean"]
    assert math.isclose(first["pgd"], first["smia"], rel_tol=1e-5)  # same clean images, same step 0


def test_beta2_sweep_zero_is_bim(toy_tm, profile, tmp_path):
    from medadv_lib.pipeline import adversarial_examples

    cache = Cache(tmp_path)
    sweep = beta2_sweep(toy_tm, profile, [0.0, 2.0], restarts=2, cache=cache)
    assert list(sweep["beta2"]) == [0.0, 2.0] and sweep["accuracy"].between(0, 1).all()
    bim = adversarial_examples(toy_tm, "bim", sweep["eps"].iloc[0], profile, n_images=12, cache=cache)
    assert math.isclose(sweep["accuracy"].iloc[0], 1 - float(bim["success"].float().mean()))
    with pytest.raises(ValueError, match="betas"):
        beta2_sweep(toy_tm, profile, [], cache=cache)


def test_total_variation_and_high_frequency_laws():
    const = torch.full((1, 1, 8, 8), 0.3)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0
    checker = 0.1 * checker[None, None]
    assert float(total_variation(const)) == 0.0 and float(high_frequency_fraction(const)) == 0.0
    assert math.isclose(float(total_variation(checker)), 0.2, rel_tol=1e-6)
    assert math.isclose(float(high_frequency_fraction(checker)), 1.0, rel_tol=1e-6)  # all energy at Nyquist
    assert float(high_frequency_fraction(torch.zeros(1, 1, 4, 4))) == 0.0
    with pytest.raises(ValueError, match="delta"):
        total_variation(torch.zeros(8, 8))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 10.0))
def test_smoothness_is_scale_invariant_and_bounded(seed, scale):
    delta = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(seed))
    hf, hf_scaled = high_frequency_fraction(delta), high_frequency_fraction(scale * delta)
    assert torch.allclose(hf, hf_scaled, atol=1e-5) and bool(((hf >= 0) & (hf <= 1)).all())
    assert torch.allclose(total_variation(scale * delta), scale * total_variation(delta), rtol=1e-4)
    stats = perturbation_stats(torch.zeros(2, 3, 6, 7), delta, 1.0)
    assert np.allclose(stats["l2"], delta.flatten(1).norm(dim=1).numpy(), rtol=1e-5)


def _curve(pgd, smia):
    rows = [{"attack": "clean", "eps": 0.0, "accuracy": 0.9}]
    rows += [{"attack": "pgd", "eps": e, "accuracy": a} for e, a in zip([0.01, 0.02], pgd)]
    rows += [{"attack": "smia", "eps": e, "accuracy": a} for e, a in zip([0.01, 0.02], smia)]
    return pd.DataFrame(rows)


def test_accuracy_verdict():
    out = accuracy_verdict({"a": _curve([0.5, 0.2], [0.4, 0.2]), "b": _curve([0.5, 0.2], [0.6, 0.1])})
    assert out["holds"] == ["a"] and out["fails"] == ["b"] and out["text"] == "on 1 of 2 data sets (a)"
    assert math.isclose(out["mean_gap"]["a"], -0.05)
    with pytest.raises(ValueError, match="no rows for attack 'smia'"):
        accuracy_verdict({"c": _curve([0.5, 0.2], [0.4, 0.1]).query("attack != 'smia'")})


def test_spread_verdict():
    spread = pd.DataFrame({"attack": ["pgd", "smia"], "ce_std": [0.2, 0.1]})
    worse = pd.DataFrame({"attack": ["pgd", "smia"], "ce_std": [0.1, 0.3]})
    out = spread_verdict({"a": spread, "b": worse})
    assert out["smaller"] == ["a"] and math.isclose(out["ratio"]["b"], 3.0) and "1 of 2" in out["text"]


def test_choose_beta2_prefers_strong_then_steady_then_small():
    sweep = pd.DataFrame({"beta2": [0.0, 1.0, 4.0, 16.0], "accuracy": [0.30, 0.21, 0.20, 0.50],
                          "ce_std": [0.1, 0.05, 0.08, 0.01]})
    assert choose_beta2(sweep)["beta2"] == 1.0  # 16 is steadiest but much weaker
    assert choose_beta2(sweep, tol=0.0)["beta2"] == 4.0
    # beta2 = 0 is BIM, the reference: never chosen, even when it is the strongest and steadiest
    flat = pd.DataFrame({"beta2": [0.0, 0.25, 1.0], "accuracy": [0.5, 0.5, 0.5], "ce_std": [0.009, 0.010, 0.009]})
    chosen = choose_beta2(flat)
    assert chosen["beta2"] == 1.0 and "as strong and as steady" in chosen["text"]
    with pytest.raises(ValueError, match="positive"):
        choose_beta2(flat.iloc[:1])
    tie = pd.DataFrame({"beta2": [2.0, 1.0], "accuracy": [0.2, 0.2], "ce_std": [0.1, 0.1]})
    assert choose_beta2(tie)["beta2"] == 1.0 and "beta2 = 1" in choose_beta2(tie)["text"]
    with pytest.raises(ValueError, match="no beta2 > 0"):
        choose_beta2(sweep.iloc[:0])


def test_detectability_verdict():
    res = pd.DataFrame({"dataset": ["d"] * 4, "detector": ["KD", "KD", "LID", "LID"],
                        "attack": ["pgd", "smia", "pgd", "smia"], "auroc": [0.9, 0.8, 0.7, 0.6]})
    out = detectability_verdict(res)
    assert out["word"] == "harder" and math.isclose(out["difference"], -0.1) and out["wins"] == 1.0
    res.loc[res["attack"] == "smia", "auroc"] = [0.91, 0.7]
    assert detectability_verdict(res)["word"] == "about as easy"
    with pytest.raises(ValueError, match="both"):
        detectability_verdict(res[res["attack"] == "pgd"])
