r"""In-context learning of energy functions (Schaeffer, Khona, Koyejo 2024, arXiv 2406.12785; the first example of
Schaeffer et al. 2024, arXiv 2402.10202).

The model (data, transformer, contrastive divergence) is :mod:`labkit.memory.icl_model`; this module scores it.

*Evaluation* (:func:`evaluate`): held-out NLL with a normaliser integrated on an adaptively refined grid over the box
(:func:`adaptive_log_normaliser`, checked against mixtures of known normaliser in the tests); whether the energy has a
well at each true component mean (:func:`has_well`); and the authors' sampling view, the mean squared distance of
the model's own Langevin samples to the nearest true mean (:func:`sample_mse`).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage
from scipy.special import logsumexp
from tqdm.auto import tqdm

from labkit import repro
from labkit.config import (
    ConfigError,
    NotebookConfig,
    non_negative_int,
    param,
    positive_float,
    positive_int,
    tuple_of,
)
from labkit.memory.icl_model import (
    FIVE_COMPONENTS,
    THREE_COMPONENTS,
    ICLRecipe,
    InContextEnergyModel,
    MixtureFamily,
    langevin,
)
from labkit.seeds import derived_seed

__all__ = [
    "square_grid",
    "grid_log_normaliser",
    "adaptive_log_normaliser",
    "has_well",
    "sample_mse",
    "ContextEvaluation",
    "evaluate",
    "Endpoint",
    "endpoints",
    "landscapes",
    "ICLEnergyConfig",
    "FAMILIES",
    "METRICS",
    "ICLResult",
    "run",
]


# ---------------------------------------------------------------------------------------------------------- data


# --------------------------------------------------------------------------------------------------------- model


# ---------------------------------------------------------------------------------------------------- evaluation


def square_grid(lim: float, n_grid: int) -> tuple[np.ndarray, float]:
    """Cell centres of an ``n_grid`` × ``n_grid`` grid on :math:`[-lim, lim]^2` as (n_grid², 2) and the cell area."""
    h = 2 * lim / n_grid
    axis = -lim + h * (np.arange(n_grid) + 0.5)
    gx, gy = np.meshgrid(axis, axis)
    return np.stack([gx.ravel(), gy.ravel()], axis=-1), h * h


def grid_log_normaliser(grid_energy: np.ndarray, cell_area: float) -> np.ndarray:
    """:math:`\\log Z \\approx \\log \\sum_g e^{-E(g)} h^2` (midpoint rule on the grid) along the last axis."""
    return logsumexp(-grid_energy, axis=-1) + math.log(cell_area)


def adaptive_log_normaliser(
    energy: Callable[[np.ndarray], np.ndarray], lim: float, n_coarse: int, refine: int, keep_nats: float
) -> float:
    r""":math:`\log Z = \log \int_{[-lim, lim]^2} e^{-E(x)}\,dx` by the midpoint rule on an ``n_coarse`` ×
    ``n_coarse`` grid whose cells near the mass are split into ``refine`` × ``refine`` sub-cells.

    A cell is *heavy* when its mass :math:`e^{-E(c)} h^2` is within ``keep_nats`` of the largest; heavy cells and
    their eight neighbours are refined. Each coarse cell left alone carries less than :math:`e^{-\text{keep\_nats}}`
    of the peak cell's mass, so wells as narrow as the sub-cell spacing are integrated where they are seen at all; a
    well narrower than the coarse spacing that no coarse centre sees is missed (the tests check a mixture of std
    0.13 on a coarse spacing of 0.47). ``energy`` maps points (Q, 2) to energies (Q,)."""
    cells, area = square_grid(lim, n_coarse)
    log_mass = -energy(cells) + math.log(area)
    heavy = (log_mass >= log_mass.max() - keep_nats).reshape(n_coarse, n_coarse)
    split = ndimage.binary_dilation(heavy, structure=np.ones((3, 3), dtype=bool)).ravel()
    h = 2 * lim / n_coarse
    offsets, sub_area = square_grid(h / 2, refine)
    sub_cells = (cells[split][:, None, :] + offsets[None]).reshape(-1, 2)
    return float(logsumexp(np.concatenate([log_mass[~split], -energy(sub_cells) + math.log(sub_area)])))


def has_well(
    energy: Callable[[np.ndarray], np.ndarray], centres: np.ndarray, radius: float, spacing: float
) -> np.ndarray:
    r"""Whether :math:`E` has a local minimum within ``radius`` of each centre (K, 2) → (K,) bool: the lowest energy
    on a grid of ``spacing`` inside the disc is below the lowest on its boundary circle (a continuous function
    lower inside a disc than anywhere on its rim has a minimum inside). One broad basin spanning several clusters
    gives a well at most at the cluster nearest its floor; a well per cluster gives one at each."""
    axis = np.arange(-radius + spacing / 2, radius, spacing)
    gx, gy = np.meshgrid(axis, axis)
    disc = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    disc = disc[(disc**2).sum(-1) < radius**2]
    angle = np.linspace(0.0, 2 * np.pi, max(16, int(np.ceil(2 * np.pi * radius / spacing))), endpoint=False)
    rim = radius * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    points = np.concatenate([centres[:, None] + disc[None], centres[:, None] + rim[None]], axis=1)  # (K, P, 2)
    e = energy(points.reshape(-1, 2)).reshape(len(centres), -1)
    return e[:, : len(disc)].min(axis=1) < e[:, len(disc) :].min(axis=1)


def sample_mse(
    estimator: "InContextEnergyModel",
    context: np.ndarray,
    means: np.ndarray,
    n_samples: int,
    generator: torch.Generator,
) -> np.ndarray:
    r"""The authors' sampling metric: draw ``n_samples`` points per context (B, n, 2) with the model's own sampler
    (uniform on :math:`[-\text{init\_range}, \text{init\_range}]^2`, then the training recipe's Langevin steps)
    and return each batch row's mean squared distance to the nearest true mean (B,). The true mixture's own
    samples score :math:`2\sigma^2` on average."""
    estimator._check_fitted()
    model = estimator.model_
    device = next(model.parameters()).device
    ctx = torch.as_tensor(np.asarray(context, dtype=np.float32), device=device)
    init = torch.rand((len(ctx), n_samples, ctx.shape[2]), generator=generator, device=device) * 2 - 1
    prefix = torch.full((n_samples,), ctx.shape[1], dtype=torch.long, device=device)
    with repro.threads(estimator.n_threads):
        samples = (
            langevin(
                model,
                ctx,
                init * estimator.init_range,
                prefix,
                estimator.langevin_steps,
                estimator.step_size,
                estimator.noise_std,
                generator,
                estimator.chain_bound,
            )
            .cpu()
            .double()
            .numpy()
        )
    sq = ((samples[:, :, None, :] - means[:, None, :, :]) ** 2).sum(-1).min(-1)
    return sq.mean(axis=1)


@dataclass(frozen=True)
class ContextEvaluation:
    """One trained model on ``B`` fresh mixtures of one family, at each of ``S`` context sizes."""

    context_sizes: np.ndarray  # (S,)
    nll: np.ndarray  # (B, S) held-out NLL, nats per point, with the adaptive normaliser
    sample_mse: np.ndarray  # (B, S) mean squared distance of model samples to the nearest true mean
    wells: np.ndarray  # (B, S) fraction of the mixture's true means with a well of E within well_radius
    true_nll: np.ndarray  # (B,) the true mixture's NLL of the same held-out points (the floor)
    true_sample_mse: float  # 2σ², the true mixture's own sample MSE
    context: np.ndarray  # (B, n_max, 2)
    means: np.ndarray  # (B, K, 2)


def evaluate(
    estimator: "InContextEnergyModel", family: MixtureFamily, cfg: "ICLEnergyConfig", rng: np.random.Generator
) -> ContextEvaluation:
    r"""Score ``cfg.n_eval_mixtures`` fresh mixtures of ``family`` at every ``cfg.context_sizes``: the first n points
    of each sequence are the context, ``cfg.n_heldout`` more points of the same mixture are scored
    (:math:`\text{nll} = \overline{E(x_h \mid x_{<n})} + \log Z(x_{<n})`, :func:`adaptive_log_normaliser`), wells are
    looked for at the true means (:func:`has_well`) and the model's samples are drawn (:func:`sample_mse`)."""
    sizes = tuple(cfg.context_sizes)
    points, means = family.sample(cfg.n_eval_mixtures, max(sizes) + cfg.n_heldout, rng)
    context, heldout = points[:, : max(sizes)], points[:, max(sizes) :]
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    shape = (len(points), len(sizes))
    nll, wells, mse = np.empty(shape), np.empty(shape), np.empty(shape)
    for j, n in enumerate(
        tqdm(sizes, desc=f"{family.n_components}-component mixtures", leave=False, disable=not estimator.progress)
    ):
        for b in range(len(points)):
            memory = estimator.memory(context[b, :n])
            log_z = adaptive_log_normaliser(memory.energy, cfg.grid_lim, cfg.n_grid, cfg.grid_refine, cfg.keep_nats)
            nll[b, j] = memory.energy(heldout[b]).mean() + log_z
            wells[b, j] = has_well(memory.energy, means[b], cfg.well_radius, cfg.well_spacing).mean()
        mse[:, j] = sample_mse(estimator, context[:, :n], means, cfg.n_samples, generator)
    return ContextEvaluation(
        np.array(sizes),
        nll,
        mse,
        wells,
        -family.log_density(heldout, means).mean(axis=1),
        2 * family.component_std**2,
        context,
        means,
    )


@dataclass(frozen=True)
class Endpoint:
    """A metric at n = 0 and at the largest context, per training seed (averaged over its evaluation groups),
    with the paired change and its standard error over training seeds."""

    first: np.ndarray  # (n_seeds,)
    last: np.ndarray  # (n_seeds,)

    @property
    def change(self) -> float:
        return float((self.last - self.first).mean())

    @property
    def se(self) -> float:
        return float((self.last - self.first).std(ddof=1) / math.sqrt(len(self.first)))

    def as_dict(self) -> dict[str, float]:
        return {
            "first": float(self.first.mean()),
            "last": float(self.last.mean()),
            "change": self.change,
            "se": self.se,
        }


def endpoints(evaluations: list[list[ContextEvaluation]], metric: str) -> Endpoint:
    """``evaluations[seed][group]`` → the :class:`Endpoint` of ``metric`` (``nll``, ``sample_mse`` or ``wells``)."""
    per_seed = np.array(
        [np.mean([getattr(e, metric).mean(axis=0) for e in groups], axis=0) for groups in evaluations]
    )  # (n_seeds, S)
    return Endpoint(per_seed[:, 0], per_seed[:, -1])


def landscapes(
    estimator: InContextEnergyModel, context: np.ndarray, context_sizes: tuple[int, ...], lim: float, n_grid: int
) -> np.ndarray:
    r""":math:`E(x \mid x_{<n})` on the ``n_grid`` × ``n_grid`` grid of :func:`square_grid` for each n in
    ``context_sizes``, the context being the first n rows of ``context`` (n_max, 2) → (len(sizes), n_grid, n_grid)."""
    grid, _ = square_grid(lim, n_grid)
    return np.stack([estimator.energy(context[None, :n], grid[None])[0].reshape(n_grid, n_grid) for n in context_sizes])


# -------------------------------------------------------------------------------------------------------- config

#: the purposes of the random streams under ``cfg.seed``: the last word of every key, never 0, so no key is another
#: padded with zeros (``labkit.seeds``): the model of training seed i (``derived_seed(seed, i, MODEL)``), its training
#: sequences (``repro.rng(seed, i, DATA)``) and the evaluation groups (``repro.rng(seed, i, j, k, EVAL)``)
MODEL, DATA, EVAL = 1, 2, 3


@dataclass(frozen=True)
class ICLEnergyConfig(NotebookConfig):
    """Notebook 02c: models trained from seeds derived from ``seed``, each evaluated (:func:`evaluate`) on fresh
    mixtures of each family. Models train and score on one torch/BLAS thread (many tiny ops), a speed choice and not
    a parameter.

    Claims (thresholds fixed before the reported run): for each family, from n = 0 to the largest context, the
    held-out NLL falls, the share of true means with a well rises and the sample MSE falls, each paired change
    larger than ``margin_se`` standard errors over training seeds.

    Scales:

    - ``smoke``: a tiny model, a handful of steps, coarse grids (seconds).
    - ``quick``/``full`` (committed): the authors' small architecture (d = 64, 8 heads, 3 layers) and Langevin
      recipe (3 negatives per token, 7 steps, α = 0.1, σ = 0.01, Adam 1e-3; chains confined to the box, see the
      module docstring; ``bounded=False`` is the authors' free chain), 3 training seeds of 4,000 steps of 8 fresh
      sequences each, on one CPU thread: 1/40 of the authors' training sequences.
    - ``paper``, for a GPU (``labkit.execution.device()``): the same model trained for the authors' 20 000 steps
      of 64 sequences over 500 000 drawn sequences, more evaluation mixtures.
    """

    n_seeds: int = param(3, positive_int)  # training seeds (models)
    n_eval_seeds: int = param(2, positive_int)  # independent evaluation groups per model
    recipe: ICLRecipe = param(ICLRecipe())  # the model and its training (icl_model.ICLRecipe)
    context_len: int = param(35, positive_int)  # points per training sequence
    n_train_sequences: int = param(32_000, positive_int)  # drawn once per training seed, each its own mixture
    context_sizes: tuple = param((0, 1, 2, 4, 8, 16, 32), tuple_of(non_negative_int))  # where models are evaluated
    n_eval_mixtures: int = param(8, positive_int)  # fresh mixtures of each family per evaluation group
    n_heldout: int = param(64, positive_int)  # held-out points per mixture (the NLL)
    grid_lim: float = param(15.0, positive_float)  # the normaliser is integrated on [-grid_lim, grid_lim]²
    n_grid: int = param(64, positive_int)  # on an n_grid² grid ...
    grid_refine: int = param(8, positive_int)  # ... refined this many times where the mass is
    keep_nats: float = param(12.0, positive_float)  # cells of mass within this many nats of the largest
    well_radius: float = param(1.0, positive_float)  # wells are looked for within this of each true mean
    well_spacing: float = param(0.05, positive_float)  # on a grid of this spacing
    n_samples: int = param(128, positive_int)  # model samples per mixture (the sample MSE)
    landscape_lim: float = param(10.0, positive_float)  # landscapes drawn on [-landscape_lim, landscape_lim]²
    landscape_grid: int = param(120, positive_int)  # at this resolution
    margin_se: float = param(3.0, positive_float)  # claims: changes must exceed this many standard errors

    SCALES: ClassVar[dict] = {
        "smoke": dict(
            n_seeds=2,
            n_eval_seeds=1,
            n_train_sequences=16,
            recipe=dict(d_model=16, n_heads=2, n_layers=1, langevin_steps=2, n_steps=4, batch_size=4),
            context_sizes=(0, 1, 4, 16),
            n_eval_mixtures=2,
            n_heldout=8,
            n_grid=24,
            grid_refine=2,
            well_spacing=0.25,
            n_samples=16,
            landscape_grid=24,
        ),
        "quick": {},
        "paper": dict(
            recipe=dict(n_steps=20_000, batch_size=64),
            n_train_sequences=500_000,
            n_eval_seeds=3,
            n_eval_mixtures=32,
            n_heldout=256,
            n_samples=512,
            landscape_grid=200,
        ),
    }

    def validate(self) -> None:
        if self.n_seeds < 2:
            raise ConfigError(
                f"ICLEnergyConfig: bad value for 'n_seeds': {self.n_seeds!r}; allowed: at least 2 "
                "training seeds (the claims use the standard error over training seeds)"
            )
        if list(self.context_sizes) != sorted(set(self.context_sizes)) or self.context_sizes[0] != 0:
            raise ConfigError(
                f"ICLEnergyConfig: bad value for 'context_sizes': {self.context_sizes!r}; allowed: "
                "strictly increasing sizes starting at 0"
            )
        if self.context_sizes[-1] > self.context_len:
            raise ConfigError(
                f"ICLEnergyConfig: bad value for 'context_sizes': {self.context_sizes!r}; allowed: "
                f"sizes up to context_len={self.context_len} (the trained sequence length)"
            )
        if self.landscape_lim > self.grid_lim:
            raise ConfigError(
                f"ICLEnergyConfig: bad value for 'landscape_lim': {self.landscape_lim!r}; allowed: at "
                f"most grid_lim={self.grid_lim}"
            )
        if self.well_spacing >= self.well_radius:
            raise ConfigError(
                f"ICLEnergyConfig: bad value for 'well_spacing': {self.well_spacing!r}; allowed: "
                f"less than well_radius={self.well_radius}"
            )

    def estimator(self, seed_index: int, progress: bool = True) -> InContextEnergyModel:
        """The unfitted model of training seed ``seed_index``."""
        return InContextEnergyModel(
            **self.recipe.to_dict(), n_threads=1, seed=derived_seed(self.seed, seed_index, MODEL), progress=progress
        )

    def training_data(self, seed_index: int) -> np.ndarray:
        """The training sequences of training seed ``seed_index``: (n_train_sequences, context_len, 2)."""
        rng = repro.rng(self.seed, seed_index, DATA)
        return THREE_COMPONENTS.sample(self.n_train_sequences, self.context_len, rng)[0]

    def eval_rng(self, seed_index: int, eval_index: int, family_index: int) -> np.random.Generator:
        """The generator of one evaluation group's fresh mixtures."""
        return repro.rng(self.seed, seed_index, eval_index, family_index, EVAL)


#: the families every model is evaluated on, by label
FAMILIES = {"3 components (training family)": THREE_COMPONENTS, "5 components (unseen family)": FIVE_COMPONENTS}

#: the claimed metrics, their direction (−1: should fall with context, +1: should rise) and their words
METRICS = {
    "nll": (-1, "held-out NLL"),
    "wells": (+1, "share of true means with a well"),
    "sample_mse": (-1, "sample MSE to the nearest true mean"),
}


@dataclass(frozen=True)
class ICLResult:
    """What :func:`run` returns: the fitted models and ``evaluations[family][seed][group]``."""

    models: list[InContextEnergyModel]
    evaluations: dict[str, list[list[ContextEvaluation]]]

    def endpoints(self, family: str, metric: str) -> Endpoint:
        return endpoints(self.evaluations[family], metric)


def run(cfg: ICLEnergyConfig, progress: bool = True) -> ICLResult:
    """Train ``cfg.n_seeds`` models and evaluate each on ``cfg.n_eval_seeds`` groups of fresh mixtures of every
    family in :data:`FAMILIES`."""
    models = [cfg.estimator(i, progress).fit(cfg.training_data(i)) for i in range(cfg.n_seeds)]
    evaluations = {
        label: [
            [evaluate(m, family, cfg, cfg.eval_rng(i, j, k)) for j in range(cfg.n_eval_seeds)]
            for i, m in enumerate(models)
        ]
        for k, (label, family) in enumerate(FAMILIES.items())
    }
    return ICLResult(models, evaluations)
