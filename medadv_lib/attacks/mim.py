"""MIM / MI-FGSM: momentum iterative attack (Dong et al., CVPR 2018)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .base import IterativeAttack, register_attack

__all__ = ["MIM"]


class MomentumMixin:
    """Step direction ``sign(g_t)`` with ``g_t = mu * g_{t-1} + grad / mean|grad|`` (per image).

    Shared by :class:`MIM` and :class:`~medadv_lib.attacks.di.DI` (M-DI2-FGSM when ``mu > 0``).
    Dividing by the mean rather than the L1 norm of Dong et al. only rescales every term by the
    same constant per image, so the sign is unchanged; it keeps the buffer in a readable range.
    """

    mu: float = 0.0

    def direction(self, grad: torch.Tensor, state: dict) -> torch.Tensor:
        if self.mu == 0:
            return grad.sign_()  # no memory: plain BIM, and sign(grad / c) == sign(grad)
        dims = tuple(range(1, grad.dim()))
        g = grad.div_(grad.abs().mean(dim=dims, keepdim=True).clamp_min_(1e-12))
        previous = state.get("momentum")
        if previous is not None:
            g.add_(previous, alpha=self.mu)
        state["momentum"] = g
        return g.sign()


def _check_mu(mu) -> float:
    try:
        value = float(mu)
    except (TypeError, ValueError):
        raise TypeError(f"mu must be a number (the momentum decay), got {mu!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"mu={mu!r} must be a finite momentum decay >= 0 (0.5 in the HFC code, 1.0 in Dong et al.).")
    return value


@register_attack("mim")
class MIM(MomentumMixin, IterativeAttack):
    """Momentum iterative FGSM (MI-FGSM), L-infinity.

    Dong, Liao, Pang, Su, Zhu, Hu & Li, "Boosting adversarial attacks with momentum", CVPR 2018.
    BIM whose step is the sign of an accumulated, L1-normalised gradient.

    Parameters
    ----------
    model : nn.Module
    eps : float
        L-infinity budget in [0, 1].
    alpha : float, optional
        Step size, default ``eps / 5``.
    steps : int, default 10
    mu : float, default 0.5
        Momentum decay; 0.5 is the value in the HFC authors' code, Dong et al. use 1.0.
    targeted : bool, default False
    random_start : bool, default False
    seed : int, optional
    feature_layers : sequence of str, optional
        Feature taps handed to :meth:`loss` (see :class:`~medadv_lib.attacks.base.IterativeAttack`).
    penalties : sequence of penalties, optional
        Loss terms that are always minimised (:mod:`medadv_lib.attacks.penalty`).
    fuse_bn : bool, default True
        Run the loop on a BatchNorm-folded copy of the model (see ``IterativeAttack``).
    """

    name = "mim"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 mu: float = 0.5, targeted: bool = False, random_start: bool = False, seed: int | None = None,
                 feature_layers: Iterable[str] | None = None,
                 penalties: Iterable | None = None, fuse_bn: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=targeted,
                         random_start=random_start, seed=seed,
                         feature_layers=feature_layers, penalties=penalties, fuse_bn=fuse_bn)
        self.mu = _check_mu(mu)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "mu": self.mu}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mu={self.mu:g}"
