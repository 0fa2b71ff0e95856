"""Cached stage: the training regimes of the SSAT work (NT, AT, GCE, SSAT), one model per regime.

Li, Pan & Zhu (ISBI 2021, Sec. 3) train one architecture four ways on a class-balanced split of
the training images into a labelled part (NT, AT, GCE and SSAT's supervised term), an unlabelled
part (SSAT's pseudo-labelled term only) and a test part. :func:`regime_split` draws that split
from the profile's training subset (seeded); :func:`regime_model` trains (or loads) the model of
one regime. The split's indices, the regime's objective ``spec()`` and the ``defense`` section of
the profile are the cache key, so the models of the ``train`` section (other chapters) are never
touched. Methods page: :ref:`methods-defences`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, replace

import torch

from ..cache import Cache, stage_key
from ..config import DefenseConfig, Profile
from ..data import Dataset
from ..defenses import SSAT, AdversarialTraining, GCETraining, SemiSupervisedSplit, semi_supervised_split
from ..models import build_model, evaluate, model_from_spec, train_model
from ..models.training import CrossEntropy, epochs_for, seed_everything
from ..weights import resolve_imagenet
from .models import TrainedModel, channel_stats, get_dataset, profile_splits

log = logging.getLogger(__name__)
REGIME_VERSION = "2"  # 2: channels-last training on the CPU
REGIMES = DefenseConfig.REGIMES
#: How the chapter names the regimes (the paper's abbreviations).
REGIME_LABELS = {"nt": "NT", "at": "AT", "gce": "GCE", "ssat": "SSAT"}


def check_regime(regime: str, num_classes: int | None = None, dataset: str = "the data set") -> str:
    """``regime`` in lower case, or a ValueError that says what is wrong.

    GCE on a two-class task is refused here, before any training: with two classes the complement
    of the true class is a single class of probability 1, so the guided complement entropy is
    identically zero and trains nothing (:func:`~medadv_lib.defenses.guided_complement_entropy`).
    """
    if not isinstance(regime, str) or regime.lower() not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; regimes are {', '.join(REGIMES)}.")
    regime = regime.lower()
    if regime == "gce" and num_classes is not None and num_classes < 3:
        raise ValueError(f"regime 'gce' is undefined for {dataset} ({num_classes} classes): with two classes the "
                         "complement of the true class is one class with probability 1, so the guided complement "
                         "entropy is identically zero and gives no gradient. Leave GCE out for binary data "
                         "(regimes nt, at, ssat) or use a data set with 3 or more classes (e.g. retinamnist).")
    return regime


def regimes_for(num_classes: int, regimes) -> list[str]:
    """The regimes of ``regimes`` that are defined for a task with ``num_classes`` classes (GCE needs 3)."""
    return [r for r in (check_regime(r) for r in regimes) if r != "gce" or num_classes >= 3]


def regime_objective(regime: str, cfg: DefenseConfig, seed: int = 0, teacher=None):
    """The training objective of ``regime`` with the settings of ``cfg`` (seeded budget draws).

    ``teacher`` is the fixed classifier of SSAT's ``pseudo_labels="teacher"`` (the NT model).
    """
    regime = check_regime(regime)
    eps_range = (cfg.at_eps_low, cfg.at_eps_high)
    if regime == "nt":
        return CrossEntropy()
    if regime == "at":
        return AdversarialTraining(eps_range, seed=seed)
    if regime == "gce":
        return GCETraining()
    return SSAT(cfg.lam, variant=cfg.variant, pseudo_labels=cfg.pseudo_labels,
                teacher=teacher if cfg.pseudo_labels == "teacher" else None, eps_range=eps_range, seed=seed)


def split_sizes(pool: int, labelled: int, unlabelled: int) -> tuple[int, int]:
    """``(labelled, unlabelled)`` shrunk in proportion when the pool holds fewer than their sum.

    Examples
    --------
    >>> split_sizes(1080, 1200, 400)
    (810, 270)
    >>> split_sizes(3000, 1200, 400)
    (1200, 400)
    """
    total = labelled + unlabelled
    if total <= pool:
        return labelled, unlabelled
    n_lab = int(round(pool * labelled / total))
    return n_lab, pool - n_lab


def regime_split(dataset: Dataset, profile: Profile, seed: int = 0):
    """``(pool, split, test)``: the profile's seeded training subset, its semi-supervised split and the test subset.

    The split is class-balanced where the data allows (:func:`~medadv_lib.defenses.semi_supervised_split`),
    with :attr:`DefenseConfig.labelled` and :attr:`DefenseConfig.unlabelled` images (shrunk in
    proportion by :func:`split_sizes` when the pool is smaller).
    """
    pool, test = profile_splits(dataset, profile, seed)
    n_lab, n_unl = split_sizes(len(pool), profile.defense.labelled, profile.defense.unlabelled)
    return pool, semi_supervised_split(pool.labels, n_lab, n_unl, seed=seed), test


def _split_digest(split: SemiSupervisedSplit) -> str:
    return hashlib.sha256(json.dumps(split.key()).encode()).hexdigest()[:16]


def defense_profile(profile: Profile) -> Profile:
    """``profile`` with ``data.image_size`` set to ``defense.image_size`` (unchanged when that is None).

    Every entry point of the defence stages (:func:`regime_model`, the SSAT + UAD and risk
    experiments) reads its data through this, so the regimes can work at their own size.
    """
    size = profile.defense.image_size
    if size is None or size == profile.data.image_size:
        return profile
    return replace(profile, data=replace(profile.data, image_size=size))


def regime_key_params(regime: str, profile: Profile, split: SemiSupervisedSplit, seed: int) -> dict:
    """The parameters of a regime model's cache key: regime, objective, split, training settings, seed."""
    cfg = profile.defense
    # the spec does not depend on which teacher labels SSAT's images: the teacher's cache key is an upstream key
    stand_in = torch.nn.Identity() if regime == "ssat" and cfg.pseudo_labels == "teacher" else None
    objective = regime_objective(regime, cfg, seed, stand_in)
    spec = objective.spec() if regime != "nt" else {"name": "nt"}
    training = {k: v for k, v in asdict(cfg).items() if k in ("arch", "epochs", "min_steps", "batch_size", "lr")}
    training.update({k: getattr(profile.train, k) for k in ("weight_decay", "dropout", "augment")})
    weights = resolve_imagenet(cfg.arch, cfg.weights)[0]
    if weights is not None:  # absent when None: keys of models trained before the setting existed hold
        training["weights"] = "imagenet"
    return {"regime": regime, "objective": spec, "training": training, "seed": int(seed),
            "train_size": profile.data.train_size, "test_size": profile.data.test_size,
            "split": {"digest": _split_digest(split), "labelled": len(split.labelled),
                      "unlabelled": len(split.unlabelled), "counts": split.counts}}


