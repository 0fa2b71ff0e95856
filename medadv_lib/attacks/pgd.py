"""PGD: projected gradient descent with a random start (Madry et al., ICLR 2018)."""
from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .base import IterativeAttack, register_attack

__all__ = ["PGD"]


@register_attack("pgd")
class PGD(IterativeAttack):
    """Projected gradient descent, L-infinity: BIM from a uniform random start in the eps-ball.

    Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards deep learning models resistant to
    adversarial attacks", ICLR 2018.

    Parameters
    ----------
    model : nn.Module
    eps : float
        L-infinity budget in [0, 1].
    alpha : float, optional
        Step size, default ``eps / 5`` (HFC work; torchattacks uses 2/255 for eps = 8/255).
    steps : int, default 10
    targeted : bool, default False
    random_start : bool, default True
        Uniform start in [-eps, eps] (clipped to [0, 1]); False makes it BIM.
    seed : int, optional
        Seeds the random start and the target choice.
    feature_layers : sequence of str, optional
        Feature taps handed to :meth:`loss` (see :class:`~medadv_lib.attacks.base.IterativeAttack`).
    penalties : sequence of penalties, optional
        Loss terms that are always minimised (:mod:`medadv_lib.attacks.penalty`).
    fuse_bn : bool, default True
        Run the loop on a BatchNorm-folded copy of the model (see ``IterativeAttack``).

    Examples
    --------
    >>> attack = PGD(model, eps=budget(2), seed=0)   # doctest: +SKIP
    >>> x_adv = attack(x, y)                          # doctest: +SKIP
    """

    name = "pgd"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 targeted: bool = False, random_start: bool = True, seed: int | None = None,
                 feature_layers: Iterable[str] | None = None,
                 penalties: Iterable | None = None, fuse_bn: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=targeted,
                         random_start=random_start, seed=seed,
                         feature_layers=feature_layers, penalties=penalties, fuse_bn=fuse_bn)
