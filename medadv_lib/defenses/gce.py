"""Guided complement entropy (Chen et al., ICCV 2019), the GCE baseline of the SSAT work."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["guided_complement_entropy"]

#: Guard terms of the authors' code (github henry8527/GCE): they keep ``1 - p_g`` and ``log P``
#: finite when the model is certain; kept so that our loss equals theirs to round-off.
_EPS_COMPLEMENT, _EPS_LOG = 1e-7, 1e-10


def guided_complement_entropy(logits: torch.Tensor, y: torch.Tensor, *, alpha: float = 0.333,
                              normalizer: str = "log(K-1)", reduction: str = "mean") -> torch.Tensor:
    """GCE loss: the complement entropy of the wrong classes, guided by the true class's probability.

    With ``p = softmax(logits)``, ``g`` the true class and ``P_ij = p_ij / (1 - p_ig)`` the
    distribution over the wrong classes,

    .. math:: \\mathrm{GCE}_i = p_{ig}^{\\alpha} \\sum_{j \\ne g} P_{ij} \\log P_{ij} \\,/\\, Z,

    which is minus the complement entropy: minimising it flattens the wrong classes (Chen et al.,
    "Improving adversarial robustness via guided complement entropy", ICCV 2019; used *alone*, in
    place of cross-entropy, in the SSAT comparison of Li, Pan & Zhu 2021). See the Methods page
    (:ref:`methods-gce`).

    Parameters
    ----------
    logits : torch.Tensor
        (N, K) with K >= 3.
    y : torch.Tensor
        (N,) true classes.
    alpha : float, default 0.333
        Guiding exponent (the paper's value).
    normalizer : {"log(K-1)", "log K"}
        ``Z``: the paper normalises the complement entropy by ``log(K - 1)``, its largest value; the
        released code divides by ``log K``.
    reduction : {"mean", "none", "sum"}

    Raises
    ------
    ValueError
        For K < 3: with two classes the complement holds one class, ``P = 1`` and the loss is
        identically zero, so GCE cannot train a binary classifier.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, K), got {tuple(logits.shape)}.")
    k = logits.shape[1]
    if k < 3:
        raise ValueError(f"guided complement entropy needs at least 3 classes, got K={k}: with two classes the "
                         "complement distribution is a single class with probability 1, so the loss is identically "
                         "zero and gives no gradient. Train a binary task with cross-entropy (NT/AT/SSAT).")
    if normalizer not in ("log(K-1)", "log K"):
        raise ValueError(f"normalizer must be 'log(K-1)' (the paper) or 'log K' (the released code), got {normalizer!r}.")
    if reduction not in ("mean", "none", "sum"):
        raise ValueError(f"reduction must be 'mean', 'none' or 'sum', got {reduction!r}.")
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite exponent >= 0, got {alpha!r}.")
    p = F.softmax(logits, dim=1)
    p_true = p.gather(1, y[:, None])
    complement = p / (1 - p_true + _EPS_COMPLEMENT)
    wrong = torch.ones_like(p).scatter_(1, y[:, None], 0.0)
    neg_entropy = (complement * torch.log(complement + _EPS_LOG) * wrong).sum(1)
    z = math.log(k - 1) if normalizer == "log(K-1)" else math.log(k)
    loss = (p_true.squeeze(1) + _EPS_COMPLEMENT) ** alpha * neg_entropy / z
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss
