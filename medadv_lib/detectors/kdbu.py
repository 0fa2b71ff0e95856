"""KD+BU: the combined detector of Feinman et al. (2017), "Detecting adversarial samples from
artifacts": a logistic regression on the z-scored kernel density and Bayesian uncertainty."""
from __future__ import annotations

import numpy as np

from .base import BaseDetector, check_is_adv, make_combiner, reference_labels
from .bu import BU
from .features import extract_features
from .kd import KD


class KDBU(BaseDetector):
    """Logistic regression on z-scored [KD, BU] scores (Feinman et al. 2017).

    Parameters
    ----------
    bandwidth : float, default 1.0
        KD bandwidth.
    n_passes : int, default 50
        BU Monte-Carlo dropout passes.
    bu_score : {"variance", "logit_std"}, default "variance"
    layer : str, default "penultimate"
        The KD feature layer.
    C : float, default 1.0
        Inverse regularisation of the logistic regression.
    batch_size : int, default 256
    seed : int, default 0
        BU dropout seed.
    device : optional
        Where KD distances are computed (default: GPU when present).
    fpr : float, default 0.1

    Attributes
    ----------
    kd_ : KD
        Fitted on the clean training features ``X_ref`` with their true labels.
    bu_ : BU
    combiner_ : Pipeline
        StandardScaler + LogisticRegression fitted on ``(x, is_adv)``, the fitting split.
    """

    needs_images = True

    def __init__(self, bandwidth: float = 1.0, n_passes: int = 50, bu_score: str = "variance",
                 layer: str = "penultimate", C: float = 1.0, batch_size: int = 256, seed: int = 0,
                 device=None, fpr: float = 0.1):
        self.bandwidth = bandwidth
        self.n_passes = n_passes
        self.bu_score = bu_score
        self.layer = layer
        self.C = C
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.fpr = fpr

    def base_scores(self, x, *, model, X=None, y_pred=None) -> np.ndarray:
        """The (N, 2) matrix of [KD, BU] scores that the logistic regression combines.

        ``X`` (features of ``layer``) and ``y_pred`` may be given to skip a forward pass.
        """
        if model is None:
            raise ValueError("KDBU needs the network: pass model=<FeatureModel>.")
        if X is None or y_pred is None:
            feats = extract_features(model, x, [self.layer, "penultimate"], batch_size=self.batch_size)
            X, y_pred = feats.layer(self.layer), feats.pred
            pen = feats.layer("penultimate")
        else:
            pen = X if self.layer == "penultimate" else None
        kd = self.kd_.decision_function(X, y_pred)
        bu = self.bu_.decision_function(x, model=model, penultimate=pen)
        return np.column_stack([kd, bu])

    def fit(self, x, is_adv, *, model, X_ref, y_ref, X=None, y_pred=None):
        """Fit KD on the clean training reference and the combiner on the fitting split.

        Parameters
        ----------
        x : torch.Tensor
            Images of the fitting split (normal and adversarial).
        is_adv : array-like (N,)
            1 for adversarial, 0 for normal.
        model : FeatureModel
        X_ref, y_ref
            Clean training features (array or layer dict) and true labels for KD.
        X, y_pred : optional
            Precomputed ``layer`` features and predictions of ``x``.

        Returns
        -------
        self
        """
        self._reset()
        self.kd_ = KD(bandwidth=self.bandwidth, layer=self.layer, device=self.device).fit(X_ref, y_ref)
        self.bu_ = BU(n_passes=self.n_passes, score=self.bu_score, batch_size=self.batch_size,
                      seed=self.seed).fit(model=model)
        S = self.base_scores(x, model=model, X=X, y_pred=y_pred)
        self.combiner_ = make_combiner(self.C).fit(S, check_is_adv(is_adv, S.shape[0]))
        return self

    def decision_function(self, x, *, model, X=None, y_pred=None) -> np.ndarray:
        """Logit of the combiner: higher = more adversarial."""
        self._check_fitted()
        return self.combiner_.decision_function(self.base_scores(x, model=model, X=X, y_pred=y_pred))

    def fit_from_features(self, reference, data, is_adv, *, model=None):
        return self.fit(data.images, is_adv, model=model, X_ref=reference.layer(self.layer),
                        y_ref=reference_labels(reference), X=data.layer(self.layer), y_pred=data.pred)

    def score_from_features(self, data, *, model=None):
        return self.decision_function(data.images, model=model, X=data.layer(self.layer), y_pred=data.pred)
