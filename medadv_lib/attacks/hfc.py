"""HFC: the hierarchical feature constraint (Yao, He, Lin, Ma, Zheng & Zhou, MICCAI 2021).

A *penalty* (:mod:`medadv_lib.attacks.penalty`) that any iterative attack of the loop takes
(``BIM(model, eps=e, targeted=True, penalties=[constraint])``): at every step it pulls the
adversarial features of each constrained layer towards the most likely component of a Gaussian
mixture fitted to the clean training features of the target class, so that the adversarial example
hides inside the target class's normal feature distribution and feature-space detectors miss it.
:func:`hfc` builds the base attack with the constraint and the authors' step rule in one call
(``get_attack("hfc", model, constraint=..., eps=...)``). The adaptive attacks HFC is compared
with, which lower one detector's score directly, are the penalties :class:`KDPenalty` and
:class:`MahalanobisPenalty`. Methods page: :ref:`methods-hfc`.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..density import TorchGaussianMixture
from .base import ATTACKS, get_attack, register_attack
from .penalty import Penalty, spatial_mean

__all__ = ["HFCConstraint", "KDPenalty", "MahalanobisPenalty", "default_hfc_layers", "fit_hfc_mixtures", "hfc"]

logger = logging.getLogger(__name__)


def default_hfc_layers(model: nn.Module, example: torch.Tensor, *, max_channels: int = 512) -> list[str]:
    """The authors' layer set: every ReLU-output tap with at most ``max_channels`` channels.

    Every tap of a :class:`~medadv_lib.models.FeatureModel` except ``"penultimate"`` is a ReLU output
    (the stem, the inner ReLU and the output of each residual block; each conv block of VGG), as in
    the authors' code, which skips layers wider than 512 channels and the penultimate vector.
    ``example`` is one input (1, C, ...) used to read the channel counts.
    """
    names = [n for n in getattr(model, "feature_names", []) if n != "penultimate"]
    if not names:
        raise TypeError("HFC needs a FeatureModel with named taps (medadv_lib.models.build_model).")
    with torch.no_grad():
        _, feats = model.forward_features(example[:1], names)
    return [n for n in names if feats[n].shape[1] <= max_channels]


def _as_float(value, name, *, minimum=0.0):
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(out) or out < minimum:
        raise ValueError(f"{name}={value!r} must be a finite number >= {minimum:g}.")
    return out


class _PerClassDensities(Penalty):
    """Shared machinery: densities per (class, layer), cast lazily to the features' device and dtype."""

    def __init__(self, densities: Mapping[int, Mapping[str, nn.Module]], *, lam: float = 1.0,
                 state_key: str | None = None):
        if not densities:
            raise ValueError("need densities for at least one class.")
        self.classes = sorted(int(c) for c in densities)
        layers = {tuple(densities[c]) for c in densities}
        if len(layers) != 1:
            raise ValueError("every class must have densities for the same layers.")
        self.layers = next(iter(layers))
        if not self.layers:
            raise ValueError("need at least one layer.")
        self.densities = {int(c): dict(d) for c, d in densities.items()}
        self.lam = _as_float(lam, "lam")
        self.state_key = state_key
        self._cast: dict = {}

    def _density(self, c: int, layer: str, like: torch.Tensor):
        key = (c, layer, like.device, like.dtype)
        if key not in self._cast:  # one cast per device/dtype: float32 attacks stay in float32
            self._cast[key] = self.densities[c][layer].to(device=like.device, dtype=like.dtype)
        return self._cast[key]

    def _classes_for(self, logits, target):
        # the target class in a targeted attack; in an untargeted one, the class the image is
        # currently predicted as (its features should look like that class's clean ones)
        t = target if target is not None else logits.detach().argmax(1)
        unknown = set(torch.unique(t).tolist()) - set(self.classes)
        if unknown:
            raise ValueError(f"{type(self).__name__} has densities for classes {self.classes}, not {sorted(unknown)}.")
        return t

    def _term(self, density, h):
        raise NotImplementedError

    def __call__(self, logits, features, y, target):
        t = self._classes_for(logits, target)
        total = None
        for layer in self.layers:
            h = spatial_mean(features[layer])
            if total is None:
                total = h.new_zeros(h.shape[0])
            for c in torch.unique(t).tolist():
                rows = (t == c).nonzero().squeeze(1)
                total = total.index_put((rows,), self._term(self._density(c, layer, h), h[rows]), accumulate=True)
        return self.lam * total


