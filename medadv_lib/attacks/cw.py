"""CW-Linf: iterative L-infinity attack on the Carlini & Wagner margin loss (IEEE S&P 2017)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .base import IterativeAttack, register_attack

__all__ = ["CW", "margin_loss"]


def margin_loss(logits: torch.Tensor, labels: torch.Tensor, *, kappa: float = 0.0,
                targeted: bool = True) -> torch.Tensor:
    """Per-sample Carlini-Wagner margin loss (their objective f_6, shifted to be >= 0).

    Targeted: ``max(max_{j != t} z_j - z_t + kappa, 0)``; untargeted:
    ``max(z_y - max_{j != y} z_j + kappa, 0)``. Zero once the margin ``kappa`` is reached.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(1)
    margin = others - own if targeted else own - others
    return (margin + kappa).clamp_min(0.0)


@register_attack("cw")
class CW(IterativeAttack):
    """CW-Linf: BIM on the Carlini-Wagner margin loss, L-infinity.

    Carlini & Wagner, "Towards evaluating the robustness of neural networks", IEEE S&P 2017,
    in the projected-gradient L-infinity form (as in Madry et al. 2018): the loop *descends*
    :func:`margin_loss` in both modes, so a sample stops moving once its margin ``kappa`` is reached.

    Parameters
    ----------
    model : nn.Module
    eps : float
        L-infinity budget in [0, 1].
    alpha : float, optional
        Step size, default ``eps / 5``.
    steps : int, default 10
    kappa : float, default 0.0
        Confidence margin on the logits.
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

    name = "cw"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 kappa: float = 0.0, targeted: bool = False, random_start: bool = False,
                 seed: int | None = None, feature_layers: Iterable[str] | None = None,
                 penalties: Iterable | None = None, fuse_bn: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=targeted,
                         random_start=random_start, seed=seed,
                         feature_layers=feature_layers, penalties=penalties, fuse_bn=fuse_bn)
        try:
            self.kappa = float(kappa)
        except (TypeError, ValueError):
            raise TypeError(f"kappa must be a number (the logit margin), got {kappa!r}.") from None
        if not math.isfinite(self.kappa) or self.kappa < 0:
            raise ValueError(f"kappa={kappa!r} must be a finite margin >= 0.")

    @property
    def maximize(self) -> bool:
        return False  # the margin loss is minimised in both modes

    def loss(self, logits: torch.Tensor, features: Mapping[str, torch.Tensor], y: torch.Tensor,
             target: torch.Tensor | None) -> torch.Tensor:
        if self.targeted:
            return margin_loss(logits, target, kappa=self.kappa, targeted=True)
        return margin_loss(logits, y, kappa=self.kappa, targeted=False)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "kappa": self.kappa}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kappa={self.kappa:g}"
