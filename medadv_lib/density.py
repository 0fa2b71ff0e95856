"""Class-conditional Gaussians and Gaussian mixtures as one differentiable torch module.

One density model serves every method that scores features by a Gaussian (mixture):

* the GMM / UAD detector (Li, Pan & Zhu; Methods page, :ref:`methods-uad`) scores features by
  :meth:`TorchGaussianMixture.log_prob` of a per-class scikit-learn mixture;
* the Mahalanobis detector (Lee et al. 2018, NeurIPS) and the fixed-direction analysis use class
  means with one tied covariance (:meth:`TorchGaussianMixture.tied`) and read
  :meth:`TorchGaussianMixture.mahalanobis`;
* the HFC constraint (Yao et al., MICCAI 2021; Methods page, :ref:`methods-hfc`) picks, per feature, the most
  likely component without gradient (:meth:`TorchGaussianMixture.nearest_component`) and
  minimises :meth:`TorchGaussianMixture.whitened_sq_distance` to it.

Fitting stays in scikit-learn (:class:`sklearn.mixture.GaussianMixture`,
:class:`sklearn.mixture.BayesianGaussianMixture`, :class:`sklearn.covariance.EmpiricalCovariance`);
this module only evaluates the fitted model, on any device and dtype (the parameters are
buffers, so ``.to(device, dtype)`` moves them) and differentiably in the input.

Parameterisation (scikit-learn's): component ``k`` has mean ``mu_k`` and a factor ``L_k`` of its
precision, ``Sigma_k^-1 = L_k L_k^T`` (``precisions_cholesky_``). With the whitened difference
``y_k = (x - mu_k)^T L_k``,

    log p(x, k) = log w_k + log|det L_k| - D/2 log(2 pi) - ||y_k||^2 / 2 + c_k,

where ``c_k`` is 0 for a plain mixture and holds the variational expectation terms of a
Bayesian mixture (so that :meth:`~TorchGaussianMixture.log_prob` equals
``BayesianGaussianMixture.score_samples``). ``log p(x) = logsumexp_k log p(x, k)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import digamma
from torch import nn

__all__ = ["COVARIANCE_TYPES", "TorchGaussianMixture"]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _f64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _psd_factor(precision: np.ndarray) -> tuple[np.ndarray, float]:
    """A square factor ``L`` with ``L L^T = precision`` and ``log|det L|`` for a PSD matrix.

    Cholesky when the matrix is positive definite (then ``L`` is triangular, as in
    scikit-learn); otherwise an eigen-factor ``V sqrt(lambda)`` with eigenvalues below scipy's
    ``pinvh`` cut-off set to 0, so a pseudo-inverse precision (``EmpiricalCovariance.precision_``
    of a rank-deficient covariance, e.g. dead ReLU units) gives the same distances as
    ``(x - mu)^T P (x - mu)``. The log-determinant is then the pseudo-determinant's (the density
    restricted to the covariance's support).
    """
    precision = 0.5 * (precision + precision.T)
    try:
        lower = np.linalg.cholesky(precision)
        return lower, float(np.log(np.diag(lower)).sum())
    except np.linalg.LinAlgError:
        pass
    lam, vec = np.linalg.eigh(precision)
    cut = lam.max(initial=0.0) * precision.shape[0] * np.finfo(np.float64).eps
    lam = np.where(lam > cut, lam, 0.0)
    if not (lam > 0).any():
        raise ValueError("the precision matrix is zero (or not positive semi-definite); nothing to score with.")
    return vec * np.sqrt(lam), float(0.5 * np.log(lam[lam > 0]).sum())


class TorchGaussianMixture(nn.Module):
    """A fitted Gaussian mixture (or a set of class Gaussians) as a differentiable torch module.

    Build it with :meth:`from_sklearn` (a fitted ``GaussianMixture`` or
    ``BayesianGaussianMixture``, any ``covariance_type``) or :meth:`tied` (class means and one
    shared covariance or precision). All parameters are buffers: ``.to(device)``,
    ``.to(torch.float32)`` and ``state_dict()`` work as for any module, and nothing is trained.

    Parameters
    ----------
    means : array-like (K, D)
    precisions_cholesky : array-like
        Precision factors ``L`` with ``L L^T = Sigma^-1``, in scikit-learn's layout: (K, D, D)
        for "full", (D, D) for "tied", (K, D) for "diag", (K,) for "spherical".
    log_weights : array-like (K,)
        Log mixing weights (need not be normalised: :meth:`tied` uses class priors or 0).
    covariance_type : {"full", "tied", "diag", "spherical"}
    log_det : array-like (K,), optional
        ``log|det L_k|``; by default ``sum(log diag L_k)``, right for triangular factors.
    log_offset : array-like (K,), optional
        Extra per-component constant ``c_k`` (Bayesian mixtures); default 0.
    dtype : torch.dtype, default torch.float64
        Float64 keeps :meth:`log_prob` equal to scikit-learn to 1e-6 relative; use
        ``.to(torch.float32)`` inside float32 attacks.

    Attributes (buffers)
    --------------------
    means : (K, D)
    precisions_cholesky : layout as above
    log_weights, log_det, log_offset : (K,)
    centre : (D,)
        Mean of the component means; inputs and means are shifted by it before whitening, which
        changes nothing mathematically but keeps round-off small for features far from 0.
    whitened_means : (K, D)
        ``(mu_k - centre)^T L_k``, precomputed.

    Notes
    -----
    Every method of all components forms the (N, K, D) whitened differences directly (one
    einsum for "full", broadcasting otherwise) rather than expanding ``x'Px - 2x'P mu + mu'P mu``:
    no cancellation, so distances near a mean and gradients in float32 stay accurate. Callers
    scoring many rows bound memory by blocks of N (the detectors use 2**22 elements per block).
    :meth:`whitened_sq_distance` for one chosen component per row needs only (N, D) (plus the
    gathered (N, D, D) factors for "full").
    """

    def __init__(self, means, precisions_cholesky, log_weights, covariance_type: str = "full", *,
                 log_det=None, log_offset=None, dtype: torch.dtype = torch.float64):
        super().__init__()
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}.")
        means = _f64(means)
        if means.ndim != 2 or 0 in means.shape:
            raise ValueError(f"means must be a non-empty (K, D) array, got shape {means.shape}.")
        k, d = means.shape
        chol = _f64(precisions_cholesky)
        expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]
        if chol.shape != expected:
            raise ValueError(f"precisions_cholesky for covariance_type={covariance_type!r} with K={k}, D={d} "
                             f"must have shape {expected}, got {chol.shape}.")
        log_weights = _f64(log_weights).reshape(-1)
        if log_weights.shape != (k,):
            raise ValueError(f"log_weights must have shape ({k},), got {log_weights.shape}.")
        if log_det is None:
            log_det = {"full": lambda: np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1),
                       "tied": lambda: np.full(k, np.log(np.diag(chol)).sum()),
                       "diag": lambda: np.log(chol).sum(1),
                       "spherical": lambda: d * np.log(chol)}[covariance_type]()
        log_det = np.broadcast_to(_f64(log_det), (k,)).copy()
        log_offset = np.zeros(k) if log_offset is None else np.broadcast_to(_f64(log_offset), (k,)).copy()
        for name, a in (("means", means), ("precisions_cholesky", chol), ("log_weights", log_weights),
                        ("log_det", log_det), ("log_offset", log_offset)):
            if not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or infinite values; refit the estimator or drop "
                                 "the degenerate components.")
        centre = means.mean(0)
        self.covariance_type = covariance_type
        self.n_components, self.n_features = k, d
        whitened = self._whiten_np(means - centre, chol, covariance_type)
        for name, a in (("means", means), ("precisions_cholesky", chol), ("log_weights", log_weights),
                        ("log_det", log_det), ("log_offset", log_offset), ("centre", centre),
                        ("whitened_means", whitened)):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(a), dtype=dtype))

    @staticmethod
    def _whiten_np(m: np.ndarray, chol: np.ndarray, kind: str) -> np.ndarray:
        # row k of m whitened by its own component's factor: (K, D)
        if kind == "full":
            return np.einsum("kd,kde->ke", m, chol)
        if kind == "tied":
            return m @ chol
        if kind == "diag":
            return m * chol
        return m * chol[:, None]

    # ------------------------------------------------------------------------ constructors
    @classmethod
    def from_sklearn(cls, estimator, *, variational: bool = True, dtype: torch.dtype = torch.float64
                     ) -> "TorchGaussianMixture":
        """Wrap a fitted scikit-learn ``GaussianMixture`` or ``BayesianGaussianMixture``.

        Reads ``means_``, ``precisions_cholesky_``, ``weights_`` and ``covariance_type``.

        Parameters
        ----------
        estimator : GaussianMixture or BayesianGaussianMixture, fitted
        variational : bool, default True
            For a ``BayesianGaussianMixture``: include the variational terms its
            ``score_samples`` and ``predict`` use (expected log weights from
            ``weight_concentration_``, the Wishart terms from ``degrees_of_freedom_`` and
            ``mean_precision_``), so that :meth:`log_prob` and :meth:`nearest_component` equal
            scikit-learn's. ``False`` gives the plug-in mixture with ``weights_`` and
            ``precisions_cholesky_`` only, the density the HFC authors evaluate. Ignored for a
            ``GaussianMixture``.
        dtype : torch.dtype, default torch.float64

        Returns
        -------
        TorchGaussianMixture
        """
        missing = [a for a in ("means_", "precisions_cholesky_", "weights_", "covariance_type")
                   if not hasattr(estimator, a)]
        if missing:
            raise TypeError(f"estimator must be a fitted sklearn GaussianMixture or BayesianGaussianMixture; "
                            f"{type(estimator).__name__} lacks {missing} (call fit first).")
        means = _f64(estimator.means_)
        d = means.shape[1]
        log_weights = np.log(_f64(estimator.weights_))
        log_offset = None
        if variational and hasattr(estimator, "weight_concentration_"):
            # BayesianGaussianMixture._estimate_log_weights and _estimate_log_prob, scikit-learn 1.x
            conc = estimator.weight_concentration_
            if estimator.weight_concentration_prior_type == "dirichlet_process":
                a, b = _f64(conc[0]), _f64(conc[1])
                total = digamma(a + b)
                log_weights = digamma(a) - total + np.concatenate([[0.0], np.cumsum(digamma(b) - total)[:-1]])
            else:
                conc = _f64(conc)
                log_weights = digamma(conc) - digamma(conc.sum())
            dof = _f64(estimator.degrees_of_freedom_).reshape(-1)
            log_lambda = d * np.log(2.0) + digamma(0.5 * (dof[None, :] - np.arange(d)[:, None])).sum(0)
            log_offset = (-0.5 * d * np.log(dof) + 0.5 * (log_lambda - d / _f64(estimator.mean_precision_)))
        return cls(means, estimator.precisions_cholesky_, log_weights, estimator.covariance_type,
                   log_offset=log_offset, dtype=dtype)

    @classmethod
    def tied(cls, means, covariance=None, *, precision=None, weights=None, dtype: torch.dtype = torch.float64
             ) -> "TorchGaussianMixture":
        """Class Gaussians ``N(mu_k, Sigma)`` with one shared covariance (Lee et al. 2018).

        Give exactly one of ``covariance`` (inverted through its Cholesky factor, which must
        exist) or ``precision`` (e.g. ``EmpiricalCovariance.precision_``, a pseudo-inverse; a
        singular one is factored by eigen-decomposition, see :func:`_psd_factor`).

        Parameters
        ----------
        means : array-like (K, D)
        covariance : array-like (D, D), optional
        precision : array-like (D, D), optional
        weights : array-like (K,), optional
            Class priors; default uniform (log weight 0 for every class, which leaves
            :meth:`nearest_component` the closest mean in Mahalanobis distance).
        dtype : torch.dtype, default torch.float64
        """
        means = _f64(means)
        if means.ndim != 2:
            raise ValueError(f"means must be a (K, D) array, got shape {means.shape}.")
        if (covariance is None) == (precision is None):
            raise ValueError("give exactly one of covariance= or precision=.")
        d = means.shape[1]
        given = _f64(covariance if precision is None else precision)
        if given.shape != (d, d):
            raise ValueError(f"{'covariance' if precision is None else 'precision'} must be ({d}, {d}) "
                             f"for means with D={d}, got {given.shape}.")
        if precision is None:
            try:
                cov_lower = np.linalg.cholesky(0.5 * (given + given.T))
            except np.linalg.LinAlgError:
                raise ValueError("covariance is not positive definite; add a ridge to its diagonal or pass "
                                 "precision= (a pseudo-inverse) instead.") from None
            # scikit-learn's _compute_precision_cholesky: L = (C^-1)^T, upper triangular
            chol = np.linalg.solve(cov_lower, np.eye(d)).T
            log_det = -float(np.log(np.diag(cov_lower)).sum())
        else:
            chol, log_det = _psd_factor(given)
        log_weights = np.zeros(means.shape[0]) if weights is None else np.log(_f64(weights))
        return cls(means, chol, log_weights, "tied", log_det=log_det, dtype=dtype)

    # ------------------------------------------------------------------------ evaluation
    def _check_input(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x), device=self.means.device)
        if x.dim() != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (N, {self.n_features}) (one feature vector per row), "
                             f"got {tuple(x.shape)}; take the spatial mean of feature maps first.")
        if x.device != self.means.device:
            raise ValueError(f"x is on {x.device} but the mixture is on {self.means.device}; "
                             "move one of them (mixture.to(x.device)).")
        # computed in the mixture's dtype; the cast is differentiable, so a float32 input to a
        # float64 mixture still gets its (float32) gradient
        x = x.to(self.means.dtype)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values; the density is undefined there.")
        return x

    def _whitened(self, x: torch.Tensor, component=None) -> torch.Tensor:
        """``(x - mu_k)^T L_k``: (N, K, D) for every component, (N, D) for one per sample."""
        xc = x - self.centre
        chol, kind = self.precisions_cholesky, self.covariance_type
        if component is None:
            if kind == "full":
                xw = torch.einsum("nd,kde->nke", xc, chol)  # all components in one contraction
            elif kind == "tied":
                xw = (xc @ chol)[:, None, :]
            elif kind == "diag":
                xw = xc[:, None, :] * chol[None]
            else:
                xw = xc[:, None, :] * chol[None, :, None]
            return xw - self.whitened_means[None]
        if kind == "full":
            xw = self._per_component_matmul(xc, chol, component)
        elif kind == "tied":
            xw = xc @ chol
        elif kind == "diag":
            xw = xc * chol[component]
        else:
            xw = xc * chol[component][:, None]
        return xw - self.whitened_means[component]

    @staticmethod
    def _per_component_matmul(xc: torch.Tensor, chol: torch.Tensor, component: torch.Tensor) -> torch.Tensor:
        """``xc[i] @ chol[component[i]]`` per row, one matrix product per component present.

        Gathering ``chol[component]`` would copy an (N, D, D) tensor at every attack step (HFC
        calls this for every layer and step: 17 % of an HFC step on ResNet-18 went to that copy);
        a batch holds few distinct components, so a product per component is far cheaper.
        """
        present = torch.unique(component)
        if len(present) == 1:
            return xc @ chol[int(present[0])]
        out = xc.new_zeros(xc.shape[0], chol.shape[-1])
        for k in present.tolist():
            rows = (component == k).nonzero().squeeze(1)
            out = out.index_put((rows,), xc[rows] @ chol[k])
        return out

    def _component_index(self, component, n: int) -> torch.Tensor:
        k = torch.as_tensor(component, device=self.means.device)
        if k.dim() == 0:
            k = k.expand(n)
        if k.shape != (n,) or k.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"component must be an int or an integer tensor of shape ({n},), got "
                             f"{tuple(k.shape)} {k.dtype}.")
        if n and (int(k.min()) < 0 or int(k.max()) >= self.n_components):
            raise ValueError(f"component indices must lie in [0, {self.n_components}).")
        return k.long()

    def mahalanobis(self, x) -> torch.Tensor:
        """Squared Mahalanobis distances ``(x - mu_k)^T Sigma_k^-1 (x - mu_k)``, shape (N, K)."""
        return self._whitened(self._check_input(x)).square().sum(-1)

    def component_log_prob(self, x) -> torch.Tensor:
        """Weighted log joint ``log p(x, k)`` per component, shape (N, K).

        Equals scikit-learn's ``_estimate_weighted_log_prob`` (what ``predict`` maximises).
        """
        d2 = self.mahalanobis(x)
        const = self.log_weights + self.log_det + self.log_offset - 0.5 * self.n_features * math.log(2 * math.pi)
        return const - 0.5 * d2

    def log_prob(self, x) -> torch.Tensor:
        """Log-density ``log p(x)``, shape (N,); equals ``score_samples`` of the wrapped estimator."""
        return torch.logsumexp(self.component_log_prob(x), dim=1)

    def forward(self, x) -> torch.Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x)

    def nearest_component(self, x) -> torch.Tensor:
        """Most likely component per sample (argmax of :meth:`component_log_prob`), shape (N,), int64.

        Computed without gradient (a discrete choice; HFC recomputes it at every step and does not
        differentiate through it). Equals ``predict`` of the wrapped estimator.
        """
        if self.n_components == 1:  # nothing to choose: skip the (N, K, D) scoring pass
            return torch.zeros(self._check_input(x).shape[0], dtype=torch.long, device=self.means.device)
        with torch.no_grad():
            return self.component_log_prob(x).argmax(1)

    def whitened_sq_distance(self, x, component=None) -> torch.Tensor:
        """HFC's per-layer term: mean over the D dimensions of ``((x - mu_k)^T L_k)^2``, shape (N,).

        This is the squared Mahalanobis distance to component ``k`` divided by D (Yao et al.,
        MICCAI 2021; Methods page, :ref:`methods-hfc`, ``J_l``), differentiable in ``x`` and evaluated for one
        component per sample only (no (N, K, D) intermediate).

        Parameters
        ----------
        x : tensor (N, D)
        component : int or integer tensor (N,), optional
            Component per sample; default :meth:`nearest_component` (chosen without gradient).
        """
        x = self._check_input(x)
        k = self.nearest_component(x) if component is None else self._component_index(component, x.shape[0])
        return self._whitened(x, k).square().mean(-1)

    def extra_repr(self) -> str:
        return (f"n_components={self.n_components}, n_features={self.n_features}, "
                f"covariance_type={self.covariance_type!r}")
