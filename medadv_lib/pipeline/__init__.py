"""The book's expensive stages, each cached: a profile in, a result and its cache entry out.

* :mod:`.models`: a loaded data set and a model trained at a profile (:func:`trained_model`);
* :mod:`.adversarial`: adversarial versions of a seeded test subset (:func:`adversarial_examples`);
* :mod:`.detection`: every detector against several attacks and budgets (:func:`detection_benchmark`).

This is the stage layer: it may import every package below it (data, models, attacks, detectors,
metrics) and nothing below imports it. Chapters and the CLI call it; a new method's stage (an
HFC or defence experiment) is a new module here.
"""
from .adversarial import ATTACK_VERSION, adversarial_examples, attack_subset
from .defenses import REGIME_LABELS, REGIMES, regime_model, regime_split, regimes_for
from .detection import DETECTION_VERSION, DetectionBenchmark, benchmark_runs, detection_benchmark, detector_spec
from .models import TRAINING_VERSION, TrainedModel, channel_stats, default_datasets, get_dataset, profile_splits, trained_model

__all__ = ["REGIMES", "REGIME_LABELS", "regime_model", "regime_split", "regimes_for", "ATTACK_VERSION", "DETECTION_VERSION", "TRAINING_VERSION", "DetectionBenchmark", "TrainedModel",
           "adversarial_examples", "attack_subset", "benchmark_runs", "channel_stats", "default_datasets",
           "detection_benchmark", "detector_spec", "get_dataset", "profile_splits", "trained_model"]
