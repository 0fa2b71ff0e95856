"""The scale study: resolution x ImageNet pre-training, and what makes medical features fragile.

At 28 px with networks trained from scratch the stress test of the HFC work (Yao et al., MICCAI
2021, Sec. 2; :doc:`stress_test`) does not find medical features more fragile than natural ones.
The papers worked at 224 px with ImageNet-pre-trained networks, and both differences are plausible
causes: an L-infinity ball of radius eps holds 64 times more pixels at 224 px than at 28 px, and a
network pre-trained on natural images may carry features a simple medical task never constrains.

This stage separates the two factors with the **architecture held fixed**: EfficientNet-Lite0 at
each resolution of :data:`STUDY_SETTINGS`, once from random initialisation and once fine-tuned
from its ImageNet weights (the only pre-trained weights available offline), on every data set
given (a medical set against CIFAR-10, upsampled to the same size). Holding the architecture fixed
is a deliberate change from comparing a scratch ResNet-18 with a pre-trained Lite0: that pair
would mix architecture with initialisation.

Each cell (data set, size, initialisation) is the usual pipeline at a derived profile
(:func:`study_profile`): a cached model (:func:`~medadv_lib.pipeline.trained_model`), the cached
stress test (:func:`~medadv_lib.pipeline.stress_experiment`) and the cached untargeted PGD sets of
the accuracy-under-attack curve (:func:`~medadv_lib.pipeline.adversarial_examples`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..config import ConfigError, Profile

__all__ = ["ARCH", "INITS", "STUDY_SETTINGS", "ScaleStudy", "fragility_table", "scale_study", "study_profile",
           "study_settings"]

#: The one architecture of the study (it has ImageNet weights offline).
ARCH = "efficientnet_lite0"
#: Initialisations compared, and the ``train.weights`` each one means.
INITS = {"scratch": None, "imagenet": "imagenet"}
#: Per-profile grid and sample sizes. Every cell of a profile trains with the same recipe except
#: the learning rate: fine-tuning uses a smaller one (the usual practice, and the rate at which the
#: ImageNet features survive the first steps), training from scratch the book's 0.05.
STUDY_SETTINGS = {
    "smoke": {"sizes": (28, 64), "train_size": 300, "test_size": 100, "epochs": 2, "lr_scratch": 0.05,
              "lr_imagenet": 0.01, "stats_images": 200, "stress_images": 2, "stress_channels": 4,
              "stress_eps_k": (1,), "curve_images": 24, "curve_eps_k": (1, 4)},
    # cpu: sized to about 6 min on 2 cores (1000 training images x 3 epochs, 8 channels at two budgets
    # and 64 curve images at three took 26 min for the grid of two sets, 128 px more than half of it);
    # the HFC budget 1/256 alone, and small models: scratch CIFAR-10 stays near chance (said in the text)
    "cpu": {"sizes": (28, 64, 128), "train_size": 500, "test_size": 200, "epochs": 3, "lr_scratch": 0.05,
            "lr_imagenet": 0.01, "stats_images": 300, "stress_images": 4, "stress_channels": 6,
            "stress_eps_k": (1,), "curve_images": 48, "curve_eps_k": (1,)},
    "paper": {"sizes": (28, 64, 128, 224), "train_size": None, "test_size": None, "epochs": 10, "lr_scratch": 0.05,
              "lr_imagenet": 0.01, "stats_images": 2000, "stress_images": 32, "stress_channels": 32,
              "stress_eps_k": (1, 2, 4), "curve_images": 500, "curve_eps_k": (1, 2, 4, 8)},
}


def study_settings(profile: Profile) -> dict:
    """The study's grid and sizes for a profile (a profile of another name gets the ``cpu`` ones)."""
    return dict(STUDY_SETTINGS.get(profile.name, STUDY_SETTINGS["cpu"]))


