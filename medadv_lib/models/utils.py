"""Small model utilities shared by attacks, detectors, analyses and training, written once.

* :data:`PENULTIMATE`: the name of the feature tap that holds the penultimate vector (the input
  of the classifier's last linear layer), the feature space of KD, BU, GMM and the HFC argument;
* :func:`eval_mode`: eval mode for a block of code, every submodule's ``training`` flag restored;
* :func:`frozen`: eval mode *and* no parameter gradients (what an attack or a feature extraction
  needs inside a training loop), both restored exactly;
* :func:`model_device`, :func:`spatial_mean`, :func:`resolve_layers`, :func:`as_float_images`.

No function here reads a profile or touches data on disk; they take a model or a tensor.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["PENULTIMATE", "as_float_images", "eval_mode", "frozen", "model_device", "resolve_layers",
           "spatial_mean"]

#: Tap name of the penultimate feature vector (see :class:`~medadv_lib.models.FeatureModel`).
PENULTIMATE = "penultimate"


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (else first buffer; CPU for a stateless module)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode and restore every submodule's own ``training`` flag afterwards.

    Restoring per submodule (not one ``model.train(flag)``) keeps mixed modes intact, e.g. a
    network whose BatchNorm layers were deliberately left in eval mode during fine-tuning.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextmanager
def frozen(model: nn.Module):
    """Eval mode with frozen parameters; both restored exactly afterwards, even on error.

    Freezing (``requires_grad_(False)``) keeps autograd from saving activations that only weight
    gradients need, so input gradients (attacks, the Mahalanobis pre-processing) and plain
    feature extraction cost less. Only the parameters that were trainable are unfrozen again,
    and every submodule gets its own ``training`` flag back, so calling this inside a training
    loop leaves ``model.train()`` and the optimiser's parameter set as they were.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    with eval_mode(model):
        try:
            for p in trainable:
                p.requires_grad_(False)
            yield model
        finally:
            for p in trainable:
                p.requires_grad_(True)


def spatial_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over every axis after the channel axis: ``(N, C, *spatial) -> (N, C)``.

    The feature of a convolutional layer in KD, LID, Mahalanobis (Lee et al. 2018), the GMM/UAD
    detector and HFC's penalty is this per-channel mean. A 2-D ``(N, D)`` input (the
    penultimate vector) is returned unchanged; a 3-D model's maps ``(N, C, D, H, W)`` work too.
    """
    if t.dim() < 2:
        raise ValueError(f"feature tensor of shape {tuple(t.shape)} has no channel axis")
    return t.flatten(2).mean(-1) if t.dim() > 2 else t


def resolve_layers(model_or_names, layers: Sequence[str] | str | None) -> list[str]:
    """Validate tap names and return them once each, in forward order (None = every tap).

    Parameters
    ----------
    model_or_names : FeatureModel or sequence of str
        A model with ``feature_names`` (forward order), or those names.
    layers : str, sequence of str or None

    Raises
    ------
    KeyError
        Naming the unknown taps and listing the valid ones.
    """
    names = list(getattr(model_or_names, "feature_names", model_or_names))
    if layers is None:
        return names
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise KeyError(f"unknown feature layer(s) {unknown}; this model has: {names}")
    order = {name: i for i, name in enumerate(names)}
    return sorted(dict.fromkeys(layers), key=order.__getitem__)


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (0-255) as float32 in [0, 1]; float images are returned unchanged.

    The library's models and attacks take [0, 1] images; the data sets store uint8. Floats are
    not rescaled or checked here (:func:`medadv_lib.validation.check_images` does that).
    """
    return x.float().div(255) if x.dtype == torch.uint8 else x
