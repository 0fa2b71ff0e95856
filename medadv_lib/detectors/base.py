"""Shared machinery of the adversarial-example detectors.

Every detector is a scikit-learn estimator (``BaseEstimator``): ``__init__`` only stores
hyper-parameters, ``fit`` returns ``self`` and sets attributes ending in ``_``, scoring before
``fit`` raises :class:`sklearn.exceptions.NotFittedError`, and ``sklearn.base.clone`` gives an
unfitted copy. One score direction everywhere: **higher = more likely adversarial**.

What the detectors take
-----------------------
* Feature arrays: a ``dict`` mapping layer name to a 2-D array ``(N, D_l)`` of spatial-mean
  features (see :func:`medadv_lib.detectors.features.extract_features`), or a single 2-D array,
  which is treated as one layer named ``"features"`` (multi-layer detectors) or as the detector's
  ``layer`` (single-layer detectors).
* Class-conditional detectors (KD, GMM) also take labels: the *true* labels of the clean training
  features in ``fit`` and the *predicted* labels of the scored inputs in ``decision_function``.
* Detectors that need the network (BU's dropout passes, Mahalanobis input pre-processing, the
  DNN detector's full feature maps) take images in [0, 1] and ``model=`` (a
  :class:`~medadv_lib.models.FeatureModel`) as a keyword argument. The model is never stored in
  the estimator, so cloning never copies a network.

Which data fits which part (the protocol of the Methods page, :ref:`methods-protocol`):
* **Unsupervised statistics** (KD densities, class means and tied covariance, GMMs, the LID
  reference minibatches) come from **clean training-set** features, passed as ``X_ref``/``y_ref``
  (or ``X``/``y`` for KD and GMM, which have nothing else to fit).
* **Supervised parts** (the logistic regression that combines layers or [KD, BU], the SVM, the
  DNN) are fitted on ``(X, is_adv)``: the normal (clean + noisy) and adversarial samples of the
  *fitting* split, ``is_adv`` being 1 for adversarial and 0 for normal.
* ``calibrate`` sets the decision threshold of ``predict`` from held-out clean inputs.

All inputs are validated here, with errors that say what to fix: empty inputs, NaN/inf values,
mismatched feature dimensions or layer names, labels of the wrong length.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

SINGLE_ARRAY_LAYER = "features"


# ---------------------------------------------------------------------------- validation
def check_feature_matrix(a, name: str = "X") -> np.ndarray:
    """Return ``a`` as a finite float64 array of shape (N, D) with N, D >= 1."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array of features, got {type(a).__name__}.") from None
    if arr.ndim != 2:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected a 2-D array (n_samples, n_features). "
            "Use medadv_lib.detectors.extract_features to turn feature maps into spatial-mean vectors."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); detectors need at least one sample.")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns (shape {arr.shape}).")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values in {bad} of {arr.shape[0]} rows; "
                         "clean or drop those samples before fitting or scoring.")
    return arr


def as_layer_dict(X, name: str = "X", single_name: str = SINGLE_ARRAY_LAYER) -> OrderedDict[str, np.ndarray]:
    """Normalise a feature input to an ordered ``{layer: (N, D_l) float64 array}``.

    A single array becomes the one layer ``single_name``. All layers must have the same number of
    rows.
    """
    if isinstance(X, Mapping):
        if not X:
            raise ValueError(f"{name} is an empty mapping; pass at least one layer of features.")
        out = OrderedDict((str(k), check_feature_matrix(v, f"{name}[{k!r}]")) for k, v in X.items())
    else:
        out = OrderedDict([(single_name, check_feature_matrix(X, name))])
    rows = {k: v.shape[0] for k, v in out.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"the layers of {name} have different numbers of samples: {rows}.")
    return out


def select_layers(X: Mapping, layers: Sequence[str] | str | None, name: str = "X") -> OrderedDict[str, np.ndarray]:
    """Pick ``layers`` (all when None) out of a layer dict, with a KeyError naming the valid ones."""
    if layers is None:
        return OrderedDict(X)
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is an empty list; give at least one layer name or None for all.")
    unknown = [layer for layer in layers if layer not in X]
    if unknown:
        raise KeyError(f"unknown layer(s) {unknown} in {name}; available layers: {list(X)}")
    return OrderedDict((layer, X[layer]) for layer in layers)


