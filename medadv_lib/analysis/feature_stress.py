"""Stress test: how far can a tiny budget push single channels out of their clean range?

The stress-test chapter, :doc:`stress_test` (Ma et al., "Understanding adversarial attacks on deep learning based medical
image analysis systems", Pattern Recognition 2021; the HFC work, Yao et al., MICCAI 2021, Sec. 2).
For each chosen channel of a layer, BIM (Kurakin et al. 2017) maximises, and separately minimises,
the channel's spatial-mean activation within an L-infinity budget; the reached value is expressed
as a z-score and a percentile of the clean training activations of that channel.

All channels are attacked at once and correctly: every (image, channel) pair becomes its own sample
of a replicated batch whose label is the channel index. In eval mode samples do not interact, so
the gradient of the summed objective with respect to one sample is the gradient of that sample's
own objective, exactly as if each channel were attacked alone.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..attacks.base import IterativeAttack
from ..models.utils import frozen, model_device, spatial_mean
from ..validation import check_eps, check_images, check_positive_int

__all__ = [
    "ChannelActivationBIM",
    "ChannelStats",
    "channel_activations",
    "clean_channel_stats",
    "feature_stress",
]

logger = logging.getLogger(__name__)


def channel_activations(model: nn.Module, x: torch.Tensor, layer: str, *, batch_size: int = 256) -> torch.Tensor:
    """Spatial-mean activation of every channel of ``layer``, shape (N, C), on the CPU.

    The model runs in eval mode without gradients; its modes are restored afterwards.
    """
    _require_features(model)
    check_images(x)
    check_positive_int(batch_size, "batch_size")
    device = model_device(model)
    out = []
    with frozen(model), torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size].to(device)
            out.append(spatial_mean(model.forward_features(chunk, [layer])[1][layer]).float().cpu())
    return torch.cat(out)


@dataclass
class ChannelStats:
    """Clean distribution of the spatial-mean activations of one layer's channels.

    Attributes
    ----------
    layer : str
    values : np.ndarray
        (N_train, C) clean training activations.
    mean, std : np.ndarray
        (C,) per-channel mean and standard deviation (ddof = 0).
    """

    layer: str
    values: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        self._sorted = np.sort(np.asarray(self.values, dtype=np.float64), axis=0)

    @property
    def num_channels(self) -> int:
        return self.values.shape[1]

    def z_score(self, values, channels) -> np.ndarray:
        """``(value - mean_c) / std_c``; NaN for channels with zero clean variance (dead units)."""
        values, channels = np.asarray(values, dtype=np.float64), np.asarray(channels)
        std = self.std[channels]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(std > 0, (values - self.mean[channels]) / np.where(std > 0, std, 1.0), np.nan)

    def percentile(self, values, channels) -> np.ndarray:
        """Percentile (0-100) of each value among the clean activations of its channel.

        Ties count half, as ``scipy.stats.percentileofscore(kind="mean")``.
        """
        values, channels = np.asarray(values, dtype=np.float64), np.asarray(channels)
        out = np.empty(values.shape, dtype=np.float64)
        n = self._sorted.shape[0]
        for c in np.unique(channels):
            mask = channels == c
            column = self._sorted[:, c]
            below = np.searchsorted(column, values[mask], side="left")
            at_or_below = np.searchsorted(column, values[mask], side="right")
            out[mask] = 100.0 * (below + at_or_below) / (2.0 * n)
        return out


def clean_channel_stats(model: nn.Module, x_train: torch.Tensor, layer: str, batch_size: int = 256) -> ChannelStats:
    """Per-channel clean statistics of ``layer`` on training images ``x_train``.

    Parameters
    ----------
    model : FeatureModel
    x_train : torch.Tensor
        Clean training images in [0, 1], (N, C, H, W).
    layer : str
        A tap name from ``model.feature_names`` (``"penultimate"`` included).
    batch_size : int, default 256

    Returns
    -------
    ChannelStats
    """
    values = channel_activations(model, x_train, layer, batch_size=batch_size).double().numpy()
    return ChannelStats(layer=layer, values=values, mean=values.mean(0), std=values.std(0))


class ChannelActivationBIM(IterativeAttack):
    """BIM that drives one channel's spatial-mean activation up or down, per sample.

    The "label" of sample i is the index of the channel it attacks, so one batch can hold many
    (image, channel) pairs. Kurakin et al. 2017 for the loop; the stress-test chapter, :doc:`stress_test` for the use.

    Parameters
    ----------
    model : FeatureModel
    layer : str
        Tap name (an intermediate layer or ``"penultimate"``).
    eps : float
    alpha : float, optional
        Default ``eps / 5``.
    steps : int, default 10
    maximize : bool, default True
        Ascend (True) or descend (False) the activation.
    seed : int, optional
    """

    name = "channel_bim"

    def __init__(self, model: nn.Module, *, layer: str, eps: float, alpha: float | None = None, steps: int = 10,
                 maximize: bool = True, seed: int | None = None):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=False, random_start=False,
                         seed=seed, feature_layers=(layer,))
        self.layer = layer
        self._maximize = bool(maximize)
        self._channels: int | None = None

    @property
    def maximize(self) -> bool:
        return self._maximize

    def loss(self, logits, features: Mapping[str, torch.Tensor], y, target):
        return spatial_mean(features[self.layer]).gather(1, y[:, None]).squeeze(1)

    def _num_classes(self, x: torch.Tensor) -> int:
        # labels are channel indices here, so their valid range is the layer's channel count
        if self._channels is None:
            with torch.no_grad():
                self._channels = int(self.model.forward_features(x[:1], [self.layer])[1][self.layer].shape[1])
        return self._channels


def _require_features(model):
    if not hasattr(model, "forward_features"):
        raise TypeError(f"{type(model).__name__} has no `forward_features`; the stress test needs a FeatureModel "
                        "from medadv_lib.models.build_model.")


def feature_stress(model: nn.Module, x: torch.Tensor, *, layer: str, channels: Sequence[int], eps: float,
                   stats: ChannelStats, steps: int = 10, alpha: float | None = None,
                   directions: Iterable[str] = ("max", "min"), batch_size: int = 256,
                   seed: int | None = 0) -> pd.DataFrame:
    """Push each chosen channel up and down with BIM and locate the result in the clean distribution.

    Parameters
    ----------
    model : FeatureModel
    x : torch.Tensor
        Images to attack, (N, C, H, W) in [0, 1] (test images, not the ones ``stats`` came from).
    layer : str
        Tap name; must match ``stats.layer``.
    channels : sequence of int
        Channel indices of ``layer`` to attack.
    eps : float
        L-infinity budget, e.g. ``budget(1)`` = 1/256 as in the HFC work.
    stats : ChannelStats
        From :func:`clean_channel_stats` on clean training images.
    steps : int, default 10
    alpha : float, optional
        Default ``eps / 5``.
    directions : iterable of {"max", "min"}
    batch_size : int, default 256
        (image, channel) pairs attacked per batch.
    seed : int, optional

    Returns
    -------
    pandas.DataFrame
        One row per (channel, image, direction): ``channel, image, direction, clean_value,
        reached_value, z_score, percentile, clean_z_score, clean_percentile, layer, eps``.
        ``z_score`` is NaN for channels without clean variance.
    """
    _require_features(model)
    check_images(x)
    eps = check_eps(eps)
    check_positive_int(batch_size, "batch_size")
    if not isinstance(stats, ChannelStats):
        raise TypeError("stats must be a ChannelStats from clean_channel_stats(model, x_train, layer).")
    if stats.layer != layer:
        raise ValueError(f"stats were computed for layer {stats.layer!r}, not {layer!r}.")
    channels = [int(c) for c in channels]
    if not channels:
        raise ValueError("channels is empty; pass the channel indices to attack, e.g. range(8).")
    bad = [c for c in channels if not 0 <= c < stats.num_channels]
    if bad:
        raise ValueError(f"channel indices {bad} are outside 0..{stats.num_channels - 1} for layer {layer!r}.")
    directions = list(directions)
    unknown = [d for d in directions if d not in ("max", "min")]
    if unknown or not directions:
        raise ValueError(f"directions must be a non-empty subset of ('max', 'min'), got {directions}.")

    n, k = x.shape[0], len(channels)
    image_idx = torch.arange(n).repeat_interleave(k)
    channel_idx = torch.tensor(channels, dtype=torch.long).repeat(n)
    clean = channel_activations(model, x, layer, batch_size=batch_size)[:, channels].double().numpy().reshape(-1)
    frames = []
    for direction in directions:
        attack = ChannelActivationBIM(model, layer=layer, eps=eps, alpha=alpha, steps=steps,
                                      maximize=direction == "max", seed=seed)
        reached = np.empty(n * k, dtype=np.float64)
        for start in range(0, n * k, batch_size):
            sl = slice(start, start + batch_size)
            x_adv = attack(x[image_idx[sl]], channel_idx[sl])
            acts = channel_activations(model, x_adv, layer, batch_size=batch_size)
            reached[sl] = acts.gather(1, channel_idx[sl, None]).squeeze(1).double().numpy()
        logger.debug("feature stress %s %s: %d pairs", layer, direction, n * k)
        ch = channel_idx.numpy()
        frames.append(pd.DataFrame({
            "channel": ch,
            "image": image_idx.numpy(),
            "direction": direction,
            "clean_value": clean,
            "reached_value": reached,
            "z_score": stats.z_score(reached, ch),
            "percentile": stats.percentile(reached, ch),
            "clean_z_score": stats.z_score(clean, ch),
            "clean_percentile": stats.percentile(clean, ch),
            "layer": layer,
            "eps": eps,
        }))
    return pd.concat(frames, ignore_index=True)
