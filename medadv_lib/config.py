"""Profiles: the one choke point for cost (``smoke`` for CI, ``cpu`` for a laptop, ``paper`` for a GPU).

A profile is a frozen, validated tree of dataclasses. Chapters and the CLI read it and unpack it
into library calls; library classes never read it, so the library stays usable without it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .models.zoo import ARCHITECTURES


class ConfigError(ValueError):
    """An unknown profile, an unknown key or an invalid value."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """Which images the models see.

    image_size : square side in pixels for every dataset.
    train_size, test_size : seeded stratified subsets (None = the whole split).
    val_fraction : share of train carved as validation where a set has no val split.
    """

    image_size: int = 28
    train_size: int | None = None
    test_size: int | None = None
    val_fraction: float = 0.1

    def __post_init__(self):
        _check(self.image_size >= 8, f"data.image_size must be >= 8, got {self.image_size}")
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            _check(value is None or value >= 10, f"data.{name} must be None or >= 10, got {value}")
        _check(0 < self.val_fraction < 1, f"data.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class TrainConfig:
    """How models are trained (SGD with momentum, cosine learning-rate decay)."""

    arch: str = "resnet18"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    dropout: float = 0.3
    augment: bool = True
    weights: str | None = None
    min_steps: int = 0  # train more epochs when a small set would otherwise get fewer SGD steps
    class_weights: str = "none"  # "none" or "balanced" (n / (K n_k) per class in the cross-entropy)

    def __post_init__(self):
        _check(self.arch in ARCHITECTURES, f"train.arch must be one of {list(ARCHITECTURES)}, got {self.arch!r}")
        _check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 2, f"train.batch_size must be >= 2, got {self.batch_size}")
        _check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        _check(0 <= self.dropout < 1, f"train.dropout must be in [0, 1), got {self.dropout}")
        _check(self.min_steps >= 0, f"train.min_steps must be >= 0, got {self.min_steps}")
        _check(self.class_weights in ("none", "balanced"),
               f"train.class_weights must be 'none' or 'balanced', got {self.class_weights!r}")


@dataclass(frozen=True)
class AttackConfig:
    """Budgets (as k for k/256), steps and how many test images are attacked."""

    eps_k: tuple[int, ...] = (1, 2, 4, 8)
    steps: int = 10
    n_images: int = 200
    batch_size: int = 100
    # analysis chapters (stress test, fixed direction): sample sizes, kept small where attacks are costly
    curve_images: int = 100  # test images per data set for the accuracy-under-attack curve
    stress_images: int = 8  # correctly classified test images whose channels the stress test pushes
    stress_channels: int = 8  # seeded random channels (with clean variance) per layer
    stress_eps_k: tuple[int, ...] = (1, 4)  # stress-test budgets as k for k/256 (1/256 as in the HFC work)
    stats_images: int = 1000  # clean training images for channel statistics and class Gaussians
    direction_images: int = 32  # correctly classified test images in the fixed-direction chapter

    def __post_init__(self):
        _check(all(0 <= k <= 256 for k in self.eps_k), f"attack.eps_k must be in [0, 256], got {self.eps_k}")
        _check(self.steps >= 1, f"attack.steps must be >= 1, got {self.steps}")
        _check(self.n_images >= 2, f"attack.n_images must be >= 2, got {self.n_images}")
        _check(len(self.stress_eps_k) >= 1 and all(0 < k <= 256 for k in self.stress_eps_k),
               f"attack.stress_eps_k must be non-empty and in (0, 256], got {self.stress_eps_k}")
        for name in ("curve_images", "stress_images", "stress_channels", "stats_images", "direction_images"):
            _check(getattr(self, name) >= 2, f"attack.{name} must be >= 2, got {getattr(self, name)}")

    @property
    def eps(self) -> tuple[float, ...]:
        return tuple(k / 256 for k in self.eps_k)


@dataclass(frozen=True)
class DetectConfig:
    """Detection protocol settings (METHODS.md section 4).

    n_images : correctly classified test images attacked and split 70/30 by the protocol.
    bu_passes, dnn_iterations : MC-dropout passes of BU; Adam iterations of the DNN detector.
    n_boot : bootstrap resamples of every confidence interval.
    attacks : comma-separated attacks of the detection benchmark, each run at the largest budget.
    sweep_attacks : comma-separated subset of ``attacks`` also run at every budget of ``eps_k``.
    eps_k : budgets (k for k/256) of the detection benchmark.
    n_reference : clean training images whose features fit the detectors' class statistics
        (None = the whole training subset of the profile).
    dnn_stages : the DNN detector reads the last tap of this many of the deepest network stages.
    maha_noise : Mahalanobis input pre-processing magnitude (0 = off; METHODS.md: 0.0005 or 0).
    """

    n_images: int = 300
    bu_passes: int = 50
    dnn_iterations: int = 200
    n_boot: int = 200
    attacks: str = "bim,pgd,fgsm,mim,di,cw"
    sweep_attacks: str = "bim,pgd"
    eps_k: tuple[int, ...] = (1, 2, 4, 8)
    n_reference: int | None = None
    dnn_stages: int = 2
    maha_noise: float = 0.0

    def __post_init__(self):
        _check(self.n_images >= 10, f"detect.n_images must be >= 10, got {self.n_images}")
        _check(self.bu_passes >= 2, f"detect.bu_passes must be >= 2, got {self.bu_passes}")
        attacks, sweep = self.attack_list, self.sweep_attack_list
        _check(len(attacks) > 0, f"detect.attacks must name at least one attack, got {self.attacks!r}")
        _check(set(sweep) <= set(attacks),
               f"detect.sweep_attacks {self.sweep_attacks!r} must be a subset of detect.attacks {self.attacks!r}")
        _check(len(self.eps_k) > 0 and all(0 < k <= 256 for k in self.eps_k),
               f"detect.eps_k must hold budgets in (0, 256], got {self.eps_k}")
        _check(self.n_reference is None or self.n_reference >= 100,
               f"detect.n_reference must be None or >= 100 (LID draws minibatches of 100), got {self.n_reference}")
        _check(self.dnn_stages >= 1, f"detect.dnn_stages must be >= 1, got {self.dnn_stages}")
        _check(self.maha_noise >= 0, f"detect.maha_noise must be >= 0, got {self.maha_noise}")

    @property
    def attack_list(self) -> list[str]:
        return [a.strip().lower() for a in self.attacks.split(",") if a.strip()]

    @property
    def sweep_attack_list(self) -> list[str]:
        return [a.strip().lower() for a in self.sweep_attacks.split(",") if a.strip()]

    @property
    def eps(self) -> tuple[float, ...]:
        return tuple(k / 256 for k in self.eps_k)


@dataclass(frozen=True)
class Profile:
    """A complete, validated configuration."""

    name: str
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)

    def __post_init__(self):
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available; use device='cpu'")
        return self.device


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", device="cpu",
        data=DataConfig(image_size=28, train_size=1200, test_size=300),
        train=TrainConfig(arch="smallcnn", epochs=4, batch_size=64, lr=0.05),
        attack=AttackConfig(eps_k=(1, 4, 8), steps=5, n_images=64, batch_size=64, curve_images=24, stress_images=2,
                            stress_channels=4, stress_eps_k=(1, 8), stats_images=600, direction_images=24),
        detect=DetectConfig(n_images=120, bu_passes=10, dnn_iterations=40, n_boot=50,
                            attacks="bim,pgd", sweep_attacks="bim", eps_k=(4, 8), n_reference=None, dnn_stages=1),
    ),
    "cpu": Profile(
        name="cpu", device="auto",
        data=DataConfig(image_size=28, train_size=3000, test_size=600),
        train=TrainConfig(arch="resnet18", epochs=6, batch_size=64, lr=0.05, min_steps=282, class_weights="balanced"),
        attack=AttackConfig(eps_k=(1, 2, 4, 8), steps=10, n_images=200, batch_size=100, curve_images=64, stress_images=6,
                            stress_channels=12, stress_eps_k=(1, 4), stats_images=1000, direction_images=48),
        detect=DetectConfig(n_images=400, bu_passes=30, dnn_iterations=200, n_boot=200,
                            attacks="bim,pgd,fgsm", sweep_attacks="bim", eps_k=(4, 8), n_reference=1000,
                            dnn_stages=1),
    ),
    "paper": Profile(
        name="paper", device="auto",
        data=DataConfig(image_size=224, train_size=None, test_size=None),
        train=TrainConfig(arch="resnet50", epochs=20, batch_size=64, lr=0.05),
        attack=AttackConfig(eps_k=(1, 2, 4, 8), steps=10, n_images=1000, batch_size=128, curve_images=1000,
                            stress_images=64, stress_channels=32, stress_eps_k=(1, 2, 4, 8), stats_images=5000,
                            direction_images=256),
        detect=DetectConfig(n_images=1000, bu_passes=50, dnn_iterations=200, n_boot=1000,
                            attacks="bim,pgd,fgsm,mim,di,cw", sweep_attacks="bim,pgd,fgsm,mim,di,cw",
                            eps_k=(1, 2, 4, 8), n_reference=None, dnn_stages=2),
    ),
}


def _valid_keys(profile: Profile) -> list[str]:
    keys = []
    for f in fields(profile):
        value = getattr(profile, f.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{f.name}.{g.name}" for g in fields(value)]
        elif f.name != "name":
            keys.append(f.name)
    return keys


def _coerce(current: Any, value: Any, key: str) -> Any:
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if text.lower() in ("none", "null"):
            return None
        if isinstance(current, bool):
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(current, tuple):
            return tuple(int(v) for v in text.strip("()[]").split(",") if v.strip())
        try:
            return type(current)(text) if current is not None else int(text)
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not a valid {type(current).__name__}") from None
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def get_profile(name: str = "smoke", overrides: dict[str, Any] | None = None) -> Profile:
    """A profile by name with optional dotted-key overrides, e.g. ``{"train.epochs": 2}``.

    Raises
    ------
    ConfigError
        For an unknown profile or key (the message lists the valid ones) or an invalid value.
    """
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    profile = PROFILES[name]
    valid = _valid_keys(profile)
    for key, value in (overrides or {}).items():
        if key not in valid:
            raise ConfigError(f"unknown configuration key {key!r}; valid keys: {', '.join(valid)}")
        if "." in key:
            section, attr = key.split(".", 1)
            sub = getattr(profile, section)
            profile = replace(profile, **{section: replace(sub, **{attr: _coerce(getattr(sub, attr), value, key)})})
        else:
            profile = replace(profile, **{key: _coerce(getattr(profile, key), value, key)})
    return profile
