"""Mahalanobis detector of Lee et al. (2018), "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks" (NeurIPS).

Per layer l, clean training features are modelled as class-conditional Gaussians with class means
mu_c and ONE tied covariance Sigma. Lee et al.'s confidence score is
M_l(h) = max_c -(h - mu_c)^T Sigma^-1 (h - mu_c); we report its negative, the squared
Mahalanobis distance to the closest class, so that higher = more adversarial. Layers are combined
by a logistic regression. Optionally each input is first moved by ``noise_magnitude`` along the
sign of the input gradient that raises M_l (Lee et al.'s input pre-processing), which separates
clean inputs (that move a lot towards their class) from adversarial ones.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from sklearn.covariance import EmpiricalCovariance

from ..density import TorchGaussianMixture
from .base import (
    BaseDetector,
    as_layer_dict,
    batch_slices,
    check_class_labels,
    check_is_adv,
    check_layers_match,
    make_combiner,
    reference_labels,
    resolve_device,
    select_layers,
    to_tensor,
)
from .features import eval_mode, layer_vectors, model_device


# rows x classes x features whitened per block (the (N, K, D) differences): 32 MB of float64
_BLOCK_ELEMENTS = 1 << 22


def _min_sq_distance(density: TorchGaussianMixture, h: torch.Tensor) -> torch.Tensor:
    """min_c (h - mu_c)^T P (h - mu_c): Lee et al.'s score with its sign flipped, differentiable in h."""
    return density.mahalanobis(h).min(1).values


