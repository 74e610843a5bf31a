"""The protocol shared by the notebooks that train a digits classifier and fit detectors on its clean activations
(03 monitoring, 04 FACADE): a frozen base config that each notebook's config extends, its seeds and its split.

Classifier: an MLP of layer widths ``sizes`` with ``dropout``, ``epochs`` of Adam at ``lr`` in batches of
``batch_size`` (``labkit.classifiers``), on a stratified subset of ``n_images`` images; ``held_out_fraction`` of
them are held out and split into clean calibration and test (``test_fraction_of_held_out``):
:func:`train_calibration_test_split`. ``n_seeds`` runs, at least 2 (the claims compare against a seed spread);
run ``i`` has the seed ``derived_seed(seed, i)`` (:mod:`labkit.seeds`, :meth:`DetectionConfig.run_seeds`).
Hyperparameters of the established detectors (``labkit.detectors.baselines``), fixed a priori from the literature or
clean-data rules and never tuned on anomalous data: LID's ``lid_k`` (Ma et al.'s k = 20); deep kNN's ``knn_k``;
``mc_samples`` MC-dropout passes (Feinman et al.); thresholds at false-positive rate ``fpr``. FACADE's own
hyperparameters live in ``labkit.facade.config``. The experiments run on one torch/BLAS thread (the matrices are
small, and one thread is several times faster than two on a busy 2-core machine): a speed choice, not a parameter.
"""

from dataclasses import dataclass

import numpy as np

from labkit.config import ConfigError, Interval, NotebookConfig, fraction, param, positive_float, positive_int, tuple_of
from labkit.data.images import stratified_split
from labkit.seeds import derived_seed

__all__ = ["DetectionConfig", "train_calibration_test_split"]


def train_calibration_test_split(labels: np.ndarray, held_out_fraction: float, test_fraction_of_held_out: float,
                                 seed: int, n_items: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted index arrays ``(train, calibration, test)`` into ``labels``, each keeping the class shares: first a
    stratified subset of ``n_items`` (all items when ``None`` or at least ``len(labels)``), then
    ``held_out_fraction`` of it held out, then ``test_fraction_of_held_out`` of that for test and the rest for
    clean calibration. The three stratified splits use ``derived_seed(seed, 0)``, ``(seed, 1)`` and ``(seed, 2)``."""
    labels = np.asarray(labels)
    pool = np.arange(len(labels))
    if n_items is not None and n_items < len(labels):
        pool = stratified_split(labels, n_items / len(labels), derived_seed(seed, 0))[1]
    train, held = stratified_split(labels[pool], held_out_fraction, derived_seed(seed, 1))
    calibration, test = stratified_split(labels[pool][held], test_fraction_of_held_out, derived_seed(seed, 2))
    return pool[train], pool[held][calibration], pool[held][test]


@dataclass(frozen=True)
class DetectionConfig(NotebookConfig):
    """The classifier, split, seed and baseline-detector fields of notebooks 03 and 04 (see the module docstring)."""

    sizes: tuple = param((64, 128, 128, 64, 10), tuple_of(positive_int, min_len=3))
    dropout: float = param(0.1, Interval(float, 0, 1, closed="left"))
    epochs: int = param(60, positive_int)
    lr: float = param(1e-3, positive_float)
    batch_size: int = param(64, positive_int)
    n_images: int = param(1797, positive_int)
    held_out_fraction: float = param(0.4, fraction)
    test_fraction_of_held_out: float = param(0.625, fraction)
    n_seeds: int = param(3, positive_int)
    lid_k: int = param(20, positive_int)
    knn_k: int = param(10, positive_int)
    mc_samples: int = param(30, positive_int)
    fpr: float = param(0.05, fraction)

    def validate(self) -> None:
        if self.n_seeds < 2:
            raise ConfigError(f"{type(self).__name__}: bad value for 'n_seeds': {self.n_seeds}; allowed: an integer "
                              ">= 2 (the seed spread needs two seeds)")

    def run_seeds(self) -> list[int]:
        """The seeds of the ``n_seeds`` runs: ``derived_seed(seed, i)`` for run ``i``."""
        return [derived_seed(self.seed, i) for i in range(self.n_seeds)]

    def split(self, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`train_calibration_test_split` of ``labels`` with this config's fractions and ``n_images``."""
        return train_calibration_test_split(labels, self.held_out_fraction, self.test_fraction_of_held_out, seed,
                                            self.n_images)