class HFCConstraint(_PerClassDensities):
    """The hierarchical feature constraint as a penalty (Yao et al., MICCAI 2021, Eq. 4).

    For the target class ``t`` and every constrained layer ``l`` with spatial-mean feature ``h_l``,
    the mixture component ``k*`` with the highest weighted log-likelihood is chosen *without
    gradient* at every step, and

    .. math:: J = \\lambda \\sum_l \\frac{1}{d_l} \\big\\| (h_l - \\mu_{k^*})^\\top L_{k^*} \\big\\|^2,

    with ``L`` the Cholesky factor of the component's precision: the squared Mahalanobis distance
    to the chosen component divided by the layer's dimension. All components of a layer are scored
    in one batched torch pass (:class:`~medadv_lib.density.TorchGaussianMixture`).

    Parameters
    ----------
    mixtures : mapping class -> (mapping layer -> TorchGaussianMixture)
        Fitted by :func:`fit_hfc_mixtures` on clean training features.
    lam : float, default 1.0
        Weight ``lambda`` (the authors' default).
    state_key : str, optional
        Cache key of the fitted mixtures (goes into the attack's spec).
    """

    def _term(self, density, h):
        return density.whitened_sq_distance(h)

    def hyperparameters(self) -> dict:
        first = self.densities[self.classes[0]]
        return {"lam": self.lam, "layers": list(self.layers), "classes": self.classes,
                "n_components": int(next(iter(first.values())).n_components)}


class MahalanobisPenalty(_PerClassDensities):
    """Adaptive attack on MAHA (Lee et al. 2018): the squared Mahalanobis distance of each layer's
    spatial-mean feature to the target class mean under the layer's tied covariance, divided by the
    layer's dimension as HFC's term is, summed over the detector's layers, times ``lam``.

    Build it from a fitted :class:`~medadv_lib.detectors.Mahalanobis` with :meth:`from_detector`.
    """

    def _term(self, density, h):
        return density.whitened_sq_distance(h, 0)

    @classmethod
    def from_detector(cls, detector, *, lam: float = 1.0, state_key: str | None = None) -> MahalanobisPenalty:
        """One single-component density per (class, layer) from a fitted Mahalanobis detector."""
        means, covs = getattr(detector, "class_means_", None), getattr(detector, "covariances_", None)
        if means is None or covs is None:
            raise ValueError("fit the Mahalanobis detector before building an adaptive penalty from it.")
        densities = {}
        for i, c in enumerate(detector.classes_):
            densities[int(c)] = {layer: TorchGaussianMixture.tied(np.asarray(means[layer])[i:i + 1],
                                                                  precision=covs[layer].precision_)
                                 for layer in detector.layers_}
        return cls(densities, lam=lam, state_key=state_key)

    def hyperparameters(self) -> dict:
        return {"lam": self.lam, "layers": list(self.layers), "classes": self.classes}


class KDPenalty(Penalty):
    """Adaptive attack on KD (Feinman et al. 2017): the negative log kernel density of the
    penultimate feature under the target class's clean training features, at the detector's
    bandwidth, times ``lam``:
    ``-log( (1/n) sum_i exp(-||h - x_i||^2 / (2 sigma^2)) )`` (the normalising constant dropped).

    Build it from a fitted :class:`~medadv_lib.detectors.KD` with :meth:`from_detector`.
    """

    def __init__(self, references: Mapping[int, torch.Tensor | np.ndarray], *, bandwidth: float,
                 layer: str = "penultimate", lam: float = 1.0, state_key: str | None = None):
        if not references:
            raise ValueError("need reference features for at least one class.")
        self.refs = {int(c): torch.as_tensor(np.asarray(r), dtype=torch.float64) for c, r in references.items()}
        self.classes = sorted(self.refs)
        self.bandwidth = _as_float(bandwidth, "bandwidth", minimum=1e-12)
        self.layer, self.layers = layer, (layer,)
        self.lam = _as_float(lam, "lam")
        self.state_key = state_key
        self._cast: dict = {}

    @classmethod
    def from_detector(cls, detector, *, lam: float = 1.0, state_key: str | None = None) -> KDPenalty:
        kdes = getattr(detector, "kdes_", None)
        if kdes is None:
            raise ValueError("fit the KD detector before building an adaptive penalty from it.")
        refs = {c: np.asarray(k.tree_.data) for c, k in kdes.items()}
        return cls(refs, bandwidth=float(detector.bandwidth), layer=detector.layer, lam=lam, state_key=state_key)

    def __call__(self, logits, features, y, target):
        t = target if target is not None else logits.detach().argmax(1)
        h = spatial_mean(features[self.layer])
        out = h.new_zeros(h.shape[0])
        for c in torch.unique(t).tolist():
            if c not in self.refs:
                raise ValueError(f"KDPenalty has reference features for classes {self.classes}, not {c}.")
            key = (c, h.device, h.dtype)
            if key not in self._cast:
                self._cast[key] = self.refs[c].to(device=h.device, dtype=h.dtype)
            ref = self._cast[key]
            rows = (t == c).nonzero().squeeze(1)
            d2 = torch.cdist(h[rows], ref).square()
            value = -(torch.logsumexp(-0.5 * d2 / self.bandwidth ** 2, dim=1) - math.log(ref.shape[0]))
            out = out.index_put((rows,), value, accumulate=True)
        return self.lam * out

    def hyperparameters(self) -> dict:
        return {"lam": self.lam, "bandwidth": self.bandwidth, "layer": self.layer, "classes": self.classes}


