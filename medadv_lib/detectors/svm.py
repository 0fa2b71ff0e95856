"""SafetyNet-style SVM detector (Lu et al. 2017, "SafetyNet: detecting and rejecting adversarial
examples robustly"), in the variant of Ma et al. (2021), "Understanding adversarial attacks on deep
learning based medical image analysis systems": an RBF SVM on penultimate features binarised at
their per-feature mean (SafetyNet quantises late ReLU codes; the binary code is its simplest form)."""
from __future__ import annotations

import numpy as np
from sklearn.svm import SVC

from .base import BaseDetector, check_is_adv, check_n_features, single_layer


class SafetyNetSVM(BaseDetector):
    """RBF SVM on binarised features (Lu et al. 2017; Ma et al. 2021).

    Parameters
    ----------
    C : float, default 1.0
        SVC regularisation.
    gamma : float or {"scale", "auto"}, default "scale"
        RBF width (scikit-learn's default; the Methods page, :ref:`methods-svm`, mentions 2.8 as the alternative).
    layer : str, default "penultimate"
    fpr : float, default 0.1

    Attributes
    ----------
    feature_means_ : ndarray (D,)
        Per-feature binarisation thresholds: the mean of the fitting features.
    svc_ : SVC
        Fitted on the binarised fitting split, class 1 = adversarial.
    n_features_in_ : int

    Notes
    -----
    Entirely supervised: ``fit(X, is_adv)`` uses the normal and adversarial samples of the fitting
    split; the clean training reference is not used.
    """

    def __init__(self, C: float = 1.0, gamma="scale", layer: str = "penultimate", fpr: float = 0.1):
        self.C = C
        self.gamma = gamma
        self.layer = layer
        self.fpr = fpr

    def _binarise(self, X):
        return (X > self.feature_means_).astype(np.float64)

    def fit(self, X, is_adv):
        """Binarise ``X`` at its per-feature mean and fit the SVC. Returns self."""
        self._reset()
        X = single_layer(X, self.layer, "X")
        y = check_is_adv(is_adv, X.shape[0])
        self.feature_means_ = X.mean(0)
        self.n_features_in_ = X.shape[1]
        self.svc_ = SVC(C=self.C, kernel="rbf", gamma=self.gamma).fit(self._binarise(X), y)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Signed distance to the SVM boundary, positive on the adversarial side."""
        self._check_fitted()
        X = check_n_features(single_layer(X, self.layer, "X"), self.n_features_in_, "X")
        return self.svc_.decision_function(self._binarise(X))

    def fit_from_features(self, reference, data, is_adv, *, model=None):
        return self.fit(data.layer(self.layer), is_adv)

    def score_from_features(self, data, *, model=None):
        return self.decision_function(data.layer(self.layer))