def regime_model(name: str, regime: str, profile: Profile, *, seed: int = 0, device: str | None = None,
                 data_dir=None, cache: Cache | None = None, progress: bool = True,
                 desc: str | None = None) -> TrainedModel:
    """The model of training regime ``regime`` on data set ``name`` at ``profile``, from the cache when possible.

    NT, AT and GCE train on the labelled part of :func:`regime_split`; SSAT also reads the
    unlabelled part (its labels are never used), pseudo-labelled by itself or, with
    ``defense.pseudo_labels = "teacher"``, by this function's NT model (trained or loaded first). The returned :class:`TrainedModel` has ``train``
    = the labelled part (the clean reference UAD is fitted on, as in the paper), ``test`` = the
    profile's test subset, and ``metrics`` with the test metrics plus ``train_seconds`` (the
    wall time of training, measured when the model was trained) and the split's sizes.

    Raises
    ------
    ValueError
        For an unknown regime, or GCE on a data set with two classes (the message says why).
    """
    cache = cache or Cache()
    profile = defense_profile(profile)
    device = device or profile.resolved_device()
    dataset = get_dataset(name, profile, seed=seed, data_dir=data_dir, cache=cache)
    regime = check_regime(regime, dataset.num_classes, name)
    pool, split, test = regime_split(dataset, profile, seed)
    labelled, unlabelled = pool.subset(split.labelled), pool.subset(split.unlabelled)
    cfg, tcfg = profile.defense, profile.train
    params = regime_key_params(regime, profile, split, seed)
    upstream = [dataset.cache_key]
    teacher = None
    if regime == "ssat" and cfg.pseudo_labels == "teacher":
        # fixed targets: the NT model of the same split labels the unlabelled images (its key joins ours)
        teacher = regime_model(name, "nt", profile, seed=seed, device=device, data_dir=data_dir, cache=cache,
                               progress=progress)
        upstream.append(teacher.cache.key)
    key = stage_key("regime_model", params, version=REGIME_VERSION, upstream=upstream)
    checkpoint = cache.root / "checkpoints" / f"{key}.pt"

    # as trained_model: "imagenet" is the file this machine has, or scratch with a warning (and the key says which)
    weights, weights_note = resolve_imagenet(cfg.arch, cfg.weights)
    if cfg.weights and weights is None:
        log.warning("%s %s: %s", name, regime, weights_note)

    def compute():
        # a pretrained backbone keeps the input scaling of its weights, as in trained_model
        mean, std = (None, None) if weights else channel_stats(labelled.images)
        seed_everything(seed)
        model = build_model(cfg.arch, in_channels=dataset.channels, num_classes=dataset.num_classes,
                            image_size=dataset.size, dropout=tcfg.dropout, weights=weights, mean=mean, std=std)
        start = time.perf_counter()
        history = train_model(model, labelled.images, labelled.labels, epochs=cfg.epochs, batch_size=cfg.batch_size,
                              lr=cfg.lr, weight_decay=tcfg.weight_decay, augment=tcfg.augment, seed=seed,
                              device=device, progress=progress, objective=regime_objective(regime, cfg, seed, teacher.model if teacher else None),
                              unlabelled=unlabelled.images if regime == "ssat" else None,
                              min_steps=cfg.min_steps, checkpoint=checkpoint,
                              desc=desc or f"{name} {REGIME_LABELS[regime]}")
        seconds = time.perf_counter() - start
        metrics = evaluate(model, test.images, test.labels, device=device)
        metrics.update({"train_seconds": seconds, "labelled": len(labelled), "unlabelled": len(unlabelled),
                        "epochs": epochs_for(len(labelled), cfg.batch_size, cfg.epochs, cfg.min_steps)})
        return {"spec": model.spec, "state": {k: v.cpu() for k, v in model.state_dict().items()},
                "history": history, "metrics": metrics, "split": split.key()}

    command = f"medadv run ssat_uad --profile {profile.name}"
    payload, entry = cache.get_or_compute("regime_model", params, compute, version=REGIME_VERSION,
                                          upstream=upstream, command=command,
                                          meta={"dataset": name, "profile": profile.name, "regime": regime})
    model = model_from_spec(payload["spec"])
    model.load_state_dict(payload["state"])
    model.to(device).eval()
    return TrainedModel(model, dataset, labelled, test, payload["history"], payload["metrics"], entry)
