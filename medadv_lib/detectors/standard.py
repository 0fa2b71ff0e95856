"""The standard set of detectors of the Methods page, :ref:`methods-protocol`, built with their documented defaults.

``standard_detectors()`` returns a fresh ``{name: unfitted detector}`` dict in a fixed order
(feature-space density detectors first), ready for
:class:`~medadv_lib.metrics.DetectionProtocol`. Only the settings that decide a run's cost are
arguments; every other hyper-parameter keeps its documented default, so the names below always
mean the same detector.
"""
from __future__ import annotations

from collections.abc import Sequence

from .base import BaseDetector
from .bu import BU
from .dnn import DNNDetector
from .gmm import GMMDetector
from .kd import KD
from .kdbu import KDBU
from .lid import LID
from .mahalanobis import Mahalanobis
from .svm import SafetyNetSVM

#: Every detector name, in display order.
DETECTOR_NAMES = ("KD", "LID", "MAHA", "GMM", "BU", "KD+BU", "DNN", "SVM")
#: The unsupervised feature-space statistics of the HFC claim (fitted on clean training features;
#: LID and MAHA add a logistic regression over layers).
FEATURE_SPACE = ("KD", "LID", "MAHA")


def standard_detectors(*, bu_passes: int = 50, dnn_iterations: int = 200, dnn_layers: Sequence[str] | None = None,
                       maha_noise: float = 0.0, kd_bandwidth: float = 1.0, lid_k: int = 20,
                       lid_minibatch: int = 100, seed: int = 0,
                       include: Sequence[str] | None = None) -> dict[str, BaseDetector]:
    """Unfitted detectors of the Methods page, :ref:`methods-protocol`, by display name.

    Parameters
    ----------
    bu_passes : int, default 50
        Monte-Carlo dropout passes of BU and KD+BU.
    dnn_iterations : int, default 200
        Adam iterations of the DNN detector (Metzen et al. 2017).
    dnn_layers : sequence of str, optional
        Taps the DNN detector reads (None: every tap but the penultimate vector; for a ResNet
        that is 17 networks, so pass e.g. the last of :func:`~medadv_lib.detectors.stage_outputs`).
    maha_noise : float, default 0.0
        Mahalanobis input pre-processing magnitude (Lee et al. 2018; Methods page, :ref:`methods-maha`: 0.0005 or 0).
    kd_bandwidth : float, default 1.0
        KD bandwidth (HFC and Ma et al. code), also used inside KD+BU.
    lid_k, lid_minibatch : int, default 20 and 100
        LID neighbours and reference minibatch size (Ma et al. 2018).
    seed : int, default 0
        Seeds BU's dropout masks, LID's reference draw, the DNN and the GMM.
    include : sequence of str, optional
        Names to keep (default: all of :data:`DETECTOR_NAMES`), returned in display order.

    Returns
    -------
    dict[str, BaseDetector]

    Raises
    ------
    KeyError
        For a name in ``include`` that is not a standard detector (the message lists them).
    """
    names = list(DETECTOR_NAMES) if include is None else list(dict.fromkeys(include))
    unknown = [n for n in names if n not in DETECTOR_NAMES]
    if unknown:
        raise KeyError(f"unknown detector(s) {unknown}; standard detectors: {list(DETECTOR_NAMES)}")
    build = {
        "KD": lambda: KD(bandwidth=kd_bandwidth),
        "LID": lambda: LID(k=lid_k, minibatch=lid_minibatch, seed=seed),
        "MAHA": lambda: Mahalanobis(noise_magnitude=maha_noise),
        "GMM": lambda: GMMDetector(random_state=seed),
        "BU": lambda: BU(n_passes=bu_passes, seed=seed),
        "KD+BU": lambda: KDBU(bandwidth=kd_bandwidth, n_passes=bu_passes, seed=seed),
        "DNN": lambda: DNNDetector(layers=None if dnn_layers is None else list(dnn_layers), n_iter=dnn_iterations,
                                   seed=seed),
        "SVM": lambda: SafetyNetSVM(),
    }
    return {name: build[name]() for name in DETECTOR_NAMES if name in names}
