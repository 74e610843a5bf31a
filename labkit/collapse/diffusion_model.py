r"""The E(3)-equivariant conformer denoiser and its diffusion (the model only; training, sampling and the collapse
experiment are in :mod:`labkit.collapse.diffusion`).

Denoiser: EGNN layers (Satorras, Hoogeboom & Welling 2021, arXiv 2102.09844, Eqs. 3–6) on the fully connected
heavy-atom graph, with GeoDiff-style edge attributes :math:`a_{ij}` (bond order and shortest-path hop count
1, 2, 3, ≥4, so bonded, angle and torsion partners are told apart):

.. math::  m_{ij} = \phi_e(h_i, h_j, \|x_i-x_j\|^2, a_{ij}), \quad
           x_i \leftarrow x_i + \tfrac{1}{N-1}\sum_{j\ne i} \frac{x_i-x_j}{\|x_i-x_j\|+1}\,
           \tfrac{r}{L}\tanh\phi_x(m_{ij}), \quad
           h_i \leftarrow h_i + \phi_h\big(h_i, \textstyle\sum_{j\ne i} m_{ij}\big),

with the normalised differences and the tanh bound (:math:`r` = 15 Å over :math:`L` layers) of EDM's EGNN
(Hoogeboom et al. 2022): without the bound, a conformer that drifts far from anything seen in training (e.g. a rare
two-atom molecule under a model trained on generated data) feeds ever larger distances back into the network and
the sampler overflows.

Node features: element, hydrogen count and an embedding of the noise level :math:`t`; the prediction is
:math:`\hat\epsilon = x^{(L)} - x_t` re-centred (E(3)-equivariant: rotating, reflecting or translating
:math:`x_t` rotates or reflects :math:`\hat\epsilon` and leaves it unchanged by translations; tested).
"""

import math

import torch
from torch import nn

from labkit.data.molecules import ELEMENTS, Conformers

__all__ = ["graph_features", "centre", "centred_noise", "EGNNLayer", "Denoiser", "ConformerDiffusion"]

MAX_HYDROGENS = 4


N_HOPS = 4  # hop-count classes 1, 2, 3, >= 4 (or disconnected)


N_BOND_CODES = 5  # none, single, double, triple, aromatic


NODE_FEATURES = len(ELEMENTS) + MAX_HYDROGENS + 1


EDGE_FEATURES = N_BOND_CODES + N_HOPS


TIME_FEATURES = 16


COORDS_RANGE = 15.0  # Å: bound on the summed per-edge coordinate updates of all layers (EDM)


def graph_features(data: Conformers, device=None) -> dict[str, torch.Tensor]:
    """Tensors of a set: ``x`` (n, A, 3) coordinates, ``mask`` (n, A), ``nodes`` (n, A, NODE_FEATURES) one-hot
    element and hydrogen count, ``edges`` (n, A, A, EDGE_FEATURES) one-hot bond code and hop count."""
    bonds = torch.as_tensor(data.bonds, dtype=torch.long, device=device)
    mask = torch.as_tensor(data.mask, device=device)
    adjacency = (bonds > 0).float()
    hops = torch.full(bonds.shape, N_HOPS, dtype=torch.long, device=device)  # ">= N_HOPS" unless a walk is shorter
    reach = adjacency
    for k in range(1, N_HOPS):  # the first k with a k-step walk from i to j
        hops = torch.where((reach > 0) & (hops == N_HOPS), k, hops)
        reach = reach @ adjacency
    edges = torch.cat(
        [nn.functional.one_hot(bonds, N_BOND_CODES), nn.functional.one_hot(hops - 1, N_HOPS)], dim=-1
    ).float()
    pair = (mask[:, :, None] & mask[:, None, :]) & ~torch.eye(mask.shape[1], dtype=torch.bool, device=device)
    nodes = torch.cat(
        [
            nn.functional.one_hot(torch.as_tensor(data.atoms, device=device), len(ELEMENTS)),
            nn.functional.one_hot(
                torch.as_tensor(data.n_hydrogens, device=device).clamp(max=MAX_HYDROGENS), MAX_HYDROGENS + 1
            ),
        ],
        dim=-1,
    ).float()
    return {
        "x": torch.as_tensor(data.coords, device=device),
        "mask": mask,
        "nodes": nodes * mask[..., None],
        "edges": edges * pair[..., None],
    }


