"""Local intrinsic dimensionality (LID) detector of Ma et al. (2018), "Characterizing adversarial
subspaces using local intrinsic dimensionality" (ICLR).

Per layer, the maximum-likelihood LID estimate of a feature h with respect to a reference
minibatch of clean features is

    LID_hat(h) = -( (1/k) * sum_{i=1..k} log(r_i(h) / r_k(h)) )^(-1),

r_i being the distance to the i-th nearest neighbour. Adversarial regions have higher LID. The
per-layer estimates are combined by a logistic regression fitted on normal and adversarial
samples.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from .base import (
    BaseDetector,
    as_layer_dict,
    batch_slices,
    check_is_adv,
    check_layers_match,
    make_combiner,
    resolve_device,
    select_layers,
    squared_distances,
    to_tensor,
)

_TINY = 1e-12  # guards log(0) when a query coincides with a reference point


def _lid_from_squared(d2: torch.Tensor, k: int) -> np.ndarray:
    """LID over the last axis of squared distances ``d2`` (..., M), from its k smallest entries.

    log(r_i / r_k) = (log d2_i - log d2_k) / 2, so no square roots are taken; the order of the
    k neighbours is irrelevant, only which they are and the largest of them.
    """
    if d2.device.type == "cpu":
        # numpy's introselect is an order of magnitude faster than torch.topk on the CPU
        part = np.partition(d2.numpy(), k - 1, axis=-1)[..., :k]
        log_d2 = np.log(np.maximum(part, _TINY**2))
        mean_log = 0.5 * (log_d2.mean(-1) - log_d2.max(-1))
        return -1.0 / np.minimum(mean_log, -_TINY)
    smallest = d2.topk(k, dim=-1, largest=False, sorted=False).values
    log_d2 = torch.log(smallest.clamp_min(_TINY**2))
    mean_log = 0.5 * (log_d2.mean(-1) - log_d2.amax(-1))
    return (-1.0 / mean_log.clamp_max(-_TINY)).cpu().numpy()


class LID(BaseDetector):
    """Local intrinsic dimensionality detector (Ma et al. 2018).

    Parameters
    ----------
    k : int, default 20
        Nearest neighbours per estimate.
    minibatch : int, default 100
        Size of each clean reference minibatch (Ma et al. estimate LID within minibatches of 100).
    n_batches : int, default 1
        Number of reference minibatches drawn from the clean training features; the score of a
        layer is the mean of the estimates over them (more batches = lower variance, same scale).
    layers : list of str, optional
        Layers to use (None: all layers of ``X_ref``).
    C : float, default 1.0
        Inverse regularisation of the layer-combining logistic regression.
    batch_size : int, default 1024
        Queries per distance block.
    seed : int, default 0
        Seeds the draw of the reference minibatches.
    device : optional
        Where distances are computed (default: the GPU when present).
    fpr : float, default 0.1

    Attributes
    ----------
    layers_ : list of str
    layer_dims_ : dict[str, int]
    reference_index_ : ndarray (n_batches, minibatch)
        Rows of ``X_ref`` forming each reference minibatch.
    reference_ : dict[str, ndarray (n_batches, minibatch, D)]
    combiner_ : Pipeline or None
        StandardScaler + LogisticRegression on the per-layer LIDs; None when fitted without
        ``is_adv`` (then :meth:`decision_function` needs a single layer).

    Notes
    -----
    Ma et al. compute LID of every sample of a minibatch against the *clean* samples of the same
    minibatch and drop the first neighbour (the sample itself). Here the reference minibatches
    are drawn from the clean **training** features, so no scored sample is ever part of its own
    reference (nothing is fitted on what it scores) and all k nearest neighbours are used.
    """

    def __init__(self, k: int = 20, minibatch: int = 100, n_batches: int = 1, layers=None, C: float = 1.0,
                 batch_size: int = 1024, seed: int = 0, device=None, fpr: float = 0.1):
        self.k = k
        self.minibatch = minibatch
        self.n_batches = n_batches
        self.layers = layers
        self.C = C
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.fpr = fpr

    def fit(self, X=None, is_adv=None, *, X_ref):
        """Draw the reference minibatches and fit the layer combiner.

        Parameters
        ----------
        X : dict of layer arrays or ndarray, optional
            Fitting split (normal and adversarial); needed with ``is_adv``.
        is_adv : array-like (N,), optional
            1 adversarial / 0 normal. Without it only the reference is fitted.
        X_ref : dict of layer arrays or ndarray
            Clean training features.

        Returns
        -------
        self
        """
        self._reset()
        ref = select_layers(as_layer_dict(X_ref, "X_ref"), self.layers, "X_ref")
        n_ref = next(iter(ref.values())).shape[0]
        k, m, b = int(self.k), int(self.minibatch), int(self.n_batches)
        if b < 1:
            raise ValueError(f"n_batches must be >= 1, got {self.n_batches}")
        if not 1 <= k < m:
            raise ValueError(f"need 1 <= k < minibatch, got k={k}, minibatch={m}")
        if m > n_ref:
            raise ValueError(f"minibatch={m} exceeds the {n_ref} clean reference samples; lower minibatch (and k).")
        rng = np.random.default_rng(self.seed)
        self.reference_index_ = np.stack([rng.choice(n_ref, size=m, replace=False) for _ in range(b)])
        self.layers_ = list(ref)
        self.layer_dims_ = OrderedDict((name, a.shape[1]) for name, a in ref.items())
        self.reference_ = OrderedDict((name, a[self.reference_index_]) for name, a in ref.items())
        self.combiner_ = None
        if is_adv is not None:
            if X is None:
                raise ValueError("is_adv was given without the features X it labels.")
            S = self.layer_scores(X)
            self.combiner_ = make_combiner(self.C).fit(S, check_is_adv(is_adv, S.shape[0]))
        return self

    def layer_scores(self, X) -> np.ndarray:
        """Per-layer LID estimates, shape (N, len(layers_)), columns in ``layers_`` order."""
        self._check_fitted()
        single = self.layers_[0] if len(self.layers_) == 1 else None
        X = check_layers_match(as_layer_dict(X, "X", single_name=single or "features"), self.layer_dims_, "X")
        device = resolve_device(self.device)
        k = int(self.k)
        n = next(iter(X.values())).shape[0]
        out = np.empty((n, len(self.layers_)), dtype=np.float64)
        with torch.no_grad():
            for j, name in enumerate(self.layers_):
                ref = to_tensor(self.reference_[name], device)  # (B, M, D)
                B, M, D = ref.shape
                flat = ref.reshape(B * M, D)
                for sl in batch_slices(n, self.batch_size):
                    q = to_tensor(X[name][sl], device)
                    # one matmul against all minibatches, then the k nearest within each
                    d2 = squared_distances(q, flat).view(-1, B, M)
                    out[sl, j] = _lid_from_squared(d2, k).mean(-1)
        return out

    def decision_function(self, X) -> np.ndarray:
        """Combiner logit (higher = more adversarial); the LID itself for a single layer without it."""
        S = self.layer_scores(X)
        if self.combiner_ is None:
            if S.shape[1] != 1:
                raise ValueError("LID was fitted without is_adv, so there is no combiner for "
                                 f"{S.shape[1]} layers; fit with (X, is_adv) or use layer_scores().")
            return S[:, 0]
        return self.combiner_.decision_function(S)

    def fit_from_features(self, reference, data, is_adv, *, model=None):
        return self.fit(data.layers, is_adv, X_ref=reference.layers)

    def score_from_features(self, data, *, model=None):
        return self.decision_function(data.layers)
