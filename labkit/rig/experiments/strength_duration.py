"""A fibre's strength–duration curve learnt from all-or-none responses, and where to stimulate next to learn it fastest.

Model
    The simulator's law (labkit.rig.simulator.worm; Weiss–Lapicque): a fibre fires when the phase peak V_pp / 2 of a
    bipolar sine of period T reaches Rb (1 + c / d)(1 + cv z), d = T / 2, z ~ N(0, 1) per pulse. Dividing by V_pp / 2
    and writing u = 2 / V_pp, it fires when

        1 - Rb u - Rb c (u / d)  >=  cv z    (to first order in cv z),

    a binary GLM that is *linear* in the features x = (u, u / d) with weights w = (w_0, w_1, w_2) ∝ (1, -Rb, -Rb c):

        P(fire | V_pp, T) = σ(w_0 + w_1 u + w_2 u / d),    Rb = -w_1 / w_0,    c = w_2 / w_1.

    The logistic link stands in for the probit (same 50 % contour). Fitting: scikit-learn's ``LogisticRegression``,
    whose L2 penalty makes it the MAP estimate of Bayesian logistic regression under the prior w_1, w_2 ~ N(0, C);
    the posterior is approximated by the Laplace approximation N(ŵ, Σ), Σ⁻¹ = Xᵀ diag(p(1 - p)) X + diag(0, 1, 1) / C
    (Bishop 2006, "Pattern Recognition and Machine Learning", §4.5). Two pseudo-trials at ``V_pp = PRIOR_NO_FIRE_VPP``
    (the shortest and longest periods) that did not fire encode the one certain prior fact — a 0.2 V_pp pulse
    excites no giant fibre — so the model is defined from the first real trial on.

Acquisition (sequential Bayesian A-optimal design; Chaloner & Verdinelli 1995, Statistical Science 10:273)
    The target is θ = (Rb / Rb_scale, c / c_scale), with covariance J Σ Jᵀ by the delta method. A trial at x adds the
    Fisher information p̄(1 - p̄) x xᵀ, p̄ the predictive probability σ(μ / √(1 + π s² / 8)), s² = xᵀ Σ x (MacKay
    1992); by Sherman–Morrison the trace of θ's covariance falls by

        Δ(x) = p̄(1 - p̄) ‖J Σ x‖² / (1 + p̄(1 - p̄) s²).

    :func:`variance_reduction` returns Δ for many candidates at once; the search sums it over fibres.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = ["PRIOR_NO_FIRE_VPP", "features", "FibreModel", "variance_reduction", "threshold_vpp"]

PRIOR_NO_FIRE_VPP = 0.2          # ours: far below any giant fibre's threshold (≈ 2 V_pp in intact worms)
_RB_SCALE_V, _C_SCALE_MS = 1.0, 0.06   # the intact worm's MGF (labkit.rig.simulator.worm): units of the target


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

    coef: np.ndarray            # (w_0, w_1, w_2), the MAP
    cov: np.ndarray             # Laplace covariance of w (3 × 3)
    n_trials: int

    @classmethod
    def fit(cls, vpp, period_ms, fired, prior_c: float = 1e3) -> "FibreModel":
        """The MAP and Laplace posterior from trials (V_pp, period ms, fired?) plus the two no-fire pseudo-trials."""
        vpp, period_ms = np.asarray(vpp, dtype=float).ravel(), np.asarray(period_ms, dtype=float).ravel()
        fired = np.asarray(fired, dtype=bool).ravel()
        if not (len(vpp) == len(period_ms) == len(fired)):
            raise ValueError(f"FibreModel.fit: vpp, period_ms and fired have lengths {len(vpp)}, {len(period_ms)}, "
                             f"{len(fired)}; allowed: equal lengths")
        pseudo_t = np.array([period_ms.min(initial=1.0), period_ms.max(initial=1.0)])
        x = features(np.concatenate([vpp, [PRIOR_NO_FIRE_VPP] * 2]), np.concatenate([period_ms, pseudo_t]))
        y = np.concatenate([fired, [False, False]])
        if not y.any():              # nothing fired yet: the posterior is the prior's (no contour inside the box)
            return cls(np.array([np.nan] * 3), np.full((3, 3), np.nan), len(vpp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lr = LogisticRegression(C=prior_c, max_iter=2000, tol=1e-8).fit(x, y)
        w = np.concatenate([lr.intercept_, lr.coef_[0]])
        xa = np.column_stack([np.ones(len(x)), x])
        p = expit(xa @ w)
        precision = xa.T @ (xa * (p * (1 - p))[:, None]) + np.diag([1e-9, 1 / prior_c, 1 / prior_c])
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
        return np.array([[w1 / w0 ** 2, -1 / w0, 0.0], [0.0, -w2 / w1 ** 2, 1 / w1]]) / [[_RB_SCALE_V], [_C_SCALE_MS]]

    def standard_errors(self) -> tuple[float, float]:
        """Laplace/delta-method standard errors of (Rb V, c ms); NaN while undefined."""
        if not self.defined:
            return math.nan, math.nan
        j = self._jacobian()
        se = np.sqrt(np.diag(j @ self.cov @ j.T))
        return float(se[0] * _RB_SCALE_V), float(se[1] * _C_SCALE_MS)

    def probability(self, vpp, period_ms) -> np.ndarray:
        """Predictive P(fire) at each (V_pp, period): σ(μ / √(1 + π s² / 8)); 0 before the fibre first fires."""
        if not np.all(np.isfinite(self.coef)):
            return np.zeros(np.broadcast(np.asarray(vpp), np.asarray(period_ms)).size)
        xa = np.column_stack([np.ones(np.size(vpp)), features(vpp, period_ms)])
        mu, s2 = xa @ self.coef, np.einsum("ij,jk,ik->i", xa, self.cov, xa)
        return expit(mu / np.sqrt(1 + np.pi * s2 / 8))

    def threshold_vpp(self, period_ms) -> np.ndarray:
        """The fitted 50 % threshold (V_pp) at each period; NaN while undefined."""
        if not self.defined:
            return np.full(np.shape(period_ms), np.nan)
        return threshold_vpp(self.rheobase_v, self.chronaxie_ms, period_ms)


def variance_reduction(model: FibreModel, vpp, period_ms) -> np.ndarray:
    """Δ(x): how much one trial at each candidate (V_pp, period) would shrink tr Cov(Rb / Rb_scale, c / c_scale)
    (module docstring). Zero while the fibre's contour is undefined."""
    if not model.defined:
        return np.zeros(np.size(vpp))
    xa = np.column_stack([np.ones(np.size(vpp)), features(vpp, period_ms)])
    p = model.probability(vpp, period_ms)
    info = p * (1 - p)
    sx = xa @ model.cov                                   # (n, 3): Σ x for each candidate
    s2 = np.einsum("ij,ij->i", sx, xa)
    jsx = sx @ model._jacobian().T                        # (n, 2)
    return info * np.einsum("ij,ij->i", jsx, jsx) / (1 + info * s2)
