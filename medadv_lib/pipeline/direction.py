"""Cached stage: the fixed-direction measurement of one trained model (the fixed-direction chapter's experiment).

The HFC work (Yao et al., MICCAI 2021, Sec. 2; the Methods page, :ref:`methods-fixed-direction`)
argues that a targeted attack moves penultimate features along one fixed direction ``w_t - w_y``.
For one data set this stage

* fits class-conditional Gaussians with one tied covariance on the penultimate features of a
  seeded, stratified sample of clean **training** images (``attack.stats_images``);
* attacks a seeded sample of correctly classified test images (``attack.direction_images``) with a
  targeted iterative attack at every budget of ``attack.eps_k``, recording the features after every
  step (:func:`~medadv_lib.analysis.fixed_direction_sweep`);
* checks the analytic feature gradient against autograd at the largest budget, and projects the
  clean and adversarial features on two principal components for the figure.

The whole result is the cache stage ``direction``, keyed by the model's cache key and every setting.
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

#: Bump when the measurement changes its numbers (invalidates cached ``direction`` stages).
DIRECTION_VERSION = "2"  # 2: grad_cos from the cancellation-free descent direction
#: The targeted iterative attacks that record per-step features.
DIRECTION_ATTACKS = ("bim", "pgd")


@dataclass
class DirectionResult:
    """The fixed-direction measurement of one data set's model.

    Attributes
    ----------
    dataset : str
    frame : DataFrame
        One row per (image, budget, step): cosines, projections, Mahalanobis distances
        (:func:`~medadv_lib.analysis.fixed_direction_sweep`).
    runs : dict
        Budget -> the attack's :class:`~medadv_lib.attacks.AttackResult` with per-step features.
    view : DataFrame
        The PCA view of clean training and adversarial features (:func:`~medadv_lib.analysis.pca_view`).
    grad_error : float
        Largest absolute difference between the analytic feature gradient and autograd.
    train_distance : float
        Median Mahalanobis distance of the clean training vectors to their nearest class mean.
    n_reference : int
        Clean training vectors the Gaussians were fitted on.
    cache_key : str
    """

    dataset: str
    frame: pd.DataFrame
    runs: dict
    view: pd.DataFrame
    grad_error: float
    train_distance: float
    n_reference: int
    cache_key: str

    @property
    def feature_dim(self) -> int:
        """Dimension of the penultimate feature vector."""
        return int(self.runs[max(self.runs)].features.shape[-1])


def direction_experiment(tm: TrainedModel, profile: Profile, *, attack: str = "bim", seed: int = 0,
                         cache: Cache | None = None) -> DirectionResult:
    """Run (or load) the fixed-direction measurement of ``tm`` at ``profile``.

    Parameters
    ----------
    tm : TrainedModel
    profile : Profile
        Supplies ``attack.eps_k``, ``attack.steps``, ``attack.stats_images`` and ``attack.direction_images``.
    attack : {"bim", "pgd"}
        Targeted iterative attack (BIM is the HFC work's).
    seed : int
        Seeds the reference subset, the attacked subset, the targets, the attack and the PCA sample.
    """
    from .. import analysis
    from ..attacks import budget

    if attack.lower() not in DIRECTION_ATTACKS:
        raise ValueError(f"attack={attack!r} does not record per-step features here; use one of {DIRECTION_ATTACKS}")
    cache = cache or Cache()
    acfg = profile.attack
    eps_list = [budget(k) for k in acfg.eps_k]

    def compute():
        reference = tm.train.subset(stratified_subset(tm.train.labels, acfg.stats_images, seed))
        h_train = analysis.penultimate_features(tm.model, reference.images)
        gaussian = analysis.ClassGaussian().fit(h_train, reference.labels, num_classes=tm.dataset.num_classes)
        attacked = attack_subset(tm, acfg.direction_images, seed, correct_only=True)
        frame, runs = analysis.fixed_direction_sweep(
            tm.model, attacked.float(), attacked.labels, eps_list, attack=attack.lower(), steps=acfg.steps,
            seed=seed, gaussian=gaussian, reference=(h_train, reference.labels))
        last = runs[max(eps_list)]
        device = next(tm.model.parameters()).device
        grad_error = analysis.feature_gradient_check(tm.model, attacked.float().to(device), last.target)
        return {"frame": frame, "runs": runs, "view": analysis.pca_view(h_train, reference.labels, last, seed=seed),
                "grad_error": grad_error, "train_distance": float(np.median(gaussian.distance(h_train).min(1))),
                "n_reference": len(reference)}

    params = {"attack": attack.lower(), "eps": eps_list, "steps": acfg.steps, "n_reference": acfg.stats_images,
              "n_images": acfg.direction_images, "seed": seed}
    out, entry = cache.get_or_compute("direction", params, compute, version=DIRECTION_VERSION,
                                      upstream=[tm.cache.key],
                                      command=f"medadv run fixed_direction -p profile {profile.name}")
    return DirectionResult(tm.dataset.name, cache_key=entry.key, **out)
