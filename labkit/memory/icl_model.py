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

The model only; its evaluation, notebook 02c's configuration and :func:`labkit.memory.icl.run` are in
:mod:`labkit.memory.icl`.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import logsumexp
from torch import nn
from tqdm.auto import tqdm

from labkit import execution, repro
from labkit.config import ConfigError, Params, boolean, non_negative_int, param, positive_float, positive_int
from labkit.memory.base import EnergyMemory

__all__ = [
    "MixtureFamily",
    "THREE_COMPONENTS",
    "FIVE_COMPONENTS",
    "candidate_mask",
    "EnergyTransformer",
    "langevin",
    "contrastive_divergence_loss",
    "ICLRecipe",
    "InContextEnergyModel",
    "InContextEnergy",
]


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
            0.0, self.component_std, (n_mixtures, n_points, 2)
        )
        return points.astype(np.float32), means.astype(np.float32)

    def log_density(self, x: np.ndarray, means: np.ndarray) -> np.ndarray:
        """Exact :math:`\\log p(x)` of the mixtures with ``means`` (B, K, 2) at points ``x`` (B, N, 2) → (B, N)."""
        sq = ((x[:, :, None, :].astype(float) - means[:, None, :, :]) ** 2).sum(-1)
        s2 = self.component_std**2
        return logsumexp(-sq / (2 * s2), axis=-1) - math.log(self.n_components * 2 * math.pi * s2)


THREE_COMPONENTS = MixtureFamily(3, 5.0, 0.33)  # the training family


