"""Stress-test sweep and summaries (METHODS.md section 2)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _analysis_helpers import feature_model, images

from medadv_lib.analysis import (
    ChannelStats,
    clean_channel_stats,
    clean_layer_stats,
    concat_labelled,
    deep_intermediate_layer,
    feature_stress,
    sample_channels,
    stress_comparison,
    stress_summary,
    stress_sweep,
    stress_verdict,
)

MODEL = feature_model(num_classes=2)
X_TRAIN = images(40, seed=1)
X = images(3, seed=2)


def test_deep_intermediate_layer():
    assert deep_intermediate_layer(MODEL) == "block2"

    class Fake:
        feature_names = ["stem", "layer1.0.relu1", "layer1.0", "layer4.0.relu1", "layer4.0", "layer4.1.relu1",
                         "layer4.1", "penultimate"]

    assert deep_intermediate_layer(Fake()) == "layer4.0"
    Fake.feature_names = ["block1", "penultimate"]
    with pytest.raises(ValueError, match="two block taps"):
        deep_intermediate_layer(Fake())


def test_layer_stats_equal_single_layer_stats():
    stats = clean_layer_stats(MODEL, X_TRAIN, ["block2", "penultimate"], batch_size=16)
    assert list(stats) == ["block2", "penultimate"]
    for layer, s in stats.items():
        ref = clean_channel_stats(MODEL, X_TRAIN, layer)
        np.testing.assert_allclose(s.values, ref.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s.std, ref.std, rtol=1e-5, atol=1e-6)
    uint8 = (X_TRAIN * 255).round().to(torch.uint8)
    assert clean_layer_stats(MODEL, uint8, ["block1"])["block1"].values.shape == (40, 32)


def test_sample_channels_skips_dead_units_and_is_seeded():
    values = np.random.default_rng(0).normal(size=(50, 10))
    values[:, [2, 5, 7]] = 1.0  # no clean variance
    stats = ChannelStats("x", values, values.mean(0), values.std(0))
    picked = sample_channels(stats, 5, seed=3)
    assert len(picked) == 5 and not set(picked) & {2, 5, 7} and np.all(np.diff(picked) > 0)
    assert np.array_equal(picked, sample_channels(stats, 5, seed=3))
    assert sorted(sample_channels(stats, 100)) == [0, 1, 3, 4, 6, 8, 9]
    dead = ChannelStats("x", np.ones((5, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="no channel"):
        sample_channels(dead, 2)


def test_sweep_equals_feature_stress_per_layer_and_budget():
    stats = clean_layer_stats(MODEL, X_TRAIN, ["block2", "penultimate"])
    channels = {layer: sample_channels(s, 3, seed=0) for layer, s in stats.items()}
    frame = stress_sweep(MODEL, X, stats=stats, channels=channels, eps=[0.0, 1 / 256, 4 / 256], steps=2)
    assert set(frame["eps_k"]) == {1.0, 4.0}  # eps 0 is skipped
    assert len(frame) == 2 * 2 * 2 * 3 * 3  # layers x budgets x directions x images x channels
    ref = feature_stress(MODEL, X, layer="penultimate", channels=channels["penultimate"], eps=4 / 256,
                         stats=stats["penultimate"], steps=2)
    part = frame[(frame.layer == "penultimate") & (frame.eps_k == 4.0)].reset_index(drop=True)
    np.testing.assert_allclose(part["reached_value"], ref["reached_value"], rtol=1e-6)
    assert (part["budget"] == "4/256 (0.0156)").all()
    # maximising never lowers and minimising never raises the channel (BIM from the clean image)
    mx, mn = frame[frame.direction == "max"], frame[frame.direction == "min"]
    assert (mx.reached_value >= mx.clean_value - 1e-6).all() and (mn.reached_value <= mn.clean_value + 1e-6).all()


def _synthetic_frame():
    rows = []
    rng = np.random.default_rng(0)
    for name, scale in (("cifar10", 1.0), ("med_a", 5.0), ("med_b", 2.0)):
        for direction, sign in (("max", 1), ("min", -1)):
            z = sign * scale * rng.uniform(0.5, 1.5, size=20)
            pct = np.where(np.abs(z) > 3, 100.0 if sign > 0 else 0.0, 50 + sign * 45 * np.abs(z) / 3)
            rows.append(pd.DataFrame({"dataset": name, "layer": "penultimate", "eps_k": 1.0, "direction": direction,
                                      "channel": np.arange(20) % 4, "image": np.arange(20) // 4, "z_score": z,
                                      "clean_z_score": 0.0, "percentile": pct}))
    return pd.concat(rows, ignore_index=True)


def test_summary_comparison_and_verdict():
    frame = _synthetic_frame()
    summary = stress_summary(frame)
    assert len(summary) == 6
    row = summary[(summary.dataset == "med_a") & (summary.direction == "max")].iloc[0]
    assert row.pairs == 20 and row.channels == 4 and row.images == 5
    z = frame[(frame.dataset == "med_a") & (frame.direction == "max")].z_score
    assert row.median_z == pytest.approx(np.median(z))
    assert row.share_beyond == pytest.approx(np.mean(z > 3))  # |z| > 3 mapped to percentile 100 above
    low = summary[(summary.dataset == "med_a") & (summary.direction == "min")].iloc[0]
    assert low.share_beyond == pytest.approx(np.mean(frame[(frame.dataset == "med_a") & (frame.direction == "min")].z_score < -3))

    comp = stress_comparison(summary, direction="max")
    assert len(comp) == 1 and comp.loc[0, "medical"] == ("med_a", "med_b")
    assert comp.loc[0, "medical_all_farther"] and comp.loc[0, "medical_farther"] == 2
    text = stress_verdict(comp.iloc[0])
    assert text.startswith("every medical set") and "med_a" in text and "CIFAR-10" in text
    comp_min = stress_comparison(summary, direction="min")
    assert comp_min.loc[0, "medical_all_farther"]

    # a medical set closer to its clean range than the natural one
    weak = frame.copy()
    weak.loc[weak.dataset == "med_b", "z_score"] *= 0.1
    comp = stress_comparison(stress_summary(weak), direction="max")
    assert comp.loc[0, "medical_farther"] == 1 and not comp.loc[0, "medical_all_farther"]
    text = stress_verdict(comp.iloc[0])
    assert text.startswith("only some") and "med_b" in text.split("but not for")[1] and "med_a" in text.split("but")[0]


def test_concat_labelled_and_errors():
    a, b = pd.DataFrame({"v": [1, 2]}), pd.DataFrame({"v": [3]})
    out = concat_labelled({"a": a, "b": b})
    assert out.columns.tolist() == ["dataset", "v"] and out["dataset"].tolist() == ["a", "a", "b"]
    assert "dataset" not in a
    summary = stress_summary(_synthetic_frame())
    with pytest.raises(ValueError, match="natural"):
        stress_comparison(summary, natural="imagenet")
    with pytest.raises(ValueError, match="direction"):
        stress_summary(_synthetic_frame(), by=("dataset",))
    with pytest.raises(ValueError, match="at least one"):
        stress_sweep(MODEL, X, stats={}, channels={}, eps=[0.1])
