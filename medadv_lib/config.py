"""Profiles: the one choke point for cost (``smoke`` for CI, ``cpu`` for a laptop, ``paper`` for a GPU).

A profile is a frozen, validated tree of dataclasses. Chapters and the CLI read it and unpack it
into library calls; library classes never read it, so the library stays usable without it.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field, fields, replace
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

#: Names :func:`medadv_lib.models.build_model` accepts. Kept here, not in ``models/``, so that
#: validating a profile does not import torch (``models/__init__`` does); ``models.zoo`` imports it.
ARCHITECTURES = ("smallcnn", "resnet18", "resnet50", "vgg16", "efficientnet_lite0")


class ConfigError(ValueError):
    """An unknown profile, an unknown key or an invalid value."""


# Names of medadv_lib.attacks.ATTACKS, kept here so that validating a profile never imports torch
# (tests/test_config.py checks that the two agree).
KNOWN_ATTACKS: tuple[str, ...] = ("bim", "cw", "cw_l2", "di", "fgsm", "hfc", "mim", "pgd", "smia")

_DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d+")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


_WHAT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
         "tuple": "comma-separated integers such as 1,2,4"}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _kind(annotation: str) -> tuple[str, bool]:
    """(base type name, accepts None) of a field annotation such as ``"int | None"``."""
    parts = [p.strip() for p in annotation.split("|")]
    optional = "None" in parts
    base = [p for p in parts if p != "None"]
    return (base[0] if base else "None"), optional


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _normalise(key: str, annotation: str, value: Any) -> Any:
    """``value`` as the exact type the field declares, or ConfigError naming ``key``.

    Strict on purpose: a bool is not an int, 2.5 is not an int, ``inf``/``nan`` are not usable
    floats, and a budget tuple must be non-empty with integer items. Silently rounding or
    truncating any of these would run a different experiment than the one asked for.
    """
    base, optional = _kind(annotation)
    if value is None:
        _check(optional, f"{key} cannot be None (only optional keys such as data.train_size accept none); "
                         f"give {_WHAT.get(base[:5], base)}")
        return None
    if base == "bool":
        _check(isinstance(value, bool), f"{key} must be true or false, got {_describe(value)}")
        return bool(value)
    if base == "int":
        _check(isinstance(value, numbers.Integral) and not isinstance(value, bool),
               f"{key} must be an integer, got {_describe(value)}")
        return int(value)
    if base == "float":
        _check(isinstance(value, numbers.Real) and not isinstance(value, bool),
               f"{key} must be a number, got {_describe(value)}")
        _check(math.isfinite(float(value)), f"{key} must be a finite number, got {value!r}")
        return float(value)
    if base == "str":
        _check(isinstance(value, str), f"{key} must be a string, got {_describe(value)}")
        return value
    if base.startswith("tuple"):
        _check(isinstance(value, (tuple, list)), f"{key} must be a non-empty tuple of integers such as (1, 4), "
                                                 f"got {_describe(value)}")
        _check(len(value) > 0, f"{key} must hold at least one budget (k for k/256), got an empty {type(value).__name__}")
        for item in value:
            _check(isinstance(item, numbers.Integral) and not isinstance(item, bool),
                   f"{key} items must be integers (k for k/256), got {_describe(item)} in {value!r}")
        return tuple(int(item) for item in value)
    raise TypeError(f"config field {key} has an unsupported annotation {annotation!r}")  # a bug in this module


class _Section:
    """Mixin: check and normalise every field against its annotation, then the section's own rules."""

    _section: ClassVar[str] = ""

    def __post_init__(self):
        prefix = f"{self._section}." if self._section else ""
        for f in fields(self):
            object.__setattr__(self, f.name, _normalise(prefix + f.name, f.type, getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        pass


@dataclass(frozen=True)
class DataConfig(_Section):
    """Which images the models see.

    image_size : square side in pixels for every dataset.
    train_size, test_size : seeded stratified subsets (None = the whole split).
    val_fraction : share of train carved as validation where a set has no val split.
    """

    image_size: int = 28
    train_size: int | None = None
    test_size: int | None = None
    val_fraction: float = 0.1

    _section: ClassVar[str] = "data"

    def _validate(self) -> None:
        _check(self.image_size >= 8, f"data.image_size must be >= 8, got {self.image_size}")
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            _check(value is None or value >= 10, f"data.{name} must be None or >= 10, got {value}")
        _check(0 < self.val_fraction < 1, f"data.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class TrainConfig(_Section):
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

    _section: ClassVar[str] = "train"

    def _validate(self) -> None:
        _check(self.arch in ARCHITECTURES, f"train.arch must be one of {list(ARCHITECTURES)}, got {self.arch!r}")
        _check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 2, f"train.batch_size must be >= 2, got {self.batch_size}")
        _check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        _check(0 <= self.dropout < 1, f"train.dropout must be in [0, 1), got {self.dropout}")
        _check(self.min_steps >= 0, f"train.min_steps must be >= 0, got {self.min_steps}")
        _check(self.weights != "imagenet" or self.arch != "smallcnn",
               "train.weights 'imagenet' needs an architecture with ImageNet weights (efficientnet_lite0, resnet18, "
               "resnet50, vgg16); smallcnn has none, so use train.weights none")
        _check(self.class_weights in ("none", "balanced"),
               f"train.class_weights must be 'none' or 'balanced', got {self.class_weights!r}")


@dataclass(frozen=True)
class AttackConfig(_Section):
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

    _section: ClassVar[str] = "attack"

    def _validate(self) -> None:
        # emptiness and integer items are checked per field by _normalise; here only the range
        _check(all(0 <= k <= 256 for k in self.eps_k), f"attack.eps_k items must be in [0, 256], got {self.eps_k}")
        _check(self.steps >= 1, f"attack.steps must be >= 1, got {self.steps}")
        _check(self.n_images >= 2, f"attack.n_images must be >= 2, got {self.n_images}")
        _check(self.batch_size >= 1, f"attack.batch_size must be >= 1, got {self.batch_size}")
        _check(all(0 < k <= 256 for k in self.stress_eps_k),
               f"attack.stress_eps_k items must be in (0, 256], got {self.stress_eps_k}")
        for name in ("curve_images", "stress_images", "stress_channels", "stats_images", "direction_images"):
            _check(getattr(self, name) >= 2, f"attack.{name} must be >= 2, got {getattr(self, name)}")

    @property
    def eps(self) -> tuple[float, ...]:
        return tuple(k / 256 for k in self.eps_k)


@dataclass(frozen=True)
class DetectConfig(_Section):
    """Detection protocol settings (Methods page, :ref:`methods-protocol`).

    n_images : correctly classified test images attacked and split 70/30 by the protocol.
    bu_passes, dnn_iterations : MC-dropout passes of BU; Adam iterations of the DNN detector.
    n_boot : bootstrap resamples of every confidence interval.
    attacks : comma-separated attacks of the detection benchmark, each run at the largest budget.
    sweep_attacks : comma-separated subset of ``attacks`` also run at every budget of ``eps_k``.
    eps_k : budgets (k for k/256) of the detection benchmark.
    n_reference : clean training images whose features fit the detectors' class statistics
        (None = the whole training subset of the profile).
    dnn_stages : the DNN detector reads the last tap of this many of the deepest network stages.
    maha_noise : Mahalanobis input pre-processing magnitude (0 = off; Methods page, :ref:`methods-maha`: 0.0005 or 0).
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

    _section: ClassVar[str] = "detect"

    def _validate(self) -> None:
        _check(self.n_images >= 10, f"detect.n_images must be >= 10, got {self.n_images}")
        _check(self.bu_passes >= 2, f"detect.bu_passes must be >= 2, got {self.bu_passes}")
        _check(self.dnn_iterations >= 1, f"detect.dnn_iterations must be >= 1, got {self.dnn_iterations}")
        _check(self.n_boot >= 1, f"detect.n_boot must be >= 1, got {self.n_boot}")
        attacks, sweep = self.attack_list, self.sweep_attack_list
        _check(len(attacks) > 0, f"detect.attacks must name at least one attack, got {self.attacks!r}")
        for key, names in (("detect.attacks", attacks), ("detect.sweep_attacks", sweep)):
            unknown = [a for a in names if a not in KNOWN_ATTACKS]
            _check(not unknown, f"{key} names unknown attack(s) {unknown}; known attacks: {', '.join(KNOWN_ATTACKS)} "
                                "(comma-separated, e.g. bim,pgd)")
        _check(set(sweep) <= set(attacks),
               f"detect.sweep_attacks {self.sweep_attacks!r} must be a subset of detect.attacks {self.attacks!r}")
        _check(all(0 < k <= 256 for k in self.eps_k), f"detect.eps_k items must be in (0, 256], got {self.eps_k}")
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
class DefenseConfig(_Section):
    """The SSAT + UAD chapter (Li, Pan & Zhu, ISBI 2021; METHODS.md section 6).

    Its regime models are trained by their own cached stage
    (:func:`medadv_lib.pipeline.regime_model`) on a semi-supervised split of the profile's training
    subset, so nothing here enters the keys of the ``train``-section models.

    arch, epochs, min_steps, batch_size, lr : training of every regime (one architecture for all);
        the rest (weight decay, dropout, augmentation) is the ``train`` section's.
    image_size : the regimes' square input side (None: ``data.image_size``). ``cpu`` keeps its small
        CNNs at 28 px while the other chapters' backbone works at 64 px.
    weights : None (random initialisation) or ``"imagenet"`` (fine-tune every regime from ImageNet
        weights, as the paper did, for an ``arch`` that has them; see :func:`medadv_lib.weights.resolve_imagenet`).
    labelled, unlabelled : sizes of the class-balanced split (the paper: 4000 / 1000); when the
        pool is smaller both shrink in proportion.
    regimes : comma-separated subset of nt, at, gce, ssat.
    at_eps_low, at_eps_high : FGSM budgets of AT and SSAT, drawn uniformly per mini-batch.
    lam, variant : SSAT's lambda and loss variant ("paper" or "released").
    pseudo_labels : where SSAT's pseudo-labels come from: "online" (the model being trained, the
        paper) or "teacher" (the NT model of the same split, fixed: the "fixed targets" of the work
        the paper cites for lambda). ``smoke`` and ``cpu`` train from scratch, where online targets
        collapsed to one class (measured; :class:`~medadv_lib.defenses.SSAT`), so they use "teacher".
    eps_milli : Figure 4's budgets in thousandths (absolute L-infinity, the paper's notation).
    table_eps_milli : Table 1's PGD budget in thousandths (the paper: 5, i.e. 0.005).
    pgd_steps, cw_c, cw_steps : 10-step PGD; C&W-L2 at constant c with that many Adam steps.
    eval_images : test images attacked (seeded, stratified).
    uad_fpr : clean false-positive rate at which UAD's reject threshold is calibrated.
    """

    arch: str = "smallcnn"
    epochs: int = 6
    min_steps: int = 0
    batch_size: int = 64
    lr: float = 0.05
    image_size: int | None = None
    weights: str | None = None
    labelled: int = 1200
    unlabelled: int = 400
    regimes: str = "nt,at,gce,ssat"
    at_eps_low: float = 0.001
    at_eps_high: float = 0.003
    lam: float = 5.0
    variant: str = "paper"
    pseudo_labels: str = "online"
    eps_milli: tuple[int, ...] = (0, 1, 2, 5, 10)
    table_eps_milli: int = 5
    pgd_steps: int = 10
    cw_c: float = 1.0
    cw_steps: int = 50
    eval_images: int = 200
    uad_fpr: float = 0.05

    _section: ClassVar[str] = "defense"
    REGIMES: ClassVar[tuple[str, ...]] = ("nt", "at", "gce", "ssat")

    def _validate(self) -> None:
        _check(self.arch in ARCHITECTURES, f"defense.arch must be one of {list(ARCHITECTURES)}, got {self.arch!r}")
        _check(self.image_size is None or self.image_size >= 8,
               f"defense.image_size must be None (the data.image_size) or >= 8, got {self.image_size}")
        _check(self.weights in (None, "imagenet"), f"defense.weights must be none or 'imagenet', got {self.weights!r}")
        _check(self.weights is None or self.arch != "smallcnn",
               "defense.weights 'imagenet' needs an architecture with ImageNet weights (efficientnet_lite0, resnet18, "
               "resnet50, vgg16); smallcnn has none")
        for name in ("epochs", "batch_size", "pgd_steps", "cw_steps"):
            _check(getattr(self, name) >= 1, f"defense.{name} must be >= 1, got {getattr(self, name)}")
        _check(self.min_steps >= 0, f"defense.min_steps must be >= 0, got {self.min_steps}")
        _check(self.lr > 0, f"defense.lr must be > 0, got {self.lr}")
        _check(self.labelled >= 10, f"defense.labelled must be >= 10, got {self.labelled}")
        _check(self.unlabelled >= 2, f"defense.unlabelled must be >= 2 (SSAT needs an unlabelled stream), "
                                     f"got {self.unlabelled}")
        unknown = [r for r in self.regime_list if r not in self.REGIMES]
        _check(not unknown and self.regime_list, f"defense.regimes must be a comma-separated subset of "
                                                 f"{','.join(self.REGIMES)}, got {self.regimes!r}")
        _check(0 <= self.at_eps_low <= self.at_eps_high <= 1,
               f"defense.at_eps_low={self.at_eps_low} and defense.at_eps_high={self.at_eps_high} must satisfy "
               "0 <= at_eps_low <= at_eps_high <= 1 (budgets on the [0, 1] scale; the paper: 0.001 and 0.003)")
        _check(self.lam >= 0, f"defense.lam must be >= 0, got {self.lam}")
        _check(self.variant in ("paper", "released"), f"defense.variant must be 'paper' or 'released', "
                                                      f"got {self.variant!r}")
        _check(self.pseudo_labels in ("online", "teacher"), f"defense.pseudo_labels must be 'online' (the model being "
                                                           f"trained) or 'teacher' (the NT model), got {self.pseudo_labels!r}")
        _check(all(0 <= k <= 1000 for k in self.eps_milli), f"defense.eps_milli items must be in [0, 1000] "
                                                            f"(thousandths), got {self.eps_milli}")
        _check(0 < self.table_eps_milli <= 1000, f"defense.table_eps_milli must be in (0, 1000], "
                                                 f"got {self.table_eps_milli}")
        _check(self.cw_c > 0, f"defense.cw_c must be > 0, got {self.cw_c}")
        _check(self.eval_images >= 10, f"defense.eval_images must be >= 10, got {self.eval_images}")
        _check(0 < self.uad_fpr < 1, f"defense.uad_fpr must be in (0, 1), got {self.uad_fpr}")

    @property
    def regime_list(self) -> list[str]:
        return [r.strip().lower() for r in self.regimes.split(",") if r.strip()]

    @property
    def eps(self) -> tuple[float, ...]:
        """Figure 4's absolute budgets."""
        return tuple(k / 1000 for k in self.eps_milli)

    @property
    def table_eps(self) -> float:
        return self.table_eps_milli / 1000


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "attack": AttackConfig, "detect": DetectConfig,
             "defense": DefenseConfig}