def single_layer(X, layer: str, name: str = "X") -> np.ndarray:
    """The (N, D) array of ``layer`` from a layer dict, or ``X`` itself when it is one array."""
    if isinstance(X, Mapping):
        return as_layer_dict(select_layers(X, [layer], name), name)[layer]
    return check_feature_matrix(X, name)


def check_layers_match(X: Mapping, layer_dims: Mapping[str, int], name: str = "X") -> OrderedDict[str, np.ndarray]:
    """Select the fitted layers from ``X`` and check their widths against ``layer_dims``."""
    X = select_layers(X, list(layer_dims), name)
    for layer, dim in layer_dims.items():
        if X[layer].shape[1] != dim:
            raise ValueError(
                f"{name}[{layer!r}] has {X[layer].shape[1]} features but the detector was fitted on {dim}; "
                "score features of the same layers and model the detector was fitted on."
            )
    return X


def check_n_features(X: np.ndarray, n_features: int, name: str = "X") -> np.ndarray:
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the detector was fitted on {n_features}; "
                         "score features of the same layer and model the detector was fitted on.")
    return X


def check_class_labels(y, n: int, name: str = "y") -> np.ndarray:
    """Integer class labels of length ``n``."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} has shape {y.shape}; expected a 1-D array of class indices.")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but the features have {n} samples.")
    if y.size and not (np.issubdtype(y.dtype, np.integer) or
                       (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))):
        raise TypeError(f"{name} has dtype {y.dtype}; class labels must be integers.")
    return y.astype(np.int64)


def check_known_classes(y_pred: np.ndarray, classes: np.ndarray, what: str) -> np.ndarray:
    """Refuse predicted classes that had no clean training samples (no ``what`` was fitted for them)."""
    unknown = np.setdiff1d(np.unique(y_pred), classes)
    if unknown.size:
        raise ValueError(f"y_pred contains classes {unknown.tolist()} without {what} "
                         f"(fitted classes: {classes.tolist()}).")
    return y_pred


def check_is_adv(is_adv, n: int, name: str = "is_adv") -> np.ndarray:
    """Binary 0 (normal) / 1 (adversarial) labels of length ``n`` with both classes present."""
    if isinstance(is_adv, torch.Tensor):
        is_adv = is_adv.detach().cpu().numpy()
    is_adv = np.asarray(is_adv)
    if is_adv.ndim != 1 or is_adv.shape[0] != n:
        raise ValueError(f"{name} has shape {is_adv.shape}; expected ({n},), one 0/1 flag per sample.")
    values = set(np.unique(is_adv).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{name} must hold 0 (normal) and 1 (adversarial), got values {sorted(values)}.")
    is_adv = is_adv.astype(np.int64)
    if len(np.unique(is_adv)) < 2:
        raise ValueError(f"{name} holds a single class; the supervised part needs normal and adversarial samples.")
    return is_adv


def reference_labels(reference) -> np.ndarray:
    """True labels of a clean reference :class:`Features`, with an error saying how to add them."""
    if getattr(reference, "labels", None) is None:
        raise ValueError("the clean training reference has no labels; extract it with "
                         "extract_features(model, x_train, layers, labels=y_train).")
    return reference.labels


def check_fpr(fpr) -> float:
    fpr = float(fpr)
    if not 0.0 < fpr < 1.0 or math.isnan(fpr):
        raise ValueError(f"fpr must be in (0, 1), got {fpr}.")
    return fpr


def calibrate_threshold(clean_scores: np.ndarray, fpr: float) -> float:
    """Threshold that leaves ``floor(fpr * n)`` of the ``n`` clean scores strictly above it.

    The same rule as the TPR-at-TNR metric (:func:`medadv_lib.metrics.detection.fpr_threshold`
    with ``fpr = 1 - tnr``): the threshold is an observed score, so ties can only lower the
    realised false-positive rate, never raise it above ``fpr``.
    """
    # imported here: medadv_lib.metrics imports the detectors package, so a module-level import
    # would be circular
    from ..metrics.detection import fpr_threshold

    clean_scores = np.asarray(clean_scores, dtype=np.float64).ravel()
    if clean_scores.size == 0:
        raise ValueError("calibration needs at least one clean sample.")
    return float(fpr_threshold(clean_scores, check_fpr(fpr)))


# ---------------------------------------------------------------------------- torch helpers
def resolve_device(device=None) -> torch.device:
    """``device`` if given, else the GPU when there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_tensor(a: np.ndarray, device) -> torch.Tensor:
    # float64 keeps log-densities and Mahalanobis distances equal to the numpy reference to 1e-5
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=device)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All squared Euclidean distances (|a|^2 + |b|^2 - 2 a.b, one matmul), clamped at 0."""
    # addmm folds the |b|^2 broadcast into the matmul: one pass less over the (n, m) block
    d2 = torch.addmm((b * b).sum(1)[None, :], a, b.T, beta=1.0, alpha=-2.0)
    d2 += (a * a).sum(1, keepdim=True)
    return d2.clamp_min_(0.0)


def batch_slices(n: int, batch_size: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def make_combiner(C: float):
    """Logistic regression on z-scored per-layer scores (Ma et al. 2018; Lee et al. 2018)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))