def study_profile(profile: Profile, size: int, init: str, settings: dict | None = None) -> Profile:
    """``profile`` with the study's data, training and attack settings for one (size, initialisation).

    Everything else (batch size, weight decay, dropout, augmentation, class weighting, attack steps
    and batch) is the profile's own, so a cell's model and attack sets share the cache with any
    chapter that asks for the same settings.
    """
    if init not in INITS:
        raise ConfigError(f"init must be one of {list(INITS)}, got {init!r}")
    s = settings or study_settings(profile)
    data = replace(profile.data, image_size=int(size), train_size=s["train_size"], test_size=s["test_size"])
    train = replace(profile.train, arch=ARCH, weights=INITS[init], epochs=s["epochs"], min_steps=0,
                    lr=s[f"lr_{init}"])
    attack = replace(profile.attack, eps_k=tuple(s["curve_eps_k"]), stats_images=s["stats_images"],
                     stress_images=s["stress_images"], stress_channels=s["stress_channels"],
                     stress_eps_k=tuple(s["stress_eps_k"]))
    return replace(profile, data=data, train=train, attack=attack)


@dataclass
class ScaleStudy:
    """Every cell of the study, as tidy frames.

    Attributes
    ----------
    models : DataFrame
        One row per (image_px, init, dataset): clean ``accuracy``, ``balanced_accuracy``, ``auroc``,
        ``n_train``, training ``seconds`` (None when the model came from the cache) and ``epochs``.
    stress : DataFrame
        :func:`~medadv_lib.analysis.stress_summary` rows with ``image_px`` and ``init`` columns;
        the intermediate layer is named ``"intermediate"`` (its tap, the same in every cell, is
        :attr:`intermediate`).
    curves : DataFrame
        :func:`~medadv_lib.analysis.curve_from_examples` rows with ``image_px``, ``init`` and
        ``dataset`` columns (``eps_k`` 0 is the clean accuracy of the attacked sample).
    intermediate : str
        The stressed intermediate tap.
    settings : dict
        The grid and sizes (:func:`study_settings`).
    cache_keys : list of str
    seconds : dict
        ``(image_px, init)`` -> wall seconds spent on that cell's models, stress tests and curves
        in this call (small when they came from the cache).
    """

    models: pd.DataFrame
    stress: pd.DataFrame
    curves: pd.DataFrame
    intermediate: str
    settings: dict
    cache_keys: list
    seconds: dict


def scale_study(names, profile: Profile, *, seed: int = 0, device: str | None = None, progress: bool = False,
                settings: dict | None = None) -> ScaleStudy:
    """Run (or load) every cell of the study for the data sets ``names``.

    Parameters
    ----------
    names : sequence of str
        Registered data sets, e.g. ``["chestxray", "cifar10"]``.
    profile : Profile
        The book's profile; :func:`study_profile` derives each cell's settings from it.
    seed : int
        Seeds the subsets, the initial weights, the channel sample and the attacks.
    device : str, optional
        Default: the profile's.
    progress : bool
        Training progress bars.
    settings : dict, optional
        Overrides :func:`study_settings` (tests use tiny grids).
    """
    from .. import analysis
    from ..attacks import budget
    from .adversarial import adversarial_examples
    from .models import trained_model
    from .stress import stress_experiment

    s = settings or study_settings(profile)
    device = device or profile.resolved_device()
    models, stress, curves, keys, seconds = [], [], [], [], {}
    intermediate = None
    for size in s["sizes"]:
        for init in INITS:
            cfg = study_profile(profile, size, init, s)
            began = time.perf_counter()
            for name in reversed(names) if init == "imagenet" else names:  # the last set loaded comes first
                start = time.perf_counter()
                tm = trained_model(name, cfg, seed=seed, device=device, progress=progress,
                                   desc=f"{name} {size} px {init}")
                trained = None if tm.cache.hit else time.perf_counter() - start
                cell = {"image_px": int(size), "init": init, "dataset": name}
                models.append({**cell, "accuracy": tm.metrics["accuracy"],
                               "balanced_accuracy": tm.metrics["balanced_accuracy"], "auroc": tm.metrics["auroc"],
                               "n_train": len(tm.train), "epochs": len(tm.history), "seconds": trained})
                result = stress_experiment(tm, cfg, seed=seed)
                intermediate = intermediate or result.layers[0]
                summary = analysis.stress_summary(result.frame.assign(dataset=name))
                summary["layer"] = summary["layer"].replace({result.layers[0]: "intermediate"})
                stress.append(summary.assign(image_px=int(size), init=init))
                sets = {budget(k): adversarial_examples(tm, "pgd", budget(k), cfg, seed=seed,
                                                        n_images=s["curve_images"]) for k in s["curve_eps_k"]}
                curves.append(analysis.curve_from_examples(tm.model, sets).assign(**cell))
                keys += [tm.cache.key, result.cache_key] + [run["cache_key"] for run in sets.values()]
            seconds[(int(size), init)] = time.perf_counter() - began
    return ScaleStudy(pd.DataFrame(models), pd.concat(stress, ignore_index=True),
                      pd.concat(curves, ignore_index=True), intermediate, s, keys, seconds)