@dataclass(frozen=True)
class Profile:
    """A complete, validated configuration."""

    name: str
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)

    def __post_init__(self):
        _check(isinstance(self.name, str), f"profile name must be a string, got {_describe(self.name)}")
        object.__setattr__(self, "device", _normalise("device", "str", self.device))
        for f in fields(self):
            if f.name not in ("name", "device"):
                cls = _SECTIONS[f.name]
                _check(isinstance(getattr(self, f.name), cls),
                       f"profile section {f.name!r} must be a {cls.__name__}, got {_describe(getattr(self, f.name))}")
        _check(_DEVICE.fullmatch(self.device) is not None,
               f"device must be auto, cpu, cuda or cuda:N with N a GPU index (e.g. cuda:0), got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but CUDA is not available on this machine; "
                              "use --device cpu (device='cpu') or auto")
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
        defense=DefenseConfig(arch="smallcnn", epochs=2, labelled=300, unlabelled=100, eps_milli=(0, 5, 10),
                              pgd_steps=5, cw_steps=10, eval_images=48, pseudo_labels="teacher"),
    ),
    "cpu": Profile(
        name="cpu", device="auto",
        # ImageNet-pre-trained EfficientNet-Lite0 fine-tuned at 64 px (the scale chapter: pre-training is what
        # makes features fragile, and resolution amplifies it); 141 SGD steps at lr 0.01 take about a minute
        # per model on 2 cores (ResNet-18 from scratch at 28 px took 4.5 min). The 28-px MedMNIST sets are
        # upsampled, as the MedMNIST v2 benchmark does for its 224-px models.
        data=DataConfig(image_size=64, train_size=3000, test_size=600),
        train=TrainConfig(arch="efficientnet_lite0", weights="imagenet", epochs=3, batch_size=64, lr=0.01,
                          min_steps=141, class_weights="balanced"),
        attack=AttackConfig(eps_k=(1, 2, 4, 8), steps=10, n_images=200, batch_size=100, curve_images=64, stress_images=6,
                            stress_channels=12, stress_eps_k=(1, 4), stats_images=1000, direction_images=48),
        detect=DetectConfig(n_images=400, bu_passes=30, dnn_iterations=200, n_boot=200,
                            attacks="bim,pgd,fgsm", sweep_attacks="bim", eps_k=(4, 8), n_reference=1000,
                            dnn_stages=1),
        # cheap on 2 cores: one small CNN for every regime, retinamnist's 1080 training images as the
        # labelled + unlabelled pool (810 / 270 after shrinking), chestxray 1200 / 400. SSAT's online
        # pseudo-labels collapsed to one class from scratch (lr 0.05, 0.01 and 0.002 on retinamnist),
        # so its pseudo-labels are the NT model's (fixed targets)
        # at 28 px (defense.image_size): the small CNN at 64 px would cost about 4x for the seven regimes
        defense=DefenseConfig(arch="smallcnn", image_size=28, epochs=6, min_steps=90, labelled=1200, unlabelled=400,
                              eps_milli=(0, 1, 2, 5, 10), pgd_steps=10, cw_steps=30, eval_images=200,
                              pseudo_labels="teacher"),
    ),
    "paper": Profile(
        name="paper", device="auto",
        data=DataConfig(image_size=224, train_size=None, test_size=None),
        # fine-tuned from torchvision's ImageNet file as the papers did, where `medadv weights download
        # resnet50` has saved it; without it the model trains from scratch and the book says so
        train=TrainConfig(arch="resnet50", epochs=20, batch_size=64, lr=0.01, weights="imagenet"),
        attack=AttackConfig(eps_k=(1, 2, 4, 8), steps=10, n_images=1000, batch_size=128, curve_images=1000,
                            stress_images=64, stress_channels=32, stress_eps_k=(1, 2, 4, 8), stats_images=5000,
                            direction_images=256),
        detect=DetectConfig(n_images=1000, bu_passes=50, dnn_iterations=200, n_boot=1000,
                            attacks="bim,pgd,fgsm,mim,di,cw", sweep_attacks="bim,pgd,fgsm,mim,di,cw",
                            eps_k=(1, 2, 4, 8), n_reference=None, dnn_stages=2),
        # the paper's setting: ResNet-18, 4000 labelled / 1000 unlabelled, 10 epochs, 1000 test attacks
        defense=DefenseConfig(arch="resnet18", weights="imagenet", lr=0.001, epochs=10, labelled=4000, unlabelled=1000,
                              eps_milli=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), pgd_steps=10, cw_steps=100,
                              eval_images=1000),
    ),
}


