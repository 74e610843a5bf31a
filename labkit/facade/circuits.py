r"""Circuits: which edges of the network carry an input's prediction, and how typical that set of edges is.

**Edge attribution patching** (Syed, Rager & Conmy 2023, "Attribution patching outperforms automated circuit
discovery"; the linear approximation of ACDC, Conmy et al. 2023). For the affine map of layer :math:`l`,
:math:`z_j = \sum_i W_{ji} a_i + b_j`, the edge :math:`i\to j` carries :math:`W_{ji} a_i`; removing it changes
the metric :math:`M` by, to first order,

.. math::

   s_{ij}(x) = W_{ji}\,a_i(x)\,\frac{\partial M}{\partial z_j}(x) = \frac{\partial M}{\partial g_{ji}}\Big|_{g=1},

the derivative with respect to a multiplicative gate on the edge (``labkit.classifiers.MLP`` takes such gates).
Here :math:`M` is the predicted class's logit. One backward pass gives all edges of all inputs at once.

**Per-input circuit**: the top-``q`` fraction of edges by :math:`|s_{ij}(x)|` within every layer (a binary vector
:math:`b(x)` over all edges). **Distribution over circuits**: per group :math:`g` (the predicted class), independent
Bernoulli inclusions with a Beta(1, 1) prior, :math:`p_{ge} = (N_{ge} + 1)/(N_g + 2)`, so

.. math::  -\log p(b \mid g) = -\sum_e \big[b_e \log p_{ge} + (1-b_e)\log(1-p_{ge})\big],

the circuit negative log-likelihood: FACADE's second term.
"""

import math

import numpy as np
import torch

from labkit.classifiers import as_tensor

__all__ = ["edge_slices", "edge_attributions", "top_edges", "BernoulliCircuits"]


def edge_slices(model) -> list[slice]:
    """Where each layer's edges (row-major ``(out, in)``) sit in the flat edge vector."""
    sizes = [lin.weight.numel() for lin in model.linears]
    ends = np.cumsum(sizes)
    return [slice(int(e - s), int(e)) for s, e in zip(sizes, ends)]


def edge_attributions(model, x) -> tuple[torch.Tensor, np.ndarray]:
    """``s(x)`` for every input and edge, flattened to ``(n, n_edges)``, and the predicted classes."""
    model.eval()
    trace = model.trace(as_tensor(x))
    pred = trace.logits.argmax(dim=1)
    metric = trace.logits.gather(1, pred[:, None]).sum()
    grads = torch.autograd.grad(metric, trace.pre + [trace.logits])
    inputs = [as_tensor(x)] + trace.hidden
    scores = [
        (g[:, :, None] * lin.weight[None] * a[:, None, :]).detach().flatten(1)
        for g, lin, a in zip(grads, model.linears, inputs)
    ]
    return torch.cat(scores, dim=1), pred.numpy()


def top_edges(scores: torch.Tensor, slices: list[slice], q: float) -> torch.Tensor:
    """Boolean circuit mask: in every layer, the edges whose ``|s|`` reaches the ``ceil(q · n_edges_l)``-th largest
    value of that input (edges with zero attribution never count, so a circuit may be smaller)."""
    if not 0 < q <= 1:
        raise ValueError(f"q must lie in (0, 1], got {q!r}")
    magnitude = scores.abs().numpy()
    mask = np.zeros(magnitude.shape, dtype=bool)
    for sl in slices:
        block = magnitude[:, sl]
        k = math.ceil(q * block.shape[1])
        kth = np.partition(block, block.shape[1] - k, axis=1)[:, block.shape[1] - k]  # k-th largest per row
        mask[:, sl] = (block >= kth[:, None]) & (block > 0)
    return torch.from_numpy(mask)


class BernoulliCircuits:
    """Product-of-Bernoullis distribution over circuits, one per group, with Beta(1, 1) smoothing."""

    def __init__(self, n_groups: int):
        self.n_groups = n_groups

    def fit(self, masks: torch.Tensor, groups: np.ndarray) -> "BernoulliCircuits":
        groups = np.asarray(groups)
        counts = np.stack([masks[torch.from_numpy(groups == g)].sum(dim=0).numpy() for g in range(self.n_groups)])
        n = np.bincount(groups, minlength=self.n_groups)[:, None]
        self.inclusion_ = (counts + 1) / (n + 2)
        return self

    def nll(self, masks: torch.Tensor, groups: np.ndarray) -> np.ndarray:
        """Circuit negative log-likelihood of every mask under its group's distribution."""
        p = torch.as_tensor(self.inclusion_)
        log_odds, log_off = torch.log(p) - torch.log1p(-p), torch.log1p(-p).sum(dim=1)
        per_group = masks.double() @ log_odds.T + log_off[None]  # (n, n_groups)
        return -per_group.gather(1, torch.as_tensor(np.asarray(groups), dtype=torch.long)[:, None])[:, 0].numpy()
