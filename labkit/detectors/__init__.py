"""Anomaly detectors over a classifier's activations, all behind one interface (:class:`Detector`):
``fit(model, x_clean[, y])`` on clean data only, then ``score(x)`` — higher means more anomalous.

Modules: ``base`` (the interface, activation capture), ``max_softmax`` (Hendrycks & Gimpel 2017), ``mahalanobis``
(Lee et al. 2018), ``lid`` (Ma et al. 2018), ``density`` (Feinman et al. 2017), ``knn`` (deep kNN, Sun et al. 2022)
``metrics`` (TPR at a fixed FPR, and AUROC via scikit-learn, for clean vs anomalous scores) and ``config`` (the
classifier, split and detector fields that notebooks 03 and 04 share).
"""

from labkit.detectors.base import Detector
from labkit.detectors.density import KernelDensityUncertainty
from labkit.detectors.knn import DeepKNN
from labkit.detectors.lid import LID
from labkit.detectors.mahalanobis import Mahalanobis
from labkit.detectors.max_softmax import MaxSoftmax

__all__ = [
    "Detector",
    "MaxSoftmax",
    "Mahalanobis",
    "LID",
    "KernelDensityUncertainty",
    "DeepKNN",
    "BASELINES",
    "baselines",
]

#: display names of the established detectors compared with FACADE and used as monitors, in table order
BASELINES = ("MSP", "Mahalanobis (last)", "Mahalanobis (all)", "LID (all)", "KD+BU", "deep kNN")


def baselines(*, lid_k: int = 20, mc_samples: int = 30, knn_k: int = 10, seed: int = 0) -> dict[str, Detector]:
    """Fresh, unfitted instances of the established detectors by display name (:data:`BASELINES`): LID with
    ``lid_k`` neighbours (Ma et al.'s k = 20), kernel density + Bayesian uncertainty with ``mc_samples`` dropout
    passes drawn from ``seed``, deep kNN with ``knn_k`` neighbours."""
    return dict(
        zip(
            BASELINES,
            (
                MaxSoftmax(),
                Mahalanobis("last"),
                Mahalanobis("all"),
                LID(lid_k, "all"),
                KernelDensityUncertainty("kd+bu", mc_samples, random_state=seed),
                DeepKNN(knn_k),
            ),
        )
    )