def _annotations(profile: Profile) -> dict[str, str]:
    """{dotted key: field annotation} of every key that can be overridden."""
    keys = {}
    for f in fields(profile):
        value = getattr(profile, f.name)
        if dataclasses.is_dataclass(value):
            keys.update({f"{f.name}.{g.name}": g.type for g in fields(value)})
        elif f.name != "name":
            keys[f.name] = f.type
    return keys


def _valid_keys(profile: Profile) -> list[str]:
    return list(_annotations(profile))


def _parse_text(key: str, annotation: str, text: str) -> Any:
    """Parse a command-line string for a field; the result is then checked by :func:`_normalise`."""
    base, optional = _kind(annotation)
    raw, text = text, text.strip()
    if text.lower() in ("none", "null") and (optional or base != "str"):
        return None  # a non-optional key then fails in _normalise with "cannot be None"
    if base == "str":
        return raw
    if base == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{key}={raw!r} is not a boolean; use one of {', '.join(_TRUE + _FALSE)}")
    if base == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not an integer (e.g. {key} 10)") from None
    if base == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not a number (e.g. {key} 0.05)") from None
    if base.startswith("tuple"):
        items = [v.strip() for v in text.strip("()[]").split(",")]
        if len(items) > 1 and items[-1] == "":
            items.pop()  # "(8,)" is Python's spelling of a one-item tuple
        if items == [""]:
            items = []
        out = []
        for item in items:
            try:
                out.append(int(item))
            except ValueError:
                raise ConfigError(f"{key}={raw!r}: item {item!r} is not an integer; give comma-separated "
                                  f"integers k (for k/256), e.g. {key} 1,2,4") from None
        return tuple(out)
    return raw


