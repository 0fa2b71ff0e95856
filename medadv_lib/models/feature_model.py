"""A classifier that takes [0, 1] images and exposes named feature taps.

HFC, the detectors and the stress test all need intermediate activations of the same network.
Rather than re-writing each backbone's forward pass, :class:`FeatureModel` registers forward
hooks on named modules once and collects their outputs during an ordinary forward pass, so any
torchvision backbone works and gradients flow through the taps (HFC back-propagates through them).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..validation import check_images
from .utils import PENULTIMATE, resolve_layers


class FeatureModel(nn.Module):
    """Normalising wrapper around a backbone with named feature taps.

    Parameters
    ----------
    backbone : nn.Module
        Maps a normalised image batch to logits.
    head : nn.Module
        The module (inside ``backbone``) whose *input* is the penultimate feature vector; its
        last ``nn.Linear`` is :attr:`classifier`.
    taps : list of (name, module, call_index)
        Modules whose output is recorded under ``name``. ``call_index`` picks one call when a
        module is applied several times per forward pass (torchvision ResNet blocks reuse one
        ``ReLU`` module), ``None`` meaning the only call.
    mean, std : sequence of float
        Per-channel normalisation applied inside :meth:`forward`, so callers pass [0, 1] images.
    spec : dict
        The keyword arguments that rebuild this model with :func:`medadv_lib.models.build_model`.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, taps, mean: Sequence[float],
                 std: Sequence[float], spec: dict):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.spec = dict(spec)
        self.in_channels = int(spec["in_channels"])
        self.num_classes = int(spec["num_classes"])
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if not isinstance(head, nn.Linear) else [head]
        if not linears:
            raise ValueError("the head module must contain an nn.Linear classifier")
        self.classifier: nn.Linear = linears[-1]
        self._taps = [(name, module, call) for name, module, call in taps]
        self._recording: set[str] | None = None
        self._store: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._calls: dict[int, int] = {}
        seen = {}
        for name, module, call in self._taps:
            seen.setdefault(id(module), (module, []))[1].append((name, call))
        for module, entries in seen.values():
            module.register_forward_hook(self._make_hook(entries))
        head.register_forward_pre_hook(self._penultimate_hook)

    # ------------------------------------------------------------------ hooks
    def _make_hook(self, entries):
        def hook(module, inputs, output):
            if self._recording is None:
                return
            call = self._calls.get(id(module), 0)
            self._calls[id(module)] = call + 1
            for name, wanted in entries:
                if (wanted is None or wanted == call) and name in self._recording:
                    self._store[name] = output
        return hook

    def _penultimate_hook(self, module, inputs):
        if self._recording is not None and PENULTIMATE in self._recording:
            self._store[PENULTIMATE] = torch.flatten(inputs[0], 1)

    # ------------------------------------------------------------------ API
    @property
    def feature_names(self) -> list[str]:
        """Names of every available tap, in forward order, ending with ``"penultimate"``."""
        return [name for name, _, _ in self._taps] + [PENULTIMATE]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images ``x`` in [0, 1] of shape (N, C, H, W)."""
        return self.backbone(self.normalize(x))

    def forward_features(self, x: torch.Tensor, layers: Sequence[str] | None = None):
        """Logits and the requested feature maps from one forward pass.

        Parameters
        ----------
        x : torch.Tensor
            Images in [0, 1], shape (N, C, H, W).
        layers : sequence of str, optional
            Tap names (see :attr:`feature_names`); ``None`` means all of them.

        Returns
        -------
        logits : torch.Tensor
        features : OrderedDict[str, torch.Tensor]
            In forward order. Gradients flow through them when autograd is enabled.
        """
        wanted = resolve_layers(self, layers)
        self._recording, self._calls, self._store = set(wanted), {}, OrderedDict()
        try:
            logits = self(x)
            store = self._store
        finally:
            self._recording, self._store, self._calls = None, OrderedDict(), {}
        return logits, OrderedDict((name, store[name]) for name in wanted)

    def features(self, x: torch.Tensor, layers: Sequence[str] | None = None):
        """Ordered mapping from tap name to feature map for images ``x`` in [0, 1]."""
        return self.forward_features(x, layers)[1]

    def check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate that ``x`` is an image batch this model accepts (dtype, range, channels)."""
        check_images(x, name)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; this model expects (N, {self.in_channels}, H, W) images."
            )
        return x

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.spec.items() if k != "weights")