# ---------------------------------------------------------------------------- base class
class BaseDetector(BaseEstimator):
    """Common behaviour: threshold calibration, ``predict`` and the protocol hooks.

    Subclasses implement ``fit``, ``decision_function`` and the two protocol hooks
    :meth:`fit_from_features` and :meth:`score_from_features`, which map the precomputed
    :class:`~medadv_lib.detectors.features.Features` of the evaluation protocol onto the
    detector's own ``fit``/``decision_function`` arguments.
    """

    #: whether the protocol must keep images (and pass ``model``) for this detector
    needs_images = False

    def _reset(self):
        # refitting must not leave a stale threshold or combiner from an earlier fit
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, key)

    def _check_fitted(self):
        check_is_fitted(self)

    def calibrate(self, *args, fpr: float | None = None, **kwargs):
        """Set ``threshold_`` so that ``predict`` flags a fraction ``fpr`` of clean inputs.

        Parameters
        ----------
        *args, **kwargs
            Held-out **clean** inputs in the form ``decision_function`` takes (never the data the
            detector was fitted on: training features score unrealistically low).
        fpr : float, optional
            Target false-positive rate; defaults to the ``fpr`` hyper-parameter.

        Returns
        -------
        self
        """
        self._check_fitted()
        fpr = check_fpr(self.fpr if fpr is None else fpr)
        scores = np.asarray(self.decision_function(*args, **kwargs), dtype=np.float64)
        self.threshold_ = calibrate_threshold(scores, fpr)
        self.calibration_fpr_ = fpr
        return self

    def predict(self, *args, **kwargs) -> np.ndarray:
        """1 (adversarial) where ``decision_function`` exceeds the calibrated threshold, else 0."""
        self._check_fitted()
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{type(self).__name__} has no decision threshold yet; call "
                                 "calibrate(<held-out clean inputs>) after fit and before predict.")
        return (np.asarray(self.decision_function(*args, **kwargs)) > self.threshold_).astype(np.int64)

    # protocol hooks -------------------------------------------------------------------------
    def fit_from_features(self, reference, data, is_adv, *, model=None):
        """Fit from the protocol's precomputed features.

        Parameters
        ----------
        reference : Features
            Clean training-set features and true labels (unsupervised statistics).
        data : Features
            The fitting split: normal and adversarial samples (supervised parts).
        is_adv : ndarray of shape (len(data),)
        model : FeatureModel, optional
        """
        raise NotImplementedError

    def score_from_features(self, data, *, model=None) -> np.ndarray:
        """Scores (higher = more adversarial) of precomputed features ``data``."""
        raise NotImplementedError
