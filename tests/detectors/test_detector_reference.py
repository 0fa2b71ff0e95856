"""Scores equal a plain numpy / scikit-learn formulation of each detector (to 1e-5 relative)."""
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from sklearn.covariance import EmpiricalCovariance
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity, NearestNeighbors
from sklearn.svm import SVC

from medadv_lib.detectors import KD, LID, GMMDetector, Mahalanobis, SafetyNetSVM

PEN = "penultimate"


def _kd_numpy(query, reference, bandwidth):
    """Gaussian KDE log-density written out (sklearn's normalisation), exact via logsumexp."""
    d2 = cdist(query, reference, "sqeuclidean")
    dim = reference.shape[1]
    return (logsumexp(-0.5 * d2 / bandwidth**2, axis=1) - np.log(len(reference))
            - 0.5 * dim * np.log(2 * np.pi * bandwidth**2))


@pytest.mark.parametrize("bandwidth", [1.0, 0.6])
def test_kd_equals_kernel_density_reference(feats, bandwidth):
    X, y = feats["train"][PEN], feats["y_train"]
    Q, pred = feats["test"][PEN], feats["test_pred"]
    det = KD(bandwidth=bandwidth, batch_size=17).fit(X, y)  # odd batch size: blocks must not matter
    ours = det.decision_function(Q, pred)
    exact = np.empty(len(Q))
    sk = np.empty(len(Q))
    for c in np.unique(y):
        exact[pred == c] = -_kd_numpy(Q[pred == c], X[y == c], bandwidth)
        kde = KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(X[y == c])
        sk[pred == c] = -kde.score_samples(Q[pred == c])
    np.testing.assert_allclose(ours, exact, rtol=1e-5)
    np.testing.assert_allclose(det.score_samples(feats["test"], pred), -exact, rtol=1e-5)
    # sklearn's tree walk is not exact even with rtol=atol=0: it bounds node contributions
    # loosely (scikit-learn issues #7492, #27186), off by a factor ~2 in log-density for points
    # far from every training feature, which is where adversarial features land. It agrees
    # closely on in-distribution points only.
    normal = feats["test_adv"] == 0
    np.testing.assert_allclose(ours[normal], sk[normal], rtol=1e-3)


def _lid_numpy(query, reference, k):
    """Ma et al.'s estimator written out: -1 / mean_i log(r_i / r_k) over the k nearest."""
    d = np.sort(cdist(query, reference), axis=1)[:, :k]
    return -1.0 / np.mean(np.log(d / d[:, -1:]), axis=1)


def test_lid_equals_nearest_neighbours_reference(feats):
    det = LID(k=7, minibatch=40, n_batches=3, seed=5, batch_size=13).fit(X_ref=feats["train"])
    S = det.layer_scores(feats["test"])
    assert det.layers_ == list(feats["train"])
    for j, name in enumerate(det.layers_):
        # the reference minibatches are rows of the clean training features
        np.testing.assert_array_equal(det.reference_[name], feats["train"][name][det.reference_index_])
        per_batch = []
        for ref in det.reference_[name]:
            dist, _ = NearestNeighbors(n_neighbors=7).fit(ref).kneighbors(feats["test"][name])
            per_batch.append(-1.0 / np.mean(np.log(dist / dist[:, -1:]), axis=1))
            np.testing.assert_allclose(per_batch[-1], _lid_numpy(feats["test"][name], ref, 7), rtol=1e-10)
        np.testing.assert_allclose(S[:, j], np.mean(per_batch, axis=0), rtol=1e-5)
    assert len({tuple(r) for r in det.reference_index_}) == 3  # distinct draws


def test_lid_single_layer_without_combiner(feats):
    X_ref = feats["train"][PEN]
    det = LID(k=5, minibatch=30).fit(X_ref=X_ref)
    ref = det.reference_["features"][0]
    np.testing.assert_allclose(det.decision_function(feats["test"][PEN]), _lid_numpy(feats["test"][PEN], ref, 5),
                               rtol=1e-5)


