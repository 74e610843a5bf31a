"""Parameters of the model-collapse notebooks: frozen configs with scale presets.

:class:`LinearCollapseConfig` is notebook 01a's. :class:`GenerationsConfig` holds the fields every notebook built on
``labkit.collapse.generations`` shares; the deep-model notebooks 01b–01d subclass it next to their model family's
code (``charlm``, ``vae``, ``diffusion``), so a notebook's input hash covers only the family it uses.
"""

from dataclasses import dataclass

from labkit.collapse.generations import REGIMES
from labkit.config import (
    ConfigError,
    NotebookConfig,
    non_negative_int,
    one_of,
    param,
    positive_float,
    positive_int,
    tuple_of,
)

__all__ = ["LinearCollapseConfig", "GenerationsConfig"]


@dataclass(frozen=True)
class LinearCollapseConfig(NotebookConfig):
    """Notebook 01a. The grid is the sweep of arXiv 2410.16713 (Fig. 2); the reference configuration
    (d=10, T=100, σ²=1) is where the claims are checked with many seeds (accumulate-subsample, which has no
    closed form and costs more, uses ``ref_n_seeds_subsample``); ``gauss_*`` is the Gaussian-MLE demo."""

    d_values: tuple = param((1, 3, 10, 32, 100), tuple_of(positive_int))
    T_values: tuple = param((10, 32, 100, 316, 1000), tuple_of(positive_int))
    sigma2_values: tuple = param((0.1, 1.0, 10.0), tuple_of(positive_float))
    grid_sigma2: float = param(1.0, positive_float)
    n_iter: int = param(100, positive_int)
    n_seeds: int = param(100, positive_int)
    ref_d: int = param(10, positive_int)
    ref_T: int = param(100, positive_int)
    ref_sigma2: float = param(1.0, positive_float)
    ref_n_iter: int = param(100, positive_int)
    ref_n_seeds: int = param(20_000, positive_int)
    ref_n_seeds_subsample: int = param(2000, positive_int)
    gauss_dim: int = param(2, positive_int)
    gauss_n_samples: int = param(20, positive_int)
    gauss_n_iter: int = param(100, positive_int)
    gauss_n_seeds: int = param(2000, positive_int)

    SCALES = {
        "smoke": dict(
            d_values=(1, 10),
            T_values=(32, 100),
            sigma2_values=(1.0,),
            n_iter=10,
            n_seeds=10,
            ref_n_iter=20,
            ref_n_seeds=2000,
            ref_n_seeds_subsample=100,
            gauss_n_iter=30,
            gauss_n_seeds=200,
        ),
        "quick": dict(
            n_iter=40, n_seeds=40, ref_n_iter=50, ref_n_seeds=10_000, ref_n_seeds_subsample=1000, gauss_n_seeds=1000
        ),
        "paper": {},
    }

    def validate(self) -> None:
        if self.grid_sigma2 not in self.sigma2_values:
            raise ConfigError(
                f"LinearCollapseConfig: bad value for 'grid_sigma2': {self.grid_sigma2!r}; "
                f"allowed: one of sigma2_values {self.sigma2_values}"
            )
        if self.ref_T <= self.ref_d + 1:
            raise ConfigError(
                f"LinearCollapseConfig: bad values for 'ref_T'/'ref_d': {self.ref_T}/{self.ref_d}; "
                "allowed: ref_T > ref_d + 1"
            )
        if min(self.n_seeds, self.ref_n_seeds, self.ref_n_seeds_subsample, self.gauss_n_seeds) < 2:
            raise ConfigError(
                "LinearCollapseConfig: every '*n_seeds' parameter must be >= 2 (standard errors need two seeds)"
            )
        if self.gauss_n_samples < 2:
            raise ConfigError(
                f"LinearCollapseConfig: bad value for 'gauss_n_samples': {self.gauss_n_samples}; "
                "allowed: an integer >= 2"
            )


@dataclass(frozen=True)
class GenerationsConfig(NotebookConfig):
    """The fields of a notebook that runs the generation loop. Where the runs go (a local pool or a Dask cluster) is
    an execution setting, not a parameter (:mod:`labkit.execution`)."""

    n_generations: int = param(4, positive_int)
    # one run per regime and seed; distinct, at least 3 (2 at the smoke scale) so the claims see a seed spread
    seeds: tuple = param((0, 1, 2), tuple_of(non_negative_int))
    # must include replace and accumulate, which the claims compare
    regimes: tuple = param(REGIMES, tuple_of(one_of(*REGIMES)))
    # fixed before any run: accumulate's held-out loss must stay within this relative band of its generation-1 value
    band: float = param(0.05, positive_float)

    def validate(self) -> None:
        name = type(self).__name__
        if len(set(self.seeds)) != len(self.seeds) or len(self.seeds) < (2 if self.scale == "smoke" else 3):
            raise ConfigError(
                f"{name}: bad value for 'seeds': {self.seeds!r}; allowed: distinct seeds, at least 3 "
                "(2 at the smoke scale)"
            )
        if not {"replace", "accumulate"} <= set(self.regimes):
            raise ConfigError(
                f"{name}: bad value for 'regimes': {self.regimes!r}; allowed: any of "
                f"{', '.join(REGIMES)}, including 'replace' and 'accumulate' (the claims compare them)"
            )