def _pairs(overrides: Any) -> list[tuple[str, Any]]:
    """Overrides as (key, value) pairs: a mapping, or a list/tuple of 2-item pairs (as argparse gives)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    elif isinstance(overrides, (list, tuple)):
        pairs = []
        for item in overrides:
            _check(isinstance(item, (list, tuple)) and len(item) == 2,
                   f"overrides must be a mapping or a list of (key, value) pairs, got the item {item!r}; "
                   "e.g. {'train.epochs': 2} or [('train.epochs', 2)]")
            pairs.append((item[0], item[1]))
    else:
        raise ConfigError(f"overrides must be a mapping or a list of (key, value) pairs, got {_describe(overrides)}; "
                          "e.g. {'train.epochs': 2}")
    for key, _ in pairs:
        _check(isinstance(key, str), f"configuration keys must be dotted strings such as 'train.epochs', got {key!r}")
    return pairs


def get_profile(name: str = "smoke", overrides: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None) -> Profile:
    """A profile by name with optional dotted-key overrides, e.g. ``{"train.epochs": 2}``.

    Strings (as from ``--set KEY VALUE``) are parsed by the key's type; other values must already
    have it (an int key takes an int, not 2.5 nor True). The whole profile is validated once,
    after every override is applied, so the result never depends on the order of the overrides.

    Raises
    ------
    ConfigError
        For an unknown profile or key (the message lists the valid ones) or an invalid value
        (the message names the key).
    """
    if not isinstance(name, str) or name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    profile = PROFILES[name]
    annotations = _annotations(profile)
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in _pairs(overrides):
        if key not in annotations:
            raise ConfigError(f"unknown configuration key {key!r}; valid keys: {', '.join(annotations)}")
        if isinstance(value, str):
            value = _parse_text(key, annotations[key], value)
        value = _normalise(key, annotations[key], value)  # names the key before cross-field checks run
        if "." in key:
            section, attr = key.split(".", 1)
            sections.setdefault(section, {})[attr] = value
        else:
            top[key] = value
    # one replace per section, then one for the profile: every check sees every override at once
    for section, changes in sections.items():
        top[section] = replace(getattr(profile, section), **changes)
    return replace(profile, **top) if top else profile
