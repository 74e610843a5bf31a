r"""The character-level causal transformer (nanoGPT-style decoder, Radford et al. 2019 / Karpathy's nanoGPT; pre-LN,
no biases, weight-tied head): the model only, as nanoGPT's ``model.py``; training and sampling are in
:mod:`labkit.collapse.charlm_train`, the collapse experiment in :mod:`labkit.collapse.charlm`.

For characters :math:`c_1 … c_T` (ids in a vocabulary of size :math:`V` built from the real text):

.. math::
    h^0_t = W_E[c_t] + P[t], \qquad
    a^l = h^{l-1} + \mathrm{Attn}(\mathrm{LN}(h^{l-1})), \qquad h^l = a^l + \mathrm{MLP}(\mathrm{LN}(a^l)),

    \mathrm{Attn}: \ \mathrm{softmax}\!\Big(\frac{Q K^\top}{\sqrt{d_h}} + M\Big) V \ \text{per head}, \ M_{ts} = -\infty
    \text{ for } s > t; \qquad \mathrm{MLP}(x) = W_2\,\mathrm{GELU}(W_1 x), \ W_1 \in \mathbb R^{4d \times d};

    p(c_{t+1} \mid c_{\le t}) = \mathrm{softmax}\big(W_E\, \mathrm{LN}(h^L_t)\big).

Initialisation (nanoGPT): :math:`N(0, 0.02^2)`, residual projections :math:`0.02/\sqrt{2L}`. With a :class:`KVCache`
the model feeds one new position at a time, reusing every earlier position's keys and values.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from labkit.config import ConfigError, Interval, Params, param, positive_int

__all__ = ["CharLMConfig", "KVCache", "CausalSelfAttention", "Block", "CharTransformer"]


@dataclass(frozen=True)
class CharLMConfig(Params):
    """Shape of the transformer."""

    n_layer: int = param(4, positive_int)  # transformer blocks
    n_head: int = param(4, positive_int)  # attention heads per block
    n_embd: int = param(128, positive_int)  # channels (a multiple of n_head)
    block_size: int = param(64, positive_int)  # context length in characters
    dropout: float = param(0.0, Interval(float, 0, 1, closed="left"))  # on attention, residual, embedding outputs

    def validate(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"CharLMConfig: bad value for 'n_embd': {self.n_embd!r}; allowed: a multiple of n_head={self.n_head}"
            )

    @property
    def name(self) -> str:
        return f"{self.n_layer}L×{self.n_head}H×{self.n_embd}"


class KVCache:
    """Keys and values of every layer for the positions fed so far, preallocated for ``max_len`` positions."""

    def __init__(self, cfg: CharLMConfig, batch: int, max_len: int, like: torch.Tensor):
        shape = (cfg.n_layer, 2, batch, cfg.n_head, max_len, cfg.n_embd // cfg.n_head)
        self.kv = torch.empty(shape, device=like.device, dtype=like.dtype)
        self.length = 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new positions' ``k``, ``v`` of ``layer``; return the keys and values of all positions."""
        end = self.length + k.shape[2]
        self.kv[layer, 0, :, :, self.length : end] = k
        self.kv[layer, 1, :, :, self.length : end] = v
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: CharLMConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        # a single query at the newest position sees every cached key; T queries from position 0 need the mask
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, cfg: CharLMConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, layer: int, cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layer, cache)
        return x + self.mlp(self.ln_2(x))


class CharTransformer(nn.Module):
    """The decoder of the module docstring; ``forward`` maps ids ``(B, T)`` to next-character logits ``(B, T, V)``.

    With a :class:`KVCache`, ``forward`` takes the next positions after those already cached (one at a time once
    the cache holds any) and appends their keys and values; the caller advances ``cache.length``."""

    def __init__(self, cfg: CharLMConfig, vocab_size: int, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std, generator=generator)

    def n_params(self) -> int:
        """Trainable parameters, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T = idx.shape
        start = 0 if cache is None else cache.length
        if start + T > self.cfg.block_size:
            raise ValueError(
                f"positions {start}..{start + T - 1} exceed the context of block_size={self.cfg.block_size}"
            )
        if start and T > 1:
            raise ValueError(f"with {start} cached positions, feed one position at a time, got {T}")
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(start, start + T, device=idx.device)))
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, cache)
        return self.head(self.ln_f(x))
