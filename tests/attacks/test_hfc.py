"""HFC: the penalty against the authors' formula, the component choice, gradients, the registry entry,
the adaptive penalties and 3-D inputs."""
import math

import numpy as np
import pytest
import torch
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from torch import nn
from _attack_helpers import calibrated_feature_model, images, small_feature_model

from medadv_lib.attacks import (BIM, CW, DI, MIM, PGD, HFCConstraint, KDPenalty, MahalanobisPenalty,
                                default_hfc_layers, fit_hfc_mixtures, get_attack)
from medadv_lib.attacks.penalty import spatial_mean
from medadv_lib.density import TorchGaussianMixture
from medadv_lib.detectors import KD, Mahalanobis


def authors_penalty(h, gm, lam=1.0):
    """METHODS.md section 5 in numpy: choose k* by -0.5||(h - mu_k) L_k||^2 + sum log diag L_k + log pi_k,
    then J = mean over dims of ((h - mu_k*)^T L_k*)^2."""
    out = []
    for row in h:
        scores = [-0.5 * np.sum(((row - gm.means_[k]) @ gm.precisions_cholesky_[k]) ** 2)
                  + np.log(np.diag(gm.precisions_cholesky_[k])).sum() + np.log(gm.weights_[k])
                  for k in range(gm.n_components)]
        k = int(np.argmax(scores))
        out.append(np.mean(((row - gm.means_[k]) @ gm.precisions_cholesky_[k]) ** 2))
    return lam * np.array(out)


@pytest.fixture(scope="module")
def two_layer_mixtures():
    rng = np.random.default_rng(0)
    feats = {"a": np.r_[rng.normal(0, 1, (60, 4)), rng.normal(3, 0.5, (60, 4))], "b": rng.normal(1, 2, (120, 6))}
    labels = np.repeat([0, 1], 60)
    return feats, labels, fit_hfc_mixtures(feats, labels, n_components=3, seed=0, max_iter=200)


def test_penalty_equals_the_authors_formula(two_layer_mixtures):
    feats, labels, mixtures = two_layer_mixtures
    constraint = HFCConstraint(mixtures, lam=0.7)
    rng = np.random.default_rng(1)
    h = {"a": torch.tensor(rng.normal(1, 2, (10, 4))), "b": torch.tensor(rng.normal(0, 2, (10, 6)))}
    target = torch.tensor([0, 1] * 5)
    got = constraint(torch.zeros(10, 2, dtype=torch.float64), h, None, target).numpy()
    expected = np.zeros(10)
    for layer in ("a", "b"):
        for c in (0, 1):
            rows = labels == c
            gm = BayesianGaussianMixture(n_components=3, covariance_type="full", n_init=2, max_iter=200,
                                         random_state=0).fit(feats[layer][rows])
            sel = (target == c).numpy()
            expected[sel] += authors_penalty(h[layer].numpy()[sel], gm, lam=0.7)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_component_choice_equals_sklearn_predict_for_a_plain_mixture():
    rng = np.random.default_rng(2)
    x = np.r_[rng.normal(-2, 1, (80, 3)), rng.normal(2, 1, (80, 3))]
    gm = GaussianMixture(3, covariance_type="full", random_state=0).fit(x)
    density = TorchGaussianMixture.from_sklearn(gm, variational=False)
    q = rng.normal(0, 3, (50, 3))
    assert np.array_equal(density.nearest_component(torch.tensor(q)).numpy(), gm.predict(q))


def test_gradient_flows_only_through_the_features(two_layer_mixtures):
    _, _, mixtures = two_layer_mixtures
    constraint = HFCConstraint({0: {"a": mixtures[0]["a"]}})
    h = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    value = constraint(torch.zeros(5, 2), {"a": h}, None, torch.zeros(5, dtype=torch.long))
    (grad,) = torch.autograd.grad(value.sum(), h)
    density = mixtures[0]["a"]
    k = density.nearest_component(h.detach())
    chol, mu = density.precisions_cholesky[k], density.means[k]
    w = torch.einsum("nd,nde->ne", h.detach() - mu, chol)
    analytic = 2 / 4 * torch.einsum("nde,ne->nd", chol, w)  # d/dh mean_e ((h - mu) L)_e^2 with k fixed
    torch.testing.assert_close(grad, analytic)


