"""Bayesian uncertainty (BU) detector of Feinman et al. (2017), "Detecting adversarial samples
from artifacts".

The network is run ``n_passes`` times with its dropout layers active (Monte-Carlo dropout, Gal &
Ghahramani 2016); adversarial inputs tend to sit where these stochastic predictions disagree.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .base import BaseDetector, batch_slices
from ..models.utils import PENULTIMATE, eval_mode, model_device

SCORES = ("variance", "logit_std")


def _dropouts(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


@contextmanager
def _mc_dropout(model: nn.Module):
    """Eval mode (BatchNorm frozen) with only the dropout layers sampling."""
    with eval_mode(model):
        for m in _dropouts(model):
            m.train()
        yield model


@contextmanager
def _seeded(seed: int, device: torch.device):
    # fork the global RNG so detector scoring never shifts a caller's random stream
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


class BU(BaseDetector):
    """Monte-Carlo dropout uncertainty (Feinman et al. 2017).

    Parameters
    ----------
    n_passes : int, default 50
        Stochastic forward passes.
    score : {"variance", "logit_std"}, default "variance"
        ``"variance"``: variance over passes of the softmax output, averaged over classes
        (Feinman et al.'s uncertainty divided by the number of classes; Methods page, :ref:`methods-protocol`).
        ``"logit_std"``: standard deviation over passes of the logit of the class predicted by the
        deterministic (dropout-off) network, as in the HFC code.
    batch_size : int, default 256
        Images per forward pass.
    seed : int, default 0
        Seeds the dropout masks (the global RNG is forked, not advanced).
    fpr : float, default 0.1

    Attributes
    ----------
    n_classes_ : int
    head_only_ : bool
        True when every active dropout layer lies in ``model.head`` (the module fed by the
        penultimate features): the backbone then runs once and only the head is sampled, which
        gives the same distribution as full passes at a fraction of the cost.

    Notes
    -----
    Needs a model with a dropout layer (``build_model(..., dropout=p)`` with ``p > 0``). BU has no
    statistics to learn: :meth:`fit` only checks the model; pass ``model=`` to every method.
    """

    needs_images = True

    def __init__(self, n_passes: int = 50, score: str = "variance", batch_size: int = 256, seed: int = 0,
                 fpr: float = 0.1):
        self.n_passes = n_passes
        self.score = score
        self.batch_size = batch_size
        self.seed = seed
        self.fpr = fpr

    def _check_model(self, model):
        if model is None:
            raise ValueError(f"{type(self).__name__} needs the network: pass model=<FeatureModel>.")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if int(self.n_passes) < 2:
            raise ValueError(f"n_passes must be >= 2 to measure a spread, got {self.n_passes}")
        drops = _dropouts(model)
        if not drops:
            raise ValueError("BU needs a dropout layer with p > 0 before the classifier; build the model with "
                             "build_model(..., dropout=0.5) (or another p > 0).")
        head = getattr(model, "head", None)
        head_ids = {id(m) for m in head.modules()} if head is not None else set()
        return all(id(m) in head_ids for m in drops)

    def fit(self, x=None, y=None, *, model):
        """Check that ``model`` has active dropout; nothing is learnt. Returns self."""
        self._reset()
        self.head_only_ = self._check_model(model)
        self.n_classes_ = int(model.num_classes)
        return self

    def _from_outputs(self, outs: torch.Tensor, det_pred: torch.Tensor | None) -> torch.Tensor:
        # outs: (T, n, K) logits of the stochastic passes
        if self.score == "variance":
            return outs.softmax(-1).var(0, unbiased=False).mean(-1)
        index = det_pred.view(1, -1, 1).expand(outs.shape[0], -1, 1)
        return outs.gather(2, index).squeeze(2).std(0, unbiased=False)

    def decision_function(self, x: torch.Tensor, *, model, penultimate: np.ndarray | None = None) -> np.ndarray:
        """Uncertainty of each image (higher = more adversarial).

        Parameters
        ----------
        x : torch.Tensor
            Images in [0, 1], shape (N, C, H, W).
        model : FeatureModel
        penultimate : ndarray (N, D), optional
            Precomputed penultimate features of ``x``; with a head-only dropout they replace the
            backbone pass.
        """
        self._check_fitted()
        head_only = self._check_model(model)
        if int(model.num_classes) != self.n_classes_:
            raise ValueError(f"model has {model.num_classes} classes, BU was fitted with {self.n_classes_}")
        device = model_device(model)
        n = x.shape[0] if penultimate is None or not head_only else penultimate.shape[0]
        if n == 0:
            raise ValueError("x is empty; nothing to score.")
        if penultimate is None or not head_only:
            model.check_input(x)
        T = int(self.n_passes)
        out = np.empty(n, dtype=np.float64)
        with torch.no_grad(), _seeded(self.seed, device):
            for sl in batch_slices(n, self.batch_size):
                if head_only:
                    if penultimate is not None:
                        pen = torch.as_tensor(penultimate[sl], dtype=torch.float32, device=device)
                    else:
                        with eval_mode(model):
                            _, feats = model.forward_features(x[sl].to(device), [PENULTIMATE])
                        pen = feats[PENULTIMATE]
                    with eval_mode(model):
                        det_pred = model.head(pen).argmax(1)
                    with _mc_dropout(model):
                        # one call over T stacked copies: the dropout masks differ per copy
                        outs = model.head(pen.repeat(T, 1)).view(T, pen.shape[0], -1)
                else:
                    xb = x[sl].to(device)
                    with eval_mode(model):
                        det_pred = model(xb).argmax(1)
                    with _mc_dropout(model):
                        outs = torch.stack([model(xb) for _ in range(T)])
                out[sl] = self._from_outputs(outs.double(), det_pred).cpu().numpy()
        return out

    def fit_from_features(self, reference, data, is_adv, *, model=None):
        return self.fit(model=model)

    def score_from_features(self, data, *, model=None):
        pen = data.layers.get(PENULTIMATE)
        return self.decision_function(data.images, model=model, penultimate=pen)
