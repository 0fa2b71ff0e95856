"""The stress test run over several layers, budgets and data sets, and its summaries.

The stress-test chapter, :doc:`stress_test` (the HFC work, Yao et al., MICCAI 2021, Sec. 2; Ma et al., Pattern
Recognition 2021). :func:`~medadv_lib.analysis.feature_stress` attacks chosen channels of one layer
at one budget; this module chooses the layer and the channels, computes the clean statistics of
several layers in one pass, sweeps layers and budgets, and reduces the result to the numbers a
chapter quotes: the median reached z-score per data set and direction, the share of pushes beyond
the clean 99th (1st) percentile, and the medical-versus-natural comparison.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attacks import format_budget
from ..models.utils import PENULTIMATE, as_float_images, frozen, model_device, spatial_mean
from ..validation import check_images, check_positive_int
from .feature_stress import ChannelStats, _require_features, feature_stress

__all__ = [
    "clean_layer_stats",
    "concat_labelled",
    "deep_intermediate_layer",
    "sample_channels",
    "stress_comparison",
    "stress_summary",
    "stress_sweep",
    "stress_verdict",
]



def deep_intermediate_layer(model: nn.Module) -> str:
    """A deep intermediate tap: the second-to-last block output of ``model.feature_names``.

    Inner taps (names ending in ``reluK``) and the penultimate vector are skipped, and so is the
    last block, whose spatial mean *is* the penultimate vector for global-average-pooled networks.
    ResNet-18 gives ``"layer4.0"``, the small CNN ``"block2"``, VGG-16 ``"block4"``.
    """
    names = getattr(model, "feature_names", None)
    if not names:
        raise TypeError(f"{type(model).__name__} has no feature_names; use a FeatureModel from build_model.")
    blocks = [n for n in names if n != PENULTIMATE and not n.rsplit(".", 1)[-1].startswith("relu")]
    if len(blocks) < 2:
        raise ValueError(f"need at least two block taps to pick an intermediate one, got {list(names)}.")
    return blocks[-2]


def clean_layer_stats(model: nn.Module, x_train: torch.Tensor, layers: Sequence[str], *,
                      batch_size: int = 256) -> dict[str, ChannelStats]:
    """Clean per-channel statistics of several layers, from one forward pass per batch.

    Same result as calling :func:`~medadv_lib.analysis.clean_channel_stats` once per layer.

    Parameters
    ----------
    model : FeatureModel
    x_train : torch.Tensor
        Clean training images in [0, 1] (or uint8), (N, C, H, W).
    layers : sequence of str
    batch_size : int, default 256

    Returns
    -------
    dict
        Layer name -> :class:`~medadv_lib.analysis.ChannelStats`.
    """
    _require_features(model)
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise ValueError("layers is empty; pass tap names such as ['layer4.0', 'penultimate'].")
    check_positive_int(batch_size, "batch_size")
    x = as_float_images(x_train)
    check_images(x)
    device = model_device(model)
    parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with frozen(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            _, feats = model.forward_features(x[start:start + batch_size].to(device), layers)
            for layer in layers:
                parts[layer].append(spatial_mean(feats[layer]).double().cpu())
    out = {}
    for layer in layers:
        values = torch.cat(parts[layer]).numpy()
        out[layer] = ChannelStats(layer=layer, values=values, mean=values.mean(0), std=values.std(0))
    return out


def sample_channels(stats: ChannelStats, n: int, *, seed: int = 0, min_std: float = 1e-6) -> np.ndarray:
    """A seeded random sample of ``n`` channels whose clean standard deviation exceeds ``min_std``.

    Channels without clean variance (dead units) have no z-score and are never chosen. Fewer than
    ``n`` channels are returned when fewer are alive. The result is sorted.
    """
    check_positive_int(n, "n")
    alive = np.flatnonzero(np.asarray(stats.std) > min_std)
    if alive.size == 0:
        raise ValueError(f"layer {stats.layer!r} has no channel with clean std > {min_std:g}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(alive, size=min(n, alive.size), replace=False))


def stress_sweep(model: nn.Module, x: torch.Tensor, *, stats: Mapping[str, ChannelStats],
                 channels: Mapping[str, Sequence[int]], eps: Sequence[float], steps: int = 10,
                 alpha_fraction: float = 0.2, batch_size: int = 256, seed: int | None = 0) -> pd.DataFrame:
    """:func:`~medadv_lib.analysis.feature_stress` for every layer in ``stats`` and every budget.

    Parameters
    ----------
    model : FeatureModel
    x : torch.Tensor
        Test images to attack, [0, 1], (N, C, H, W).
    stats : mapping layer -> ChannelStats
        Clean training statistics (:func:`clean_layer_stats`).
    channels : mapping layer -> channel indices
        For example from :func:`sample_channels`.
    eps : sequence of float
        Budgets on the [0, 1] scale (0 is skipped).
    steps : int, default 10
    alpha_fraction : float, default 0.2
        Step size as a fraction of eps (BIM: eps / 5 in the HFC work).
    batch_size : int, default 256
    seed : int, optional

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`feature_stress` for every (layer, eps), plus ``eps_k`` (eps x 256) and
        ``budget`` (both notations).
    """
    frames = []
    for layer, layer_stats in stats.items():
        if layer not in channels:
            raise KeyError(f"no channels given for layer {layer!r}.")
        for e in eps:
            e = float(e)
            if e == 0:
                continue
            frame = feature_stress(model, x, layer=layer, channels=channels[layer], eps=e, stats=layer_stats,
                                   steps=steps, alpha=alpha_fraction * e, batch_size=batch_size, seed=seed)
            frame["eps_k"] = e * 256
            frame["budget"] = format_budget(e)
            frames.append(frame)
    if not frames:
        raise ValueError("nothing to do: give at least one layer and one budget > 0.")
    return pd.concat(frames, ignore_index=True)


def concat_labelled(frames: Mapping[str, pd.DataFrame], key: str = "dataset") -> pd.DataFrame:
    """Stack frames from a mapping, adding the mapping's key as the first column ``key``."""
    parts = []
    for name, frame in frames.items():
        frame = frame.copy()
        frame.insert(0, key, name)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def stress_summary(frame: pd.DataFrame, *, by: Sequence[str] = ("dataset", "layer", "eps_k", "direction"),
                   low: float = 1.0, high: float = 99.0) -> pd.DataFrame:
    """Per group: median reached z-score and how often pushes leave the clean range.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`stress_sweep` (with a ``dataset`` column when ``by`` names it).
    by : sequence of str
        Grouping columns; must include ``direction``.
    low, high : float, default 1 and 99
        Percentiles of the clean training activations that count as "outside".

    Returns
    -------
    pandas.DataFrame
        ``by`` columns plus ``pairs`` (image x channel pairs), ``channels``, ``images``,
        ``median_z`` (reached), ``q25_z``, ``q75_z``, ``median_clean_z``, ``median_shift_z``
        (reached minus clean, in clean standard deviations; signed), ``share_beyond`` (the share
        above the clean ``high`` percentile when maximising, below ``low`` when minimising) and
        ``share_outside_range`` (beyond every clean training value).
    """
    by = list(by)
    if "direction" not in by:
        raise ValueError("`by` must include 'direction' (maximising and minimising are summarised apart).")
    rows = []
    for keys, g in frame.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        record = dict(zip(by, keys))
        maximise = record["direction"] == "max"
        pct = g["percentile"].to_numpy()
        z = g["z_score"].to_numpy()
        record.update({
            "pairs": len(g), "channels": g["channel"].nunique(), "images": g["image"].nunique(),
            "median_z": float(np.nanmedian(z)), "q25_z": float(np.nanpercentile(z, 25)),
            "q75_z": float(np.nanpercentile(z, 75)),
            "median_clean_z": float(np.nanmedian(g["clean_z_score"])),
            "median_shift_z": float(np.nanmedian(z - g["clean_z_score"].to_numpy())),
            "share_beyond": float(np.mean(pct > high) if maximise else np.mean(pct < low)),
            "share_outside_range": float(np.mean(pct >= 100.0) if maximise else np.mean(pct <= 0.0)),
        })
        rows.append(record)
    return pd.DataFrame(rows)


