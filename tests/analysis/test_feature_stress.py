"""Feature stress test (METHODS.md section 2)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _analysis_helpers import feature_model, images
from scipy.stats import percentileofscore
from torch import nn

from medadv_lib.analysis import (
    ChannelActivationBIM,
    ChannelStats,
    channel_activations,
    clean_channel_stats,
    feature_stress,
)

MODEL = feature_model(num_classes=3)
X_TRAIN, X = images(60, seed=1), images(3, seed=2)
STATS = {layer: clean_channel_stats(MODEL, X_TRAIN, layer, batch_size=25) for layer in ("block2", "penultimate")}


def test_channel_activations_are_spatial_means():
    acts = channel_activations(MODEL, X, "block2", batch_size=2)
    with torch.no_grad():
        expected = MODEL.features(X, ["block2"])["block2"].mean((2, 3))
    torch.testing.assert_close(acts, expected)
    assert channel_activations(MODEL, X, "penultimate").shape == (3, 128)


def test_stats_z_and_percentile_match_reference():
    values = np.random.default_rng(0).normal(size=(50, 3))
    values[:, 2] = 1.0  # a dead channel
    stats = ChannelStats("l", values, values.mean(0), values.std(0))
    probe = np.array([-1.0, 0.3, values[7, 1], 1.0])
    chans = np.array([0, 1, 1, 2])
    for v, c, p in zip(probe, chans, stats.percentile(probe, chans), strict=True):
        assert p == pytest.approx(percentileofscore(values[:, c], v, kind="mean"))
    z = stats.z_score(probe, chans)
    assert z[0] == pytest.approx((-1 - values[:, 0].mean()) / values[:, 0].std())
    assert np.isnan(z[3])


def test_frame_layout_and_directions():
    df = feature_stress(MODEL, X, layer="block2", channels=[0, 5, 9], eps=0.05, stats=STATS["block2"],
                        steps=5, batch_size=4)
    assert isinstance(df, pd.DataFrame) and len(df) == 3 * 3 * 2
    assert list(df.columns[:7]) == ["channel", "image", "direction", "clean_value", "reached_value", "z_score",
                                    "percentile"]
    wide = df.pivot_table(index=["image", "channel"], columns="direction", values="reached_value")
    assert (wide["max"] >= wide["min"]).all()
    up = df[df.direction == "max"]
    down = df[df.direction == "min"]
    assert (up.reached_value >= up.clean_value - 1e-6).mean() > 0.8
    assert (down.reached_value <= down.clean_value + 1e-6).mean() > 0.8
    assert df.percentile.between(0, 100).all()


def test_batched_channels_equal_separate_attacks():
    # all channels in one replicated batch == one attack per (image, channel)
    channels = [1, 4]
    df = feature_stress(MODEL, X, layer="penultimate", channels=channels, eps=0.03, stats=STATS["penultimate"],
                        steps=4, directions=["max"], batch_size=5)
    for image in range(3):
        for c in channels:
            attack = ChannelActivationBIM(MODEL, layer="penultimate", eps=0.03, steps=4, maximize=True)
            x_adv = attack(X[image:image + 1], torch.tensor([c]))
            alone = channel_activations(MODEL, x_adv, "penultimate")[0, c].item()
            got = df[(df.image == image) & (df.channel == c)].reached_value.item()
            assert got == pytest.approx(alone, rel=1e-5, abs=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="outside 0..127"):
        feature_stress(MODEL, X, layer="penultimate", channels=[200], eps=0.01, stats=STATS["penultimate"])
    with pytest.raises(ValueError, match="layer"):
        feature_stress(MODEL, X, layer="block3", channels=[0], eps=0.01, stats=STATS["penultimate"])
    with pytest.raises(ValueError, match="directions"):
        feature_stress(MODEL, X, layer="penultimate", channels=[0], eps=0.01, stats=STATS["penultimate"],
                       directions=["up"])
    with pytest.raises(TypeError, match="FeatureModel"):
        clean_channel_stats(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), X, "penultimate")
    with pytest.raises(ValueError, match="outside"):
        feature_stress(MODEL, X, layer="penultimate", channels=[0], eps=2.0, stats=STATS["penultimate"])
