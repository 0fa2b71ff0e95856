"""The detector evaluation protocol of the Methods page, :ref:`methods-protocol` (HFC evaluation; Ma et al. 2021,
"Understanding adversarial attacks on deep learning based medical image analysis systems").

1. Keep only the test images the model classifies correctly.
2. Build a **noisy** copy of each (uniform noise in [-noise, noise], clipped to [0, 1]); clean and
   noisy images are both *normal*.
3. Attack the kept clean images.
4. Split the (clean, noisy, adversarial) **triplets** by image: a fraction ``split`` to fit the
   supervised parts (logistic regressions over layers or [KD, BU], SVM, DNN), the rest to report.
   The same image never appears on both sides; the assignment is drawn once per protocol, so
   every attack and budget is evaluated on the same images.
5. Class statistics and references (KD densities, class means and covariance, GMMs, LID
   reference) come from the **clean training** features.
6. Report AUROC, TPR at 90 % TNR and AUPRC, with bootstrap intervals, on the held-out side only.

With ``only_successful=True`` (default, as in the HFC code) a triplet counts only if its attack
succeeded: the prediction changed (untargeted) or reached the target (``targets`` given).

Features of the training and clean/noisy test images are extracted once in :meth:`prepare`;
:meth:`DetectionProtocol.evaluate` then only extracts the adversarial features, which makes a
sweep over attacks and budgets cheap.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone

from ..detectors.features import Features, extract_features
from ..models.utils import model_device, resolve_layers
from .detection import detection_metrics, tpr_column

log = logging.getLogger(__name__)

def result_columns(tnr: float = 0.9) -> list[str]:
    """Columns of the tidy result table, in order (the TPR columns are named after ``tnr``)."""
    t = tpr_column(tnr)
    return ["detector", "attack", "dataset", "eps", "auroc", "auroc_lo", "auroc_hi", t, f"{t}_lo", f"{t}_hi",
            "auprc", "auprc_lo", "auprc_hi", "n_normal", "n_adv", "n_fit_normal", "n_fit_adv", "n_kept",
            "attack_success_rate", "seconds"]


def _as_tensor(x, name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def _rows_for_kept(a, n_total: int, kept: np.ndarray, name: str):
    """Accept arrays aligned with the whole test set or with the kept (correct) images only."""
    if len(a) == n_total:
        return a[torch.as_tensor(kept)] if isinstance(a, torch.Tensor) else np.asarray(a)[kept]
    if len(a) == kept.size:
        return a
    raise ValueError(f"{name} has {len(a)} rows; expected {n_total} (the whole test set) or {kept.size} "
                     "(the correctly classified test images, DetectionProtocol.kept_).")


class DetectionProtocol:
    """Reusable evaluation of several detectors against one or more attacks.

    Parameters
    ----------
    model : FeatureModel
    detectors : dict[str, BaseDetector]
        Name -> unfitted detector (cloned for every evaluation, never mutated).
    layers : list of str, optional
        Taps to extract (None: all of ``model.feature_names``). Detectors pick from these.
    noise : float, default 2/256
        Half-width of the uniform noise of the noisy normal set.
    split : float, default 0.7
        Fraction of the triplets that fits the supervised parts.
    seed : int, default 0
        Seeds the noise, the split and the bootstrap.
    only_successful : bool, default True
        Keep only triplets whose attack succeeded (the HFC code's choice).
    batch_size : int, default 256
        Feature-extraction batch.
    n_boot : int, default 1000
    ci : float, default 0.95
    tnr : float, default 0.9

    Attributes (after :meth:`prepare`)
    ----------------------------------
    train_ : Features
        Clean training features with true labels.
    kept_ : ndarray
        Indices into ``x_test`` of the correctly classified images.
    clean_, noisy_ : Features
        Features (with images) of the kept clean and noisy images.
    fit_side_ : ndarray of bool (len(kept_),)
        True for triplets on the fitting side.
    fitted_ : dict
        The detectors fitted by the last :meth:`evaluate`.
    scores_ : pandas.DataFrame
        Long table of the last evaluation's held-out scores: detector, kind (clean/noisy/adv),
        index (into ``x_test``), is_adv, score.
    """

    def __init__(self, model, detectors: Mapping, *, layers: Sequence[str] | None = None, noise: float = 2 / 256,
                 split: float = 0.7, seed: int = 0, only_successful: bool = True, batch_size: int = 256,
                 n_boot: int = 1000, ci: float = 0.95, tnr: float = 0.9):
        if not detectors:
            raise ValueError("detectors is empty; pass a dict name -> detector.")
        if not 0.0 < split < 1.0:
            raise ValueError(f"split must be in (0, 1), got {split}")
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.model = model
        self.detectors = dict(detectors)
        self.layers = resolve_layers(model, layers)
        self.noise = float(noise)
        self.split = float(split)
        self.seed = int(seed)
        self.only_successful = bool(only_successful)
        self.batch_size = int(batch_size)
        self.n_boot = int(n_boot)
        self.ci = float(ci)
        self.tnr = float(tnr)

    # ------------------------------------------------------------------------------------------
    def _needs_images(self):
        return any(bool(getattr(d, "needs_images", False)) for d in self.detectors.values())

    def _extract(self, x, labels=None, keep_images=True):
        return extract_features(self.model, x, self.layers, labels=labels, batch_size=self.batch_size,
                                keep_images=keep_images)

    def prepare(self, x_train: torch.Tensor, y_train, x_test: torch.Tensor, y_test) -> DetectionProtocol:
        """Extract training features, keep correct test images, build the noisy set and the split.

        Nothing is learnt from the test images here; the training features only become detector
        statistics in :meth:`evaluate`.
        """
        x_train, x_test = _as_tensor(x_train, "x_train"), _as_tensor(x_test, "x_test")
        y_train = torch.as_tensor(y_train).long()
        y_test = np.asarray(torch.as_tensor(y_test).long().cpu())
        self.train_ = self._extract(x_train, labels=y_train, keep_images=False)
        test = self._extract(x_test, labels=y_test, keep_images=False)
        self.n_test_ = len(test)
        self.kept_ = np.flatnonzero(test.pred == y_test)
        if self.kept_.size < 2:
            raise ValueError(f"only {self.kept_.size} of {len(test)} test images are classified correctly; "
                             "the protocol needs a trained model.")
        self.test_accuracy_ = self.kept_.size / len(test)
        x_kept = x_test[torch.as_tensor(self.kept_)].detach().cpu()
        self.y_kept_ = y_test[self.kept_]
        gen = torch.Generator().manual_seed(self.seed)
        noise = (torch.rand(x_kept.shape, generator=gen, dtype=x_kept.dtype) * 2 - 1) * self.noise
        x_noisy = (x_kept + noise).clamp_(0.0, 1.0)
        # clean images are kept anyway (the attack needs them); noisy and adversarial ones only
        # when a detector queries the model (BU, DNN, Mahalanobis pre-processing)
        self.clean_ = replace(test.subset(self.kept_), images=x_kept)
        self.noisy_ = self._extract(x_noisy, labels=self.y_kept_, keep_images=self._needs_images())
        # one seeded assignment of images to sides, shared by every attack evaluated afterwards
        perm = np.random.default_rng(self.seed).permutation(self.kept_.size)
        n_fit = round(self.split * self.kept_.size)
        self.fit_side_ = np.zeros(self.kept_.size, dtype=bool)
        self.fit_side_[perm[:n_fit]] = True
        return self

    def _run_attack(self, attack, targets):
        x_kept = self.clean_.images
        y_kept = torch.as_tensor(self.y_kept_)
        if isinstance(attack, torch.Tensor):
            x_adv = _rows_for_kept(attack, self.n_test_, self.kept_, "x_adv")
        elif callable(attack):
            device = model_device(self.model)
            parts = []
            for start in range(0, x_kept.shape[0], self.batch_size):
                sl = slice(start, start + self.batch_size)
                args = (x_kept[sl].to(device), y_kept[sl].to(device))
                out = attack(*args) if targets is None else attack(*args, target=targets[sl].to(device))
                parts.append(out.detach().cpu())
            x_adv = torch.cat(parts)
        else:
            raise TypeError("attack must be a callable (x, y) -> x_adv or a tensor of adversarial images.")
        if x_adv.shape != x_kept.shape:
            raise ValueError(f"adversarial images have shape {tuple(x_adv.shape)}, expected {tuple(x_kept.shape)}")
        return x_adv.detach().cpu()

    def evaluate(self, attack: Callable | torch.Tensor, *, attack_name: str | None = None, dataset: str | None = None,
                 eps: float | None = None, targets=None) -> pd.DataFrame:
        """Fit every detector on the fitting side and score the held-out side.

        Parameters
        ----------
        attack : callable or torch.Tensor
            ``attack(x, y)`` (or ``attack(x, y, target=t)`` when ``targets`` is given) returning
            adversarial images for the kept clean images, called in batches on the model's
            device; or precomputed adversarial images aligned with ``x_test`` or with ``kept_``.
        attack_name, dataset, eps
            Labels copied into the table.
        targets : array-like of int, optional
            Target classes (aligned with ``x_test`` or ``kept_``) of a targeted attack; success
            then means reaching the target.

        Returns
        -------
        pandas.DataFrame
            One row per detector, columns :func:`result_columns`.
        """
        if not hasattr(self, "clean_"):
            raise RuntimeError("call prepare(x_train, y_train, x_test, y_test) before evaluate().")
        if targets is not None:
            targets = torch.as_tensor(_rows_for_kept(np.asarray(targets), self.n_test_, self.kept_, "targets")).long()
        if attack_name is None:
            attack_name = "precomputed" if isinstance(attack, torch.Tensor) else type(attack).__name__
        x_adv = self._run_attack(attack, targets)
        adv = self._extract(x_adv, labels=self.y_kept_, keep_images=self._needs_images())
        success = adv.pred != self.y_kept_ if targets is None else adv.pred == targets.numpy()
        self.attack_success_rate_ = float(success.mean())
        used = success if self.only_successful else np.ones_like(success)
        fit_idx = np.flatnonzero(used & self.fit_side_)
        test_idx = np.flatnonzero(used & ~self.fit_side_)
        self.split_ = {"fit": self.kept_[fit_idx], "test": self.kept_[test_idx]}

        def triplets(idx):
            data = Features.concat([self.clean_.subset(idx), self.noisy_.subset(idx), adv.subset(idx)])
            is_adv = np.r_[np.zeros(2 * idx.size, dtype=np.int64), np.ones(idx.size, dtype=np.int64)]
            return data, is_adv

        base = {"attack": attack_name, "dataset": dataset, "eps": eps, "n_normal": 2 * test_idx.size,
                "n_adv": test_idx.size, "n_fit_normal": 2 * fit_idx.size, "n_fit_adv": fit_idx.size,
                "n_kept": int(self.kept_.size), "attack_success_rate": self.attack_success_rate_}
        rows, long_scores, self.fitted_ = [], [], {}
        nan_metrics = {k: np.nan for k in result_columns(self.tnr)[4:13]}
        if fit_idx.size < 2 or test_idx.size < 1:
            log.warning("%s: only %d fitting and %d held-out successful adversarial examples; metrics are NaN.",
                        attack_name, fit_idx.size, test_idx.size)
            for name in self.detectors:
                rows.append({"detector": name, **base, **nan_metrics, "seconds": 0.0})
            self.scores_ = pd.DataFrame(columns=["detector", "kind", "index", "is_adv", "score"])
            return pd.DataFrame(rows, columns=result_columns(self.tnr))
        fit_data, fit_y = triplets(fit_idx)
        test_data, test_y = triplets(test_idx)
        kinds = np.repeat(["clean", "noisy", "adv"], test_idx.size)
        index = np.tile(self.kept_[test_idx], 3)
        for name, detector in self.detectors.items():
            start = time.perf_counter()
            det = clone(detector)
            det.fit_from_features(self.train_, fit_data, fit_y, model=self.model)
            scores = np.asarray(det.score_from_features(test_data, model=self.model), dtype=np.float64)
            self.fitted_[name] = det
            metrics = detection_metrics(test_y, scores, tnr=self.tnr, n_boot=self.n_boot, ci=self.ci,
                                        seed=self.seed)
            rows.append({"detector": name, **base, **metrics, "seconds": time.perf_counter() - start})
            long_scores.append(pd.DataFrame({"detector": name, "kind": kinds, "index": index, "is_adv": test_y,
                                             "score": scores}))
        self.scores_ = pd.concat(long_scores, ignore_index=True)
        return pd.DataFrame(rows, columns=result_columns(self.tnr))


    def evaluate_transfer(self, fit_attack: torch.Tensor, held_out: Mapping[str, torch.Tensor], *,
                          fit_name: str = "fit", dataset: str | None = None, eps: float | None = None,
                          targets=None, held_out_targets: Mapping | None = None) -> pd.DataFrame:
        """Fit on one attack's AEs, score the held-out images with other attacks' AEs of the same images.

        The HFC evaluation (METHODS.md section 5): the supervised parts are fitted on the fitting
        side with the **base** attack's AEs, and the held-out side is scored with the **HFC** (or an
        adaptive) version of the same images. The split, the clean and noisy sets and the class
        statistics are those of :meth:`prepare`, so the only difference between held-out attacks
        is the adversarial image. Every detector is fitted once and scores every held-out attack.

        Parameters
        ----------
        fit_attack : torch.Tensor
            Adversarial images (aligned with ``x_test`` or ``kept_``) whose fitting-side triplets fit
            the supervised parts; only the successful ones count (``only_successful``).
        held_out : mapping name -> torch.Tensor
            Adversarial images of the same images, one set per attack to score; on the held-out
            side, a triplet counts when *that* attack succeeded.
        fit_name : str
            Label of ``fit_attack`` (column ``fit_attack``).
        targets : array-like of int, optional
            Targets of ``fit_attack`` (a targeted attack), also the default for every held-out set.
        held_out_targets : mapping name -> array-like, optional
            Per held-out attack targets where they differ from ``targets``.

        Returns
        -------
        pandas.DataFrame
            One row per (held-out attack, detector): :func:`result_columns` (``attack`` is the
            held-out attack, ``attack_success_rate`` its success over every kept image,
            ``n_fit_adv`` the fitting AEs) plus ``fit_attack``. :attr:`scores_` gets an
            ``attack`` column.
        """
        if not hasattr(self, "clean_"):
            raise RuntimeError("call prepare(x_train, y_train, x_test, y_test) before evaluate_transfer().")
        if not held_out:
            raise ValueError("held_out is empty; pass {name: adversarial images} to score.")
        held_out_targets = dict(held_out_targets or {})
        unknown = sorted(set(held_out_targets) - set(held_out))
        if unknown:
            raise ValueError(f"held_out_targets names {unknown}, which are not in held_out {sorted(held_out)}.")

        def side(x, t, name):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a tensor of adversarial images, got {type(x).__name__}.")
            t = None if t is None else torch.as_tensor(
                _rows_for_kept(np.asarray(t), self.n_test_, self.kept_, f"targets of {name}")).long()
            feats = self._extract(self._run_attack(x, t), labels=self.y_kept_, keep_images=self._needs_images())
            success = feats.pred != self.y_kept_ if t is None else feats.pred == t.numpy()
            return feats, success

        def triplets(adv, idx):
            data = Features.concat([self.clean_.subset(idx), self.noisy_.subset(idx), adv.subset(idx)])
            return data, np.r_[np.zeros(2 * idx.size, dtype=np.int64), np.ones(idx.size, dtype=np.int64)]

        fit_adv, fit_success = side(fit_attack, targets, "fit_attack")
        fit_used = fit_success if self.only_successful else np.ones_like(fit_success)
        fit_idx = np.flatnonzero(fit_used & self.fit_side_)
        scored = {}
        for name, x in held_out.items():
            adv, success = side(x, held_out_targets.get(name, targets), f"held_out[{name!r}]")
            used = success if self.only_successful else np.ones_like(success)
            scored[name] = (adv, np.flatnonzero(used & ~self.fit_side_), float(success.mean()))
        columns = result_columns(self.tnr) + ["fit_attack"]
        nan_metrics = {k: np.nan for k in result_columns(self.tnr)[4:13]}
        rows, long_scores, self.fitted_ = [], [], {}
        fitted = {}
        if fit_idx.size >= 2:
            fit_data, fit_y = triplets(fit_adv, fit_idx)
            for det_name, detector in self.detectors.items():
                start = time.perf_counter()
                det = clone(detector)
                det.fit_from_features(self.train_, fit_data, fit_y, model=self.model)
                fitted[det_name] = (det, time.perf_counter() - start)
            self.fitted_ = {k: v[0] for k, v in fitted.items()}
        else:
            log.warning("%s: only %d fitting adversarial examples; metrics are NaN.", fit_name, fit_idx.size)
        for name, (adv, test_idx, rate) in scored.items():
            base = {"attack": name, "dataset": dataset, "eps": eps, "n_normal": 2 * test_idx.size,
                    "n_adv": test_idx.size, "n_fit_normal": 2 * fit_idx.size, "n_fit_adv": fit_idx.size,
                    "n_kept": int(self.kept_.size), "attack_success_rate": rate, "fit_attack": fit_name}
            if not fitted or test_idx.size < 1:
                rows += [{"detector": d, **base, **nan_metrics, "seconds": 0.0} for d in self.detectors]
                continue
            test_data, test_y = triplets(adv, test_idx)
            kinds, index = np.repeat(["clean", "noisy", "adv"], test_idx.size), np.tile(self.kept_[test_idx], 3)
            for det_name, (det, fit_seconds) in fitted.items():
                start = time.perf_counter()
                scores = np.asarray(det.score_from_features(test_data, model=self.model), dtype=np.float64)
                metrics = detection_metrics(test_y, scores, tnr=self.tnr, n_boot=self.n_boot, ci=self.ci,
                                            seed=self.seed)
                rows.append({"detector": det_name, **base, **metrics,
                             "seconds": fit_seconds + time.perf_counter() - start})
                long_scores.append(pd.DataFrame({"detector": det_name, "attack": name, "kind": kinds, "index": index,
                                                 "is_adv": test_y, "score": scores}))
        self.scores_ = (pd.concat(long_scores, ignore_index=True) if long_scores else
                        pd.DataFrame(columns=["detector", "attack", "kind", "index", "is_adv", "score"]))
        return pd.DataFrame(rows, columns=columns)


def evaluate_detectors(model, *, x_train, y_train, x_test, y_test, attack, detectors: Mapping,
                       layers: Sequence[str] | None = None, noise: float = 2 / 256, split: float = 0.7,
                       seed: int = 0, attack_name: str | None = None, dataset: str | None = None,
                       eps: float | None = None, targets=None, only_successful: bool = True,
                       batch_size: int = 256, n_boot: int = 1000, ci: float = 0.95, tnr: float = 0.9) -> pd.DataFrame:
    """One-call version of :class:`DetectionProtocol` for a single attack.

    Examples
    --------
    >>> from medadv_lib.detectors import KD, LID, Mahalanobis
    >>> table = evaluate_detectors(model, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
    ...                            attack=lambda x, y: pgd(x, y), attack_name="PGD", dataset="pneumonia",
    ...                            eps=4 / 256, detectors={"KD": KD(), "LID": LID(), "MAHA": Mahalanobis()})
    """
    protocol = DetectionProtocol(model, detectors, layers=layers, noise=noise, split=split, seed=seed,
                                 only_successful=only_successful, batch_size=batch_size, n_boot=n_boot, ci=ci,
                                 tnr=tnr)
    protocol.prepare(x_train, y_train, x_test, y_test)
    return protocol.evaluate(attack, attack_name=attack_name, dataset=dataset, eps=eps, targets=targets)
