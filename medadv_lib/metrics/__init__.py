"""Metrics: pure scoring. Detection metrics (AUROC, TPR at a fixed TNR, AUPRC, bootstrap intervals)
the detector evaluation protocol (Methods page: methods-protocol), and the adversarial risk of
Li, Pan & Zhu (methods-risk).

This package imports neither the cached stages (:mod:`medadv_lib.pipeline`, which holds the
detection benchmark) nor presentation (:mod:`medadv_lib.plotting`, :mod:`medadv_lib.tables`).
"""
from .detection import auprc, auroc, bootstrap_ci, detection_metrics, tpr_at_tnr, tpr_column
from .protocol import DetectionProtocol, evaluate_detectors, result_columns
from .risk import RiskResult, adversarial_risk

__all__ = ["DetectionProtocol", "RiskResult", "adversarial_risk", "auprc", "auroc", "bootstrap_ci", "detection_metrics", "evaluate_detectors",
           "result_columns", "tpr_at_tnr", "tpr_column"]
