r"""A small multilayer perceptron classifier that exposes what happens inside it.

The network is a stack of affine maps with ReLU and dropout between them (the pilot's 64-128-128-64-10 with
dropout 0.1 on the 8×8 digits):

.. math::

   z^{(l)} = (W^{(l)} \odot G^{(l)})\, a^{(l-1)} + b^{(l)},\qquad a^{(l)} = \mathrm{ReLU}(z^{(l)}),\qquad a^{(0)} = x,

and the logits are the last :math:`z^{(L)}`. The optional *gates* :math:`G^{(l)}` (all ones by default) multiply
each weight, i.e. each edge of the computational graph; the derivative of any output with respect to a gate at
:math:`G = 1` is that edge's first-order contribution (used by ``labkit.facade``). :meth:`MLP.trace` returns the
pre-activations and the hidden activations of every layer (captured before dropout) next to the logits, which
is what the detectors and FACADE read.

:func:`train` fits the network by Adam (Kingma & Ba 2015) on the cross-entropy loss, with seeded initialisation,
shuffling and dropout.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labkit.seeds import derived_seed

__all__ = ["Trace", "MLP", "train", "predict", "as_tensor"]


class Trace(NamedTuple):
    """One forward pass: ``pre[l]`` and ``hidden[l]`` for every hidden layer, then the logits."""

    pre: list
    hidden: list
    logits: torch.Tensor


def as_tensor(x) -> torch.Tensor:
    """A float32 tensor from an array or tensor (no copy when it already is one)."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)


class MLP(nn.Module):
    """ReLU perceptron with layer sizes ``sizes`` (input first, classes last) and dropout after each hidden layer."""

    def __init__(self, sizes: Sequence[int] = (64, 128, 128, 64, 10), dropout: float = 0.1):
        super().__init__()
        if len(sizes) < 3 or any(int(s) < 1 for s in sizes):
            raise ValueError(
                f"sizes must list at least 3 positive layer widths (input, hidden..., classes), got {sizes!r}"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.sizes = tuple(int(s) for s in sizes)
        self.dropout = dropout
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def trace(self, x: torch.Tensor, gates: Sequence[torch.Tensor] | None = None) -> Trace:
        """Forward pass that keeps every layer; ``gates[l]`` (shape of ``linears[l].weight``) multiplies the weights."""
        pre, hidden = [], []
        h = x
        for l, lin in enumerate(self.linears):
            weight = lin.weight if gates is None else lin.weight * gates[l]
            z = F.linear(h, weight, lin.bias)
            if l == len(self.linears) - 1:
                return Trace(pre, hidden, z)
            a = F.relu(z)
            pre.append(z)
            hidden.append(a)
            h = F.dropout(a, self.dropout, self.training)

    def forward(self, x: torch.Tensor, gates: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        return self.trace(x, gates).logits


def train(model: MLP, x, y, epochs: int = 150, lr: float = 1e-3, batch_size: int = 64, seed: int = 0) -> MLP:
    """Adam on the cross-entropy, ``epochs`` passes over ``(x, y)`` in seeded random minibatches; returns the model
    in eval mode. The initial weights are redrawn too, so the same seed gives the same network: the weights from
    ``derived_seed(seed, 0)``, the minibatch order from ``derived_seed(seed, 1)``, the dropout masks from
    ``derived_seed(seed, 2)`` (:mod:`labkit.seeds`; the keys ``labkit.monitor.organisms`` uses for the same three
    purposes); torch's global generator is restored afterwards."""
    init = torch.Generator().manual_seed(derived_seed(seed, 0))
    with torch.no_grad():
        for lin in model.linears:  # PyTorch's default init, drawn from our generator
            bound = 1 / np.sqrt(lin.in_features)
            lin.weight.uniform_(-bound, bound, generator=init)
            lin.bias.uniform_(-bound, bound, generator=init)
    x, y = as_tensor(x), torch.as_tensor(np.asarray(y), dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    gen = torch.Generator().manual_seed(derived_seed(seed, 1))
    with torch.random.fork_rng():
        torch.manual_seed(derived_seed(seed, 2))  # dropout masks
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for idx in order.split(batch_size):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x) -> np.ndarray:
    """Predicted classes (argmax of the logits), in eval mode."""
    model.eval()
    return model(as_tensor(x)).argmax(dim=1).numpy()