FIVE_COMPONENTS = MixtureFamily(5, 4.5, 0.13)  # the paper's out-of-distribution evaluation family


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
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 1)

    def forward(
        self, x: torch.Tensor, candidates: torch.Tensor | None = None, prefix_lens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(energies of x (B, T), energies of the candidates (B, M) or None)``."""
        n_real = x.shape[1]
        if candidates is None:
            tokens, mask = x, candidate_mask(n_real, torch.zeros(0, dtype=torch.long, device=x.device))
        else:
            if prefix_lens is None or prefix_lens.shape != candidates.shape[1:2]:
                raise ValueError(
                    f"prefix_lens must have shape ({candidates.shape[1]},), got "
                    f"{None if prefix_lens is None else tuple(prefix_lens.shape)}"
                )
            if prefix_lens.numel() and not 0 <= int(prefix_lens.min()) <= int(prefix_lens.max()) <= n_real:
                raise ValueError(
                    f"prefix_lens must lie in [0, {n_real}], got {int(prefix_lens.min())}..{int(prefix_lens.max())}"
                )
            tokens, mask = torch.cat([x, candidates], dim=1), candidate_mask(n_real, prefix_lens)
        energy = self.head(self.encoder(self.embed(tokens), mask=mask)).squeeze(-1)
        return energy[:, :n_real], (None if candidates is None else energy[:, n_real:])


def langevin(
    model: EnergyTransformer,
    x: torch.Tensor,
    negatives: torch.Tensor,
    prefix_lens: torch.Tensor,
    n_steps: int,
    step_size: float,
    noise_std: float,
    generator: torch.Generator,
    bound: float | None = None,
) -> torch.Tensor:
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


@dataclass(frozen=True)
class ICLRecipe(Params):
    """The architecture and training recipe of :class:`InContextEnergyModel` (notebook 02c's ``recipe``; the defaults
    are the authors' small configuration with 4,000 steps of 8 sequences and chains confined to the box)."""

    d_model: int = param(64, positive_int)  # width of the transformer
    n_heads: int = param(8, positive_int)  # attention heads (a divisor of d_model)
    n_layers: int = param(3, positive_int)  # encoder layers
    n_negatives: int = param(3, positive_int)  # Langevin negatives per real token
    init_range: float = param(15.0, positive_float)  # negatives start uniform on [-init_range, init_range]^2
    langevin_steps: int = param(7, non_negative_int)  # Langevin steps per negative
    step_size: float = param(0.1, positive_float)  # α of the Langevin gradient step
    noise_std: float = param(0.01, positive_float)  # σ of the Langevin noise
    reg: float = param(1e-3, positive_float)  # λ of the energy-magnitude regulariser
    learning_rate: float = param(1e-3, positive_float)  # Adam's
    bounded: bool = param(True, boolean)  # chains projected onto the initialisation box
    n_steps: int = param(4000, positive_int)  # Adam steps
    batch_size: int = param(8, positive_int)  # sequences per step

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"ICLRecipe: bad value for 'n_heads': {self.n_heads!r}; allowed: a divisor of d_model={self.d_model}"
            )


class InContextEnergyModel:
    """The transformer trained by contrastive divergence on sequences of points, scikit-learn style.

    ``fit(X)`` takes sequences ``X`` (n_sequences, T, 2), each from its own mixture, and runs ``n_steps`` Adam steps
    on minibatches of ``batch_size`` sequences (a fresh shuffle of ``X`` whenever it is used up). Learned
    attributes: ``model_`` (the :class:`EnergyTransformer`), ``loss_history_`` (the loss per step)."""

    def __init__(
        self,
        d_model: int = 64,
        n_heads: int = 8,
        n_layers: int = 3,
        n_negatives: int = 3,
        init_range: float = 15.0,
        langevin_steps: int = 7,
        step_size: float = 0.1,
        noise_std: float = 0.01,
        reg: float = 1e-3,
        learning_rate: float = 1e-3,
        n_steps: int = 1000,
        batch_size: int = 32,
        bounded: bool = False,
        chunk_size: int = 128,
        n_threads: int | None = None,
        device: str | None = None,
        seed: int = 0,
        progress: bool = True,
    ):
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.n_negatives, self.init_range = n_negatives, init_range
        self.langevin_steps, self.step_size, self.noise_std = langevin_steps, step_size, noise_std
        self.reg, self.learning_rate, self.n_steps, self.batch_size = reg, learning_rate, n_steps, batch_size
        self.bounded = bounded
        self.chunk_size, self.n_threads, self.device = chunk_size, n_threads, device
        self.seed, self.progress = seed, progress

    def _device(self) -> torch.device:
        return torch.device(self.device) if self.device else execution.device()

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
            torch.manual_seed(self.seed)
            self.model_ = EnergyTransformer(self.d_model, self.n_heads, self.n_layers, X.shape[2]).to(device)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        order_rng = repro.rng(self.seed, 1)
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.learning_rate)
        T, K = X.shape[1], self.n_negatives
        prefix = torch.arange(T, device=device).repeat_interleave(K)  # negative (n, k) scores x_n's slot
        data, order, pos = torch.from_numpy(X).to(device), order_rng.permutation(len(X)), 0
        self.loss_history_ = np.empty(self.n_steps)
        self.model_.train()
        for step in tqdm(range(self.n_steps), desc="contrastive divergence", disable=not self.progress):
            if pos + self.batch_size > len(order):
                order, pos = order_rng.permutation(len(X)), 0
            x = data[torch.from_numpy(order[pos : pos + self.batch_size]).to(device)]
            pos += self.batch_size
            neg = (torch.rand((len(x), T * K, X.shape[2]), generator=gen, device=device) * 2 - 1) * self.init_range
            neg = langevin(
                self.model_, x, neg, prefix, self.langevin_steps, self.step_size, self.noise_std, gen, self.chain_bound
            )
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
            raise ValueError(
                f"context (B, n, dim) and queries (B, Q, dim) must share B, got {tuple(ctx.shape)} and {tuple(q.shape)}"
            )
        out = []
        with torch.no_grad(), repro.threads(self.n_threads):
            for start in range(0, q.shape[1], self.chunk_size):
                chunk = q[:, start : start + self.chunk_size]
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
