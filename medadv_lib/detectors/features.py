"""The one torch -> numpy boundary of the detectors: features of a model on a batch of images.

Every detector sees the network through the functions here, so that "the feature of layer l" means
the same thing everywhere: the **spatial mean** of the layer's map, a ``C``-vector per image
(``(N, C, *spatial) -> (N, C)``; the ``"penultimate"`` tap is already a vector). The Methods page (:ref:`methods-protocol`)
section 4 uses these spatial means for KD, LID, Mahalanobis, SVM and GMM; the DNN detector
(Metzen et al. 2017) reads the full maps.

Precision: layer vectors and logits come back as **float64** numpy arrays, because the detectors
invert covariances and sum kernel densities in float64; full maps (large) come back as float32.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..models.utils import PENULTIMATE, eval_mode, model_device, resolve_layers, spatial_mean
from ..validation import check_labels


def stage_outputs(model_or_names) -> list[str]:
    """The tap that ends each stage of a network, in forward order.

    Taps are grouped by the part of their name before the first dot (``layer3.1`` -> ``layer3``,
    ``block2.relu1`` -> ``block2``); inner taps (``.relu<k>``), the stem and the penultimate vector
    are left out, and the last tap of each group is kept: ``layer1.1 ... layer4.1`` for a
    ResNet-18, ``block1 ... block3`` for the small CNN, ``block1 ... block5`` for VGG-16. Handy to
    give a detector a few representative layers instead of every tap.

    Parameters
    ----------
    model_or_names : FeatureModel or sequence of str
        A model with ``feature_names``, or the tap names themselves.
    """
    names = list(getattr(model_or_names, "feature_names", model_or_names))
    last: dict[str, str] = {}
    for name in names:
        if name in ("stem", PENULTIMATE) or ".relu" in name:
            continue
        last[name.split(".", 1)[0]] = name  # dicts keep first-insertion order: stages stay in order
    return list(last.values())


def layer_vectors(model, x: torch.Tensor, layers: Sequence[str]):
    """Logits and spatial-mean vectors of one batch, *with* autograd (for input gradients).

    ``x`` must already be on the model's device. Used by :func:`extract_features` under
    ``torch.no_grad`` and by the Mahalanobis input pre-processing, which needs gradients.
    """
    logits, maps = model.forward_features(x, layers)
    return logits, OrderedDict((name, spatial_mean(m)) for name, m in maps.items())


def forward_maps(model, x: torch.Tensor, layers: Sequence[str] | None = None):
    """Logits and full feature maps of one batch, on the model's device, in eval mode, no grad."""
    layers = resolve_layers(model, layers)
    with torch.no_grad(), eval_mode(model):
        return model.forward_features(x.to(model_device(model)), layers)


