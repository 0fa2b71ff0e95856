"""Cached stage: the feature stress test of one trained model (the stress-test chapter's experiment).

The experiment of the HFC work (Yao et al., MICCAI 2021, Sec. 2; the stress-test chapter,
:doc:`stress_test`): the spatial-mean activation of a seeded sample of channels of a deep
intermediate layer and of the penultimate layer is pushed up and down by BIM at each of the
profile's ``attack.stress_eps_k`` budgets, on a seeded sample of correctly classified test images,
and located in the clean **training** distribution of its channel.

The clean statistics and the channel sample are cheap and recomputed; the sweep (one BIM run per
image, channel, direction and budget) is the cache stage ``stress``, keyed by the model's cache
key and every setting that changes its numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..cache import Cache
from ..config import Profile
from ..data import stratified_subset
from .adversarial import attack_subset
from .models import TrainedModel

#: Bump when the sweep changes its numbers (invalidates cached ``stress`` stages).
STRESS_VERSION = "1"


@dataclass
class StressResult:
    """The stress test of one data set's model.

    Attributes
    ----------
    dataset : str
        The data set's name.
    layers : list of str
        The stressed taps: the intermediate layer, then ``"penultimate"``.
    stats : dict
        Layer -> :class:`~medadv_lib.analysis.LayerStats` of the clean training reference images.
    channels : dict
        Layer -> the sampled channel indices (channels with non-zero clean variance only).
    frame : DataFrame
        One row per (image, layer, channel, direction, budget): the tidy output of
        :func:`~medadv_lib.analysis.stress_sweep`.
    cache_key : str
        Key of the cached sweep.
    """

    dataset: str
    layers: list
    stats: dict
    channels: dict
    frame: pd.DataFrame
    cache_key: str

    @property
    def n_reference(self) -> int:
        """Clean training images behind the statistics."""
        return int(self.stats["penultimate"].values.shape[0])


def stress_experiment(tm: TrainedModel, profile: Profile, *, layer: str = "auto", seed: int = 0,
                      cache: Cache | None = None) -> StressResult:
    """Run (or load) the feature stress test of ``tm`` at ``profile``.

    Parameters
    ----------
    tm : TrainedModel
        The model and its data (:func:`~medadv_lib.pipeline.trained_model`).
    profile : Profile
        Supplies ``attack.stats_images`` (clean reference images), ``attack.stress_channels``,
        ``attack.stress_images``, ``attack.stress_eps_k`` and ``attack.steps``.
    layer : str, default "auto"
        Intermediate tap to stress; ``"auto"`` takes the second-to-last block
        (:func:`~medadv_lib.analysis.deep_intermediate_layer`).
    seed : int
        Seeds the reference subset, the channel sample, the attacked subset and BIM.

    Returns
    -------
    StressResult
    """
    from .. import analysis
    from ..attacks import budget

    if not isinstance(layer, str) or not layer.strip():
        raise ValueError(f"layer={layer!r} must be 'auto' or the name of a tap of the model")
    cache = cache or Cache()
    acfg = profile.attack
    layers = [analysis.deep_intermediate_layer(tm.model) if layer == "auto" else layer, "penultimate"]
    reference = tm.train.subset(stratified_subset(tm.train.labels, acfg.stats_images, seed))
    stats = analysis.clean_layer_stats(tm.model, reference.float(), layers)
    channels = {lay: analysis.sample_channels(s, acfg.stress_channels, seed=seed) for lay, s in stats.items()}
    eps = [budget(k) for k in acfg.stress_eps_k]

    def compute():
        attacked = attack_subset(tm, acfg.stress_images, seed, correct_only=True)
        return analysis.stress_sweep(tm.model, attacked.float(), stats=stats, channels=channels, eps=eps,
                                     steps=acfg.steps, seed=seed)

    params = {"layers": layers, "channels": {k: np.asarray(v).tolist() for k, v in channels.items()},
              "n_reference": acfg.stats_images, "n_images": acfg.stress_images, "eps": eps,
              "steps": acfg.steps, "seed": seed}
    frame, entry = cache.get_or_compute("stress", params, compute, version=STRESS_VERSION, upstream=[tm.cache.key],
                                        command=f"medadv run stress_test -p profile {profile.name}")
    return StressResult(tm.dataset.name, layers, stats, channels, frame, entry.key)
