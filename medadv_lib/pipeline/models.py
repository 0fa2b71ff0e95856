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
TRAINING_VERSION = "1"


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
                  cache: Cache | None = None, progress: bool = True) -> TrainedModel:
    """Load dataset ``name`` and return a model trained at ``profile`` (from the cache when possible).

    The cache key covers the dataset file's fingerprint, the image size and subset sizes, the
    training settings, the seed and :data:`TRAINING_VERSION`; the device is not part of it.
    """
    cache = cache or Cache()
    device = device or profile.resolved_device()
    dataset = get_dataset(name, profile, seed=seed, data_dir=data_dir, cache=cache)
    train, test = profile_splits(dataset, profile, seed)
    cfg = profile.train

    def compute():
        mean, std = channel_stats(train.images)
        seed_everything(seed)  # the initial weights are part of what the seed fixes
        model = build_model(cfg.arch, in_channels=dataset.channels, num_classes=dataset.num_classes,
                            image_size=dataset.size, dropout=cfg.dropout, weights=cfg.weights, mean=mean, std=std)
        history = train_model(model, train.images, train.labels, epochs=cfg.epochs, batch_size=cfg.batch_size,
                              lr=cfg.lr, weight_decay=cfg.weight_decay, augment=cfg.augment, seed=seed,
                              device=device, progress=progress)
        metrics = evaluate(model, test.images, test.labels, device=device)
        return {"spec": model.spec, "state": {k: v.cpu() for k, v in model.state_dict().items()},
                "history": history, "metrics": metrics}

    params = {"train": asdict(cfg), "train_size": profile.data.train_size, "test_size": profile.data.test_size,
              "seed": seed}
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
