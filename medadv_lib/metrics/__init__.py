"""Metrics: pure scoring. Detection metrics (AUROC, TPR at a fixed TNR, AUPRC, bootstrap intervals)
and the detector evaluation protocol of METHODS.md section 4.

This package imports neither the cached stages (:mod:`medadv_lib.pipeline`, which holds the
detection benchmark) nor presentation (:mod:`medadv_lib.plotting`, :mod:`medadv_lib.tables`).
"""
from .detection import auprc, auroc, bootstrap_ci, detection_metrics, tpr_at_tnr, tpr_column
from .protocol import DetectionProtocol, evaluate_detectors, result_columns

__all__ = ["DetectionProtocol", "auprc", "auroc", "bootstrap_ci", "detection_metrics", "evaluate_detectors",
           "result_columns", "tpr_at_tnr", "tpr_column"]
