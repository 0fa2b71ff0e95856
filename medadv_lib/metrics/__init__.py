"""Metrics: detection (AUROC, TPR at a fixed TNR, AUPRC, bootstrap intervals), the detector
evaluation protocol of METHODS.md section 4, a cached benchmark over attacks and budgets, and its
tables and heat-maps (:mod:`.report`)."""
from . import report
from .benchmark import DETECTION_VERSION, DetectionBenchmark, benchmark_runs, detection_benchmark, detector_spec
from .detection import auprc, auroc, bootstrap_ci, detection_metrics, tpr_at_tnr, tpr_column
from .protocol import DetectionProtocol, evaluate_detectors, result_columns

__all__ = ["DETECTION_VERSION", "DetectionBenchmark", "DetectionProtocol", "auprc", "auroc", "benchmark_runs",
           "bootstrap_ci", "detection_benchmark", "detection_metrics", "detector_spec", "evaluate_detectors",
           "report", "result_columns", "tpr_at_tnr", "tpr_column"]
