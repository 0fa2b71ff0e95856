"""Cached stage: adversarial versions of a seeded test subset of a trained model.

One cache entry per (model, attack, eps, settings); the model enters the key as its upstream
cache key, so retraining a model invalidates its adversarial sets.
"""
from __future__ import annotations

import time

import torch

from ..cache import Cache
from ..config import Profile
from ..data import ImageSplit, stratified_subset
from .models import TrainedModel

#: 2: the key is the attack's own ``spec()`` (name, algorithm version, hyper-parameters, penalties)
ATTACK_VERSION = "2"
#: Attacks whose number of steps follows their own rule (HFC: 2 * eps / step; C&W-L2: Adam steps),
#: so the profile's ``attack.steps`` is not imposed on them.
OWN_STEPS = frozenset({"hfc", "cw_l2"})


def attack_subset(tm: TrainedModel, n_images: int, seed: int, *, correct_only: bool = False) -> ImageSplit:
    """A seeded, stratified subset of the test split to attack (optionally correctly classified only)."""
    test = tm.test
    if correct_only:
        from ..models import predict_proba

        pred = predict_proba(tm.model, test.images).argmax(1)
        test = test.subset(torch.nonzero(pred == test.labels).flatten())
    return test.subset(stratified_subset(test.labels, n_images, seed))


def adversarial_examples(tm: TrainedModel, attack: str, eps: float | None, profile: Profile, *, seed: int = 0,
                         targeted: bool = False, n_images: int | None = None, correct_only: bool = False,
                         cache: Cache | None = None, **attack_kwargs) -> dict:
    """Adversarial versions of a seeded test subset, computed once per (model, attack spec, subset).

    The attack is built by :func:`~medadv_lib.attacks.get_attack` from ``attack``, ``eps`` (None for
    attacks without a budget, C&W-L2), the profile's ``attack.steps`` (unless given, or the attack
    follows its own step rule, :data:`OWN_STEPS`), ``seed``, ``targeted`` and ``attack_kwargs``
    (penalties included). Its cache key is the attack's ``spec()``, and the fitted state of every
    penalty (``state_key``, e.g. HFC's mixtures) is an upstream key, so changing a penalty's fit
    recomputes the set.

    Returns
    -------
    dict
        ``x`` (clean float images), ``y``, ``x_adv``, ``target`` (or None), ``success`` (bool),
        ``attack`` and ``params``, ``seconds`` (the attack's wall time when it was computed, None
        for entries written before it was recorded), plus ``cache_key``.
    """
    from ..attacks import get_attack

    cache = cache or Cache()
    n_images = n_images or profile.attack.n_images
    subset = attack_subset(tm, n_images, seed, correct_only=correct_only)
    kwargs = {"seed": seed, "targeted": targeted, **attack_kwargs}
    if eps is not None:
        kwargs["eps"] = float(eps)
    if attack.lower() not in OWN_STEPS:
        kwargs.setdefault("steps", profile.attack.steps)  # get_attack drops it for FGSM
    atk = get_attack(attack, tm.model, **kwargs)
    spec = atk.spec() if hasattr(atk, "spec") else {"name": attack.lower(), "hyperparameters": atk.hyperparameters()}
    state_keys = [p["state_key"] for p in spec.get("penalties", []) if p.get("state_key")]

    def compute():
        device = next(tm.model.parameters()).device
        began = time.perf_counter()
        parts = []
        for start in range(0, len(subset), profile.attack.batch_size):
            x = subset.images[start:start + profile.attack.batch_size].float().div(255).to(device)
            y = subset.labels[start:start + profile.attack.batch_size].to(device)
            parts.append(atk.run(x, y))
        return {"x_adv": torch.cat([p.x_adv.cpu() for p in parts]),
                "success": torch.cat([p.success.cpu() for p in parts]),
                "target": torch.cat([p.target.cpu() for p in parts]) if parts[0].target is not None else None,
                "params": parts[0].params,
                # wall time of the attack itself (not part of the key; absent in older entries)
                "seconds": time.perf_counter() - began}

    params = {"attack": attack.lower(), "spec": spec, "n_images": n_images, "correct_only": correct_only}
    out, entry = cache.get_or_compute("adversarial", params, compute, version=ATTACK_VERSION,
                                      upstream=[tm.cache.key, *state_keys],
                                      command=f"medadv run <chapter> -p profile {profile.name}")
    return {"x": subset.float(), "y": subset.labels, "seconds": None, **out, "attack": attack.lower(),
            "cache_key": entry.key}
