"""Per-class Gaussian mixture detector: the unsupervised adversarial detector (UAD) of Li, Pan &
Zhu (SSAT/UAD; Methods page, :ref:`methods-uad`), also the density model behind the HFC constraint.

For each class, a Gaussian mixture is fitted by EM to the clean training penultimate features,
with a small value added to the covariance diagonal; an input whose feature is unlikely under its
**predicted** class is flagged. Fitting is scikit-learn's; scoring goes through the shared torch
density (:class:`medadv_lib.density.TorchGaussianMixture`, equal to ``score_samples``), the same
module the HFC constraint differentiates.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from ..density import TorchGaussianMixture
from .base import (BaseDetector, batch_slices, check_class_labels, check_known_classes, check_n_features,
                   reference_labels, resolve_device, single_layer, to_tensor)

# rows x components x features scored per block: bounds the (N, K, D) whitened differences at
# 32 MB of float64 whatever the mixture size
_BLOCK_ELEMENTS = 1 << 22


class GMMDetector(BaseDetector):
    """Negative log-likelihood under the predicted class's Gaussian mixture.

    Parameters
    ----------
    n_components : int, default 1
        Mixture components per class.
    covariance_type : {"full", "tied", "diag", "spherical"}, default "full"
    reg_covar : float, default 1e-4
        Added to the covariance diagonal (keeps EM stable on correlated ReLU features).
    max_iter : int, default 200
    n_init : int, default 1
    random_state : int, default 0
    layer : str, default "penultimate"
    fpr : float, default 0.1
        UAD rejects inputs scoring above the threshold that :meth:`calibrate` sets.

    Attributes
    ----------
    classes_ : ndarray
    gmms_ : dict[int, GaussianMixture]
        The fitted scikit-learn mixtures.
    densities_ : dict[int, TorchGaussianMixture]
        The same mixtures as torch modules (float64), on the device of the last scoring call (the
        GPU when there is one).
    n_features_in_ : int
    """

    def __init__(self, n_components: int = 1, covariance_type: str = "full", reg_covar: float = 1e-4,
                 max_iter: int = 200, n_init: int = 1, random_state=0, layer: str = "penultimate",
                 fpr: float = 0.1):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.layer = layer
        self.fpr = fpr

    def fit(self, X, y):
        """Fit one mixture per class on clean training features ``X`` with true labels ``y``."""
        self._reset()
        X = single_layer(X, self.layer, "X")
        y = check_class_labels(y, X.shape[0], "y")
        self.classes_ = np.unique(y)
        self.gmms_ = {}
        for c in self.classes_:
            Xc = X[y == c]
            if Xc.shape[0] < max(2, int(self.n_components)):
                raise ValueError(f"class {int(c)} has {Xc.shape[0]} training samples, too few for "
                                 f"{self.n_components} mixture component(s).")
            self.gmms_[int(c)] = GaussianMixture(
                n_components=self.n_components, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                max_iter=self.max_iter, n_init=self.n_init, random_state=self.random_state).fit(Xc)
        self.densities_ = {c: TorchGaussianMixture.from_sklearn(g) for c, g in self.gmms_.items()}
        self.n_features_in_ = X.shape[1]
        return self

    def _log_prob(self, c: int, X: np.ndarray, device) -> np.ndarray:
        """``score_samples`` of class ``c``'s mixture, in blocks on ``device``."""
        density = self.densities_[c].to(device)
        out = np.empty(X.shape[0], dtype=np.float64)
        rows = max(1, _BLOCK_ELEMENTS // (density.n_components * density.n_features))
        with torch.no_grad():
            for sl in batch_slices(X.shape[0], rows):
                out[sl] = density.log_prob(to_tensor(X[sl], device)).cpu().numpy()
        return out

    def log_likelihood(self, X) -> np.ndarray:
        """Log-likelihood of every sample under every class's mixture, shape (N, n_classes)."""
        self._check_fitted()
        X = check_n_features(single_layer(X, self.layer, "X"), self.n_features_in_, "X")
        device = resolve_device()
        return np.column_stack([self._log_prob(int(c), X, device) for c in self.classes_])

    def decision_function(self, X, y_pred) -> np.ndarray:
        """Negative log-likelihood under the predicted class: higher = less likely = more adversarial."""
        self._check_fitted()
        X = check_n_features(single_layer(X, self.layer, "X"), self.n_features_in_, "X")
        y_pred = check_class_labels(y_pred, X.shape[0], "y_pred")
        check_known_classes(y_pred, self.classes_, "a fitted mixture")
        device = resolve_device()
        out = np.empty(X.shape[0], dtype=np.float64)
        for c in np.unique(y_pred):
            rows = y_pred == c
            out[rows] = -self._log_prob(int(c), X[rows], device)
        return out

    def fit_from_features(self, reference, data, is_adv, *, model=None):
        return self.fit(reference.layer(self.layer), reference_labels(reference))

    def score_from_features(self, data, *, model=None):
        return self.decision_function(data.layer(self.layer), data.pred)


#: UAD as Li, Pan & Zhu (ISBI 2021, Sec. 2.2) describe it: per class a full-covariance Gaussian
#: mixture fitted by EM on clean training penultimate features, "a small non-negative
#: regularization ... added to the diagonal of the covariance matrices". The paper gives neither
#: the number of components nor the value; these are ours: two components per class (a mixture, as
#: the paper's notation ``mu_ij`` has, yet few enough to fit on ~100 images per class) and 1e-3,
#: 1000x scikit-learn's default, because at our scale a class has fewer clean images than the
#: feature has dimensions and the sample covariance is singular.
UAD_SETTINGS = {"n_components": 2, "covariance_type": "full", "reg_covar": 1e-3, "max_iter": 200, "n_init": 1}


def uad(*, fpr: float = 0.05, random_state: int = 0, **overrides) -> GMMDetector:
    """The unsupervised adversarial detector (UAD) of the SSAT work: :class:`GMMDetector` with
    :data:`UAD_SETTINGS`.

    Fit it on clean training features (``fit(X, y)``), then ``calibrate(X_clean, y_pred_clean)``
    on held-out clean features sets the reject threshold so that a fraction ``fpr`` of clean
    inputs is rejected; ``predict`` then flags (rejects) the inputs above it. Scoring goes through
    :class:`~medadv_lib.density.TorchGaussianMixture`.

    Parameters
    ----------
    fpr : float, default 0.05
        Clean false-positive (rejection) rate of the calibrated threshold.
    random_state : int, default 0
        Seeds EM's initialisation.
    **overrides
        Any :class:`GMMDetector` parameter, replacing the preset's value (e.g. ``n_components=1``).

    Raises
    ------
    TypeError
        For a keyword that is not a :class:`GMMDetector` parameter.
    """
    params = {**UAD_SETTINGS, **overrides}
    known = set(GMMDetector().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(f"uad() got unknown parameter(s) {unknown}; GMMDetector takes {sorted(known)}.")
    return GMMDetector(fpr=fpr, random_state=random_state, **params)
