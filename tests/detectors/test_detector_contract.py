"""scikit-learn estimator contract, score orientation, AUROC floor and threshold calibration."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import check_no_attributes_set_in_init, check_parameters_default_constructible

from medadv_lib.detectors import BU, KD, KDBU, LID, DNNDetector, GMMDetector, Mahalanobis, SafetyNetSVM
from medadv_lib.detectors.base import calibrate_threshold
from medadv_lib.metrics import tpr_at_tnr

PEN = "penultimate"


def _kd(f):
    return KD(), (f["train"], f["y_train"]), lambda X, pred: ((X,), {"y_pred": pred})


def _gmm(f):
    return GMMDetector(), (f["train"], f["y_train"]), lambda X, pred: ((X,), {"y_pred": pred})


def _lid(f):
    return (LID(k=10, minibatch=50, n_batches=2), ((f["fit"], f["fit_adv"]), {"X_ref": f["train"]}),
            lambda X, pred: ((X,), {}))


def _maha(f):
    return (Mahalanobis(), ((f["fit"], f["fit_adv"]), {"X_ref": f["train"], "y_ref": f["y_train"]}),
            lambda X, pred: ((X,), {}))


def _svm(f):
    return SafetyNetSVM(), (f["fit"], f["fit_adv"]), lambda X, pred: ((X[PEN],), {})


FEATURE_DETECTORS = {"KD": _kd, "GMM": _gmm, "LID": _lid, "MAHA": _maha, "SVM": _svm}


def _fit(det, fit_args):
    if isinstance(fit_args[0], tuple):
        args, kwargs = fit_args
        return det.fit(*args, **kwargs)
    return det.fit(*fit_args)


@pytest.fixture(params=list(FEATURE_DETECTORS))
def case(request, feats):
    det, fit_args, score_args = FEATURE_DETECTORS[request.param](feats)
    return request.param, det, fit_args, score_args


def _scores(det, score_args, X, pred):
    args, kwargs = score_args(X, pred)
    return det.decision_function(*args, **kwargs)


ALL = [KD(), BU(), KDBU(), LID(), Mahalanobis(), DNNDetector(), SafetyNetSVM(), GMMDetector()]


@pytest.mark.parametrize("det", ALL, ids=lambda d: type(d).__name__)
def test_sklearn_init_checks(det):
    check_parameters_default_constructible(type(det).__name__, det)
    check_no_attributes_set_in_init(type(det).__name__, det)
    assert clone(det).get_params() == det.get_params()
    assert det.get_params()["fpr"] == 0.1


def test_not_fitted_errors(case, feats):
    _, det, _, score_args = case
    with pytest.raises(NotFittedError):
        _scores(det, score_args, feats["test"], feats["test_pred"])
    with pytest.raises(NotFittedError):
        args, kwargs = score_args(feats["test"], feats["test_pred"])
        det.predict(*args, **kwargs)


def test_fit_returns_self_clone_refit(case, feats):
    _, det, fit_args, score_args = case
    assert _fit(det, fit_args) is det
    fitted = [k for k in vars(det) if k.endswith("_")]
    assert fitted, "fit must set attributes ending in _"
    copy = clone(det)
    assert not [k for k in vars(copy) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        _scores(copy, score_args, feats["test"], feats["test_pred"])
    _fit(copy, fit_args)
    np.testing.assert_allclose(_scores(copy, score_args, feats["test"], feats["test_pred"]),
                               _scores(det, score_args, feats["test"], feats["test_pred"]), rtol=1e-10, atol=1e-12)


def test_orientation_and_auroc_floor(case, feats):
    """Shifted ('adversarial') clusters must score higher: AUROC well above chance."""
    name, det, fit_args, score_args = case
    _fit(det, fit_args)
    scores = _scores(det, score_args, feats["test"], feats["test_pred"])
    assert scores.shape == (len(feats["test_adv"]),) and np.isfinite(scores).all()
    assert roc_auc_score(feats["test_adv"], scores) > 0.9, name


def test_calibration_hits_target_fpr(case, feats):
    name, det, fit_args, score_args = case
    _fit(det, fit_args)
    clean, pred = feats["clean"], feats["clean_pred"]
    half = {k: v[:200] for k, v in clean.items()}, pred[:200]
    other = {k: v[200:] for k, v in clean.items()}, pred[200:]
    args, kwargs = score_args(*half)
    det.calibrate(*args, fpr=0.2, **kwargs)
    assert det.calibration_fpr_ == 0.2
    # on the calibration set the realised rate never exceeds the target (ties resolved safely)
    assert det.predict(*args, **kwargs).mean() <= 0.2
    assert det.predict(*args, **kwargs).mean() >= 0.2 - 1 / 200
    args, kwargs = score_args(*other)
    assert abs(det.predict(*args, **kwargs).mean() - 0.2) < 0.08, name
    # refitting drops the stale threshold
    _fit(det, fit_args)
    with pytest.raises(NotFittedError, match="calibrate"):
        det.predict(*args, **kwargs)


def test_default_fpr_and_set_params(feats):
    det = KD().set_params(fpr=0.05, bandwidth=2.0)
    assert det.bandwidth == 2.0
    det.fit(feats["train"], feats["y_train"]).calibrate(feats["clean"], feats["clean_pred"])
    assert det.calibration_fpr_ == 0.05
    assert det.predict(feats["clean"], feats["clean_pred"]).mean() <= 0.05


@pytest.mark.parametrize("n,fpr", [(200, 0.2), (10, 0.1), (60, 0.1), (7, 0.3), (100, 0.05)])
def test_calibration_keeps_floor_fpr_n_above_including_whole_products(n, fpr):
    # distinct scores: exactly floor(fpr * n) clean samples above the threshold (40 of 200 at 0.2,
    # where np.quantile(..., method="higher") kept 39)
    clean = np.random.default_rng(n).permutation(n).astype(float)
    thr = calibrate_threshold(clean, fpr)
    assert (clean > thr).sum() == int(np.floor(round(fpr * n, 9)))
    assert thr in clean


@settings(max_examples=60, deadline=None)
@given(clean=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
       probes=st.lists(st.integers(-6, 6), min_size=1, max_size=10),
       tenths=st.integers(1, 9))
def test_calibration_and_tpr_at_tnr_share_one_threshold(clean, probes, tenths):
    """Law: flagging probes above the calibrated threshold gives exactly the metric's TPR at
    TNR = 1 - fpr, ties and whole fpr * n included, and never more than fpr of the clean set."""
    fpr = tenths / 10
    clean, probes = np.asarray(clean, float), np.asarray(probes, float)
    thr = calibrate_threshold(clean, fpr)
    y = np.r_[np.zeros(clean.size), np.ones(probes.size)]
    assert tpr_at_tnr(y, np.r_[clean, probes], tnr=1.0 - fpr) == (probes > thr).mean()
    assert (clean > thr).sum() <= np.floor(round(fpr * clean.size, 9))