def fragility_table(study: ScaleStudy, natural: str, *, layer: str = "intermediate") -> pd.DataFrame:
    """Medical against natural per (image_px, init): the study's answer in one table.

    Columns: ``image_px``, ``init``; ``shift <name>``, the median shift (reached minus clean z, in
    clean standard deviations) of maximising pushes in ``layer`` at the smallest stress budget, for
    every data set; ``beyond p99 <name>``, the share of those pushes that end above the clean 99th
    percentile; ``medical / natural``, the smallest medical shift over the natural one (> 1: every
    medical set pushed farther; NaN when the natural set does not move); ``farther``, in how many of
    the cell's comparisons (both layers, both directions, every budget, the stress-test chapter's
    rule on the reached z) every medical set is pushed farther than the natural set, as ``"k of n"``;
    ``drop <name>``, the accuracy PGD costs at the smallest curve budget; and the clean ``acc <name>``.

    The default layer is the deep block, not the penultimate vector: the penultimate features of a
    ReLU6 network are spatial means of clipped maps, and on a given image many channels are zero
    everywhere (no gradient, no shift) while others move far, so their median shift is often 0.
    """
    from ..analysis import stress_comparison

    first_stress = min(study.settings["stress_eps_k"])
    first_curve = min(study.settings["curve_eps_k"])
    names = list(dict.fromkeys(study.models["dataset"]))
    if natural not in names:
        raise ValueError(f"natural set {natural!r} is not in the study ({names})")
    medical = [n for n in names if n != natural]
    rows = []
    for (size, init), summary in study.stress.groupby(["image_px", "init"], sort=False):
        pick = summary[(summary["layer"] == layer) & (summary["direction"] == "max")
                       & (summary["eps_k"] == first_stress)].set_index("dataset")
        shift = pick["median_shift_z"].astype(float)
        comparisons = [stress_comparison(summary, natural=natural, direction=d) for d in ("max", "min")]
        n_all = sum(int(c["medical_all_farther"].sum()) for c in comparisons)
        n_comp = sum(len(c) for c in comparisons)
        curve = study.curves[(study.curves["image_px"] == size) & (study.curves["init"] == init)]
        acc = curve.pivot(index="dataset", columns="eps_k", values="accuracy")
        model = study.models[(study.models["image_px"] == size) & (study.models["init"] == init)].set_index("dataset")
        row = {"image_px": int(size), "init": init}
        row |= {f"shift {n}": float(shift[n]) for n in names}
        row |= {f"beyond p99 {n}": float(pick.loc[n, "share_beyond"]) for n in names}
        row["medical / natural"] = (min(float(shift[n]) for n in medical) / float(shift[natural])
                                    if float(shift[natural]) > 0 else np.nan)
        row["farther"] = f"{n_all} of {n_comp}"
        row["n_farther"], row["n_comparisons"] = n_all, n_comp
        row |= {f"drop {n}": float(acc.loc[n, 0.0] - acc.loc[n, float(first_curve)]) for n in names}
        row |= {f"acc {n}": float(model.loc[n, "accuracy"]) for n in names}
        rows.append(row)
    return pd.DataFrame(rows)
