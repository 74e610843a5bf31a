"""The protocol shared by the notebooks that train a digits classifier and fit detectors on its clean activations
(03 monitoring, 04 FACADE): a frozen base config that each notebook's config extends, its seeds and its split.

The classifier (``labkit.classifiers``) trains on a stratified subset of the digits, part of which is held out and
split into clean calibration and test (:func:`train_calibration_test_split`); run ``i`` of ``n_seeds`` has the seed
``derived_seed(seed, i)`` (:mod:`labkit.seeds`, :meth:`DetectionConfig.run_seeds`). The established detectors'
hyperparameters (``labkit.detectors.baselines``) are fixed a priori from the literature or clean-data rules and
never tuned on anomalous data; FACADE's own live in ``labkit.facade.config``. The experiments run on one torch/BLAS
thread (the matrices are small): a speed choice, not a parameter.
"""

from dataclasses import dataclass

import numpy as np

from labkit.config import ConfigError, Interval, NotebookConfig, fraction, param, positive_float, positive_int, tuple_of
from labkit.data.images import stratified_split
from labkit.seeds import derived_seed

__all__ = ["DetectionConfig", "train_calibration_test_split"]


def train_calibration_test_split(
    labels: np.ndarray,
    held_out_fraction: float,
    test_fraction_of_held_out: float,
    seed: int,
    n_items: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    sizes: tuple = param((64, 128, 128, 64, 10), tuple_of(positive_int, min_len=3))  # the MLP's layer widths
    dropout: float = param(0.1, Interval(float, 0, 1, closed="left"))
    epochs: int = param(60, positive_int)  # of Adam
    lr: float = param(1e-3, positive_float)
    batch_size: int = param(64, positive_int)
    n_images: int = param(1797, positive_int)  # the stratified subset of the digits used
    held_out_fraction: float = param(0.4, fraction)  # of those images, held out from training
    test_fraction_of_held_out: float = param(0.625, fraction)  # of the held out, test; the rest clean calibration
    n_seeds: int = param(3, positive_int)  # runs; at least 2 (the claims compare with a seed spread)
    lid_k: int = param(20, positive_int)  # LID's neighbours (Ma et al.'s k = 20)
    knn_k: int = param(10, positive_int)  # deep kNN's neighbours
    mc_samples: int = param(30, positive_int)  # MC-dropout passes (Feinman et al.)
    fpr: float = param(0.05, fraction)  # detection thresholds at this false-positive rate

    def validate(self) -> None:
        if self.n_seeds < 2:
            raise ConfigError(
                f"{type(self).__name__}: bad value for 'n_seeds': {self.n_seeds}; allowed: an integer "
                ">= 2 (the seed spread needs two seeds)"
            )

    def run_seeds(self) -> list[int]:
        """The seeds of the ``n_seeds`` runs: ``derived_seed(seed, i)`` for run ``i``."""
        return [derived_seed(self.seed, i) for i in range(self.n_seeds)]

    def split(self, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`train_calibration_test_split` of ``labels`` with this config's fractions and ``n_images``."""
        return train_calibration_test_split(
            labels, self.held_out_fraction, self.test_fraction_of_held_out, seed, self.n_images
        )
