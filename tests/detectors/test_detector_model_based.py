"""Detectors that query the network: BU, KD+BU, DNN (Metzen et al.) and Mahalanobis pre-processing."""
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from medadv_lib.detectors import BU, KDBU, DNNDetector, Mahalanobis, extract_features


def test_bu_score_formulas():
    outs = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]], [[2.0, 2.0]]], dtype=torch.float64)  # (T=3, n=1, K=2)
    p = outs.softmax(-1)
    expected_var = ((p ** 2).mean(0) - p.mean(0) ** 2).mean(-1)  # Feinman et al.: E[p^2] - E[p]^2, class mean
    np.testing.assert_allclose(BU()._from_outputs(outs, None).numpy(), expected_var.numpy())
    logit_std = BU(score="logit_std")._from_outputs(outs, torch.tensor([1]))
    np.testing.assert_allclose(logit_std.numpy(), [np.std([1.0, 0.0, 2.0])])


def test_bu_contract_and_determinism(tiny_model, images):
    x, _ = images
    det = BU(n_passes=8, seed=3)
    with pytest.raises(NotFittedError):
        det.decision_function(x, model=tiny_model)
    assert det.fit(model=tiny_model) is det and det.head_only_ and det.n_classes_ == 2
    s1 = det.decision_function(x, model=tiny_model)
    s2 = clone(det).fit(model=tiny_model).decision_function(x, model=tiny_model)
    np.testing.assert_array_equal(s1, s2)
    assert (s1 >= 0).all() and s1.std() > 0
    assert not np.array_equal(s1, BU(n_passes=8, seed=4).fit(model=tiny_model).decision_function(x, model=tiny_model))
    # precomputed penultimate features replace the backbone pass without changing the scores
    pen = extract_features(tiny_model, x, ["penultimate"]).layers["penultimate"]
    np.testing.assert_allclose(det.decision_function(x, model=tiny_model, penultimate=pen), s1, rtol=1e-5)
    # the caller's random stream is untouched
    torch.manual_seed(0)
    a = torch.rand(1)
    torch.manual_seed(0)
    det.decision_function(x, model=tiny_model)
    assert torch.equal(torch.rand(1), a)
    assert not tiny_model.training
    det.calibrate(x[:20], model=tiny_model, fpr=0.25)
    assert det.predict(x[:20], model=tiny_model).mean() <= 0.25


def test_bu_logit_std_runs(tiny_model, images):
    x, _ = images
    s = BU(n_passes=5, score="logit_std").fit(model=tiny_model).decision_function(x, model=tiny_model)
    assert s.shape == (40,) and np.isfinite(s).all()


def test_kdbu_combines_kd_and_bu(tiny_model, images):
    x, is_adv = images
    ref = extract_features(tiny_model, torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(2)),
                           labels=torch.arange(60) % 2)
    det = KDBU(n_passes=6)
    with pytest.raises(NotFittedError):
        det.decision_function(x, model=tiny_model)
    det.fit(x, is_adv, model=tiny_model, X_ref=ref.layers, y_ref=ref.labels)
    S = det.base_scores(x, model=tiny_model)
    assert S.shape == (40, 2)
    np.testing.assert_allclose(det.decision_function(x, model=tiny_model), det.combiner_.decision_function(S))
    np.testing.assert_allclose(S[:, 0], det.kd_.decision_function(extract_features(tiny_model, x).layers,
                                                                  extract_features(tiny_model, x).pred))
    copy = clone(det)
    assert copy.get_params() == det.get_params() and not hasattr(copy, "combiner_")


def test_dnn_detector_learns_and_is_deterministic(tiny_model, images):
    x, is_adv = images
    det = DNNDetector(n_iter=25, batch_size=16, width=(4, 4, 4), seed=1)
    with pytest.raises(NotFittedError):
        det.decision_function(x, model=tiny_model)
    assert det.fit(x, is_adv, model=tiny_model) is det
    assert det.layers_ == ["block1", "block2", "block3"] and det.loss_curve_.shape == (25,)
    s = det.decision_function(x, model=tiny_model)
    assert ((s >= 0) & (s <= 1)).all()
    assert roc_auc_score(is_adv, s) > 0.8  # the structured perturbation is easy to learn
    np.testing.assert_allclose(clone(det).fit(x, is_adv, model=tiny_model).decision_function(x, model=tiny_model), s,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="maps of shape"):
        det.decision_function(torch.rand(2, 1, 16, 16), model=tiny_model)


def test_dnn_on_penultimate_vector(tiny_model, images):
    x, is_adv = images
    det = DNNDetector(layers=["penultimate"], n_iter=3, batch_size=8, width=(4, 4, 4)).fit(x, is_adv, model=tiny_model)
    assert det.map_shapes_["penultimate"] == (128, 1, 1)
    assert det.decision_function(x[:5], model=tiny_model).shape == (5,)


def test_mahalanobis_preprocessing(tiny_model, images):
    x, _ = images
    g = torch.Generator().manual_seed(5)
    x_ref = torch.rand(80, 1, 8, 8, generator=g)
    ref = extract_features(tiny_model, x_ref, labels=torch.arange(80) % 2)
    layers = ["block2", "penultimate"]
    plain = Mahalanobis(layers=layers).fit(X_ref=ref.layers, y_ref=ref.labels)
    feats = extract_features(tiny_model, x).layers
    base = plain.layer_scores(feats)
    # a vanishing step reproduces the plain scores computed from extracted features
    tiny = Mahalanobis(layers=layers, noise_magnitude=1e-12).fit(X_ref=ref.layers, y_ref=ref.labels)
    np.testing.assert_allclose(tiny.layer_scores(x, model=tiny_model), base, rtol=1e-4)
    # a real step moves inputs towards their closest class: distances shrink on average
    step = Mahalanobis(layers=layers, noise_magnitude=0.01).fit(X_ref=ref.layers, y_ref=ref.labels)
    moved = step.layer_scores(x, model=tiny_model)
    assert (moved.mean(0) < base.mean(0)).all()
    assert step.needs_images and not plain.needs_images
    assert not tiny_model.training
    # and the supervised part fits on images with the model
    is_adv = np.r_[np.zeros(20, int), np.ones(20, int)]
    step.fit(x, is_adv, X_ref=ref.layers, y_ref=ref.labels, model=tiny_model)
    assert step.decision_function(x[:4], model=tiny_model).shape == (4,)
