"""The detection chapter's experiment for one data set: the profile's detectors against its attacks.

:func:`~medadv_lib.pipeline.detection_benchmark` is the cached stage; this function fixes what the
chapter runs with it, from the profile's ``detect`` section (the Methods page,
:ref:`methods-protocol`): the (attack, budget) runs of :func:`~medadv_lib.pipeline.benchmark_runs`,
the standard detectors with their documented defaults, the DNN detector reading the deepest
``detect.dnn_stages`` stage outputs, and the protocol's sample sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..cache import Cache
from ..config import Profile
from .detection import DetectionBenchmark, benchmark_runs, detection_benchmark
from .models import TrainedModel


@dataclass
class DetectionExperiment:
    """One data set's detection benchmark, with what the chapter reports about its setting.

    Attributes
    ----------
    dataset : str
    benchmark : DetectionBenchmark
        The cached results (``results``, ``scores``, ``cache_keys``).
    runs : list of (str, float)
        The (attack, eps) runs.
    dnn_layers : list of str
        The stage outputs the DNN detector reads.
    """

    dataset: str
    benchmark: DetectionBenchmark
    runs: list
    dnn_layers: list

    @property
    def results(self) -> pd.DataFrame:
        return self.benchmark.results

    @property
    def scores(self) -> pd.DataFrame:
        return self.benchmark.scores


def detection_runs(profile: Profile) -> list[tuple[str, float]]:
    """The (attack, eps) runs of the profile's ``detect`` section."""
    d = profile.detect
    return benchmark_runs(d.attack_list, d.eps, d.sweep_attack_list)


def detection_experiment(tm: TrainedModel, profile: Profile, *, seed: int = 0,
                         cache: Cache | None = None) -> DetectionExperiment:
    """Every standard detector against the profile's attacks and budgets on ``tm`` (cached).

    Parameters
    ----------
    tm : TrainedModel
    profile : Profile
        Its ``detect`` section sets the attacks, budgets, detectors' costs (``bu_passes``,
        ``dnn_iterations``, ``dnn_stages``, ``maha_noise``) and sample sizes (``n_images``,
        ``n_reference``, ``n_boot``).
    seed : int
        Seeds the attacked subset, the attacks, the protocol split and the detectors.
    """
    from ..detectors import stage_outputs, standard_detectors

    d = profile.detect
    dnn_layers = list(stage_outputs(tm.model)[-d.dnn_stages:])
    detectors = standard_detectors(bu_passes=d.bu_passes, dnn_iterations=d.dnn_iterations, dnn_layers=dnn_layers,
                                   maha_noise=d.maha_noise, seed=seed)
    runs = detection_runs(profile)
    bench = detection_benchmark(tm, profile, runs, detectors, n_images=d.n_images, n_reference=d.n_reference,
                                seed=seed, n_boot=d.n_boot, cache=cache)
    return DetectionExperiment(tm.dataset.name, bench, runs, dnn_layers)
