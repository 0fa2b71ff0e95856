"""DI-FGSM: input diversity (Xie et al., CVPR 2019)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .base import IterativeAttack, register_attack
from .mim import MomentumMixin, _check_mu

__all__ = ["DI"]


@register_attack("di")
class DI(MomentumMixin, IterativeAttack):
    """Diverse-inputs iterative FGSM (DI2-FGSM; M-DI2-FGSM with ``mu > 0``), L-infinity.

    Xie, Zhang, Zhou, Bai, Wang, Ren & Yuille, "Improving transferability of adversarial examples
    with input diversity", CVPR 2019. With probability ``p`` each step differentiates the loss of a
    copy of the iterate that is resized (nearest neighbour) to a random size between ``low`` times
    and one pixel less than its size and zero-padded back, at a random offset, to the original
    size; otherwise the iterate itself. One transform is drawn per step for the whole batch, as in
    the reference code.

    The unchanged size is *excluded* from the draw, as in torchattacks' ``DIFGSM``
    (``randint(low * size, size)``), so ``p = 1`` transforms every step; an earlier version drew
    from ``low * size ... size`` inclusive, which at 28 px left a third of the steps untransformed.
    When no size in ``[ceil(low * size), size - 1]`` exists (images under 10 px at ``low = 0.9``),
    no step is transformed: ``low`` is respected rather than ``p``.

    Parameters
    ----------
    model : nn.Module
    eps : float
        L-infinity budget in [0, 1].
    alpha : float, optional
        Step size, default ``eps / 5``.
    steps : int, default 10
    p : float, default 0.5
        Probability of transforming the input at a step.
    low : float, default 0.9
        Smallest resize factor.
    mu : float, default 0.0
        Momentum decay; 0 gives DI2-FGSM, > 0 M-DI2-FGSM (see :class:`~medadv_lib.attacks.MIM`).
    targeted : bool, default False
    random_start : bool, default False
    seed : int, optional
        Seeds the transforms, the random start and the target choice.
    feature_layers : sequence of str, optional
        Feature taps handed to :meth:`loss` (see :class:`~medadv_lib.attacks.base.IterativeAttack`).
    penalties : sequence of penalties, optional
        Loss terms that are always minimised (:mod:`medadv_lib.attacks.penalty`).
    fuse_bn : bool, default True
        Run the loop on a BatchNorm-folded copy of the model (see ``IterativeAttack``).

    Notes
    -----
    Works for any number of spatial dimensions (2-D images, 3-D volumes): every spatial size is
    scaled by the same factor.
    """

    name = "di"
    version = 2  # 2: the identity resize is excluded from the draw

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 p: float = 0.5, low: float = 0.9, mu: float = 0.0, targeted: bool = False,
                 random_start: bool = False, seed: int | None = None, feature_layers: Iterable[str] | None = None,
                 penalties: Iterable | None = None, fuse_bn: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=targeted,
                         random_start=random_start, seed=seed,
                         feature_layers=feature_layers, penalties=penalties, fuse_bn=fuse_bn)
        self.p = _check_unit(p, "p", "the probability of transforming a step's input")
        self.low = _check_unit(low, "low", "the smallest resize factor")
        if self.low == 0:
            raise ValueError("low=0 would resize images to nothing; use a factor in (0, 1], 0.9 by default.")
        self.mu = _check_mu(mu)

    def transform(self, x_adv: torch.Tensor, state: dict) -> torch.Tensor:
        generator = state["generator"]
        if x_adv.dim() < 3:
            raise ValueError(f"DI needs images with spatial dimensions, got shape {tuple(x_adv.shape)}.")
        # draw both numbers every step so the random stream does not depend on the coin's outcome
        coin = float(torch.rand((), generator=generator))
        spatial = x_adv.shape[2:]
        first = spatial[0]
        smallest = max(1, math.ceil(self.low * first))
        if smallest >= first:
            return x_adv  # no smaller size within `low` (see the class docstring)
        # the identity size is excluded (see the class docstring): every transformed step resizes
        size0 = int(torch.randint(smallest, first, (), generator=generator))
        if coin >= self.p:
            return x_adv
        scale = size0 / first
        sizes = [size0] + [max(1, round(d * scale)) for d in spatial[1:]]
        resized = F.interpolate(x_adv, size=sizes, mode="nearest")
        pad = []
        for full, small in zip(reversed(spatial), reversed(sizes), strict=True):
            before = int(torch.randint(0, full - small + 1, (), generator=generator))
            pad += [before, full - small - before]
        return F.pad(resized, pad, value=0.0)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "p": self.p, "low": self.low, "mu": self.mu}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p:g}, low={self.low:g}, mu={self.mu:g}"


def _check_unit(value, name: str, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number ({what}), got {value!r}.") from None
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name}={value!r} must be in [0, 1] ({what}).")
    return v
