"""Fixed-direction effect (METHODS.md section 3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _analysis_helpers import feature_model, images
from sklearn.covariance import EmpiricalCovariance
from sklearn.exceptions import NotFittedError

from medadv_lib.analysis import (
    ClassGaussian,
    classifier_weights,
    feature_gradient,
    feature_gradient_check,
    fixed_direction_frame,
    pca_frame,
)
from medadv_lib.attacks import BIM, PGD

BINARY = feature_model(num_classes=2)
MULTI = feature_model(num_classes=4, seed=1)
X = images(6, seed=3)


def test_binary_gradient_direction_is_exactly_fixed():
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    result = BIM(BINARY, eps=0.05, steps=5, targeted=True).run(X, y, record_features=True)
    df = fixed_direction_frame(result, BINARY)
    assert len(df) == 6 * 6
    np.testing.assert_allclose(df.grad_cos, 1.0, atol=1e-5)
    assert df[df.step == 0].cos_step.isna().all() and df[df.step > 0].cos_step.notna().all()
    # the analytic descent direction is -p_y (w_t - w_y): the same for every image and step
    w, b = classifier_weights(BINARY)
    h = result.features.reshape(-1, 128).double().numpy()
    t = np.tile(result.target.numpy(), 6)
    grads = -feature_gradient(h, w, b, t)
    unit = (w[1] - w[0]) / np.linalg.norm(w[1] - w[0])
    signed = np.where(t == 1, 1.0, -1.0)[:, None] * grads
    np.testing.assert_allclose(signed / np.linalg.norm(signed, axis=1, keepdims=True),
                               np.broadcast_to(unit, signed.shape), atol=1e-6)


def test_projection_grows_towards_target():
    y = torch.zeros(6, dtype=torch.long)
    result = BIM(BINARY, eps=0.1, steps=6, targeted=True).run(X, y, record_features=True)
    df = fixed_direction_frame(result, BINARY)
    first, last = df[df.step == 0].projection.to_numpy(), df[df.step == 6].projection.to_numpy()
    assert (last > first).all()
    assert df[df.step == 6].cos_total.mean() > 0


def test_multiclass_direction_is_a_mixture():
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    result = PGD(MULTI, eps=0.05, steps=3, targeted=True, seed=0).run(X, y, record_features=True)
    df = fixed_direction_frame(result, MULTI)
    assert (df.grad_cos <= 1 + 1e-9).all() and (df.grad_cos > 0).all()
    assert df.grad_cos.min() < 1 - 1e-4
    assert df.p_target.between(0, 1).all()


def test_untargeted_uses_most_likely_other_class():
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    result = BIM(MULTI, eps=0.05, steps=2).run(X, y, record_features=True)
    df = fixed_direction_frame(result, MULTI)
    assert (df.target != df.y).all() and (df.grad_cos > 0).all()


def test_feature_gradient_matches_autograd():
    assert feature_gradient_check(MULTI, X, torch.tensor([1, 2, 3, 0, 1, 2])) < 1e-10
    assert feature_gradient_check(BINARY, X, torch.tensor([1, 0, 1, 0, 1, 0])) < 1e-10


def test_class_gaussian_against_reference():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    y = rng.integers(0, 3, size=300)
    h[y == 1] += 3.0
    g = ClassGaussian(ridge=0.0).fit(h, y)
    means = np.stack([h[y == c].mean(0) for c in range(3)])
    cov = np.cov((h - means[y]).T, bias=True)
    prec = np.linalg.inv(cov)
    probe = rng.normal(size=(7, 5))
    expected = np.sqrt(np.einsum("nkd,de,nke->nk", probe[:, None] - means, prec, probe[:, None] - means))
    np.testing.assert_allclose(g.distance(probe), expected, rtol=1e-8)
    sk = EmpiricalCovariance(assume_centered=True).fit(h - means[y])
    np.testing.assert_allclose(g.distance(probe)[:, 0] ** 2, sk.mahalanobis(probe - means[0]), rtol=1e-8)
    with pytest.raises(NotFittedError):
        ClassGaussian().distance(probe)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        g.distance(probe[:, :4])
    # the shared torch density behind it: squared distances, differentiable in the features
    probe_t = torch.tensor(probe, requires_grad=True)
    d2 = g.density_.mahalanobis(probe_t)
    np.testing.assert_allclose(d2.detach().numpy(), expected ** 2, rtol=1e-8)
    (grad,) = torch.autograd.grad(d2[:, 1].sum(), probe_t)
    np.testing.assert_allclose(grad.numpy(), 2 * (probe - means[1]) @ prec, rtol=1e-6)


def test_mahalanobis_columns_and_pca():
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    train = images(80, seed=9)
    with torch.no_grad():
        h_train = BINARY.features(train, ["penultimate"])["penultimate"]
    y_train = BINARY(train).argmax(1)
    y_train[:2] = torch.tensor([0, 1])
    g = ClassGaussian(ridge=1e-3).fit(h_train, y_train)
    result = BIM(BINARY, eps=0.05, steps=3, targeted=True).run(X, y, record_features=True)
    df = fixed_direction_frame(result, BINARY, gaussian=g)
    assert {"maha_true", "maha_target", "maha_min"} <= set(df.columns)
    assert (df.maha_min <= df[["maha_true", "maha_target"]].min(axis=1) + 1e-9).all()
    view = pca_frame(h_train, result)
    assert list(view.columns) == ["image", "step", "pc1", "pc2"] and len(view) == 4 * 6


def test_needs_recorded_features():
    result = BIM(BINARY, eps=0.05, steps=1).run(X, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="record_features=True"):
        fixed_direction_frame(result, BINARY)
    with pytest.raises(TypeError, match="classifier"):
        classifier_weights("not a model")


def test_gradient_and_direction_survive_a_fully_confident_model():
    """When p_t rounds to 1 the plain p W - w_t cancels to noise; the stable forms keep the direction."""
    from medadv_lib.analysis.fixed_direction import descent_direction

    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(2, 16)), np.zeros(2)
    t = np.array([1, 1])
    h = np.stack([w[1] - w[0], w[1] - w[0]]) * np.array([[3.0], [400.0]])  # moderate, then p_t == 1.0
    plain = (lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))(h @ w.T + b) @ w - w[t]
    stable = feature_gradient(h, w, b, t)
    assert np.allclose(stable[0], plain[0], rtol=1e-12)  # same value where nothing cancels
    d = descent_direction(h, w, b, t)
    cos = (d * (w[0] - w[1])).sum(1) / np.linalg.norm(d, axis=1) / np.linalg.norm(w[0] - w[1])
    assert np.allclose(cos, 1.0, atol=1e-12)  # exactly w_y - w_t for two classes, also when p_t == 1

