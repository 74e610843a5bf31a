r"""FACADE's anomaly score: the four parts of the proposal combined into one calibrated, thresholded detector.

For an input :math:`x` with hidden activations :math:`h_l(x)`, pseudo-classes :math:`c_l(x)` and prediction
:math:`\hat y`, the raw terms are

- ``path``: the Markov-chain negative log-likelihood of its path of pseudo-classes (``pseudoclasses``);
- ``circuit``: the Bernoulli negative log-likelihood of its top-``q`` edge circuit given :math:`\hat y` (``circuits``);
- ``radius``: :math:`\sum_l \log(\|h_l - \mu_{c_l}\| / r_{c_l})`, distance relative to its pseudo-class's radius;
- ``residual``: :math:`\sum_l \log` (off-manifold residual energy relative to the pseudo-class's own, ``geometry``);
- ``geometry``: :math:`-\log A(x)`, how little of its attribution flows through the edges that shape its predicted
  class's manifold (``geometry``).

Each term is z-scored with the mean and standard deviation of a clean *calibration* split (never used to fit the
pseudo-classes, circuits or geometry); the FACADE score is the sum of the z-scores, and the alarm threshold is the
``quantile`` (95th percentile) of the clean calibration scores, i.e. a nominal 5% false-positive rate. The weighting
(equal) and the terms were fixed before any adversarial data were looked at. Proposal: Pai, Carranza, Schaeffer,
Tandon & Koyejo 2023, "FACADE: A Framework for Adversarial Circuit Anomaly Detection and Evaluation", arXiv 2307.10563
(ICML 2023 AdvML-Frontiers workshop; no experiments or code of its own); this concrete instantiation is ours.
"""

import copy

import numpy as np
import torch

from labkit.data.images import stratified_split
from labkit.detectors.base import Detector, hidden_features
from labkit.facade.circuits import BernoulliCircuits, edge_attributions, edge_slices, top_edges
from labkit.facade.geometry import ClusterSubspaces, edge_contributions
from labkit.facade.pseudoclasses import PseudoClasses
from labkit.seeds import derived_seed

__all__ = ["TERMS", "Facade"]

TERMS = ("path", "circuit", "radius", "residual", "geometry")


