"""TorchGaussianMixture equals scikit-learn's mixtures and is a well-behaved torch module."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.covariance import EmpiricalCovariance
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from medadv_lib.density import COVARIANCE_TYPES, TorchGaussianMixture

RNG = np.random.default_rng(0)
X_TRAIN = RNG.normal(size=(240, 4)) @ RNG.normal(size=(4, 4)) + 5.0
X_TRAIN[:80] += 4.0
# queries near the data and far from it (where adversarial features land)
QUERY = np.concatenate([X_TRAIN[:20] + RNG.normal(0, 0.3, (20, 4)), RNG.normal(0, 6.0, (20, 4))])


def _fit(kind, covariance_type, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "gmm":
            return GaussianMixture(3, covariance_type=covariance_type, random_state=0, **kw).fit(X_TRAIN)
        return BayesianGaussianMixture(n_components=3, covariance_type=covariance_type, random_state=0,
                                       max_iter=300, **kw).fit(X_TRAIN)


ESTIMATORS = [("gmm", {}), ("bgm", {}), ("bgm", {"weight_concentration_prior_type": "dirichlet_distribution"})]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("kind,kw", ESTIMATORS, ids=["GaussianMixture", "BGM-process", "BGM-distribution"])
def test_log_prob_and_choice_equal_sklearn(kind, kw, covariance_type):
    est = _fit(kind, covariance_type, **kw)
    gm = TorchGaussianMixture.from_sklearn(est)
    q = torch.tensor(QUERY)
    np.testing.assert_allclose(gm.log_prob(q).numpy(), est.score_samples(QUERY), rtol=1e-6)
    np.testing.assert_allclose(torch.logsumexp(gm.component_log_prob(q), 1).numpy(), est.score_samples(QUERY),
                               rtol=1e-6)
    np.testing.assert_array_equal(gm.nearest_component(q).numpy(), est.predict(QUERY))
    np.testing.assert_allclose(gm.component_log_prob(q).softmax(1).numpy(), est.predict_proba(QUERY), atol=1e-8)
    assert gm(q).shape == (len(QUERY),)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mahalanobis_and_whitened_distance_against_numpy(covariance_type):
    est = _fit("gmm", covariance_type)
    gm = TorchGaussianMixture.from_sklearn(est)
    cov = {"full": lambda: est.covariances_,
           "tied": lambda: np.broadcast_to(est.covariances_, (3, 4, 4)),
           "diag": lambda: np.stack([np.diag(c) for c in est.covariances_]),
           "spherical": lambda: np.stack([c * np.eye(4) for c in est.covariances_])}[covariance_type]()
    diff = QUERY[:, None] - est.means_[None]
    expected = np.einsum("nkd,kde,nke->nk", diff, np.linalg.inv(cov), diff)
    d2 = gm.mahalanobis(torch.tensor(QUERY)).numpy()
    np.testing.assert_allclose(d2, expected, rtol=1e-8)
    k = torch.tensor(RNG.integers(0, 3, len(QUERY)))
    np.testing.assert_allclose(gm.whitened_sq_distance(torch.tensor(QUERY), k).numpy(),
                               d2[np.arange(len(QUERY)), k.numpy()] / 4, rtol=1e-10)
    # default component: the most likely one
    nearest = gm.nearest_component(torch.tensor(QUERY)).numpy()
    np.testing.assert_allclose(gm.whitened_sq_distance(torch.tensor(QUERY)).numpy(),
                               d2[np.arange(len(QUERY)), nearest] / 4, rtol=1e-10)
    np.testing.assert_allclose(gm.whitened_sq_distance(torch.tensor(QUERY), 1).numpy(), d2[:, 1] / 4, rtol=1e-10)


def test_tied_from_covariance_and_precision():
    y = np.arange(len(X_TRAIN)) % 3
    means = np.stack([X_TRAIN[y == c].mean(0) for c in range(3)])
    emp = EmpiricalCovariance(assume_centered=True).fit(X_TRAIN - means[y])
    a = TorchGaussianMixture.tied(means, emp.covariance_)
    b = TorchGaussianMixture.tied(means, precision=emp.precision_)
    q = torch.tensor(QUERY)
    ref = np.stack([emp.mahalanobis(QUERY - mu) for mu in means], 1)
    np.testing.assert_allclose(a.mahalanobis(q).numpy(), ref, rtol=1e-8)
    np.testing.assert_allclose(b.mahalanobis(q).numpy(), ref, rtol=1e-8)
    np.testing.assert_allclose(a.log_prob(q).numpy(), b.log_prob(q).numpy(), rtol=1e-10)
    # uniform weights: the chosen class is the closest mean
    np.testing.assert_array_equal(a.nearest_component(q).numpy(), ref.argmin(1))
    # equal to a tied sklearn mixture with the same parameters
    sk = GaussianMixture(3, covariance_type="tied")
    sk.means_, sk.covariances_, sk.weights_ = means, emp.covariance_, np.full(3, 1 / 3)
    sk.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(emp.covariance_))
    np.testing.assert_allclose((a.log_prob(q) - np.log(3)).numpy(), sk.score_samples(QUERY), rtol=1e-8)


def test_tied_with_singular_precision_matches_pseudo_inverse():
    # a dead unit (constant 0 feature) makes the covariance singular: Lee et al.'s pinv precision
    h = np.c_[X_TRAIN, np.zeros(len(X_TRAIN))]
    y = np.arange(len(h)) % 2
    means = np.stack([h[y == c].mean(0) for c in range(2)])
    emp = EmpiricalCovariance(assume_centered=True).fit(h - means[y])
    gm = TorchGaussianMixture.tied(means, precision=emp.precision_)
    q = np.c_[QUERY, RNG.normal(size=len(QUERY))]
    diff = q[:, None] - means[None]
    expected = np.einsum("nkd,de,nke->nk", diff, emp.precision_, diff)
    np.testing.assert_allclose(gm.mahalanobis(torch.tensor(q)).numpy(), expected, rtol=1e-7)
    with pytest.raises(ValueError, match="positive definite"):
        TorchGaussianMixture.tied(means, emp.covariance_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gradient_matches_finite_differences(covariance_type):
    gm = TorchGaussianMixture.from_sklearn(_fit("gmm", covariance_type))
    x = torch.tensor(QUERY[:6], requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: gm.log_prob(z), (x,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda z: gm.mahalanobis(z), (x,), eps=1e-6, atol=1e-6)
    k = gm.nearest_component(x)
    assert torch.autograd.gradcheck(lambda z: gm.whitened_sq_distance(z, k), (x,), eps=1e-6, atol=1e-6)
    assert not gm.nearest_component(x).requires_grad


def test_float32_and_dtype_device_moves():
    est = _fit("gmm", "full")
    gm64 = TorchGaussianMixture.from_sklearn(est)
    gm32 = TorchGaussianMixture.from_sklearn(est).to(torch.float32)
    assert all(b.dtype == torch.float32 for b in gm32.buffers())
    q32 = torch.tensor(QUERY, dtype=torch.float32, requires_grad=True)
    lp = gm32.log_prob(q32)
    assert lp.dtype == torch.float32
    np.testing.assert_allclose(lp.detach().numpy(), est.score_samples(QUERY), rtol=1e-4)
    lp.sum().backward()
    assert q32.grad is not None and torch.isfinite(q32.grad).all()
    # a float32 input to a float64 mixture is promoted, gradient included
    q = torch.tensor(QUERY, dtype=torch.float32, requires_grad=True)
    out = gm64.log_prob(q)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert q.grad.dtype == torch.float32
    # buffers travel with the module and with its state_dict
    assert set(gm64.state_dict()) >= {"means", "precisions_cholesky", "log_det", "log_weights"}
    if torch.cuda.is_available():
        gpu = gm64.to("cuda")
        assert gpu.means.is_cuda
        np.testing.assert_allclose(gpu.log_prob(torch.tensor(QUERY, device="cuda")).cpu().numpy(),
                                   est.score_samples(QUERY), rtol=1e-6)
        with pytest.raises(ValueError, match="mixture.to"):
            gpu.log_prob(torch.tensor(QUERY))


def test_input_and_constructor_errors():
    gm = TorchGaussianMixture.from_sklearn(_fit("gmm", "diag"))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        gm.log_prob(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        gm.log_prob(torch.zeros(4))
    bad = torch.tensor(QUERY[:3].copy())
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gm.log_prob(bad)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        gm.whitened_sq_distance(torch.tensor(QUERY[:3]), torch.tensor([0, 1, 3]))
    with pytest.raises(TypeError, match="fit first"):
        TorchGaussianMixture.from_sklearn(GaussianMixture(2))
    with pytest.raises(ValueError, match="covariance_type"):
        TorchGaussianMixture(np.zeros((2, 3)), np.ones(2), np.zeros(2), "banana")
    with pytest.raises(ValueError, match=r"\(2, 3, 3\)"):
        TorchGaussianMixture(np.zeros((2, 3)), np.ones((3, 3)), np.zeros(2), "full")
    with pytest.raises(ValueError, match="exactly one"):
        TorchGaussianMixture.tied(np.zeros((2, 3)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), k=st.integers(1, 4), d=st.integers(1, 5),
       covariance_type=st.sampled_from(COVARIANCE_TYPES))
def test_log_prob_invariant_to_component_order(seed, k, d, covariance_type):
    """Law: a mixture is a set of components, so permuting them changes no density."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (k, d))
    chol = {"full": lambda: np.triu(rng.normal(size=(k, d, d))) + 2 * np.eye(d),
            "tied": lambda: np.triu(rng.normal(size=(d, d))) + 2 * np.eye(d),
            "diag": lambda: rng.uniform(0.3, 2.0, (k, d)),
            "spherical": lambda: rng.uniform(0.3, 2.0, k)}[covariance_type]()
    if covariance_type in ("full", "tied"):  # positive diagonal, as a Cholesky factor has
        idx = np.arange(d)
        chol[..., idx, idx] = np.abs(chol[..., idx, idx]) + 0.5
    w = rng.dirichlet(np.ones(k))
    perm = rng.permutation(k)
    a = TorchGaussianMixture(means, chol, np.log(w), covariance_type)
    permuted_chol = chol if covariance_type == "tied" else chol[perm]
    b = TorchGaussianMixture(means[perm], permuted_chol, np.log(w[perm]), covariance_type)
    x = torch.tensor(rng.normal(0, 4, (7, d)))
    np.testing.assert_allclose(a.log_prob(x).numpy(), b.log_prob(x).numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(a.mahalanobis(x).numpy()[:, perm], b.mahalanobis(x).numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(perm[b.nearest_component(x).numpy()], a.nearest_component(x).numpy())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), shift=st.floats(-50, 50))
def test_mahalanobis_translation_equivariant(seed, shift):
    """Law: moving the means and the query by the same vector leaves every distance unchanged."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (3, 4))
    a_ = rng.normal(size=(4, 4))
    cov = a_ @ a_.T + np.eye(4)
    v = np.full(4, shift)
    x = rng.normal(0, 3, (5, 4))
    d_a = TorchGaussianMixture.tied(means, cov).mahalanobis(torch.tensor(x))
    d_b = TorchGaussianMixture.tied(means + v, cov).mahalanobis(torch.tensor(x + v))
    np.testing.assert_allclose(d_a.numpy(), d_b.numpy(), rtol=1e-8, atol=1e-8)
