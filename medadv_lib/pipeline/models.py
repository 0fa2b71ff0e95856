"""Cached stage: a profile in, a loaded dataset and a trained model out.

With :mod:`.adversarial` and :mod:`.detection` this package is the one place where a
:class:`~medadv_lib.config.Profile` is unpacked into library calls, so chapters and the CLI share
one cache entry per (dataset, size, architecture, training settings).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch

from ..cache import Cache, CacheEntry
from ..config import Profile
from ..data import Dataset, ImageSplit, load_dataset, stratified_subset
from ..models import FeatureModel, build_model, evaluate, model_from_spec, train_model
from ..models.training import seed_everything

log = logging.getLogger(__name__)
TRAINING_VERSION = "2"  # 2: channels-last training on the CPU (same recipe, different rounding)


@dataclass
class TrainedModel:
    """A trained model with its data, training history, test metrics and cache entry."""

    model: FeatureModel
    dataset: Dataset
    train: ImageSplit
    test: ImageSplit
    history: list[dict]
    metrics: dict
    cache: CacheEntry


def profile_splits(dataset: Dataset, profile: Profile, seed: int) -> tuple[ImageSplit, ImageSplit]:
    """The seeded, stratified train and test subsets a profile uses."""
    train = dataset.train.subset(stratified_subset(dataset.train.labels, profile.data.train_size, seed))
    test = dataset.test.subset(stratified_subset(dataset.test.labels, profile.data.test_size, seed))
    return train, test


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, used as the model's internal normalisation."""
    x = images.float().div(255)
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-3).tolist()


def get_dataset(name: str, profile: Profile, *, seed: int = 0, data_dir=None, cache: Cache | None = None) -> Dataset:
    return load_dataset(name, profile.data.image_size, data_dir=data_dir, val_fraction=profile.data.val_fraction,
                        seed=seed, cache=cache)


def trained_model(name: str, profile: Profile, *, seed: int = 0, device: str | None = None, data_dir=None,
                  cache: Cache | None = None, progress: bool = True, objective=None,
                  desc: str | None = None) -> TrainedModel:
    """Load dataset ``name`` and return a model trained at ``profile`` (from the cache when possible).

    The cache key covers the dataset file's fingerprint, the image size and subset sizes, the
    training settings, the seed, the training regime and :data:`TRAINING_VERSION`; the device is
    not part of it.

    How a training regime enters the key (decided once, for every objective): the default
    objective (cross-entropy, class-weighted when ``profile.train.class_weights == "balanced"``)
    adds nothing beyond the profile's ``train`` settings; any other ``objective`` must expose
    ``spec()``, a JSON-able description of itself (name, budget, its own settings), stored under
    ``params["objective"]``. ``train.min_steps`` and ``train.class_weights`` enter the key only
    when they differ from their defaults (0 and ``"none"``), so models trained before these
    settings and objectives existed keep their keys; :data:`TRAINING_VERSION` is unchanged.

    A model being trained is checkpointed after every epoch under ``<cache>/checkpoints/``: an
    interrupted run continues from its last finished epoch with the same final weights.

    Parameters
    ----------
    objective : callable, optional
        A training objective (:class:`~medadv_lib.models.training.CrossEntropy` protocol). It
        replaces the default loss entirely, the profile's class weighting included.
    desc : str, optional
        Label of the progress bar (default: the data set's name).
    """
    from ..cache import stage_key
    from ..models.training import CrossEntropy, balanced_class_weights, epochs_for
    from ..weights import resolve_imagenet

    cache = cache or Cache()
    device = device or profile.resolved_device()
    dataset = get_dataset(name, profile, seed=seed, data_dir=data_dir, cache=cache)
    train, test = profile_splits(dataset, profile, seed)
    cfg = profile.train
    if objective is not None and not callable(getattr(objective, "spec", None)):
        raise TypeError(f"objective {objective!r} has no spec() method; a training objective must describe itself "
                        "with a JSON-able spec() so that its models get their own cache key")
    spec = objective.spec() if objective is not None else None
    if objective is None and cfg.class_weights == "balanced":
        objective = CrossEntropy(balanced_class_weights(train.labels, dataset.num_classes))

    # "imagenet" becomes the file this machine has (or None, with a warning): the key and the
    # model then say what was really trained, and a scratch fallback never shares a pretrained key
    weights, weights_note = resolve_imagenet(cfg.arch, cfg.weights)
    if cfg.weights == "imagenet" and weights is None:
        log.warning("%s: %s", name, weights_note)
    train_params = asdict(cfg)
    train_params["weights"] = "imagenet" if weights and cfg.weights == "imagenet" else weights
    for key, default in (("min_steps", 0), ("class_weights", "none")):
        if train_params.get(key) == default:
            train_params.pop(key)  # absent at the default: keys of models trained before it existed hold
    params = {"train": train_params, "train_size": profile.data.train_size, "test_size": profile.data.test_size,
              "seed": seed}
    if spec is not None:
        params["objective"] = spec
    key = stage_key("model", params, version=TRAINING_VERSION, upstream=[dataset.cache_key])
    checkpoint = cache.root / "checkpoints" / f"{key}.pt"

    def compute():
        # a pretrained backbone keeps the input scaling its weights were trained with (ImageNet
        # statistics, or Lite0's (255x - 127) / 128); a model trained from scratch uses the data's
        mean, std = (None, None) if weights else channel_stats(train.images)
        seed_everything(seed)  # the initial weights are part of what the seed fixes
        model = build_model(cfg.arch, in_channels=dataset.channels, num_classes=dataset.num_classes,
                            image_size=dataset.size, dropout=cfg.dropout, weights=weights, mean=mean, std=std)
        history = train_model(model, train.images, train.labels, epochs=cfg.epochs, batch_size=cfg.batch_size,
                              lr=cfg.lr, weight_decay=cfg.weight_decay, augment=cfg.augment, seed=seed,
                              device=device, progress=progress, objective=objective, min_steps=cfg.min_steps,
                              checkpoint=checkpoint, desc=desc or name)
        metrics = evaluate(model, test.images, test.labels, device=device)
        return {"spec": model.spec, "state": {k: v.cpu() for k, v in model.state_dict().items()},
                "history": history, "metrics": metrics,
                "training": {"epochs": epochs_for(len(train), cfg.batch_size, cfg.epochs, cfg.min_steps),
                             "class_weights": None if objective is None or getattr(objective, "weight", None) is None
                             else [float(w) for w in objective.weight],
                             "objective": spec,
                             # weights depend on it (oneDNN/MKL split reductions by thread); not in the key
                             "threads": torch.get_num_threads()}}

    command = f"medadv train --dataset {name} --profile {profile.name} --seed {seed}"
    payload, entry = cache.get_or_compute("model", params, compute, version=TRAINING_VERSION,
                                          upstream=[dataset.cache_key], command=command,
                                          meta={"dataset": name, "profile": profile.name})
    model = model_from_spec(payload["spec"])
    model.load_state_dict(payload["state"])
    model.to(device).eval()
    return TrainedModel(model, dataset, train, test, payload["history"], payload["metrics"], entry)


def default_datasets() -> list[str]:
    """The offline mirror's datasets, in the order the book presents them."""
    return ["pneumoniamnist", "breastmnist", "retinamnist", "chestxray", "cifar10"]
