"""A fibre's strength–duration curve learnt from all-or-none responses, and where to stimulate next to learn it fastest.

Model
    The simulator's law (labkit.rig.simulator.worm; Weiss–Lapicque): a fibre fires when the phase peak V_pp / 2 of a
    bipolar sine of period T reaches Rb (1 + c / d)(1 + cv z), d = T / 2, z ~ N(0, 1) per pulse. Dividing by V_pp / 2
    and writing u = 2 / V_pp, it fires when

        1 - Rb u - Rb c (u / d)  >=  cv z    (to first order in cv z),

    a binary GLM that is *linear* in the features x = (u, u / d) with weights w = (w_0, w_1, w_2) ∝ (1, -Rb, -Rb c):

        P(fire | V_pp, T) = σ(w_0 + w_1 u + w_2 u / d),    Rb = -w_1 / w_0,    c = w_2 / w_1.

    The logistic link stands in for the probit (same 50 % contour). The responses are *calls* of 05a's analysis, which
    misses a spike now and then and, rarely, sees one that is not there; a few wrong calls near the threshold would
    tip a plain logistic fit (Rb or c ≤ 0). So the model has lapse rates, as psychometric functions do (Wichmann &
    Hill 2001, Percept Psychophys 63:1293): a false alarm rate γ and a miss rate λ (``FALSE_ALARM``, ``MISS``; ours,
    of the order of the analysis's error rates on development worms),

        P(call | x) = γ + (1 - γ - λ) σ(wᵀx),    x = (1, u, u / d).

    Fitting: the MAP under the prior w_1, w_2 ~ N(0, C) (flat on w_0), by scipy's L-BFGS from scikit-learn's
    ``LogisticRegression`` fit (the lapse-free MAP: its L2 penalty is the same prior); the posterior is approximated
    by the Laplace approximation N(ŵ, Σ) with the expected (Fisher) information of this non-canonical link,

        Σ⁻¹ = Σ_trials q² / (P (1 - P)) x xᵀ + diag(0, 1, 1) / C,    q = ∂P/∂(wᵀx) = (1 - γ - λ) σ (1 - σ)

    (Bishop 2006, "Pattern Recognition and Machine Learning", §4.4–4.5; with γ = λ = 0 it is the logistic one).
    Two pseudo-trials at ``V_pp = PRIOR_NO_FIRE_VPP`` (the shortest and longest periods) that did not fire encode
    the one certain prior fact — a 0.2 V_pp pulse excites no giant fibre — so the model is defined from the first
    real trial on.

Acquisition (sequential Bayesian A-optimal design; Chaloner & Verdinelli 1995, Statistical Science 10:273)
    The target is θ = (Rb / Rb_scale, c / c_scale), with covariance J Σ Jᵀ by the delta method. A trial at x adds the
    Fisher information i(x) x xᵀ, i = q² / (P (1 - P)) at the MAP (the *locally* optimal design: with the
    posterior's spread folded in, as in MacKay's predictive σ(μ / √(1 + π s² / 8)), an early, vague posterior makes
    the far corners of the space look informative, and a pulse where the fibre surely stays silent teaches nothing);
    with s² = xᵀ Σ x, by Sherman–Morrison the trace of θ's covariance falls by

        Δ(x) = i(x) ‖J Σ x‖² / (1 + i(x) s²).

    While (Rb, c) is undefined (the fibre fired, but the fitted contour still has Rb or c ≤ 0) the target is the
    contour itself: Δ(x) = i(x), largest where the predictive call is most uncertain. :func:`variance_reduction`
    returns Δ for many candidates at once; the search serves the fibres in turn.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = ["PRIOR_NO_FIRE_VPP", "FALSE_ALARM", "MISS", "features", "FibreModel", "variance_reduction", "threshold_vpp"]

PRIOR_NO_FIRE_VPP = 0.2  # ours: far below any giant fibre's threshold (≈ 2 V_pp in intact worms)
FALSE_ALARM, MISS = 0.02, 0.05  # ours: the lapse rates γ, λ of the calls (module docstring)
_RB_SCALE_V, _C_SCALE_MS = 1.0, 0.06  # the intact worm's MGF (labkit.rig.simulator.worm): units of the target


def threshold_vpp(rheobase_v, chronaxie_ms, period_ms):
    """V_th,pp = 2 Rb (1 + c / d), d = T / 2: the peak-to-peak threshold of a bipolar sine of period T."""
    return 2.0 * np.asarray(rheobase_v) * (1.0 + np.asarray(chronaxie_ms) / (np.asarray(period_ms) / 2.0))


def features(vpp, period_ms) -> np.ndarray:
    """x = (u, u / d) with u = 2 / V_pp, d = T / 2 (ms): shape (n, 2)."""
    u = 2.0 / np.asarray(vpp, dtype=float).ravel()
    return np.stack([u, u / (np.asarray(period_ms, dtype=float).ravel() / 2.0)], axis=1)


@dataclass(frozen=True)
class FibreModel:
    """The posterior of one fibre's (Rb, c) after some trials: :meth:`fit` makes one."""

    coef: np.ndarray  # (w_0, w_1, w_2), the MAP
    cov: np.ndarray  # Laplace covariance of w (3 × 3)
    n_trials: int

    @classmethod
    def fit(cls, vpp, period_ms, fired, prior_c: float = 1e3) -> "FibreModel":
        """The MAP and Laplace posterior from trials (V_pp, period ms, called fired?) plus the two no-fire
        pseudo-trials (module docstring)."""
        vpp, period_ms = np.asarray(vpp, dtype=float).ravel(), np.asarray(period_ms, dtype=float).ravel()
        fired = np.asarray(fired, dtype=bool).ravel()
        if not (len(vpp) == len(period_ms) == len(fired)):
            raise ValueError(
                f"FibreModel.fit: vpp, period_ms and fired have lengths {len(vpp)}, {len(period_ms)}, "
                f"{len(fired)}; allowed: equal lengths"
            )
        pseudo_t = np.array([period_ms.min(initial=1.0), period_ms.max(initial=1.0)])
        x = features(np.concatenate([vpp, [PRIOR_NO_FIRE_VPP] * 2]), np.concatenate([period_ms, pseudo_t]))
        y = np.concatenate([fired, [False, False]]).astype(float)
        if not y.any():  # nothing fired yet: the posterior is the prior's (no contour inside the box)
            return cls(np.array([np.nan] * 3), np.full((3, 3), np.nan), len(vpp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lr = LogisticRegression(C=prior_c, max_iter=2000, tol=1e-8).fit(x, y)
        xa = np.column_stack([np.ones(len(x)), x])
        penalty = np.array([0.0, 1.0, 1.0]) / prior_c

        def objective(w):
            p, q = _call_probability(xa @ w)
            nll = -np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)) + 0.5 * np.sum(penalty * w**2)
            return nll, -xa.T @ ((y - p) * q / (p * (1 - p))) + penalty * w

        w0 = np.concatenate([lr.intercept_, lr.coef_[0]])
        w = minimize(objective, w0, jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
        p, q = _call_probability(xa @ w)
        precision = xa.T @ (xa * (q**2 / (p * (1 - p)))[:, None]) + np.diag(penalty + [1e-9, 0, 0])
        return cls(w, np.linalg.inv(precision), len(vpp))

    @property
    def defined(self) -> bool:
        """True once the fibre has fired and the fitted contour has Rb > 0 and c > 0."""
        w = self.coef
        return bool(np.all(np.isfinite(w)) and w[0] > 0 and w[1] < 0 and w[2] < 0)

    @property
    def rheobase_v(self) -> float:
        return float(-self.coef[1] / self.coef[0]) if self.defined else math.nan

    @property
    def chronaxie_ms(self) -> float:
        return float(self.coef[2] / self.coef[1]) if self.defined else math.nan

    def _jacobian(self) -> np.ndarray:
        """∂(Rb / Rb_scale, c / c_scale) / ∂w at the MAP (2 × 3)."""
        w0, w1, w2 = self.coef
        return np.array([[w1 / w0**2, -1 / w0, 0.0], [0.0, -w2 / w1**2, 1 / w1]]) / [[_RB_SCALE_V], [_C_SCALE_MS]]

    def standard_errors(self) -> tuple[float, float]:
        """Laplace/delta-method standard errors of (Rb V, c ms); NaN while undefined."""
        if not self.defined:
            return math.nan, math.nan
        j = self._jacobian()
        se = np.sqrt(np.diag(j @ self.cov @ j.T))
        return float(se[0] * _RB_SCALE_V), float(se[1] * _C_SCALE_MS)

    def _predictive(self, vpp, period_ms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, s² = xᵀ Σ x, σ̄ = σ(μ / √(1 + π s² / 8))) at each candidate."""
        xa = np.column_stack([np.ones(np.size(vpp)), features(vpp, period_ms)])
        mu, s2 = xa @ self.coef, np.einsum("ij,jk,ik->i", xa, self.cov, xa)
        return xa, s2, expit(mu / np.sqrt(1 + np.pi * s2 / 8))

    def probability(self, vpp, period_ms) -> np.ndarray:
        """Predictive P(the fibre fires) at each (V_pp, period), σ̄ (lapses left out); 0 before it first fires."""
        if not np.all(np.isfinite(self.coef)):
            return np.zeros(np.broadcast(np.asarray(vpp), np.asarray(period_ms)).size)
        return self._predictive(vpp, period_ms)[2]

    def threshold_vpp(self, period_ms) -> np.ndarray:
        """The fitted 50 % threshold (V_pp) at each period; NaN while undefined."""
        if not self.defined:
            return np.full(np.shape(period_ms), np.nan)
        return threshold_vpp(self.rheobase_v, self.chronaxie_ms, period_ms)


def _call_probability(eta) -> tuple[np.ndarray, np.ndarray]:
    """P = γ + (1 - γ - λ) σ(η) and q = ∂P/∂η."""
    sig = expit(eta)
    return FALSE_ALARM + (1 - FALSE_ALARM - MISS) * sig, (1 - FALSE_ALARM - MISS) * sig * (1 - sig)


def variance_reduction(model: FibreModel, vpp, period_ms) -> np.ndarray:
    """Δ(x): how much one trial at each candidate (V_pp, period) would shrink tr Cov(Rb / Rb_scale, c / c_scale);
    while (Rb, c) is undefined, the information i(x) about the contour (module docstring). Zero before the fibre
    first fires."""
    if not np.all(np.isfinite(model.coef)):
        return np.zeros(np.size(vpp))
    xa, s2, _ = model._predictive(vpp, period_ms)
    p, q = _call_probability(xa @ model.coef)  # at the MAP: the locally optimal design
    info = q**2 / (p * (1 - p))
    if not model.defined:
        return info
    jsx = (xa @ model.cov) @ model._jacobian().T  # (n, 2): J Σ x for each candidate
    return info * np.einsum("ij,ij->i", jsx, jsx) / (1 + info * s2)