@pytest.mark.parametrize("base", [BIM, PGD, MIM, DI, CW])
def test_constraint_lowers_the_feature_distance_on_every_base_attack(base):
    torch.manual_seed(0)
    model = calibrated_feature_model(num_classes=2, image_size=8)
    x = images(24, (1, 8, 8), seed=4)
    y = model(x).argmax(1)
    layers = default_hfc_layers(model, x)
    reference = images(300, (1, 8, 8), seed=5)
    with torch.no_grad():
        _, feats = model.forward_features(reference, layers)
    ref_y = np.repeat([0, 1], 150)  # any labelling: the densities only need two classes of features
    ref = {k: spatial_mean(v).double().numpy() for k, v in feats.items()}
    # a well-conditioned density (reg_covar) so that signed steps of eps/20 can descend it
    mixtures = fit_hfc_mixtures(ref, ref_y, n_components=1, seed=0, max_iter=100, classes=[0, 1], reg_covar=1e-2)
    constraint = HFCConstraint(mixtures, lam=1.0)
    kwargs = {"kappa": 5.0} if base is CW else {}
    plain = base(model, eps=16 / 256, alpha=16 / 256 / 20, steps=20, targeted=True, seed=0, **kwargs)
    hidden = base(model, eps=16 / 256, alpha=16 / 256 / 20, steps=20, targeted=True, seed=0, penalties=[constraint],
                  **kwargs)
    target = 1 - y
    with torch.no_grad():
        j_plain, j_hidden = [constraint(*model.forward_features(a(x, y, target), layers), None, target).mean().item()
                             for a in (plain, hidden)]
    assert j_hidden < j_plain


def test_registry_builds_the_authors_step_rule(two_layer_mixtures):
    model = small_feature_model(num_classes=2, image_size=8).eval()
    width = model.forward_features(images(1, (1, 8, 8)), ["block1"])[1]["block1"].shape[1]
    feats = {"block1": np.random.default_rng(0).normal(size=(40, width))}
    mixtures = fit_hfc_mixtures(feats, np.repeat([0, 1], 20), n_components=1, max_iter=50)
    attack = get_attack("hfc", model, constraint=HFCConstraint(mixtures), eps=4 / 256)
    assert isinstance(attack, BIM) and attack.targeted
    assert attack.steps == 80 and attack.alpha == pytest.approx(4 / 256 / 40)
    assert attack.spec()["penalties"][0]["spec"]["name"] == "HFCConstraint"
    pgd = get_attack("hfc", model, constraint=HFCConstraint(mixtures), eps=4 / 256, base="pgd", step_fraction=0.01)
    assert isinstance(pgd, PGD) and pgd.steps == 200
    x = images(4, (1, 8, 8))
    out = attack(x, torch.tensor([0, 1, 0, 1]))
    assert (out - x).abs().max() <= 4 / 256 + 1e-7 and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="base must be"):
        get_attack("hfc", model, constraint=HFCConstraint(mixtures), eps=0.01, base="fgsm")


def test_adaptive_penalties_match_their_detectors():
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, (60, 5))
    y = np.repeat([0, 1], 30)
    kd = KD(bandwidth=0.8).fit(ref, y)
    pen = KDPenalty.from_detector(kd)
    q = rng.normal(0, 1.5, (12, 5))
    pred = np.array([0, 1] * 6)
    got = pen(torch.zeros(12, 2), {"penultimate": torch.tensor(q)}, None, torch.tensor(pred)).numpy()
    # KD's score is -log density = our penalty + the kernel's normalising constant
    const = -0.5 * 5 * math.log(2 * math.pi * 0.8 ** 2)
    np.testing.assert_allclose(got, kd.decision_function(q, pred) + const, rtol=1e-8)
    maha = Mahalanobis(layers=["penultimate"]).fit(X_ref={"penultimate": ref}, y_ref=y)
    mpen = MahalanobisPenalty.from_detector(maha)
    val = mpen(torch.zeros(12, 2), {"penultimate": torch.tensor(q)}, None, torch.tensor(pred)).numpy()
    precision = maha.covariances_["penultimate"].precision_
    mu = np.asarray(maha.class_means_["penultimate"])
    direct = [(q[i] - mu[pred[i]]) @ precision @ (q[i] - mu[pred[i]]) / 5 for i in range(12)]
    np.testing.assert_allclose(val, direct, rtol=1e-6)


class Tiny3D(nn.Module):
    """A small 3-D CNN with the FeatureModel interface the loop needs (named taps, penultimate)."""

    feature_names = ["conv", "penultimate"]
    num_classes = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward_features(self, x, layers):
        f = self.conv(x)
        pen = f.mean((2, 3, 4))
        feats = {"conv": f, "penultimate": pen}
        return self.head(pen), {k: feats[k] for k in layers}

    def forward(self, x):
        return self.forward_features(x, [])[0]


def test_hfc_on_volumes():
    torch.manual_seed(0)
    model = Tiny3D()
    vols = torch.rand(40, 1, 6, 6, 6)
    with torch.no_grad():
        feats = {"conv": spatial_mean(model.forward_features(vols, ["conv"])[1]["conv"]).double().numpy()}
    mixtures = fit_hfc_mixtures(feats, np.repeat([0, 1], 20), n_components=1, max_iter=50)
    attack = get_attack("hfc", model, constraint=HFCConstraint(mixtures), eps=4 / 256, step_fraction=0.25)
    x = torch.rand(3, 1, 6, 6, 6)
    out = attack(x, torch.tensor([0, 1, 0]))
    assert out.shape == x.shape and (out - x).abs().max() <= 4 / 256 + 1e-7