def stress_comparison(summary: pd.DataFrame, *, natural: str | Sequence[str] = "cifar10", direction: str = "max",
                      value: str = "median_z") -> pd.DataFrame:
    """Medical against natural for one direction: one row per (layer, eps_k).

    Columns: ``layer, eps_k, direction``, one column per data set with ``value``, ``natural`` (the
    natural sets' largest value, or smallest when ``direction="min"``), ``medical`` (the medical
    set names, a tuple), ``medical_min`` / ``medical_max``
    and ``medical_all_farther`` (every medical set is pushed farther than every natural one:
    a higher value when maximising, a lower one when minimising), and ``medical_farther``, the
    number of medical sets that are.
    """
    natural = [natural] if isinstance(natural, str) else list(natural)
    sub = summary[summary["direction"] == direction]
    if sub.empty:
        raise ValueError(f"no rows with direction {direction!r}.")
    names = list(dict.fromkeys(sub["dataset"]))
    missing = [n for n in natural if n not in names]
    if missing:
        raise ValueError(f"natural data set(s) {missing} not in the summary ({names}).")
    medical = [n for n in names if n not in natural]
    if not medical:
        raise ValueError("the summary holds no medical data set to compare.")
    sign = 1.0 if direction == "max" else -1.0
    rows = []
    for (layer, eps_k), g in sub.groupby(["layer", "eps_k"], sort=False):
        values = dict(zip(g["dataset"], g[value].astype(float)))
        nat = [values[n] for n in natural if n in values]
        med = [values[n] for n in medical if n in values]
        reference = max(sign * v for v in nat) * sign
        farther = sum(sign * v > sign * reference for v in med)
        rows.append({"layer": layer, "eps_k": eps_k, "direction": direction,
                     **{n: values.get(n, np.nan) for n in names}, "natural": reference,
                     "medical": tuple(n for n in medical if n in values), "medical_min": min(med), "medical_max": max(med),
                     "medical_farther": int(farther), "medical_all_farther": bool(farther == len(med))})
    return pd.DataFrame(rows)


def stress_verdict(comparison_row: Mapping, *, natural_label: str = "CIFAR-10",
                   value_label: str = "median z-score") -> str:
    """One sentence stating what a row of :func:`stress_comparison` shows, for the chapter's prose.

    The medical sets are the row's ``medical`` entry; "farther out" means a higher value when the
    row's ``direction`` is ``"max"`` and a lower one when it is ``"min"``.
    """
    row = dict(comparison_row)
    sign = 1.0 if row["direction"] == "max" else -1.0
    reference = float(row["natural"])
    names = list(row["medical"])
    farther = [n for n in names if sign * float(row[n]) > sign * reference]
    closer = [n for n in names if n not in farther]
    ref = f"{natural_label}'s ({reference:.2f})"

    def listed(group):
        return ", ".join(f"{n} {float(row[n]):.2f}" for n in group)

    if not closer:
        return f"every medical set's {value_label} is farther out than {ref}: {listed(farther)}"
    if not farther:
        return f"no medical set's {value_label} is farther out than {ref}: {listed(closer)}"
    return (f"only some medical sets are pushed farther: the {value_label} is farther out than {ref} "
            f"for {listed(farther)}, but not for {listed(closer)}")
