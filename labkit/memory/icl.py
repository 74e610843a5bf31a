r"""In-context learning of energy functions (Schaeffer, Khona, Koyejo 2024, arXiv 2406.12785; the first example of
Schaeffer et al. 2024, arXiv 2402.10202).

*Model.* A density conditioned on a data set :math:`D = (x_1, …, x_{n})` of 2-D points,

.. math::
    p_\theta(x \mid D) = \exp(-E_\theta(x \mid D)) / Z_\theta(D),

where :math:`E_\theta` is a causal transformer over data points as tokens: ``Linear(2→d)`` → pre-LayerNorm
``TransformerEncoder`` (GELU, no dropout, causal mask, **no positional encoding**) → ``Linear(d→1)``. The output at
token :math:`n` is :math:`E_\theta(x_n \mid x_{<n})`. Without positional encoding nothing but the causal mask tells
the model where a token sits: with one layer the energy at :math:`n` depends on the context as a *set* (any
permutation of :math:`x_{<n}` gives the same value, exactly); with more layers the context tokens' hidden states
depend on their own prefixes, so invariance to the context's order is only what training makes of it.

*Training: contrastive divergence.* For a sequence :math:`x^+` from one mixture, three negatives per real token are
drawn uniformly on :math:`[-15, 15]^2` and refined by Langevin steps on the energy at their position,

.. math::
    x^- \leftarrow x^- + \sigma\varepsilon,\ \varepsilon \sim N(0, I); \qquad
    x^- \leftarrow x^- - \alpha \nabla_{x^-} E_\theta(x^- \mid x^+_{<n}),

with no backpropagation through the chain (here, by default, each step is projected back onto the initialisation
box, the support on which the density is normalised: with the authors' step size the chains of a steep energy
otherwise leave the box within a few steps, so the negatives stop probing the data region); then

.. math::
    L = \overline{E_\theta(x^+)} - \overline{E_\theta(x^-)} + \lambda\big(\overline{E_\theta(x^+)^2}
        + \overline{E_\theta(x^-)^2}\big), \qquad \lambda = 10^{-3}.

The authors' small configuration: :math:`d = 64`, 8 heads, 3 layers, 7 Langevin steps, :math:`\alpha = 0.1`,
:math:`\sigma = 0.01`, Adam at :math:`10^{-3}`; data are mixtures of 3 equal-weight isotropic Gaussians (means
:math:`\sim N(0, 5^2 I)`, std 0.33), about 35 points per sequence; evaluation also on 5-component mixtures (means
:math:`\sim N(0, 4.5^2 I)`, std 0.13).

*All negatives in one pass.* Candidates (negatives, grid points, held-out points) are appended after the real tokens
and an attention mask lets candidate :math:`m` attend to the real tokens :math:`x_{<p_m}` and to itself only — never
to other candidates — while real tokens attend causally to real tokens only. Each candidate's output is then exactly
:math:`E_\theta(c_m \mid x_{<p_m})`, the value a separate forward pass over :math:`(x_1, …, x_{p_m - 1}, c_m)` would
give, and :math:`\partial E(c_m) / \partial c_{m'} = 0` for :math:`m' \ne m`, so one backward pass gives every
negative's own Langevin gradient.

*The bridge.* For a fixed context, :class:`InContextEnergy` is an :class:`~labkit.memory.base.EnergyMemory`: its
energy is :math:`E_\theta(\cdot \mid D)`, its update a gradient step on it (Langevin without noise), its
``log_density`` the unnormalised :math:`-E`.

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
from torch import nn
from tqdm.auto import tqdm

from labkit import repro
from labkit.config import ConfigError, NotebookConfig, boolean, non_negative_int, optional, param, positive_float, \
    positive_int, tuple_of
from labkit.memory.base import EnergyMemory

__all__ = ["MixtureFamily", "THREE_COMPONENTS", "FIVE_COMPONENTS", "candidate_mask",
           "EnergyTransformer", "langevin", "contrastive_divergence_loss", "InContextEnergyModel", "InContextEnergy",
           "square_grid", "grid_log_normaliser", "adaptive_log_normaliser", "has_well", "sample_mse",
           "ContextEvaluation", "evaluate", "Endpoint", "endpoints", "landscapes", "ICLEnergyConfig", "FAMILIES",
           "METRICS", "ICLResult", "run"]


# ---------------------------------------------------------------------------------------------------------- data

@dataclass(frozen=True)
class MixtureFamily:
    """Equal-weight mixtures of ``n_components`` isotropic 2-D Gaussians of std ``component_std`` whose means are
    drawn from :math:`N(0, \\text{prior\\_std}^2 I)`, a fresh mixture per sequence."""

    n_components: int
    prior_std: float
    component_std: float

    @property
    def name(self) -> str:
        return f"{self.n_components} components (means ~ N(0, {self.prior_std:g}²I), std {self.component_std:g})"

    def sample(self, n_mixtures: int, n_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(points (n_mixtures, n_points, 2), means (n_mixtures, n_components, 2))`` in float32."""
        means = rng.normal(0.0, self.prior_std, (n_mixtures, self.n_components, 2))
        labels = rng.integers(0, self.n_components, (n_mixtures, n_points))
        points = np.take_along_axis(means, labels[..., None], axis=1) + rng.normal(
            0.0, self.component_std, (n_mixtures, n_points, 2))
        return points.astype(np.float32), means.astype(np.float32)

    def log_density(self, x: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Exact :math:`\\log p(x)` of the mixtures with ``means`` (B, K, 2) at points ``x`` (B, N, 2) → (B, N)."""
        sq = ((x[:, :, None, :].astype(float) - means[:, None, :, :]) ** 2).sum(-1)
        s2 = self.component_std**2
        return logsumexp(-sq / (2 * s2), axis=-1) - math.log(self.n_components * 2 * math.pi * s2)


THREE_COMPONENTS = MixtureFamily(3, 5.0, 0.33)   # the training family
FIVE_COMPONENTS = MixtureFamily(5, 4.5, 0.13)    # the paper's out-of-distribution evaluation family


# --------------------------------------------------------------------------------------------------------- model

def candidate_mask(n_real: int, prefix_lens: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask (True = blocked) for ``n_real`` real tokens followed by ``len(prefix_lens)``
    candidates: real token i sees real tokens j ≤ i; candidate m sees real tokens j < ``prefix_lens[m]`` and
    itself."""
    m = prefix_lens.numel()
    real = torch.arange(n_real, device=prefix_lens.device)
    allowed = torch.zeros(n_real + m, n_real + m, dtype=torch.bool, device=prefix_lens.device)
    allowed[:n_real, :n_real] = real[None, :] <= real[:, None]
    allowed[n_real:, :n_real] = real[None, :] < prefix_lens[:, None]
    allowed[n_real:, n_real:] = torch.eye(m, dtype=torch.bool, device=prefix_lens.device)
    return ~allowed


class EnergyTransformer(nn.Module):
    """:math:`E_\\theta(x_n \\mid x_{<n})` for every token of ``x`` (B, T, dim) and, optionally, for candidates
    ``c`` (B, M, dim) scored against real prefixes of lengths ``prefix_lens`` (M,) in the same pass."""

    def __init__(self, d_model: int = 64, n_heads: int = 8, n_layers: int = 3, dim: int = 2):
        super().__init__()
        self.embed = nn.Linear(dim, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor, candidates: torch.Tensor | None = None,
                prefix_lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(energies of x (B, T), energies of the candidates (B, M) or None)``."""
        n_real = x.shape[1]
        if candidates is None:
            tokens, mask = x, candidate_mask(n_real, torch.zeros(0, dtype=torch.long, device=x.device))
        else:
            if prefix_lens is None or prefix_lens.shape != candidates.shape[1:2]:
                raise ValueError(f"prefix_lens must have shape ({candidates.shape[1]},), got "
                                 f"{None if prefix_lens is None else tuple(prefix_lens.shape)}")
            if prefix_lens.numel() and not 0 <= int(prefix_lens.min()) <= int(prefix_lens.max()) <= n_real:
                raise ValueError(f"prefix_lens must lie in [0, {n_real}], got "
                                 f"{int(prefix_lens.min())}..{int(prefix_lens.max())}")
            tokens, mask = torch.cat([x, candidates], dim=1), candidate_mask(n_real, prefix_lens)
        energy = self.head(self.encoder(self.embed(tokens), mask=mask)).squeeze(-1)
        return energy[:, :n_real], (None if candidates is None else energy[:, n_real:])


def langevin(model: EnergyTransformer, x: torch.Tensor, negatives: torch.Tensor, prefix_lens: torch.Tensor,
             n_steps: int, step_size: float, noise_std: float, generator: torch.Generator,
             bound: float | None = None) -> torch.Tensor:
    """Refine ``negatives`` (B, M, dim) by ``n_steps`` of :math:`x \\leftarrow x + σε`,
    :math:`x \\leftarrow x − α∇E` at their positions, each step projected onto :math:`[-\\text{bound},
    \\text{bound}]^{dim}` when ``bound`` is given; returns a detached tensor of the same shape (no graph, no
    parameter gradients)."""
    neg = negatives.detach()
    for _ in range(n_steps):
        neg = neg + noise_std * torch.randn(neg.shape, generator=generator, dtype=neg.dtype, device=neg.device)
        neg.requires_grad_(True)
        _, energy = model(x, neg, prefix_lens)
        (grad,) = torch.autograd.grad(energy.sum(), neg)
        neg = (neg - step_size * grad).detach()
        if bound is not None:
            neg = neg.clamp(-bound, bound)
    return neg


def contrastive_divergence_loss(e_pos: torch.Tensor, e_neg: torch.Tensor, reg: float) -> torch.Tensor:
    """:math:`\\overline{E^+} - \\overline{E^-} + λ(\\overline{E^{+2}} + \\overline{E^{-2}})`."""
    return e_pos.mean() - e_neg.mean() + reg * (e_pos.pow(2).mean() + e_neg.pow(2).mean())


class InContextEnergyModel:
    """The transformer trained by contrastive divergence on sequences of points, scikit-learn style.

    ``fit(X)`` takes sequences ``X`` (n_sequences, T, 2), each from its own mixture, and runs ``n_steps`` Adam steps
    on minibatches of ``batch_size`` sequences (a fresh shuffle of ``X`` whenever it is used up). Learned
    attributes: ``model_`` (the :class:`EnergyTransformer`), ``loss_history_`` (the loss per step)."""

    def __init__(self, d_model: int = 64, n_heads: int = 8, n_layers: int = 3, n_negatives: int = 3,
                 init_range: float = 15.0, langevin_steps: int = 7, step_size: float = 0.1, noise_std: float = 0.01,
                 reg: float = 1e-3, learning_rate: float = 1e-3, n_steps: int = 1000, batch_size: int = 32,
                 bounded: bool = False, chunk_size: int = 128, n_threads: int | None = None,
                 device: str | None = None, random_state: int = 0, progress: bool = True):
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.n_negatives, self.init_range = n_negatives, init_range
        self.langevin_steps, self.step_size, self.noise_std = langevin_steps, step_size, noise_std
        self.reg, self.learning_rate, self.n_steps, self.batch_size = reg, learning_rate, n_steps, batch_size
        self.bounded = bounded
        self.chunk_size, self.n_threads, self.device = chunk_size, n_threads, device
        self.random_state, self.progress = random_state, progress

    def _device(self) -> torch.device:
        return torch.device(self.device) if self.device else repro.torch_device()

    def fit(self, X: np.ndarray) -> "InContextEnergyModel":
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3 or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"X must have shape (n_sequences, T, dim) with n_sequences, T >= 1, got {X.shape}")
        with repro.threads(self.n_threads):
            self._fit(X)
        return self

    def _fit(self, X: np.ndarray) -> None:
        device = self._device()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            self.model_ = EnergyTransformer(self.d_model, self.n_heads, self.n_layers, X.shape[2]).to(device)
        gen = torch.Generator(device=device).manual_seed(self.random_state)
        order_rng = repro.rng(self.random_state, 1)
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.learning_rate)
        T, K = X.shape[1], self.n_negatives
        prefix = torch.arange(T, device=device).repeat_interleave(K)        # negative (n, k) scores x_n's slot
        data, order, pos = torch.from_numpy(X).to(device), order_rng.permutation(len(X)), 0
        self.loss_history_ = np.empty(self.n_steps)
        self.model_.train()
        for step in tqdm(range(self.n_steps), desc="contrastive divergence", disable=not self.progress):
            if pos + self.batch_size > len(order):
                order, pos = order_rng.permutation(len(X)), 0
            x = data[torch.from_numpy(order[pos:pos + self.batch_size]).to(device)]
            pos += self.batch_size
            neg = (torch.rand((len(x), T * K, X.shape[2]), generator=gen, device=device) * 2 - 1) * self.init_range
            neg = langevin(self.model_, x, neg, prefix, self.langevin_steps, self.step_size, self.noise_std, gen,
                           self.chain_bound)
            e_pos, e_neg = self.model_(x, neg, prefix)
            loss = contrastive_divergence_loss(e_pos, e_neg, self.reg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.loss_history_[step] = loss.item()
        self.model_.eval()

    @property
    def chain_bound(self) -> float | None:
        """Where Langevin chains are confined: the initialisation box when ``bounded``, else nowhere."""
        return self.init_range if self.bounded else None

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("InContextEnergyModel is not fitted yet; call fit(X) first")

    def energy(self, context: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """:math:`E_\\theta(q \\mid D)` for queries (B, Q, 2) given contexts (B, n, 2) (n may be 0) → (B, Q),
        scored ``chunk_size`` queries per pass."""
        self._check_fitted()
        device = next(self.model_.parameters()).device
        ctx = torch.as_tensor(np.asarray(context, dtype=np.float32), device=device)
        q = torch.as_tensor(np.asarray(queries, dtype=np.float32), device=device)
        if ctx.ndim != 3 or q.ndim != 3 or len(ctx) != len(q):
            raise ValueError(f"context (B, n, dim) and queries (B, Q, dim) must share B, got {tuple(ctx.shape)} "
                             f"and {tuple(q.shape)}")
        out = []
        with torch.no_grad(), repro.threads(self.n_threads):
            for start in range(0, q.shape[1], self.chunk_size):
                chunk = q[:, start:start + self.chunk_size]
                prefix = torch.full((chunk.shape[1],), ctx.shape[1], dtype=torch.long, device=device)
                out.append(self.model_(ctx, chunk, prefix)[1])
        return torch.cat(out, dim=1).cpu().double().numpy() if out else np.zeros((len(q), 0))

    def memory(self, context: np.ndarray, step_size: float | None = None) -> "InContextEnergy":
        """The associative memory the context defines (gradient steps of ``step_size``, default the Langevin α)."""
        self._check_fitted()
        return InContextEnergy(self, context, self.step_size if step_size is None else step_size)


class InContextEnergy(EnergyMemory):
    """:math:`E_\\theta(\\cdot \\mid D)` for one fixed context ``D`` (n, 2): energy, a gradient-descent update
    :math:`x \\leftarrow x - α∇E` (the noiseless Langevin step; a small enough α does not raise E) and the
    unnormalised log density :math:`-E`."""

    def __init__(self, estimator: InContextEnergyModel, context: np.ndarray, step_size: float):
        self.estimator, self.step_size = estimator, step_size
        self.context = np.asarray(context, dtype=np.float32).reshape(-1, 2)

    def energy(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return self.estimator.energy(self.context[None], x.reshape(1, -1, 2))[0].reshape(x.shape[:-1])

    def update(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        model = self.estimator.model_
        device = next(model.parameters()).device
        ctx = torch.as_tensor(self.context[None], device=device)
        q = torch.as_tensor(x.reshape(1, -1, 2), dtype=torch.float32, device=device).requires_grad_(True)
        prefix = torch.full((q.shape[1],), ctx.shape[1], dtype=torch.long, device=device)
        with repro.threads(self.estimator.n_threads):
            (grad,) = torch.autograd.grad(model(ctx, q, prefix)[1].sum(), q)
        return x - self.step_size * grad.cpu().double().numpy().reshape(x.shape)


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


def adaptive_log_normaliser(energy: Callable[[np.ndarray], np.ndarray], lim: float, n_coarse: int, refine: int,
                            keep_nats: float) -> float:
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


def has_well(energy: Callable[[np.ndarray], np.ndarray], centres: np.ndarray, radius: float,
             spacing: float) -> np.ndarray:
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
    points = np.concatenate([centres[:, None] + disc[None], centres[:, None] + rim[None]], axis=1)   # (K, P, 2)
    e = energy(points.reshape(-1, 2)).reshape(len(centres), -1)
    return e[:, :len(disc)].min(axis=1) < e[:, len(disc):].min(axis=1)


def sample_mse(estimator: "InContextEnergyModel", context: np.ndarray, means: np.ndarray, n_samples: int,
               generator: torch.Generator) -> np.ndarray:
    r"""The authors' sampling metric: draw ``n_samples`` points per context (B, n, 2) with the model's own sampler
    (uniform on :math:`[-\text{init\_range}, \text{init\_range}]^2`, then the training recipe's Langevin steps)
    and return each batch row's mean squared distance to the nearest true mean (B,). The true mixture's own
    samples score :math:`2\sigma^2` on average."""
    estimator._check_fitted()
    model = estimator.model_
    device = next(model.parameters()).device
    ctx = torch.as_tensor(np.asarray(context, dtype=np.float32), device=device)
    init = (torch.rand((len(ctx), n_samples, ctx.shape[2]), generator=generator, device=device) * 2 - 1)
    prefix = torch.full((n_samples,), ctx.shape[1], dtype=torch.long, device=device)
    with repro.threads(estimator.n_threads):
        samples = langevin(model, ctx, init * estimator.init_range, prefix, estimator.langevin_steps,
                           estimator.step_size, estimator.noise_std, generator,
                           estimator.chain_bound).cpu().double().numpy()
    sq = ((samples[:, :, None, :] - means[:, None, :, :]) ** 2).sum(-1).min(-1)
    return sq.mean(axis=1)


@dataclass(frozen=True)
class ContextEvaluation:
    """One trained model on ``B`` fresh mixtures of one family, at each of ``S`` context sizes."""

    context_sizes: np.ndarray    # (S,)
    nll: np.ndarray              # (B, S) held-out NLL, nats per point, with the adaptive normaliser
    sample_mse: np.ndarray       # (B, S) mean squared distance of model samples to the nearest true mean
    wells: np.ndarray            # (B, S) fraction of the mixture's true means with a well of E within well_radius
    true_nll: np.ndarray         # (B,) the true mixture's NLL of the same held-out points (the floor)
    true_sample_mse: float       # 2σ², the true mixture's own sample MSE
    context: np.ndarray          # (B, n_max, 2)
    means: np.ndarray            # (B, K, 2)


def evaluate(estimator: "InContextEnergyModel", family: MixtureFamily, cfg: "ICLEnergyConfig",
             rng: np.random.Generator) -> ContextEvaluation:
    r"""Score ``cfg.n_eval_mixtures`` fresh mixtures of ``family`` at every ``cfg.context_sizes``: the first n points
    of each sequence are the context, ``cfg.n_heldout`` more points of the same mixture are scored
    (:math:`\text{nll} = \overline{E(x_h \mid x_{<n})} + \log Z(x_{<n})`, :func:`adaptive_log_normaliser`), wells are
    looked for at the true means (:func:`has_well`) and the model's samples are drawn (:func:`sample_mse`)."""
    sizes = tuple(cfg.context_sizes)
    points, means = family.sample(cfg.n_eval_mixtures, max(sizes) + cfg.n_heldout, rng)
    context, heldout = points[:, :max(sizes)], points[:, max(sizes):]
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    shape = (len(points), len(sizes))
    nll, wells, mse = np.empty(shape), np.empty(shape), np.empty(shape)
    for j, n in enumerate(tqdm(sizes, desc=f"{family.n_components}-component mixtures", leave=False,
                               disable=not estimator.progress)):
        for b in range(len(points)):
            memory = estimator.memory(context[b, :n])
            log_z = adaptive_log_normaliser(memory.energy, cfg.grid_lim, cfg.n_grid, cfg.grid_refine, cfg.keep_nats)
            nll[b, j] = memory.energy(heldout[b]).mean() + log_z
            wells[b, j] = has_well(memory.energy, means[b], cfg.well_radius, cfg.well_spacing).mean()
        mse[:, j] = sample_mse(estimator, context[:, :n], means, cfg.n_samples, generator)
    return ContextEvaluation(np.array(sizes), nll, mse, wells, -family.log_density(heldout, means).mean(axis=1),
                             2 * family.component_std**2, context, means)


@dataclass(frozen=True)
class Endpoint:
    """A metric at n = 0 and at the largest context, per training seed (averaged over its evaluation groups),
    with the paired change and its standard error over training seeds."""

    first: np.ndarray     # (n_seeds,)
    last: np.ndarray      # (n_seeds,)

    @property
    def change(self) -> float:
        return float((self.last - self.first).mean())

    @property
    def se(self) -> float:
        return float((self.last - self.first).std(ddof=1) / math.sqrt(len(self.first)))

    def as_dict(self) -> dict[str, float]:
        return {"first": float(self.first.mean()), "last": float(self.last.mean()), "change": self.change,
                "se": self.se}


def endpoints(evaluations: list[list[ContextEvaluation]], metric: str) -> Endpoint:
    """``evaluations[seed][group]`` → the :class:`Endpoint` of ``metric`` (``nll``, ``sample_mse`` or ``wells``)."""
    per_seed = np.array([np.mean([getattr(e, metric).mean(axis=0) for e in groups], axis=0)
                         for groups in evaluations])                                   # (n_seeds, S)
    return Endpoint(per_seed[:, 0], per_seed[:, -1])


def landscapes(estimator: InContextEnergyModel, context: np.ndarray, context_sizes: tuple[int, ...], lim: float,
               n_grid: int) -> np.ndarray:
    r""":math:`E(x \mid x_{<n})` on the ``n_grid`` × ``n_grid`` grid of :func:`square_grid` for each n in
    ``context_sizes``, the context being the first n rows of ``context`` (n_max, 2) → (len(sizes), n_grid, n_grid)."""
    grid, _ = square_grid(lim, n_grid)
    return np.stack([estimator.energy(context[None, :n], grid[None])[0].reshape(n_grid, n_grid)
                     for n in context_sizes])


# -------------------------------------------------------------------------------------------------------- config

@dataclass(frozen=True)
class ICLEnergyConfig(NotebookConfig):
    """Notebook 02c. Model and recipe fields are those of :class:`InContextEnergyModel`; ``n_train_sequences``
    training sequences of ``context_len`` points (each its own 3-component mixture) are drawn once per training
    seed; ``n_seeds`` models are trained from seeds derived from ``seed``; each is evaluated (:func:`evaluate`) on
    ``n_eval_seeds`` independent groups of ``n_eval_mixtures`` fresh mixtures of each family at ``context_sizes``.
    The normaliser is integrated on an ``n_grid``² grid on ``[-grid_lim, grid_lim]²`` refined ``grid_refine``-fold
    where the mass is (:func:`adaptive_log_normaliser`); wells are looked for within ``well_radius`` of each true
    mean on a grid of ``well_spacing``; ``n_samples`` model samples per mixture give the sample MSE. Landscapes are
    drawn on ``[-landscape_lim, landscape_lim]²``. ``torch_threads`` is the torch and BLAS pool size for training
    and scoring (``None``: as ``repro.setup`` set it).

    Claims (thresholds fixed before the reported run): for each family, from n = 0 to the largest context, the
    held-out NLL falls, the share of true means with a well rises and the sample MSE falls, each paired change
    larger than ``margin_se`` standard errors over training seeds.

    Scales:

    - ``smoke``: a tiny model, a handful of steps, coarse grids (seconds).
    - ``quick``/``full`` (committed): the authors' small architecture (d = 64, 8 heads, 3 layers) and Langevin
      recipe (3 negatives per token, 7 steps, α = 0.1, σ = 0.01, Adam 1e-3; chains confined to the box, see the
      module docstring; ``bounded=False`` is the authors' free chain), 3 training seeds of 4,000 steps of 8 fresh
      sequences each, on one CPU thread: 1/40 of the authors' training sequences.
    - ``paper``, for a GPU (``labkit.repro.torch_device()``): the same model trained for the authors' 20 000 steps
      of 64 sequences over 500 000 drawn sequences, more evaluation mixtures.
    """

    n_seeds: int = param(3, positive_int)
    n_eval_seeds: int = param(2, positive_int)
    d_model: int = param(64, positive_int)
    n_heads: int = param(8, positive_int)
    n_layers: int = param(3, positive_int)
    n_negatives: int = param(3, positive_int)
    init_range: float = param(15.0, positive_float)
    langevin_steps: int = param(7, non_negative_int)
    step_size: float = param(0.1, positive_float)
    noise_std: float = param(0.01, positive_float)
    reg: float = param(1e-3, positive_float)
    learning_rate: float = param(1e-3, positive_float)
    bounded: bool = param(True, boolean)
    n_steps: int = param(4000, positive_int)
    batch_size: int = param(8, positive_int)
    context_len: int = param(35, positive_int)
    n_train_sequences: int = param(32_000, positive_int)
    torch_threads: int | None = param(1, optional(positive_int))
    context_sizes: tuple = param((0, 1, 2, 4, 8, 16, 32), tuple_of(non_negative_int))
    n_eval_mixtures: int = param(8, positive_int)
    n_heldout: int = param(64, positive_int)
    grid_lim: float = param(15.0, positive_float)
    n_grid: int = param(64, positive_int)
    grid_refine: int = param(8, positive_int)
    keep_nats: float = param(12.0, positive_float)
    well_radius: float = param(1.0, positive_float)
    well_spacing: float = param(0.05, positive_float)
    n_samples: int = param(128, positive_int)
    landscape_lim: float = param(10.0, positive_float)
    landscape_grid: int = param(120, positive_int)
    margin_se: float = param(3.0, positive_float)

    SCALES: ClassVar[dict] = {
        "smoke": dict(n_seeds=2, n_eval_seeds=1, d_model=16, n_heads=2, n_layers=1, langevin_steps=2, n_steps=4,
                      batch_size=4, n_train_sequences=16, context_sizes=(0, 1, 4, 16), n_eval_mixtures=2,
                      n_heldout=8, n_grid=24, grid_refine=2, well_spacing=0.25, n_samples=16, landscape_grid=24),
        "quick": {},
        "paper": dict(n_steps=20_000, batch_size=64, n_train_sequences=500_000, torch_threads=None,
                      n_eval_seeds=3, n_eval_mixtures=32, n_heldout=256, n_samples=512, landscape_grid=200),
    }

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(f"ICLEnergyConfig: bad value for 'n_heads': {self.n_heads!r}; allowed: a divisor of "
                              f"d_model={self.d_model}")
        if self.n_seeds < 2:
            raise ConfigError(f"ICLEnergyConfig: bad value for 'n_seeds': {self.n_seeds!r}; allowed: at least 2 "
                              "training seeds (the claims use the standard error over training seeds)")
        if list(self.context_sizes) != sorted(set(self.context_sizes)) or self.context_sizes[0] != 0:
            raise ConfigError(f"ICLEnergyConfig: bad value for 'context_sizes': {self.context_sizes!r}; allowed: "
                              "strictly increasing sizes starting at 0")
        if self.context_sizes[-1] > self.context_len:
            raise ConfigError(f"ICLEnergyConfig: bad value for 'context_sizes': {self.context_sizes!r}; allowed: "
                              f"sizes up to context_len={self.context_len} (the trained sequence length)")
        if self.landscape_lim > self.grid_lim:
            raise ConfigError(f"ICLEnergyConfig: bad value for 'landscape_lim': {self.landscape_lim!r}; allowed: at "
                              f"most grid_lim={self.grid_lim}")
        if self.well_spacing >= self.well_radius:
            raise ConfigError(f"ICLEnergyConfig: bad value for 'well_spacing': {self.well_spacing!r}; allowed: "
                              f"less than well_radius={self.well_radius}")

    def estimator(self, seed_index: int, progress: bool = True) -> InContextEnergyModel:
        """The unfitted model of training seed ``seed_index``."""
        return InContextEnergyModel(
            d_model=self.d_model, n_heads=self.n_heads, n_layers=self.n_layers, n_negatives=self.n_negatives,
            init_range=self.init_range, langevin_steps=self.langevin_steps, step_size=self.step_size,
            noise_std=self.noise_std, reg=self.reg, learning_rate=self.learning_rate, bounded=self.bounded,
            n_steps=self.n_steps, batch_size=self.batch_size, n_threads=self.torch_threads,
            random_state=int(repro.rng(self.seed, 0, seed_index).integers(2**31)), progress=progress)

    def training_data(self, seed_index: int) -> np.ndarray:
        """The training sequences of training seed ``seed_index``: (n_train_sequences, context_len, 2)."""
        return THREE_COMPONENTS.sample(self.n_train_sequences, self.context_len, repro.rng(self.seed, 1, seed_index))[0]

    def eval_rng(self, seed_index: int, eval_index: int, family_index: int) -> np.random.Generator:
        """The generator of one evaluation group's fresh mixtures."""
        return repro.rng(self.seed, 2, seed_index, eval_index, family_index)


#: the families every model is evaluated on, by label
FAMILIES = {"3 components (training family)": THREE_COMPONENTS, "5 components (unseen family)": FIVE_COMPONENTS}

#: the claimed metrics, their direction (−1: should fall with context, +1: should rise) and their words
METRICS = {"nll": (-1, "held-out NLL"), "wells": (+1, "share of true means with a well"),
           "sample_mse": (-1, "sample MSE to the nearest true mean")}


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
    evaluations = {label: [[evaluate(m, family, cfg, cfg.eval_rng(i, j, k)) for j in range(cfg.n_eval_seeds)]
                           for i, m in enumerate(models)]
                   for k, (label, family) in enumerate(FAMILIES.items())}
    return ICLResult(models, evaluations)
