"""Detector subnetworks of Metzen et al. (2017), "On detecting adversarial perturbations" (ICLR).

A small binary CNN reads the full feature map of a tapped layer and predicts whether the input is
adversarial; one such network per layer, their sigmoid outputs averaged.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from .base import BaseDetector, batch_slices, check_is_adv
from .bu import _seeded
from ..models.utils import PENULTIMATE, model_device, resolve_layers
from .features import forward_maps



def _as_map(t: torch.Tensor) -> torch.Tensor:
    # the penultimate vector (N, D) becomes a 1x1 map so every tap goes through the same CNN;
    # 3-D volumes (N, C, D, H, W) fold depth into height for the 2-D detector
    if t.dim() == 2:
        return t[:, :, None, None]
    if t.dim() == 5:
        return t.flatten(2, 3)
    return t


def metzen_net(in_channels: int, spatial: int, width=(96, 192, 192)) -> nn.Sequential:
    """conv w1, pool, conv w2, pool, conv w3, conv 1, global average pool -> one logit.

    Each 3x3 convolution is followed by batch norm and ReLU (Metzen et al.); a leading batch norm
    puts maps of very different scales on one footing. Pools are skipped once the map is 1 pixel.
    """
    w1, w2, w3 = (int(w) for w in width)
    layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)]

    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    layers += conv(in_channels, w1)
    if spatial >= 2:
        layers.append(nn.MaxPool2d(2))
        spatial //= 2
    layers += conv(w1, w2)
    if spatial >= 2:
        layers.append(nn.MaxPool2d(2))
    layers += conv(w2, w3) + [nn.Conv2d(w3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(0)]
    return nn.Sequential(*layers)


class DNNDetector(BaseDetector):
    """Per-layer detector CNNs on full feature maps, outputs averaged (Metzen et al. 2017).

    Parameters
    ----------
    layers : list of str, optional
        Taps to read (None: every tap except ``"penultimate"``).
    n_iter : int, default 200
        Adam iterations (Metzen et al.'s schedule; lower it for quick runs).
    batch_size : int, default 64
        Training batch, half normal and half adversarial (the fitting split is 2:1 normal).
    lr : float, default 1e-3
        Adam learning rate.
    width : tuple of 3 ints, default (96, 192, 192)
        Channels of the three 3x3 convolutions.
    score_batch_size : int, default 256
    seed : int, default 0
        Seeds initialisation and batch sampling (global RNG forked, not advanced).
    max_cache_mb : float, default 512
        When the full maps of the fitting images take at most this many megabytes (float32), they
        are computed once, before training, instead of once per training batch: the same maps and
        the same batches, at a fraction of the cost (``n_iter * batch_size`` forward passes become
        ``len(x)``). 0 always recomputes them, as for 224-px backbones whose maps do not fit.
    fpr : float, default 0.1

    Attributes
    ----------
    layers_ : list of str
    nets_ : nn.ModuleDict
        One trained detector network per layer, on the model's device.
    map_shapes_ : dict[str, tuple]
    loss_curve_ : ndarray (n_iter,)
        Training loss (sum over layers) per iteration.
    maps_cached_ : bool
        Whether the fitting maps were computed once up front (see ``max_cache_mb``).

    Notes
    -----
    Takes images and ``model=``. The maps of the fitting images are computed once and kept on
    the model's device when they fit in ``max_cache_mb``; otherwise they are recomputed per
    training batch, since full maps of a 224-px backbone do not fit in memory. The whole fit set
    is the supervised part (Methods page, :ref:`methods-protocol`: the 70 % split).
    """

    needs_images = True

    def __init__(self, layers=None, n_iter: int = 200, batch_size: int = 64, lr: float = 1e-3,
                 width=(96, 192, 192), score_batch_size: int = 256, seed: int = 0, max_cache_mb: float = 512.0,
                 fpr: float = 0.1):
        self.layers = layers
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.lr = lr
        self.width = width
        self.score_batch_size = score_batch_size
        self.seed = seed
        self.max_cache_mb = max_cache_mb
        self.fpr = fpr

    def _resolve_layers(self, model):
        if self.layers is None:
            names = [n for n in model.feature_names if n != PENULTIMATE]
            return names or [PENULTIMATE]
        return resolve_layers(model, self.layers)

    def _net_logits(self, maps) -> torch.Tensor:
        return torch.stack([self.nets_[_key(n)](_as_map(maps[n]).float()) for n in self.layers_])  # (L, n)

    def fit(self, x: torch.Tensor, is_adv, *, model):
        """Train one detector CNN per layer on images ``x`` labelled ``is_adv``. Returns self."""
        self._reset()
        if model is None:
            raise ValueError("DNNDetector needs the network: pass model=<FeatureModel>.")
        model.check_input(x)
        y = check_is_adv(is_adv, x.shape[0])
        if int(self.n_iter) < 1 or int(self.batch_size) < 2:
            raise ValueError("n_iter must be >= 1 and batch_size >= 2")
        if len(tuple(self.width)) != 3:
            raise ValueError(f"width must hold 3 channel counts, got {self.width}")
        self.layers_ = self._resolve_layers(model)
        device = model_device(model)
        _, probe = forward_maps(model, x[:2], self.layers_)
        self.map_shapes_ = OrderedDict((n, tuple(_as_map(probe[n]).shape[1:])) for n in self.layers_)
        per_image = sum(int(np.prod(s)) for s in self.map_shapes_.values()) * 4
        self.maps_cached_ = x.shape[0] * per_image <= float(self.max_cache_mb) * 2**20
        cached = self._all_maps(x, model) if self.maps_cached_ else None
        normal, adv = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        half = int(self.batch_size) // 2
        losses = np.empty(int(self.n_iter))
        with _seeded(self.seed, device):
            self.nets_ = nn.ModuleDict({_key(n): metzen_net(s[0], min(s[1:]), self.width)
                                        for n, s in self.map_shapes_.items()}).to(device)
            opt = torch.optim.Adam(self.nets_.parameters(), lr=float(self.lr))
            gen = np.random.default_rng(self.seed)
            target = torch.cat([torch.zeros(half), torch.ones(half)]).to(device)
            self.nets_.train()
            for it in range(int(self.n_iter)):
                idx = np.concatenate([gen.choice(normal, half), gen.choice(adv, half)])
                if cached is not None:
                    rows = torch.as_tensor(idx, device=device)
                    maps = {n: cached[n][rows] for n in self.layers_}
                else:
                    maps = forward_maps(model, x[torch.as_tensor(idx)], self.layers_)[1]
                logits = self._net_logits(maps)
                loss = nn.functional.binary_cross_entropy_with_logits(
                    logits, target.expand_as(logits), reduction="none").mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[it] = loss.item()
            self.nets_.eval()
        self.loss_curve_ = losses
        return self

    def _all_maps(self, x: torch.Tensor, model) -> dict:
        """Full maps of every image of ``x`` (on the model's device), computed in scoring batches."""
        parts = {n: [] for n in self.layers_}
        for sl in batch_slices(x.shape[0], self.score_batch_size):
            _, maps = forward_maps(model, x[sl], self.layers_)
            for n in self.layers_:
                parts[n].append(maps[n])
        return {n: torch.cat(v) for n, v in parts.items()}

    def decision_function(self, x: torch.Tensor, *, model) -> np.ndarray:
        """Mean over layers of the detectors' sigmoid outputs (higher = more adversarial)."""
        self._check_fitted()
        if model is None:
            raise ValueError("DNNDetector needs the network: pass model=<FeatureModel>.")
        model.check_input(x)
        resolve_layers(model, self.layers_)
        out = np.empty(x.shape[0], dtype=np.float64)
        self.nets_.eval()
        with torch.no_grad():
            for sl in batch_slices(x.shape[0], self.score_batch_size):
                _, maps = forward_maps(model, x[sl], self.layers_)
                for n in self.layers_:
                    shape = tuple(_as_map(maps[n]).shape[1:])
                    if shape != self.map_shapes_[n]:
                        raise ValueError(f"layer {n!r} has maps of shape {shape}; the detector was trained on "
                                         f"{self.map_shapes_[n]} (same model and input size needed).")
                out[sl] = self._net_logits(maps).sigmoid().mean(0).double().cpu().numpy()
        return out

    def fit_from_features(self, reference, data, is_adv, *, model=None):
        return self.fit(data.images, is_adv, model=model)

    def score_from_features(self, data, *, model=None):
        return self.decision_function(data.images, model=model)


def _key(name: str) -> str:
    # ModuleDict keys may not contain dots (ResNet taps are named like "layer1.0")
    return name.replace(".", "__")
