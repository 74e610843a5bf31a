"""Parameters shared by the notebooks that train a digits classifier and fit detectors on its clean activations
(03 monitoring, 04 FACADE): a frozen base config that each notebook's config extends.

Classifier: an MLP of layer widths ``sizes`` with ``dropout``, ``epochs`` of Adam at ``lr`` in batches of
``batch_size`` (``labkit.classifiers``), on a stratified subset of ``n_images`` images; ``held_out_fraction`` of
them are held out and split into clean calibration and test (``test_fraction_of_held_out``). ``n_seeds`` seeds, at
least 2 (the claims compare against a seed spread). Detector hyperparameters, fixed a priori from the literature
or clean-data rules and never tuned on anomalous data: FACADE's resolution ``lam`` (λ), edge share ``q`` and
length-scale neighbours ``k_scale``; LID's ``lid_k`` (Ma et al.'s k = 20); deep kNN's ``knn_k``; ``mc_samples``
MC-dropout passes (Feinman et al.); thresholds at false-positive rate ``fpr``. ``threads``: torch/BLAS threads
inside the experiments (1: the matrices are small, and one thread is several times faster than two on a busy
2-core machine).
"""

from dataclasses import dataclass

from labkit.config import Check, ConfigError, NotebookConfig, fraction, param, positive_float, positive_int, tuple_of

__all__ = ["DetectionConfig"]


@dataclass(frozen=True)
class DetectionConfig(NotebookConfig):
    """The classifier, split and detector fields of notebooks 03 and 04 (see the module docstring)."""

    sizes: tuple = param((64, 128, 128, 64, 10), tuple_of(positive_int, min_len=3))
    dropout: float = param(0.1, Check(lambda v: isinstance(v, float) and 0 <= v < 1, "a float in [0, 1)"))
    epochs: int = param(60, positive_int)
    lr: float = param(1e-3, positive_float)
    batch_size: int = param(64, positive_int)
    n_images: int = param(1797, positive_int)
    held_out_fraction: float = param(0.4, fraction)
    test_fraction_of_held_out: float = param(0.625, fraction)
    n_seeds: int = param(3, positive_int)
    lam: float = param(2.0, positive_float)
    q: float = param(0.05, fraction)
    k_scale: int = param(10, positive_int)
    lid_k: int = param(20, positive_int)
    knn_k: int = param(10, positive_int)
    mc_samples: int = param(30, positive_int)
    fpr: float = param(0.05, fraction)
    threads: int = param(1, positive_int)

    def validate(self) -> None:
        if self.n_seeds < 2:
            raise ConfigError(f"{type(self).__name__}: bad value for 'n_seeds': {self.n_seeds}; allowed: an integer "
                              ">= 2 (the seed spread needs two seeds)")
