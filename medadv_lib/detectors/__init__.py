"""Detectors of adversarial examples, as scikit-learn estimators (higher score = more adversarial).

What each detector takes (``X`` = dict layer -> (N, D) spatial-mean features from
:func:`extract_features`, or one array; ``x`` = images in [0, 1]; ``is_adv`` = 1 adversarial /
0 normal; ``X_ref, y_ref`` = clean training features and true labels):

=====================  ==========================================  ====================================
detector               fit                                         decision_function
=====================  ==========================================  ====================================
KD                     ``fit(X_ref, y_ref)``                       ``(X, y_pred)``
GMMDetector            ``fit(X_ref, y_ref)``                       ``(X, y_pred)``
BU                     ``fit(model=)`` (checks dropout)            ``(x, model=)``
KDBU                   ``fit(x, is_adv, model=, X_ref=, y_ref=)``  ``(x, model=)``
LID                    ``fit(X, is_adv, X_ref=)``                  ``(X)``; ``layer_scores(X)``
Mahalanobis            ``fit(X, is_adv, X_ref=, y_ref=)``          ``(X)``; images + ``model=`` when
                                                                   ``noise_magnitude > 0``
DNNDetector            ``fit(x, is_adv, model=)``                  ``(x, model=)``
SafetyNetSVM           ``fit(X, is_adv)``                          ``(X)``
=====================  ==========================================  ====================================

Every detector also has ``calibrate(<clean inputs>, fpr=)`` then ``predict(...)``, and the
protocol hooks ``fit_from_features`` / ``score_from_features``. See :mod:`.base` for the
conventions and :mod:`medadv_lib.metrics.protocol` for the evaluation protocol (the Methods
page, :ref:`methods-protocol`).
"""
from .base import BaseDetector, calibrate_threshold
from .bu import BU
from .dnn import DNNDetector
from .features import Features, extract_features, forward_maps, spatial_mean, stage_outputs
from .gmm import UAD_SETTINGS, GMMDetector, uad
from .kd import KD
from .kdbu import KDBU
from .lid import LID
from .mahalanobis import Mahalanobis
from .standard import standard_detectors
from .svm import SafetyNetSVM

__all__ = [
    "BU",
    "KD",
    "KDBU",
    "LID",
    "BaseDetector",
    "DNNDetector",
    "Features",
    "GMMDetector",
    "Mahalanobis",
    "SafetyNetSVM",
    "calibrate_threshold",
    "extract_features",
    "forward_maps",
    "spatial_mean",
    "stage_outputs",
    "standard_detectors",
    "uad",
    "UAD_SETTINGS",
]
