"""Input checks shared by models, attacks and detectors.

Every check raises an error that names what was wrong and how to fix it, so that a user
feeding a uint8 image, a 3-D tensor or a NaN sees the cause instead of a silent wrong result.
"""
from __future__ import annotations

import math

import torch


def check_images(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Validate a batch of images: a floating tensor of shape (N, C, ...) with values in [0, 1].

    Raises
    ------
    TypeError
        If ``x`` is not a floating-point ``torch.Tensor``.
    ValueError
        If ``x`` has fewer than 3 dimensions, an empty batch, NaN/inf values or values outside [0, 1].
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of images, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} has dtype {x.dtype}; images must be floating point in [0, 1]. "
            f"Convert with `{name}.float() / 255` for uint8 images."
        )
    if x.dim() < 3:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected a batch (N, C, H, W). "
            f"Add a batch dimension with `{name}.unsqueeze(0)`."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}).")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values; clean the input before attacking or scoring it.")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}]; images must be in [0, 1]. "
            "Normalisation (mean/std) happens inside the model: pass un-normalised images."
        )
    return x


def check_labels(y: torch.Tensor, n: int, num_classes: int | None = None, name: str = "y") -> torch.Tensor:
    """Validate integer class labels of length ``n`` (and range when ``num_classes`` is known).

    Returns
    -------
    torch.Tensor
        ``y`` itself, or, when ``y`` was made under ``torch.inference_mode()`` and is now used
        outside it, a normal copy: autograd refuses to save inference tensors for backward
        (``cross_entropy`` saves its target), so callers that differentiate must use the return value.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}.")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"{name} has dtype {y.dtype}; class labels must be integers (torch.long).")
    if y.dim() != 1:
        raise ValueError(f"{name} has shape {tuple(y.shape)}; expected a 1-D tensor of class indices.")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but the image batch has {n} images.")
    if num_classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{name} has labels in [{int(y.min())}, {int(y.max())}] but the model has {num_classes} classes "
            f"(valid: 0..{num_classes - 1})."
        )
    if y.is_inference() and not torch.is_inference_mode_enabled():
        y = y.clone()  # outside inference mode the clone is a normal tensor autograd can save
    return y


def check_eps(eps: float, name: str = "eps") -> float:
    """Validate an L-infinity budget in [0, 1] (images live in [0, 1])."""
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {eps!r}.") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{name}={eps!r} is outside [0, 1]. Budgets are on the [0, 1] pixel scale: "
            f"write 8/255 (or medadv_lib.attacks.budget(8)) rather than 8."
        )
    return value


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """Validate an integer hyper-parameter such as a number of steps."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value
