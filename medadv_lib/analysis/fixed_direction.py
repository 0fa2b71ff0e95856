"""Fixed-direction effect: iterative attacks push penultimate features along one direction.

Methods page, :ref:`methods-fixed-direction` (the HFC work: Yao et al., MICCAI 2021, Sec. 2). With logits
``z = W h + b`` and the targeted cross-entropy towards ``t``,

    dL/dh = sum_k p_k w_k - w_t,

so in the binary case ``-dL/dh = p_y (w_t - w_y)``: every image and every step moves (to first
order) along the same direction ``w_t - w_y``, only the scale changes. This module measures that on
an :class:`~medadv_lib.attacks.AttackResult` recorded with ``record_features=True``: the cosine
between each step's feature change and ``w_t - w_y``, the projection of ``h`` on that direction,
the cosine of the attack's feature-space step direction, and the Mahalanobis distance of the
features to the clean class distribution (class means and one tied covariance, as Lee et al. 2018).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.linalg import pinvh
from sklearn.covariance import EmpiricalCovariance
from sklearn.exceptions import NotFittedError
from torch import nn

from ..density import TorchGaussianMixture

__all__ = [
    "ClassGaussian",
    "classifier_weights",
    "descent_direction",
    "feature_gradient",
    "feature_gradient_check",
    "fixed_direction_frame",
    "pca_frame",
]


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def classifier_weights(model_or_linear) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of the final linear layer as float64 arrays, shapes (K, D) and (K,).

    Accepts a FeatureModel (its ``classifier``), an ``nn.Linear`` or a ``(W, b)`` pair.
    """
    if isinstance(model_or_linear, tuple) and len(model_or_linear) == 2:
        weight, bias = (_np(a) for a in model_or_linear)
    else:
        linear = getattr(model_or_linear, "classifier", model_or_linear)
        if not isinstance(linear, nn.Linear):
            raise TypeError("pass a FeatureModel, its nn.Linear classifier or a (W, b) pair; "
                            f"got {type(model_or_linear).__name__}.")
        weight = _np(linear.weight)
        bias = _np(linear.bias) if linear.bias is not None else np.zeros(weight.shape[0])
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(f"W must be (K, D) and b (K,), got {weight.shape} and {bias.shape}.")
    return weight, bias


def feature_gradient(h, weight, bias, target) -> np.ndarray:
    """Analytic gradient of the cross-entropy towards ``target`` w.r.t. features: ``p W - w_t``.

    Parameters
    ----------
    h : array (N, D)
    weight : array (K, D)
    bias : array (K,)
    target : array of int (N,)

    Returns
    -------
    np.ndarray, (N, D)
    """
    h, weight, bias = (np.asarray(_np(a), dtype=np.float64) for a in (h, weight, bias))
    target = np.asarray(_np(target), dtype=np.int64)
    z = h @ weight.T + bias
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    # sum_k p_k (w_k - w_t), equal to p W - w_t since sum_k p_k = 1, without its cancellation: when
    # p_t rounds to 1 the plain form loses every other term (a confident, fooled model)
    return np.einsum("nk,nkd->nd", p, weight[None, :, :] - weight[target][:, None, :])


def descent_direction(h, weight, bias, target) -> np.ndarray:
    """``feature_gradient`` divided by ``1 - p_t`` (N, D): the same direction, at a scale that never underflows.

    ``sum_{k != t} r_k (w_k - w_t)`` with ``r`` the softmax of the logits over the classes other
    than ``t``. For a model whose ``p_t`` is 1 to the last bit the gradient itself is 0 (or noise),
    but its direction, the one a cosine measures, is still defined; for two classes it is exactly
    ``w_y - w_t``.
    """
    h, weight, bias = (np.asarray(_np(a), dtype=np.float64) for a in (h, weight, bias))
    target = np.asarray(_np(target), dtype=np.int64)
    z = h @ weight.T + bias
    rows = np.arange(len(z))
    z[rows, target] = -np.inf
    z -= z.max(1, keepdims=True)
    r = np.exp(z)
    r /= r.sum(1, keepdims=True)
    return np.einsum("nk,nkd->nd", r, weight[None, :, :] - weight[target][:, None, :])


