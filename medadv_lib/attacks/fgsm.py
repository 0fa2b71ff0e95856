"""FGSM: the fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015)."""
from __future__ import annotations

from torch import nn

from .base import IterativeAttack, register_attack

__all__ = ["FGSM"]


@register_attack("fgsm")
class FGSM(IterativeAttack):
    """Fast gradient sign method, L-infinity: ``x' = clip(x + eps * sign(grad_x L(x, y)))``.

    Goodfellow, Shlens & Szegedy, "Explaining and harnessing adversarial examples", ICLR 2015.
    Implemented as one step of size ``eps`` of :class:`~medadv_lib.attacks.base.IterativeAttack`.

    Parameters
    ----------
    model : nn.Module
    eps : float
        L-infinity budget in [0, 1], also the step size.
    targeted : bool, default False
        Step down the cross-entropy of ``target`` instead of up that of ``y``.
    seed : int, optional
        Seeds the choice of target when a targeted attack gets none.
    """

    name = "fgsm"

    def __init__(self, model: nn.Module, *, eps: float, targeted: bool = False, seed: int | None = None):
        super().__init__(model, eps=eps, alpha=None, steps=1, targeted=targeted, random_start=False, seed=seed)
        self.alpha = self.eps  # one full step: the projection is then a no-op apart from [0, 1]

    def hyperparameters(self) -> dict:
        return {"eps": self.eps, "targeted": self.targeted, "seed": self.seed}