def fit_hfc_mixtures(features: Mapping[str, np.ndarray], labels, *, n_components: int = 1, seed: int = 0,
                     n_init: int = 2, max_iter: int = 1000, classes: Iterable[int] | None = None,
                     **bgm_kwargs) -> dict[int, dict[str, TorchGaussianMixture]]:
    """One ``BayesianGaussianMixture`` per (class, layer) on clean training features, as torch densities.

    The authors' settings: full covariance, ``n_init=2``, ``max_iter=1000``, the rest at
    scikit-learn's defaults; ``n_components`` is K (their README fits 64, their argparse default is 2
    and their attack script loads 1).

    Parameters
    ----------
    features : mapping layer -> array (N, d_l)
        Spatial-mean features of clean training images (e.g. from
        :func:`medadv_lib.detectors.extract_features`).
    labels : array-like (N,)
        Their true classes.
    classes : iterable of int, optional
        Fit only these classes (default: every class present).
    """
    from sklearn.mixture import BayesianGaussianMixture

    y = np.asarray(labels).reshape(-1)
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"n_components must be an int >= 1, got {n_components!r}.")
    classes = sorted(int(c) for c in (np.unique(y) if classes is None else classes))
    out: dict[int, dict[str, TorchGaussianMixture]] = {}
    for c in classes:
        rows = y == c
        if rows.sum() < max(2, n_components):
            raise ValueError(f"class {c} has {int(rows.sum())} reference images; the mixture needs at least "
                             f"max(2, n_components={n_components}).")
        out[c] = {}
        for layer, a in features.items():
            a = np.asarray(a, dtype=np.float64)
            if a.shape[0] != len(y):
                raise ValueError(f"features[{layer!r}] has {a.shape[0]} rows but labels has {len(y)}.")
            start = time.perf_counter()
            gm = BayesianGaussianMixture(n_components=n_components, covariance_type="full", n_init=n_init,
                                         max_iter=max_iter, random_state=seed, **bgm_kwargs).fit(a[rows])
            logger.info("HFC mixture class %d, layer %s (d=%d, n=%d, K=%d): %.2f s", c, layer, a.shape[1],
                        int(rows.sum()), n_components, time.perf_counter() - start)
            # the authors score components with the plug-in density (weights_, precisions_cholesky_)
            out[c][layer] = TorchGaussianMixture.from_sklearn(gm, variational=False)
    return out


def hfc(model: nn.Module, *, constraint: Penalty, eps: float, base: str = "bim", step_fraction: float = 1 / 40,
        steps: int | None = None, targeted: bool = True, **kwargs):
    """An HFC attack in one call: ``base`` with ``constraint`` and the authors' step rule.

    The HFC code takes more, smaller steps than its base attacks: ``step = eps * step_fraction``
    (1/40 for their fundus task, 1/100 for chest X-ray) and ``steps = 2 * eps / step`` (80 at 1/40).
    Targeted by default, as in the paper.

    Parameters
    ----------
    model : nn.Module
    constraint : Penalty
        Usually an :class:`HFCConstraint`; any penalty works (e.g. the adaptive ones).
    eps : float
    base : str
        Any registered iterative attack: ``"bim"`` (default), ``"pgd"``, ``"mim"``, ``"di"``, ``"cw"``.
    step_fraction : float
    steps : int, optional
        Overrides ``2 / step_fraction``.
    **kwargs
        Passed to the base attack (``seed``, ``penalties`` to add more, ``kappa`` for CW...).
    """
    if base.lower() in ("hfc", "fgsm", "cw_l2") or base.lower() not in ATTACKS:
        raise ValueError(f"base must be an iterative attack of the loop ({', '.join(sorted(set(ATTACKS) - {'hfc', 'fgsm', 'cw_l2'}))}), "
                         f"got {base!r}.")
    step_fraction = _as_float(step_fraction, "step_fraction", minimum=1e-9)
    steps = steps if steps is not None else max(1, round(2 / step_fraction))
    penalties = [constraint, *kwargs.pop("penalties", [])]
    return get_attack(base, model, eps=eps, alpha=eps * step_fraction, steps=steps, targeted=targeted,
                      penalties=penalties, **kwargs)


register_attack("hfc")(hfc)