def test_mahalanobis_equals_empirical_covariance_reference(feats):
    X, y = feats["train"], feats["y_train"]
    det = Mahalanobis().fit(X_ref=X, y_ref=y)
    S = det.layer_scores(feats["test"])
    for j, name in enumerate(det.layers_):
        classes = np.unique(y)
        means = np.stack([X[name][y == c].mean(0) for c in classes])
        # Lee et al.: one covariance of the class-centred features (tied)
        cov = EmpiricalCovariance(assume_centered=True).fit(X[name] - means[np.searchsorted(classes, y)])
        ref = np.min([cov.mahalanobis(feats["test"][name] - mu) for mu in means], axis=0)
        np.testing.assert_allclose(S[:, j], ref, rtol=1e-5)
        # and against a per-sample numpy loop with an explicit inverse
        prec = np.linalg.inv(np.cov((X[name] - means[np.searchsorted(classes, y)]).T, bias=True))
        loop = [min((h - mu) @ prec @ (h - mu) for mu in means) for h in feats["test"][name][:20]]
        np.testing.assert_allclose(S[:20, j], loop, rtol=1e-5)


def test_mahalanobis_with_a_dead_unit_uses_the_pseudo_inverse(feats):
    # a constant (dead ReLU) feature makes the tied covariance singular; Lee et al.'s code and
    # EmpiricalCovariance use its pseudo-inverse, which the torch density must reproduce
    X, y = feats["train"][PEN].copy(), feats["y_train"]
    X[:, 3] = 0.0
    det = Mahalanobis().fit(X_ref=X, y_ref=y)
    Q = feats["test"][PEN]
    means = np.stack([X[y == c].mean(0) for c in np.unique(y)])
    cov = EmpiricalCovariance(assume_centered=True).fit(X - means[np.searchsorted(np.unique(y), y)])
    ref = np.min([cov.mahalanobis(Q - mu) for mu in means], axis=0)
    np.testing.assert_allclose(det.layer_scores(Q)[:, 0], ref, rtol=1e-5)


def test_mahalanobis_combiner_uses_layer_scores(feats):
    det = Mahalanobis(layers=["block2", PEN]).fit(feats["fit"], feats["fit_adv"], X_ref=feats["train"],
                                                  y_ref=feats["y_train"])
    S = det.layer_scores(feats["test"])
    assert S.shape == (len(feats["test_adv"]), 2)
    np.testing.assert_allclose(det.decision_function(feats["test"]), det.combiner_.decision_function(S))
    # the combiner saw exactly the fitting split
    assert det.combiner_[0].n_samples_seen_ == len(feats["fit_adv"])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gmm_equals_gaussian_mixture(feats, covariance_type):
    X, y = feats["train"][PEN], feats["y_train"]
    det = GMMDetector(n_components=2, covariance_type=covariance_type, reg_covar=1e-3, random_state=3).fit(X, y)
    Q, pred = feats["test"][PEN], feats["test_pred"]
    expected = np.empty(len(Q))
    for c in np.unique(y):
        gmm = GaussianMixture(n_components=2, covariance_type=covariance_type, reg_covar=1e-3, random_state=3,
                              max_iter=200).fit(X[y == c])
        expected[pred == c] = -gmm.score_samples(Q[pred == c])
    np.testing.assert_allclose(det.decision_function(Q, pred), expected, rtol=1e-5)
    ll = det.log_likelihood(Q)
    np.testing.assert_allclose(-ll[np.arange(len(Q)), pred], expected, rtol=1e-5)


def test_svm_equals_svc_on_binarised_features(feats):
    X, y = feats["fit"][PEN], feats["fit_adv"]
    det = SafetyNetSVM(C=2.0, gamma=2.8).fit(X, y)
    means = X.mean(0)
    svc = SVC(C=2.0, gamma=2.8, kernel="rbf").fit((X > means).astype(float), y)
    Q = feats["test"][PEN]
    np.testing.assert_allclose(det.decision_function(Q), svc.decision_function((Q > means).astype(float)))
