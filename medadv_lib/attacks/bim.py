"""BIM / I-FGSM: the basic iterative method (Kurakin, Goodfellow & Bengio, ICLR 2017 workshop)."""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .base import IterativeAttack, register_attack

__all__ = ["BIM"]


@register_attack("bim")
class BIM(IterativeAttack):
    """Basic iterative method (I-FGSM), L-infinity.

    ``x_{t+1} = clip_[0,1](proj_eps(x_t + alpha * sign(grad_x L(x_t, y))))`` from ``x_0 = x``.
    Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical world", ICLR 2017 (workshop).

    Parameters
    ----------
    model : nn.Module
    eps : float
        L-infinity budget in [0, 1].
    alpha : float, optional
        Step size, default ``eps / 5`` (HFC work).
    steps : int, default 10
        Number of steps T (HFC work).
    targeted : bool, default False
    seed : int, optional
        Seeds the target choice when a targeted attack gets none.
    feature_layers : sequence of str, optional
        Feature taps handed to :meth:`loss` (see :class:`~medadv_lib.attacks.base.IterativeAttack`).
    penalties : sequence of penalties, optional
        Loss terms that are always minimised (:mod:`medadv_lib.attacks.penalty`).
    fuse_bn : bool, default True
        Run the loop on a BatchNorm-folded copy of the model (see ``IterativeAttack``).
    """

    name = "bim"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 targeted: bool = False, seed: int | None = None, feature_layers: Iterable[str] | None = None,
                 penalties: Iterable | None = None, fuse_bn: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=targeted, random_start=False, seed=seed,
                         feature_layers=feature_layers, penalties=penalties, fuse_bn=fuse_bn)