class Mahalanobis(BaseDetector):
    """Mahalanobis-distance detector with a tied covariance per layer (Lee et al. 2018).

    Parameters
    ----------
    layers : list of str, optional
        Layers to use (None: all layers of ``X_ref``).
    noise_magnitude : float, default 0.0
        Input pre-processing step m (Lee et al.; 0.0005 on the Methods page, :ref:`methods-maha`). With m > 0 the detector
        reads images and needs ``model=``: ``X`` is then an image tensor in [0, 1], perturbed
        per layer to x - m * sign(grad_x d_l(x)) (clipped to [0, 1]) before its features are
        scored. With m = 0, ``X`` holds features and no model is needed.
    C : float, default 1.0
        Inverse regularisation of the layer-combining logistic regression.
    batch_size : int, default 256
    device : optional
        Where distances are computed (default: the GPU when present; with pre-processing, the
        model's device).
    fpr : float, default 0.1

    Attributes
    ----------
    layers_ : list of str
    layer_dims_ : dict[str, int]
    classes_ : ndarray
    class_means_ : dict[str, ndarray (K, D)]
    covariances_ : dict[str, EmpiricalCovariance]
        Tied covariance of the class-centred clean training features (``precision_`` is its
        pseudo-inverse, as in Lee et al.'s code).
    densities_ : dict[str, TorchGaussianMixture]
        The class Gaussians of each layer (``TorchGaussianMixture.tied`` with that precision),
        which compute the distances; on the device of the last scoring call.
    combiner_ : Pipeline or None
        None when fitted without ``is_adv`` (then :meth:`decision_function` needs one layer).
    """

    def __init__(self, layers=None, noise_magnitude: float = 0.0, C: float = 1.0, batch_size: int = 256,
                 device=None, fpr: float = 0.1):
        self.layers = layers
        self.noise_magnitude = noise_magnitude
        self.C = C
        self.batch_size = batch_size
        self.device = device
        self.fpr = fpr

    @property
    def needs_images(self):
        return float(self.noise_magnitude) > 0

    def fit(self, X=None, is_adv=None, *, X_ref, y_ref, model=None):
        """Fit class means and tied covariances on clean training features, then the combiner.

        Parameters
        ----------
        X : features (dict or array) or images, optional
            Fitting split; images when ``noise_magnitude > 0``.
        is_adv : array-like (N,), optional
            1 adversarial / 0 normal; without it only the Gaussian statistics are fitted.
        X_ref : dict of layer arrays or ndarray
            Clean training features.
        y_ref : array-like of int
            Their true labels.
        model : FeatureModel, optional
            Required when ``noise_magnitude > 0``.

        Returns
        -------
        self
        """
        self._reset()
        if float(self.noise_magnitude) < 0:
            raise ValueError(f"noise_magnitude must be >= 0, got {self.noise_magnitude}")
        ref = select_layers(as_layer_dict(X_ref, "X_ref"), self.layers, "X_ref")
        y = check_class_labels(y_ref, next(iter(ref.values())).shape[0], "y_ref")
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)
        self.layers_ = list(ref)
        self.layer_dims_ = OrderedDict((name, a.shape[1]) for name, a in ref.items())
        self.class_means_, self.covariances_, self.densities_ = OrderedDict(), OrderedDict(), OrderedDict()
        for name, a in ref.items():
            means = np.stack([a[codes == i].mean(0) for i in range(self.classes_.size)])
            # Lee et al.: one covariance of the class-centred features, shared by all classes
            self.covariances_[name] = EmpiricalCovariance(assume_centered=True).fit(a - means[codes])
            self.class_means_[name] = means
            self.densities_[name] = TorchGaussianMixture.tied(means, precision=self.covariances_[name].precision_)
        self.combiner_ = None
        if is_adv is not None:
            if X is None:
                raise ValueError("is_adv was given without the inputs X it labels.")
            S = self.layer_scores(X, model=model)
            self.combiner_ = make_combiner(self.C).fit(S, check_is_adv(is_adv, S.shape[0]))
        return self

    def _density(self, name, device) -> TorchGaussianMixture:
        return self.densities_[name].to(device)

    def layer_scores(self, X, *, model=None) -> np.ndarray:
        """Per-layer squared Mahalanobis distance to the closest class, (N, len(layers_))."""
        self._check_fitted()
        if float(self.noise_magnitude) > 0:
            return self._preprocessed_scores(X, model)
        if isinstance(X, torch.Tensor) and X.dim() == 4:
            raise ValueError("X looks like images but noise_magnitude=0 scores features; pass extract_features(...)"
                             ".layers, or set noise_magnitude > 0 with model=.")
        single = self.layers_[0] if len(self.layers_) == 1 else "features"
        X = check_layers_match(as_layer_dict(X, "X", single_name=single), self.layer_dims_, "X")
        device = resolve_device(self.device)
        n = next(iter(X.values())).shape[0]
        out = np.empty((n, len(self.layers_)), dtype=np.float64)
        with torch.no_grad():
            for j, name in enumerate(self.layers_):
                density = self._density(name, device)
                # batch_size counts images for the pre-processing; feature rows are cheap, so
                # score them in blocks sized by memory instead
                rows = max(1, _BLOCK_ELEMENTS // (density.n_components * density.n_features))
                for sl in batch_slices(n, rows):
                    out[sl, j] = _min_sq_distance(density, to_tensor(X[name][sl], device)).cpu().numpy()
        return out

    def _preprocessed_scores(self, x, model) -> np.ndarray:
        if model is None:
            raise ValueError("noise_magnitude > 0 needs the network: pass model=<FeatureModel> and images as X.")
        if not isinstance(x, torch.Tensor):
            raise TypeError("noise_magnitude > 0 perturbs the input: X must be an image tensor (N, C, H, W) in [0, 1].")
        model.check_input(x, "X")
        unknown = [name for name in self.layers_ if name not in model.feature_names]
        if unknown:
            raise KeyError(f"layers {unknown} are not taps of this model; it has: {model.feature_names}")
        device = model_device(model)
        m = float(self.noise_magnitude)
        out = np.empty((x.shape[0], len(self.layers_)), dtype=np.float64)
        with eval_mode(model):
            for j, name in enumerate(self.layers_):
                density = self._density(name, device)
                for sl in batch_slices(x.shape[0], self.batch_size):
                    xb = x[sl].to(device).detach().requires_grad_(True)
                    with torch.enable_grad():
                        h = layer_vectors(model, xb, [name])[1][name].double()
                        dist = _min_sq_distance(density, h).sum()
                        grad, = torch.autograd.grad(dist, xb)
                    # step against the distance gradient = towards the closest class (raises M_l)
                    x_hat = (xb.detach() - m * grad.sign()).clamp_(0.0, 1.0)
                    with torch.no_grad():
                        h_hat = layer_vectors(model, x_hat, [name])[1][name].double()
                        out[sl, j] = _min_sq_distance(density, h_hat).cpu().numpy()
        return out

    def decision_function(self, X, *, model=None) -> np.ndarray:
        """Combiner logit (higher = more adversarial); the distance itself for one layer without it."""
        S = self.layer_scores(X, model=model)
        if self.combiner_ is None:
            if S.shape[1] != 1:
                raise ValueError("Mahalanobis was fitted without is_adv, so there is no combiner for "
                                 f"{S.shape[1]} layers; fit with (X, is_adv) or use layer_scores().")
            return S[:, 0]
        return self.combiner_.decision_function(S)

    def _inputs(self, data):
        return data.images if self.needs_images else data.layers

    def fit_from_features(self, reference, data, is_adv, *, model=None):
        return self.fit(self._inputs(data), is_adv, X_ref=reference.layers, y_ref=reference_labels(reference),
                        model=model)

    def score_from_features(self, data, *, model=None):
        return self.decision_function(self._inputs(data), model=model)
