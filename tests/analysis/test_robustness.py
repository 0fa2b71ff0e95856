"""Accuracy under attack (METHODS.md section 2, companion view of the stress test)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _analysis_helpers import feature_model, images

from medadv_lib.analysis import accuracy, curve_from_examples, predictions, robustness_curve, robustness_table
from medadv_lib.attacks import PGD

MODEL = feature_model(num_classes=3)
X = images(12, seed=5)
with torch.no_grad():
    Y = MODEL(X).argmax(1)  # labels the model gets right: clean accuracy 1


def test_accuracy_and_predictions_match_argmax():
    y = Y.clone()
    y[:3] = (y[:3] + 1) % 3
    assert accuracy(MODEL, X, y, batch_size=5) == pytest.approx(9 / 12)
    assert torch.equal(predictions(MODEL, X, batch_size=4), Y)
    uint8 = (X * 255).round().to(torch.uint8)
    assert predictions(MODEL, uint8).shape == (12,)


def test_curve_starts_clean_and_matches_a_direct_attack():
    eps = [0.0, 0.02, 0.2]
    curve = robustness_curve(MODEL, X, Y, eps, steps=3, seed=0, batch_size=5)
    assert list(curve.columns) == ["eps", "eps_k", "budget", "accuracy", "n_correct", "n"]
    assert curve["eps"].tolist() == eps
    assert curve.loc[0, "budget"] == "clean" and curve.loc[0, "accuracy"] == 1.0
    assert (curve["n"] == 12).all() and curve["accuracy"].between(0, 1).all()
    np.testing.assert_allclose(curve["eps_k"], np.array(eps) * 256)
    # the same PGD run outside the helper gives the same count
    x_adv = torch.cat([PGD(MODEL, eps=0.2, steps=3, seed=0)(X[s:s + 5], Y[s:s + 5]) for s in range(0, 12, 5)])
    assert curve.loc[2, "n_correct"] == int((predictions(MODEL, x_adv) == Y).sum())
    # a large budget breaks a random model more than a tiny one
    assert curve.loc[2, "accuracy"] <= curve.loc[1, "accuracy"] <= 1.0


def test_curve_from_examples_equals_robustness_curve():
    examples = {}
    for e in (0.02, 0.2):
        x_adv = PGD(MODEL, eps=e, steps=3, seed=0)(X, Y)
        examples[e] = {"x": X, "y": Y, "x_adv": x_adv}
    from_examples = curve_from_examples(MODEL, examples)
    direct = robustness_curve(MODEL, X, Y, [0.0, 0.02, 0.2], steps=3, seed=0)
    pd.testing.assert_frame_equal(from_examples, direct)
    no_clean = curve_from_examples(MODEL, examples, include_clean=False)
    assert no_clean["eps"].tolist() == [0.02, 0.2]


def test_table_is_wide_with_clean_first():
    curves = {"a": robustness_curve(MODEL, X, Y, [0.0, 4 / 256], steps=2),
              "b": robustness_curve(MODEL, X, Y, [0.0, 4 / 256], steps=2)}
    table = robustness_table(curves)
    assert list(table.columns) == ["dataset", "n", "clean", "4/256 (0.0156)"]
    assert table["dataset"].tolist() == ["a", "b"]


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        curve_from_examples(MODEL, {})
    with pytest.raises(KeyError, match="x_adv"):
        curve_from_examples(MODEL, {0.1: {"x": X, "y": Y}})
    with pytest.raises(ValueError, match="same images"):
        curve_from_examples(MODEL, {0.1: {"x": X, "y": Y, "x_adv": X}, 0.2: {"x": X, "y": 1 - Y, "x_adv": X}})
    with pytest.raises(TypeError, match="untargeted"):
        robustness_curve(MODEL, X, Y, [0.1], targeted=True)
