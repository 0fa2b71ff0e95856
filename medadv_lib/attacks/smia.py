"""SMIA: the stabilized medical image attack (Qi, Gong, Song, Ma & Zheng, ICLR 2021)."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .base import IterativeAttack, register_attack

__all__ = ["SMIA", "gaussian_kernel", "smooth"]

DIVERGENCES = ("kl", "ce_hard")


def gaussian_kernel(size: int = 3, sigma: float = 1.0, spatial_dims: int = 2, *,
                    dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """A centred, isotropic Gaussian kernel of shape ``(size,) * spatial_dims`` that sums to one.

    The SMIA paper smooths the perturbation step with a 3x3 Gaussian of sigma 1; the released code
    builds an asymmetric kernel laid out for another framework. This one is symmetric in every
    axis by construction (an outer product of one normalised 1-D Gaussian).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd int >= 1 (so the kernel has a centre), got {size!r}.")
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}.")
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    g /= g.sum()
    kernel = g
    for _ in range(spatial_dims - 1):
        kernel = kernel[..., None] * g
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def smooth(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``x`` (N, C, *spatial) with ``kernel`` on its own (no channel mixing).

    Replicate padding keeps the output's shape and leaves a constant image unchanged.
    """
    d = kernel.dim()
    if x.dim() != d + 2:
        raise ValueError(f"a {d}-D kernel smooths (N, C, {', '.join('S' * d)}) inputs, got shape {tuple(x.shape)}.")
    c = x.shape[1]
    weight = kernel.to(dtype=x.dtype, device=x.device).expand(c, 1, *kernel.shape)
    pad = [kernel.shape[0] // 2] * (2 * d)
    conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
    return conv(F.pad(x, pad, mode="replicate"), weight, groups=c)


@register_attack("smia")
class SMIA(IterativeAttack):
    """Stabilized medical image attack, L-infinity.

    Projected signed-gradient steps on

    .. math:: \\beta_1\\, \\mathrm{CE}(f(x'), y) - \\beta_2\\, D\\big(f(x'),\\, f(x' + G * r)\\big)

    where ``r`` is the update the previous step took (``alpha * sign(grad)``), ``G * r`` that update
    smoothed per channel by the Gaussian kernel :func:`gaussian_kernel`, and ``D`` the KL divergence
    between the two predictions: the loss *deviation* term pushes the prediction away from ``y``,
    the loss *stabilisation* term keeps it steady under a smoothed version of the perturbation
    (Qi et al., "Stabilized medical image attacks", ICLR 2021; Methods page :ref:`methods-smia`).
    The first step has no previous update and uses the deviation term alone. Targeted: the loop
    descends ``beta1 * CE(f(x'), t) + beta2 * D``, so the stabilisation term is always minimised.

    Unlike the released code, every iterate is projected onto the eps-ball and [0, 1] (theirs grows
    to ``steps * eps``), the kernel is symmetric and per channel, and the defaults do not reduce the
    attack to I-FGSM.

    Parameters
    ----------
    model : nn.Module
    eps : float
        L-infinity budget in [0, 1].
    alpha : float, optional
        Step size, default ``eps / 5`` (as BIM).
    steps : int, default 10
    beta1 : float, default 1.0
        Weight of the deviation (cross-entropy) term.
    beta2 : float, default 1.0
        Weight of the stabilisation term; 0 gives BIM exactly. The paper's value is not available
        offline; the SMIA chapter sweeps it and says which one it uses.
    kernel_size : int, default 3
    sigma : float, default 1.0
        Size and width of the Gaussian kernel (the paper: 3x3, sigma 1). Its spatial rank follows
        the input: 2-D images get a 2-D kernel, volumes ``(N, C, D, H, W)`` a 3-D one.
    divergence : {"kl", "ce_hard"}
        ``"kl"``: ``KL(softmax f(x') || softmax f(x' + G*r))``; ``"ce_hard"``: the released code's
        cross-entropy of ``f(x')`` to the class predicted on the smoothed input.
    targeted, random_start, seed, feature_layers, penalties, fuse_bn
        As for :class:`~medadv_lib.attacks.base.IterativeAttack`.
    """

    name = "smia"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 beta1: float = 1.0, beta2: float = 1.0, kernel_size: int = 3, sigma: float = 1.0,
                 divergence: str = "kl", targeted: bool = False, random_start: bool = False,
                 seed: int | None = None, feature_layers: Iterable[str] | None = None,
                 penalties: Iterable | None = None, fuse_bn: bool = True):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=targeted, random_start=random_start,
                         seed=seed, feature_layers=feature_layers, penalties=penalties, fuse_bn=fuse_bn)
        self.beta1 = self._check_weight(beta1, "beta1")
        self.beta2 = self._check_weight(beta2, "beta2")
        gaussian_kernel(kernel_size, sigma)  # validates both
        self.kernel_size, self.sigma = kernel_size, float(sigma)
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}.")
        self.divergence = divergence

    @staticmethod
    def _check_weight(value, name):
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, got {value!r}.") from None
        if not math.isfinite(out) or out < 0:
            raise ValueError(f"{name}={value!r} must be a finite weight >= 0.")
        return out

    def stabilization(self, logits: torch.Tensor, smoothed_logits: torch.Tensor) -> torch.Tensor:
        """Per-sample ``D(f(x'), f(x' + G*r))`` (N,)."""
        if self.divergence == "kl":
            log_p, log_q = F.log_softmax(logits, 1), F.log_softmax(smoothed_logits, 1)
            return (log_p.exp() * (log_p - log_q)).sum(1)
        return F.cross_entropy(logits, smoothed_logits.argmax(1).detach(), reduction="none")

    def objective(self, x_adv, y, target, state):
        x_in = x_adv if state.get("final") else self.transform(x_adv, state)
        logits, features = self.forward(x_in, state["layers"])
        task = self.loss(logits, features, y, target)
        if self.beta1 != 1.0:
            task = self.beta1 * task
        r = state.get("delta_step")
        if self.beta2 and r is not None:  # no previous update at the first step (and at final_loss)
            kernel = gaussian_kernel(self.kernel_size, self.sigma, x_adv.dim() - 2, dtype=x_adv.dtype)
            smoothed_logits, _ = self.forward((x_in + smooth(r, kernel)).clamp(0.0, 1.0))
            stab = self.beta2 * self.stabilization(logits, smoothed_logits)
            task = task - stab if self.maximize else task + stab
        return self.with_penalties(task, logits, features, y, target), logits, features

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "beta1": self.beta1, "beta2": self.beta2,
                "kernel_size": self.kernel_size, "sigma": self.sigma, "divergence": self.divergence}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, beta1={self.beta1:g}, beta2={self.beta2:g}, "
                f"kernel={self.kernel_size}x{self.kernel_size}/sigma {self.sigma:g}, divergence={self.divergence}")