def centre(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract each molecule's mean over its real atoms; padding stays 0."""
    m = mask[..., None].to(x.dtype)
    return (x - (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)) * m


def centred_noise(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise on the real atoms, projected to zero centre of mass, shape (n, A, 3)."""
    eps = torch.randn(*mask.shape, 3, generator=generator, device=mask.device)
    return centre(eps, mask)


class EGNNLayer(nn.Module):
    """One E(n)-equivariant layer (Satorras et al. 2021) on a dense, padded, fully connected graph."""

    def __init__(self, hidden: int, coords_range: float):
        super().__init__()
        self.coords_range = coords_range
        # phi_e's first linear layer on [h_i, h_j, d_ij^2, a_ij], split into its blocks (the same map, fewer flops)
        self.edge_i = nn.Linear(hidden, hidden)
        self.edge_j = nn.Linear(hidden, hidden, bias=False)
        self.edge_rest = nn.Linear(1 + EDGE_FEATURES, hidden, bias=False)
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.coord = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1, bias=False))
        nn.init.xavier_uniform_(self.coord[-1].weight, gain=0.001)  # start near the identity map (EGNN)
        self.node = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h, x, edges, pair, n_atoms):
        diff = x[:, :, None] - x[:, None, :]  # (B, A, A, 3)
        d2 = (diff**2).sum(-1, keepdim=True)
        m = (
            self.edge_out(
                self.edge_i(h)[:, :, None] + self.edge_j(h)[:, None, :] + self.edge_rest(torch.cat([d2, edges], dim=-1))
            )
            * pair
        )
        weight = self.coords_range * torch.tanh(self.coord(m))  # bounded: no runaway far from the data
        step = diff / ((d2 + 1e-8).sqrt() + 1) * weight * pair  # 1e-8: finite gradients at d = 0
        x = x + step.sum(2) / (n_atoms - 1).clamp(min=1)[:, None, None]
        h = h + self.node(torch.cat([h, m.sum(2)], dim=-1))
        return h, x


class Denoiser(nn.Module):
    """:math:`\\hat\\epsilon_\\theta(x_t, t, G)`: EGNN layers on graph features plus a noise-level embedding."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Linear(NODE_FEATURES + TIME_FEATURES, hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden, COORDS_RANGE / layers) for _ in range(layers))
        self.register_buffer(
            "freqs",
            torch.exp(-math.log(1000.0) * torch.arange(TIME_FEATURES // 2) / (TIME_FEATURES // 2)),
            persistent=False,
        )

    def forward(self, x_t, t_frac, nodes, edges, mask):
        """``x_t`` (B, A, 3) centred, ``t_frac`` (B,) = t/T in (0, 1]; returns centred ε̂ (B, A, 3)."""
        angles = 1000.0 * t_frac[:, None] * self.freqs  # sinusoidal, (B, F/2)
        time = torch.cat([angles.sin(), angles.cos()], dim=-1)[:, None].expand(-1, x_t.shape[1], -1)
        m = mask[..., None].to(x_t.dtype)
        h = self.embed(torch.cat([nodes, time], dim=-1)) * m
        pair = (m * m.transpose(1, 2)).unsqueeze(-1) * (1 - torch.eye(x_t.shape[1], device=x_t.device))[..., None]
        n_atoms = mask.sum(1).to(x_t.dtype)
        x = x_t
        for layer in self.layers:
            h, x = layer(h, x, edges, pair, n_atoms)
            h = h * m
        return centre(x - x_t, mask)


def _betas(steps: int) -> torch.Tensor:
    r""":math:`\beta_t = 1 - \bar\alpha(t/T)/\bar\alpha((t-1)/T)` for t = 1..T, with the continuous limit of Ho et
    al.'s linear schedule, :math:`\bar\alpha(s) = \exp(-0.1 s - 9.95 s^2)` (Song et al. 2021, VP-SDE)."""
    s = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    log_alpha_bar = -0.1 * s - 9.95 * s**2
    return 1 - torch.exp(log_alpha_bar[1:] - log_alpha_bar[:-1])


class ConformerDiffusion(nn.Module):
    """A denoiser and its noise schedule (index t = 1..T; index 0 of the buffers is t = 0)."""

    def __init__(self, hidden: int, layers: int, diffusion_steps: int):
        super().__init__()
        self.steps = diffusion_steps
        self.denoiser = Denoiser(hidden, layers)
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), _betas(diffusion_steps)])
        self.register_buffer("betas", betas.float())
        self.register_buffer("alpha_bars", torch.cumprod(1 - betas, 0).float())

    def forward(self, x_t, t, nodes, edges, mask):
        return self.denoiser(x_t, t.to(x_t.dtype) / self.steps, nodes, edges, mask)

    def noisy(self, x0, t, eps):
        """:math:`x_t = \\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon`."""
        a = self.alpha_bars[t][:, None, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * eps
