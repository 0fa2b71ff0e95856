"""Detectors of adversarial examples, as scikit-learn estimators (higher score = more adversarial).

See :mod:`medadv_lib.detectors.base` for what each detector's ``fit`` and ``decision_function``
take, and :mod:`medadv_lib.metrics.protocol` for the evaluation protocol of METHODS.md section 4.
"""
from .base import BaseDetector, calibrate_threshold
from .bu import BU
from .dnn import DNNDetector
from .features import Features, extract_features, forward_maps, spatial_mean
from .gmm import GMMDetector
from .kd import KD
from .kdbu import KDBU
from .lid import LID
from .mahalanobis import Mahalanobis
from .svm import SafetyNetSVM

__all__ = ["BU", "DNNDetector", "Features", "GMMDetector", "KD", "KDBU", "LID", "Mahalanobis", "BaseDetector",
           "SafetyNetSVM", "calibrate_threshold", "extract_features", "forward_maps", "spatial_mean"]