def feature_gradient_check(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    """Max absolute difference between autograd's dCE/dh (through the classifier) and the formula.

    ``h`` is the penultimate feature of ``x``; the model runs in eval mode (dropout off).
    """
    from ..models.utils import frozen as attack_mode  # eval mode, frozen weights

    with attack_mode(model):
        with torch.no_grad():
            h = model.features(x, ["penultimate"])["penultimate"].double()
        h.requires_grad_(True)
        w = model.classifier.weight.detach().double()
        b = model.classifier.bias.detach().double() if model.classifier.bias is not None else None
        with torch.enable_grad():
            loss = F.cross_entropy(F.linear(h, w, b), target.to(h.device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, h)
    weight, bias = classifier_weights(model)
    return float(np.abs(grad.cpu().numpy() - feature_gradient(h.detach(), weight, bias, target)).max())


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((na > 0) & (nb > 0), (a * b).sum(-1) / (na * nb), np.nan)


class ClassGaussian:
    """Class-conditional Gaussians with one tied covariance on clean penultimate features.

    Means per class and a shared covariance (scikit-learn ``EmpiricalCovariance`` on the
    class-centred features, Lee et al. 2018), inverted with ``pinvh`` after adding
    ``ridge * mean(diag)`` to the diagonal so that rank-deficient covariances (D > N) stay usable.
    Distances are computed by the shared torch density
    (:meth:`medadv_lib.density.TorchGaussianMixture.tied`), the module the Mahalanobis detector
    and the HFC constraint use.

    Parameters
    ----------
    ridge : float, default 1e-6
        Relative diagonal loading.

    Attributes
    ----------
    classes_ : ndarray
        Classes present in the fitted labels.
    means_ : ndarray (K, D)
        Class means; rows of absent classes are NaN.
    covariance_, precision_ : ndarray (D, D)
    density_ : TorchGaussianMixture
        Tied Gaussians of the present classes (component ``i`` is class ``classes_[i]``), float64
        on the CPU; differentiable, for callers that need gradients or another device.
    """

    def __init__(self, ridge: float = 1e-6):
        self.ridge = ridge

    def fit(self, h, y, num_classes: int | None = None) -> "ClassGaussian":
        """Fit on features ``h`` (N, D) with labels ``y`` (N,).

        ``num_classes`` sizes :meth:`distance`'s output when the highest classes are absent from
        ``y`` (their columns are NaN); by default ``max(y) + 1``.
        """
        h, y = _np(h), np.asarray(_np(y), dtype=np.int64)
        if h.ndim != 2 or y.shape != (h.shape[0],):
            raise ValueError(f"h must be (N, D) and y (N,), got {h.shape} and {y.shape}.")
        self.classes_ = np.unique(y)
        k = max(int(self.classes_.max()) + 1, int(num_classes or 0))
        self.means_ = np.full((k, h.shape[1]), np.nan)
        for c in self.classes_:
            self.means_[c] = h[y == c].mean(0)
        centred = h - self.means_[y]
        self.covariance_ = EmpiricalCovariance(assume_centered=True, store_precision=False).fit(centred).covariance_
        load = self.ridge * max(float(np.mean(np.diag(self.covariance_))), np.finfo(float).tiny)
        self.precision_ = pinvh(self.covariance_ + load * np.eye(h.shape[1]))
        self.density_ = TorchGaussianMixture.tied(self.means_[self.classes_], precision=self.precision_)
        return self

    def distance(self, h) -> np.ndarray:
        """Mahalanobis distance of each row of ``h`` to every class mean, shape (N, K).

        Classes absent from the fitted data get NaN.
        """
        if not hasattr(self, "precision_"):
            raise NotFittedError("ClassGaussian is not fitted; call fit(h_train, y_train) first.")
        h = _np(h)
        if h.ndim != 2 or h.shape[1] != self.means_.shape[1]:
            raise ValueError(f"h must be (N, {self.means_.shape[1]}) features, got shape {h.shape}.")
        out = np.full((h.shape[0], self.means_.shape[0]), np.nan)
        with torch.no_grad():
            d2 = self.density_.mahalanobis(torch.as_tensor(h, device=self.density_.means.device))
        out[:, self.classes_] = d2.sqrt().cpu().numpy()
        return out


def _resolve_target(result, weight, bias, target):
    if target is not None:
        return np.asarray(_np(target), dtype=np.int64)
    if result.target is not None:
        return result.target.cpu().numpy().astype(np.int64)
    # untargeted: the class the attack is heading for = the most likely other class at the end
    y = result.y.cpu().numpy()
    logits = _np(result.features[-1]) @ weight.T + bias
    logits[np.arange(len(y)), y] = -np.inf
    return logits.argmax(1)


def fixed_direction_frame(result, classifier, *, gaussian: ClassGaussian | None = None,
                          target=None) -> pd.DataFrame:
    """Per-step, per-image measurements of the fixed-direction effect.

    Parameters
    ----------
    result : AttackResult
        From ``attack.run(x, y, record_features=True)``: ``features`` is (T + 1, N, D) with the
        clean image at index 0.
    classifier : FeatureModel, nn.Linear or (W, b)
        The final linear layer ``z = W h + b``.
    gaussian : ClassGaussian, optional
        Fitted on clean training penultimate features; adds Mahalanobis columns.
    target : array of int (N,), optional
        Direction ``w_t - w_y`` to measure against; default the attack's target, or for an
        untargeted attack the most likely other class at the last step.

    Returns
    -------
    pandas.DataFrame
        One row per (image, step), step 0 = clean, with columns ``image, step, y, target,
        projection`` (h on the unit vector of ``w_t - w_y``), ``cos_step`` (cosine of
        ``h_s - h_{s-1}`` with ``w_t - w_y``; NaN at step 0), ``cos_total`` (of ``h_s - h_0``),
        ``grad_cos`` (cosine of the attack's feature-space descent direction with ``w_t - w_y``:
        ``-dL/dh`` of the CE towards ``t`` for targeted attacks, ``+dL/dh`` of the CE of ``y`` for
        untargeted ones; exactly 1 for binary heads), ``p_target``, and with ``gaussian``
        ``maha_true, maha_target, maha_min``.
    """
    if result.features is None:
        raise ValueError("the AttackResult has no features; run the attack with record_features=True.")
    feats = _np(result.features)  # (T+1, N, D)
    steps, n, _ = feats.shape
    weight, bias = classifier_weights(classifier)
    if weight.shape[1] != feats.shape[2]:
        raise ValueError(f"classifier expects {weight.shape[1]} features, the record has {feats.shape[2]}.")
    y = result.y.cpu().numpy().astype(np.int64)
    t = _resolve_target(result, weight, bias, target)
    targeted = result.target is not None or target is not None
    direction = weight[t] - weight[y]  # (N, D)
    with np.errstate(divide="ignore", invalid="ignore"):  # t == y gives no direction: NaN rows
        unit = direction / np.linalg.norm(direction, axis=1, keepdims=True)

    rows = {k: [] for k in ("image", "step", "y", "target", "projection", "cos_step", "cos_total",
                            "grad_cos", "p_target")}
    maha = {"maha_true": [], "maha_target": [], "maha_min": []}
    idx = np.arange(n)
    for s in range(steps):
        h = feats[s]
        if targeted:
            step_dir = -descent_direction(h, weight, bias, t)
        else:
            step_dir = descent_direction(h, weight, bias, y)
        z = h @ weight.T + bias
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        rows["image"].append(idx)
        rows["step"].append(np.full(n, s))
        rows["y"].append(y)
        rows["target"].append(t)
        rows["projection"].append((h * unit).sum(1))
        rows["cos_step"].append(_cosine(h - feats[s - 1], direction) if s else np.full(n, np.nan))
        rows["cos_total"].append(_cosine(h - feats[0], direction) if s else np.full(n, np.nan))
        rows["grad_cos"].append(_cosine(step_dir, direction))
        rows["p_target"].append(p[idx, t])
        if gaussian is not None:
            d = gaussian.distance(h)
            maha["maha_true"].append(d[idx, y])
            maha["maha_target"].append(d[idx, t])
            maha["maha_min"].append(np.nanmin(d, axis=1))
    data = {k: np.concatenate(v) for k, v in rows.items()}
    if gaussian is not None:
        data.update({k: np.concatenate(v) for k, v in maha.items()})
    return pd.DataFrame(data)


def pca_frame(train_features, result, *, n_components: int = 2, steps: Sequence[int] | None = None) -> pd.DataFrame:
    """2-D view: PCA fitted on clean training features, applied to the recorded trajectories.

    Returns a DataFrame with ``image, step, pc1, pc2, ...`` for the chosen ``steps``
    (default: all, step 0 = clean).
    """
    from sklearn.decomposition import PCA

    if result.features is None:
        raise ValueError("the AttackResult has no features; run the attack with record_features=True.")
    pca = PCA(n_components=n_components).fit(_np(train_features))
    feats = _np(result.features)
    steps = range(feats.shape[0]) if steps is None else steps
    frames = []
    for s in steps:
        comps = pca.transform(feats[s])
        frame = pd.DataFrame(comps, columns=[f"pc{i + 1}" for i in range(n_components)])
        frame.insert(0, "step", s)
        frame.insert(0, "image", np.arange(feats.shape[1]))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
