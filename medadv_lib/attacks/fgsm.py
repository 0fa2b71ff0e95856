"""FGSM: the fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015)."""
from __future__ import annotations

from collections.abc import Iterable

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
    steps : int, default 1
        Accepted only as 1 (FGSM is one step; use :class:`~medadv_lib.attacks.BIM` for more).
        :func:`~medadv_lib.attacks.get_attack` drops a ``steps`` keyword for FGSM, so sweeps can
        pass one set of keywords to every attack.
    seed : int, optional
        Seeds the choice of target when a targeted attack gets none.
    feature_layers : sequence of str, optional
        Feature taps handed to :meth:`loss` (see :class:`~medadv_lib.attacks.base.IterativeAttack`).
    penalties : sequence of penalties, optional
        Loss terms that are always minimised (:mod:`medadv_lib.attacks.penalty`).
    fuse_bn : bool, default True
        Run the loop on a BatchNorm-folded copy of the model (see ``IterativeAttack``).
    """

    name = "fgsm"
    fixed_steps = 1
    #: one full step of size eps (follows ``eps``): the projection is then a no-op apart from [0, 1]
    default_alpha_fraction = 1.0

    def __init__(self, model: nn.Module, *, eps: float, steps: int = 1, targeted: bool = False,
                 seed: int | None = None, feature_layers: Iterable[str] | None = None,
                 penalties: Iterable | None = None, fuse_bn: bool = True):
        if steps != 1 or isinstance(steps, bool):
            raise ValueError(f"FGSM takes exactly one step, got steps={steps!r}; use BIM for an iterative attack "
                             "(get_attack('fgsm', ...) ignores `steps`).")
        super().__init__(model, eps=eps, alpha=None, steps=1, targeted=targeted, random_start=False, seed=seed,
                         feature_layers=feature_layers, penalties=penalties, fuse_bn=fuse_bn)

    def hyperparameters(self) -> dict:
        return {"eps": self.eps, "targeted": self.targeted, "seed": self.seed, **self._common_hyperparameters()}
