"""The book's expensive stages, each cached: a profile in, a result and its cache entry out.

* :mod:`.models`: a loaded data set and a model trained at a profile (:func:`trained_model`);
* :mod:`.adversarial`: adversarial versions of a seeded test subset (:func:`adversarial_examples`);
* :mod:`.detection`: every detector against several attacks and budgets (:func:`detection_benchmark`);
* :mod:`.stress`: the feature stress test of one model (:func:`stress_experiment`);
* :mod:`.detection_experiment`: the detection chapter's runs and detectors for one model (:func:`detection_experiment`);
* :mod:`.direction`: the fixed-direction measurement of one model (:func:`direction_experiment`);
* :mod:`.roles`: the chapters' ``datasets`` parameter, split into medical and natural sets (:func:`dataset_roles`).

This is the stage layer: it may import every package below it (data, models, attacks, detectors,
metrics) and nothing below imports it. Chapters and the CLI call it; a new method's stage (an
HFC or defence experiment) is a new module here.
"""
from .adversarial import ATTACK_VERSION, adversarial_examples, attack_subset
from .defenses import REGIME_LABELS, REGIMES, regime_model, regime_split, regimes_for
from .detection import DETECTION_VERSION, DetectionBenchmark, benchmark_runs, detection_benchmark, detector_spec
from .detection_experiment import DetectionExperiment, detection_experiment, detection_runs
from .direction import DIRECTION_VERSION, DirectionResult, direction_experiment
from .risk import RISK_VERSION, RiskExperiment, risk_experiment
from .roles import DatasetRoles, binary_and_multiclass, dataset_roles, parse_datasets
from .stress import STRESS_VERSION, StressResult, stress_experiment
from .models import TRAINING_VERSION, TrainedModel, channel_stats, default_datasets, get_dataset, profile_splits, trained_model

__all__ = ["RISK_VERSION", "RiskExperiment", "risk_experiment", "REGIMES", "REGIME_LABELS", "regime_model", "regime_split", "regimes_for", "ATTACK_VERSION", "DETECTION_VERSION", "DatasetRoles", "STRESS_VERSION", "StressResult",
           "dataset_roles", "parse_datasets", "stress_experiment", "DIRECTION_VERSION", "DirectionResult",
           "binary_and_multiclass", "direction_experiment", "DetectionExperiment", "detection_experiment",
           "detection_runs", "TRAINING_VERSION", "DetectionBenchmark", "TrainedModel",
           "adversarial_examples", "attack_subset", "benchmark_runs", "channel_stats", "default_datasets",
           "detection_benchmark", "detector_spec", "get_dataset", "profile_splits", "trained_model"]