@dataclass
class Features:
    """Per-layer features of a set of images, as the detectors consume them.

    Attributes
    ----------
    layers : dict[str, ndarray]
        Layer name -> float64 array (N, C_l) of spatial means, in forward order.
    logits : ndarray, float64, (N, K)
    pred : ndarray, int64, (N,)
        ``logits.argmax(1)``: the model's predicted class.
    labels : ndarray of int64 or None
        True labels when known (needed for the clean training reference).
    images : torch.Tensor or None
        The images (on the CPU) for detectors that query the model (BU, DNN, Mahalanobis
        pre-processing).
    maps : dict[str, ndarray] or None
        Full float32 feature maps when requested.
    """

    layers: OrderedDict[str, np.ndarray]
    logits: np.ndarray
    pred: np.ndarray
    labels: np.ndarray | None = None
    images: torch.Tensor | None = None
    maps: OrderedDict[str, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def layer(self, name: str) -> np.ndarray:
        if name not in self.layers:
            raise KeyError(f"layer {name!r} was not extracted; available: {list(self.layers)}")
        return self.layers[name]

    def subset(self, index) -> Features:
        """Rows ``index`` (an integer array or a boolean mask) of every field."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        tidx = torch.as_tensor(index, dtype=torch.long)
        return Features(
            layers=OrderedDict((k, v[index]) for k, v in self.layers.items()),
            logits=self.logits[index], pred=self.pred[index],
            labels=None if self.labels is None else self.labels[index],
            images=None if self.images is None else self.images[tidx],
            maps=None if self.maps is None else OrderedDict((k, v[index]) for k, v in self.maps.items()),
        )

    @classmethod
    def concat(cls, parts: Iterable[Features]) -> Features:
        """Stack feature sets with the same layers row-wise."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        names = list(parts[0].layers)
        if any(list(p.layers) != names for p in parts):
            raise ValueError("cannot concatenate feature sets with different layers")

        def cat(values):
            return None if any(v is None for v in values) else np.concatenate(values)

        images = [p.images for p in parts]
        maps = None
        if all(p.maps is not None for p in parts):
            maps = OrderedDict((k, np.concatenate([p.maps[k] for p in parts])) for k in parts[0].maps)
        return cls(
            layers=OrderedDict((k, np.concatenate([p.layers[k] for p in parts])) for k in names),
            logits=np.concatenate([p.logits for p in parts]), pred=np.concatenate([p.pred for p in parts]),
            labels=cat([p.labels for p in parts]),
            images=None if any(i is None for i in images) else torch.cat(images),
            maps=maps,
        )

    def with_labels(self, labels) -> Features:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(self),):
            raise ValueError(f"labels have shape {labels.shape}; expected ({len(self)},)")
        return replace(self, labels=labels)


def extract_features(model, x: torch.Tensor, layers: Sequence[str] | str | None = None, *,
                     labels: torch.Tensor | np.ndarray | None = None, batch_size: int = 256,
                     maps: bool = False, keep_images: bool = False) -> Features:
    """Spatial-mean features, logits and predictions of ``model`` on images ``x``.

    Runs in batches on the model's device, in eval mode (restored afterwards) and under
    ``torch.no_grad``.

    Parameters
    ----------
    model : FeatureModel
    x : torch.Tensor
        Images in [0, 1], shape (N, C, H, W), on any device.
    layers : sequence of str, optional
        Tap names (``model.feature_names``); None means all. Unknown names raise ``KeyError``
        listing the valid ones.
    labels : array-like of int, optional
        True labels stored alongside (the clean training reference needs them).
    batch_size : int
    maps : bool
        Also return the full float32 maps (memory: N x C x H x W per layer).
    keep_images : bool
        Keep a CPU copy of ``x`` in the result (for BU, DNN and Mahalanobis pre-processing).

    Returns
    -------
    Features
    """
    names = resolve_layers(model, layers)
    model.check_input(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if labels is not None:
        labels = torch.as_tensor(labels) if not isinstance(labels, torch.Tensor) else labels
        labels = check_labels(labels, x.shape[0], getattr(model, "num_classes", None), "labels")
        labels = labels.detach().cpu().numpy().astype(np.int64)
    device = model_device(model)
    vectors = {name: [] for name in names}
    full = {name: [] for name in names} if maps else None
    logits_parts = []
    with torch.no_grad(), eval_mode(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(device)
            logits, fmaps = model.forward_features(xb, names)
            logits_parts.append(logits.double().cpu())
            for name, fmap in fmaps.items():
                vectors[name].append(spatial_mean(fmap).double().cpu())
                if maps:
                    full[name].append(fmap.float().cpu())
    logits = torch.cat(logits_parts).numpy()
    return Features(
        layers=OrderedDict((n, torch.cat(v).numpy()) for n, v in vectors.items()),
        logits=logits, pred=logits.argmax(1).astype(np.int64), labels=labels,
        images=x.detach().cpu() if keep_images else None,
        maps=None if not maps else OrderedDict((n, torch.cat(v).numpy()) for n, v in full.items()),
    )
