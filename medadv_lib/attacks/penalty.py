"""Penalties: loss terms that any attack of the loop adds to its task loss, always minimised.

A penalty is what the HFC work calls a constraint on the attack (Yao et al., MICCAI 2021, Eq. 4:
``L = L_task + lambda * sum_l J_l``) and what adaptive attacks against a detector add (a term that
lowers the detector's score; Methods page, :ref:`methods-hfc`). It is *not* a subclass of an attack: every
attack constructor accepts ``penalties=[...]`` and the loop of
:class:`~medadv_lib.attacks.base.IterativeAttack` combines them with its own loss.

The protocol, for any callable ``p``:

``p(logits, features, y, target) -> torch.Tensor`` of shape (N,)
    Per-sample value on the forward pass of the current iterate; differentiable w.r.t. the input.
    ``features`` maps every tap name of ``p.layers`` (and possibly others) to its tensor;
    ``target`` is ``None`` for an untargeted attack.
``p.layers`` : tuple of str
    Feature taps the penalty reads (possibly empty); the attack adds them to its forward pass.
``p.spec`` : dict
    JSON-serialisable description (class name and hyper-parameters) for records and cache keys.
``p.state_key`` : str or None, optional
    Cache key of the fitted state the penalty holds (e.g. the class-conditional GMMs of HFC), so a
    cache can chain it as an upstream key; ``None`` (or absent) when it holds none.

A penalty is **always minimised**: the loop subtracts it from a task loss it ascends (untargeted
attacks) and adds it to one it descends (targeted attacks, CW), so the same penalty object means the
same thing on every attack. A weight, if any, is the penalty's own (``weight=`` below).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import torch

from ..models.utils import spatial_mean  # re-exported: the HFC work's per-channel feature

__all__ = ["FeatureTargetPenalty", "Penalty", "check_penalties", "spatial_mean"]


class Penalty:
    """Base class for penalties (the protocol in the module docstring); subclasses set ``layers``.

    Subclasses implement :meth:`__call__` and :meth:`hyperparameters`; ``spec`` and ``state_key``
    follow from them. Any object with the same attributes works as a penalty too.
    """

    #: feature taps this penalty reads
    layers: tuple[str, ...] = ()
    #: cache key of fitted state held by the penalty, ``None`` when it holds none
    state_key: str | None = None

    def __call__(self, logits: torch.Tensor, features: Mapping[str, torch.Tensor], y: torch.Tensor,
                 target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        """JSON-able hyper-parameters of this penalty (what changes its value)."""
        return {}

    @property
    def spec(self) -> dict:
        """``{"name": class name, **hyperparameters}``: JSON-able, for records and cache keys."""
        return {"name": type(self).__name__, **self.hyperparameters()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class FeatureTargetPenalty(Penalty):
    """``weight * ||spatial_mean(f_layer(x)) - v||^2``: pulls a tap's spatial mean towards a vector.

    The simplest feature-space constraint of the HFC kind (Yao et al. 2021 pull features towards a
    class density; this pulls them towards one point): e.g. ``v`` = the clean mean feature of the
    target class keeps the adversarial features where the clean ones of that class lie.

    Parameters
    ----------
    layer : str
        Tap name (see ``model.feature_names``), e.g. ``"layer3"`` or ``"penultimate"``.
    target : sequence of float or torch.Tensor
        The vector ``v``, one entry per channel of ``layer``.
    weight : float, default 1.0
        Multiplier ``lambda`` of the squared distance.
    """

    def __init__(self, layer: str, target: Sequence[float] | torch.Tensor, *, weight: float = 1.0):
        if not isinstance(layer, str) or not layer:
            raise TypeError(f"layer must be a tap name (str), got {layer!r}.")
        vector = torch.as_tensor(target, dtype=torch.float64).detach()
        if vector.dim() != 1 or vector.numel() == 0 or not torch.isfinite(vector).all():
            raise ValueError(f"target must be a finite 1-D vector (one value per channel of {layer!r}), "
                             f"got shape {tuple(vector.shape)}.")
        try:
            self.weight = float(weight)
        except (TypeError, ValueError):
            raise TypeError(f"weight must be a number, got {weight!r}.") from None
        if not self.weight >= 0 or self.weight == float("inf"):
            raise ValueError(f"weight={weight!r} must be a finite number >= 0.")
        self.layer = layer
        self.layers = (layer,)
        self.target = vector

    def __call__(self, logits, features, y, target):
        h = spatial_mean(features[self.layer])
        if h.shape[1] != self.target.numel():
            raise ValueError(f"FeatureTargetPenalty: tap {self.layer!r} has {h.shape[1]} channels but the "
                             f"target vector has {self.target.numel()}.")
        v = self.target.to(device=h.device, dtype=h.dtype)
        return self.weight * (h - v).pow(2).sum(1)

    def hyperparameters(self) -> dict:
        return {"layer": self.layer, "target": [float(t) for t in self.target], "weight": self.weight}


def check_penalties(penalties: Iterable | None) -> tuple:
    """Validate a list of penalties (the protocol in the module docstring); returns a tuple.

    Raises
    ------
    TypeError
        Naming the offending penalty and the attribute it lacks.
    """
    if penalties is None:
        return ()
    if callable(penalties) and hasattr(penalties, "layers"):
        penalties = (penalties,)  # a single penalty given without a list
    try:
        items = tuple(penalties)
    except TypeError:
        raise TypeError(f"penalties must be a list of penalties, got {type(penalties).__name__}.") from None
    for i, p in enumerate(items):
        where = f"penalties[{i}] ({type(p).__name__})"
        if not callable(p):
            raise TypeError(f"{where} is not callable; a penalty is called as p(logits, features, y, target).")
        layers = getattr(p, "layers", None)
        if layers is None or isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
            raise TypeError(f"{where} needs a `layers` attribute: a tuple of tap names (possibly empty).")
        spec = getattr(p, "spec", None)
        if not isinstance(spec, dict):
            raise TypeError(f"{where} needs a `spec` dict describing it (for records and cache keys).")
        try:
            json.dumps(spec, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{where}.spec must be JSON-serialisable ({err}); put fitted state behind "
                            "`state_key` instead.") from None
        key = getattr(p, "state_key", None)
        if key is not None and not isinstance(key, str):
            raise TypeError(f"{where}.state_key must be a str (a cache key) or None, got {key!r}.")
    return items