class Facade(Detector):
    """``Facade(lam, q).fit(model, x_clean[, x_calibration=...]).score(x)``; per-term scores via :meth:`term_scores`.
    ``random_state`` seeds the default calibration split (``derived_seed(random_state, 0)``) and the pseudo-classes
    (``derived_seed(random_state, 1)``)."""

    def __init__(
        self,
        lam: float = 2.0,
        q: float = 0.05,
        k_scale: int = 10,
        terms: tuple = TERMS,
        calibration_fraction: float = 0.25,
        quantile: float = 0.95,
        chunk: int = 256,
        random_state: int = 0,
    ):
        self.lam = lam
        self.q = q
        self.k_scale = k_scale
        self.terms = terms
        self.calibration_fraction = calibration_fraction
        self.quantile = quantile
        self.chunk = chunk
        self.random_state = random_state

    def fit(self, model, x, y=None, x_calibration=None) -> "Facade":
        """Fit every part on clean ``x``; calibrate on ``x_calibration`` (default: a stratified split of ``x``)."""
        unknown = set(self.terms) - set(TERMS)
        if unknown or not self.terms:
            raise ValueError(f"terms must be a non-empty subset of {TERMS}, got {self.terms!r}")
        x = np.asarray(x, dtype=np.float32)
        if x_calibration is None:
            labels = np.asarray(y) if y is not None else np.zeros(len(x), int)
            fit_idx, cal_idx = stratified_split(labels, self.calibration_fraction, derived_seed(self.random_state, 0))
            x, x_calibration = x[fit_idx], x[cal_idx]
        self.model_ = model
        self.fit_data_, self.calibration_data_ = x, np.asarray(x_calibration, dtype=np.float32)
        hidden, logits = hidden_features(model, x)
        pred = logits.argmax(axis=1)
        self.n_classes_ = logits.shape[1]
        self.slices_ = edge_slices(model)
        masks = torch.cat(
            [
                top_edges(edge_attributions(model, xc)[0], self.slices_, self.q)
                for xc in torch.as_tensor(x).split(self.chunk)
            ]
        )
        self.circuits_ = BernoulliCircuits(self.n_classes_).fit(masks, pred)
        self.edge_distribution_ = edge_contributions(model, x, pred, self.n_classes_)
        return self._fit_resolution(hidden, pred)

    def _fit_resolution(self, hidden: list, pred: np.ndarray) -> "Facade":
        """The λ-dependent parts (pseudo-classes, their subspaces) and the calibration."""
        self.pseudo_ = PseudoClasses(self.lam, self.k_scale, random_state=derived_seed(self.random_state, 1)).fit(
            hidden, pred, self.n_classes_
        )
        assign, _ = self.pseudo_.assign(hidden)
        self.subspaces_ = [
            ClusterSubspaces().fit(h, assign[:, l], k) for l, (h, k) in enumerate(zip(hidden, self.pseudo_.n_states_))
        ]
        cal = self.raw_terms(self.calibration_data_)
        self.calibration_mean_ = {t: float(cal[t].mean()) for t in self.terms}
        self.calibration_std_ = {t: float(cal[t].std()) + 1e-12 for t in self.terms}
        self.calibration_scores_ = self._total(self._z(cal))
        self.threshold_ = float(np.quantile(self.calibration_scores_, self.quantile))
        return self

    def with_resolution(self, lam: float) -> "Facade":
        """A fitted copy at resolution ``lam`` on the same data: the circuits and edge distribution (which do not
        depend on λ) are shared, the pseudo-classes, subspaces and calibration are refit — for the λ sweep."""
        self._check_fitted()
        other = copy.copy(self)
        other.lam = lam
        hidden, logits = hidden_features(self.model_, self.fit_data_)
        return other._fit_resolution(hidden, logits.argmax(axis=1))

    def raw_terms(self, x) -> dict[str, np.ndarray]:
        """Every term's raw statistic (before z-scoring), plus the assignments and predictions behind them."""
        self._check_fitted()
        x = np.asarray(x, dtype=np.float32)
        hidden, logits = hidden_features(self.model_, x)
        pred = logits.argmax(axis=1)
        assign, _ = self.pseudo_.assign(hidden)
        circuit, geometry = [], []
        edge_p = torch.as_tensor(self.edge_distribution_)
        for xc in torch.as_tensor(x).split(self.chunk):
            scores, pc = edge_attributions(self.model_, xc)
            circuit.append(self.circuits_.nll(top_edges(scores, self.slices_, self.q), pc))
            magnitude = scores.abs().double()
            per_group = magnitude @ edge_p.T  # (n, n_groups)
            alignment = (
                per_group[torch.arange(len(pc)), torch.as_tensor(pc)]
                * magnitude.shape[1]
                / (magnitude.sum(dim=1) + 1e-300)
            )
            geometry.append(-torch.log(alignment + 1e-300).numpy())
        return {
            "path": self.pseudo_.path_nll(assign, pred),
            "circuit": np.concatenate(circuit),
            "radius": sum(
                np.log(s.relative_distance(h, assign[:, l]) + 1e-12)
                for l, (s, h) in enumerate(zip(self.subspaces_, hidden))
            ),
            "residual": sum(
                np.log(s.relative_residual(h, assign[:, l]) + 1e-12)
                for l, (s, h) in enumerate(zip(self.subspaces_, hidden))
            ),
            "geometry": np.concatenate(geometry),
            "assignments": assign,
            "predictions": pred,
        }

    def _z(self, raw: dict) -> dict[str, np.ndarray]:
        return {t: (raw[t] - self.calibration_mean_[t]) / self.calibration_std_[t] for t in self.terms}

    @staticmethod
    def _total(z: dict) -> np.ndarray:
        return np.sum(list(z.values()), axis=0)

    def calibrated(self, raw: dict) -> dict[str, np.ndarray]:
        """Calibrated z-scores of :meth:`raw_terms` output, and their sum (``"total"``)."""
        z = self._z(raw)
        return {**z, "total": self._total(z)}

    def term_scores(self, x) -> dict[str, np.ndarray]:
        """Every term's calibrated z-score and their sum (``"total"``), each ``(n,)``."""
        return self.calibrated(self.raw_terms(x))

    def score(self, x) -> np.ndarray:
        return self.term_scores(x)["total"]

    def predict(self, x) -> np.ndarray:
        """True where the score exceeds the clean-calibration threshold (nominal false-positive rate 1 − quantile)."""
        return self.score(x) > self.threshold_
