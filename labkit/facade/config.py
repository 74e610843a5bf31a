"""Parameters of notebook 04_facade, with scale presets, and FACADE's own hyperparameters.

:class:`FacadeDetectorConfig` adds FACADE's hyperparameters to the shared protocol of ``labkit.detectors.config``:
the resolution ``lam`` (λ), the edge share ``q`` and the length-scale neighbours ``k_scale``. Notebook 04
(:class:`FacadeConfig`) and notebook 03 (``labkit.monitor.evaluate.MonitorConfig``, where FACADE is one of the
monitors) extend it.

quick: 3 seeds of the pilot's setting (MLP 64-128-128-64-10, dropout 0.1, digits; FGSM and 20-step PGD-L∞ at
ε = 0.1, 0.2 on [0, 1] pixels). paper: 10 seeds and longer training — the FACADE paper itself has no experiments,
so "paper" means the pilot's protocol with more seeds, for a faster machine. All detector hyperparameters are fixed
a priori from the literature or clean-data rules (never tuned on adversarial data; the shared fields are described
in ``labkit.detectors.config``): λ = 2 (assumed here: the middle of {1.5, 2, 3}), q = 5% of edges per layer, k = 20
for LID (Ma et al.), k = 10 for deep kNN and for the clean-data length scales, 30 MC-dropout passes. The claim
thresholds are fixed here too. ``n_images``: a stratified subset of the digits (smoke runs use fewer).
"""

from dataclasses import dataclass

from labkit.config import ConfigError, fraction, param, positive_float, positive_int, tuple_of
from labkit.detectors.config import DetectionConfig

__all__ = ["FacadeDetectorConfig", "FacadeConfig"]


@dataclass(frozen=True)
class FacadeDetectorConfig(DetectionConfig):
    """The shared detection protocol plus FACADE's ``lam``, ``q`` and ``k_scale`` (see the module docstring)."""

    lam: float = param(2.0, positive_float)
    q: float = param(0.05, fraction)
    k_scale: int = param(10, positive_int)


@dataclass(frozen=True)
class FacadeConfig(FacadeDetectorConfig):
    """Notebook 04_facade (see the module docstring)."""

    eps_values: tuple = param((0.1, 0.2), tuple_of(positive_float))
    pgd_steps: int = param(20, positive_int)
    lam_sweep: tuple = param((1.0, 1.5, 2.0, 3.0, 4.0), tuple_of(positive_float))
    min_accuracy_drop: float = param(0.2, fraction)
    comparison_margin: float = param(0.02, fraction)
    max_clean_fpr: float = param(0.10, fraction)

    SCALES = {
        "smoke": dict(n_images=400, epochs=8, n_seeds=2, pgd_steps=5, lam_sweep=(2.0, 3.0), mc_samples=5),
        "quick": {},
        "paper": dict(epochs=150, n_seeds=10),
    }

    def validate(self) -> None:
        super().validate()
        if not 200 <= self.n_images <= 1797:
            raise ConfigError(
                f"FacadeConfig: bad value for 'n_images': {self.n_images}; allowed: 200 to 1797 "
                "(a stratified subset of the 1,797 digits)"
            )
        if self.lam not in self.lam_sweep:
            raise ConfigError(
                f"FacadeConfig: bad value for 'lam': {self.lam!r}; allowed: one of lam_sweep {self.lam_sweep}"
            )
        if any(e >= 1 for e in self.eps_values):
            raise ConfigError(
                f"FacadeConfig: bad value for 'eps_values': {self.eps_values!r}; allowed: each < 1 "
                "(pixels lie in [0, 1])"
            )
