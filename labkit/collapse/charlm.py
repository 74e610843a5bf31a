r"""Model collapse of a character-level causal transformer on real English prose (Gerstgrasser, Schaeffer et al.
2024, arXiv 2404.01413, Sec. 4: language models on TinyStories), run through the shared loop of ``generations``.

*Model* (nanoGPT-style decoder, Radford et al. 2019 / Karpathy's nanoGPT; pre-LN, no biases, weight-tied head).
For characters :math:`c_1 … c_T` (ids in a vocabulary of size :math:`V` built from the real text):

.. math::
    h^0_t = W_E[c_t] + P[t], \qquad
    a^l = h^{l-1} + \mathrm{Attn}(\mathrm{LN}(h^{l-1})), \qquad h^l = a^l + \mathrm{MLP}(\mathrm{LN}(a^l)),

    \mathrm{Attn}: \ \mathrm{softmax}\!\Big(\frac{Q K^\top}{\sqrt{d_h}} + M\Big) V \ \text{per head}, \ M_{ts} = -\infty
    \text{ for } s > t; \qquad \mathrm{MLP}(x) = W_2\,\mathrm{GELU}(W_1 x), \ W_1 \in \mathbb R^{4d \times d};

    p(c_{t+1} \mid c_{\le t}) = \mathrm{softmax}\big(W_E\, \mathrm{LN}(h^L_t)\big).

The loss is the mean cross-entropy :math:`-\frac1N\sum \ln p(c_{t+1} \mid c_{\le t})` in nats per character.

*Recipe* (fixed for every generation; nanoGPT's ``train_shakespeare_char``): fresh initialisation
(:math:`N(0, 0.02^2)`, residual projections :math:`0.02/\sqrt{2L}`), AdamW (β = 0.9, 0.99; weight decay 0.1 on
matrices only), linear warm-up then cosine decay of the learning rate to ``min_lr``, gradient clipping at 1.0,
minibatches of ``batch_size`` random windows of ``block_size + 1`` characters. The number of steps is a fixed
number of *epochs* over whatever training set the regime gives — the paper trains each iteration for one epoch
over its data — so an accumulating model takes more steps, as in the paper.

*Data.* The real training text is cut into consecutive chunks of ``block_size + 1`` characters, an int array of
shape ``(n_chunks, block_size + 1)``. A synthetic set has as many chunks, each sampled from the previous model at
temperature :math:`\tau` (:math:`p \propto \exp(\text{logits}/\tau)`; the paper uses 1.0, with a 0.3 ablation) from a
seed character drawn uniformly from the real chunks' first characters. Every model is evaluated on the held-out
real tail of the text, cut into non-overlapping windows of the training shape.

*Competence* (checked before collapse is claimed; thresholds fixed in the notebook before any run). A collapse
measured on models that never learned the text is weak evidence, so generation 1 is held to two external anchors:
its held-out loss against nanoGPT's ``train_shakespeare_char`` recipe (≈ 1.93 nats/char on this corpus, see
``benchmarks/bench_charlm.py``; the notebook asks for ≤ 2.00), and whether it writes words. A *word token* is a
maximal match of ``[a-z]+(?:'[a-z]+)*`` in the lower-cased text (letters with internal apostrophes: ``o'er``,
``'tis`` → ``tis``); :func:`vocabulary` is the set of word tokens of a text and :func:`real_word_fraction` the
fraction of a text's word tokens found in a vocabulary. Applied to chunks (the synthetic set's unit), tokens that
touch either end of a chunk are left out, as they may be cut by the chunk boundary; the control is the held-out real
text cut into chunks of the same length (:meth:`CharLMExperiment.real_word_reference`).

*Throughput* (``benchmarks/bench_charlm.py``; one CPU thread). Training time is matrix products and attention:
for the 0.8 M-parameter model, forward 35 %, backward 60 %, optimizer (fused AdamW) 3 %, batching 0.3 %; ``aten::mm``
alone is ~2/3, so the levers are model size and token count. Sampling runs under ``torch.inference_mode`` for all
chunks of a batch in parallel, one forward per character with a key/value cache: ~17× faster than re-running the
model on the whole prefix at block 64 (one token per chunk per step instead of up to 64). Characters are drawn by
inverse CDF (cumulative sum, binary search), ~15× cheaper than ``torch.multinomial`` here. Threads: one per worker
process (``generations.run_all``); on an oversubscribed machine two OpenMP threads per process ran 3–4× *slower*.
"""

import math
import re
import textwrap
import time
from dataclasses import dataclass
from typing import ClassVar

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from labkit import repro
from labkit.collapse.generations import Family
from labkit.collapse.plots import REGIME_COLORS, REGIME_LABELS
from labkit.collapse.config import GenerationsConfig
from labkit.config import Check, ConfigError, param, positive_float, positive_int
from labkit.data import text as text_data

__all__ = ["PHASES", "CharLMConfig", "TrainRecipe", "Vocabulary", "KVCache", "CharTransformer", "chunks",
           "iters_for_epochs", "train", "evaluate", "generate", "CharLMExperiment", "sample_previews", "samples_figure",
           "CharLMCollapseConfig", "HELD_OUT_PLAY", "WORD", "words", "vocabulary", "real_word_fraction",
           "COMPETENT_LOSS", "COMPETENT_WORD_FRACTION"]

PHASES = ("data", "forward", "backward", "optimizer")


# ------------------------------------------------------------------------------------------------------------ model

@dataclass(frozen=True)
class CharLMConfig:
    """Shape of the transformer: ``n_layer`` blocks of ``n_head`` heads over ``n_embd`` channels, a context of
    ``block_size`` characters; ``dropout`` on attention, residual and embedding outputs (0 = none)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CharLMConfig: bad value for {name!r}: {value!r}; allowed: an integer >= 1")
        if self.n_embd % self.n_head:
            raise ValueError(f"CharLMConfig: n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                             "allowed: n_embd a multiple of n_head")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"CharLMConfig: bad value for 'dropout': {self.dropout!r}; allowed: 0 <= dropout < 1")

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
        self.kv[layer, 0, :, :, self.length:end] = k
        self.kv[layer, 1, :, :, self.length:end] = v
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
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, cfg: CharLMConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False), nn.Dropout(cfg.dropout))

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
        self.head.weight = self.wte.weight                                         # weight tying
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
            raise ValueError(f"positions {start}..{start + T - 1} exceed the context of block_size="
                             f"{self.cfg.block_size}")
        if start and T > 1:
            raise ValueError(f"with {start} cached positions, feed one position at a time, got {T}")
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(start, start + T, device=idx.device)))
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, cache)
        return self.head(self.ln_f(x))


# --------------------------------------------------------------------------------------------- vocabulary and data

class Vocabulary:
    """The sorted distinct characters of a text; ``encode`` / ``decode`` map text to int64 ids and back."""

    def __init__(self, text: str):
        self.chars = "".join(sorted(set(text)))
        self._index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter(map(self._index.__getitem__, text), dtype=np.int64, count=len(text))
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary {self.chars!r}") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in np.asarray(ids).ravel())


def chunks(ids: np.ndarray, chunk_len: int) -> np.ndarray:
    """Consecutive, non-overlapping chunks ``(len(ids) // chunk_len, chunk_len)``; the remainder is dropped."""
    n = len(ids) // chunk_len
    if n < 1:
        raise ValueError(f"{len(ids)} ids are fewer than one chunk of {chunk_len}")
    return ids[:n * chunk_len].reshape(n, chunk_len)


#: competence of a generation-1 model, fixed before any run (see the module docstring): held-out loss at most
#: this (nats/char; nanoGPT's char recipe reaches ≈ 1.93 on this corpus) ...
COMPETENT_LOSS = 2.00
#: ... and at least this fraction of its samples' word tokens are words of the training text
COMPETENT_WORD_FRACTION = 0.70

#: a word token: a maximal run of lower-case letters, with apostrophes only between letters
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str, interior: bool = False) -> list[str]:
    """The word tokens (:data:`WORD`) of ``text`` lower-cased; with ``interior``, only those touching neither end of
    ``text`` (a chunk boundary may have cut those)."""
    low = text.lower()
    return [m.group() for m in WORD.finditer(low) if not interior or (m.start() > 0 and m.end() < len(low))]


def vocabulary(text: str) -> frozenset[str]:
    """The distinct word tokens of ``text`` (lower-cased)."""
    return frozenset(words(text))


def real_word_fraction(text, vocabulary: frozenset[str]) -> float:
    """Fraction of the word tokens of ``text`` that are in ``vocabulary``. ``text`` is a string, or a list of chunks
    (strings) whose tokens touching either end of their chunk are left out (:func:`words` with ``interior``).
    0.0 when there is no word token at all (no words is no evidence of writing words)."""
    tokens = words(text) if isinstance(text, str) else [w for piece in text for w in words(piece, interior=True)]
    return sum(w in vocabulary for w in tokens) / len(tokens) if tokens else 0.0


# ------------------------------------------------------------------------------------------------------ training

@dataclass(frozen=True)
class TrainRecipe:
    """Optimiser settings (nanoGPT's ``train_shakespeare_char``, warm-up as a fraction of the run)."""

    batch_size: int = 12
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.99)
    grad_clip: float = 1.0

    def lr(self, step: int, iters: int) -> float:
        """Linear warm-up over ``warmup_fraction · iters`` steps, then cosine decay to ``min_lr`` at ``iters``."""
        warmup = max(1, round(self.warmup_fraction * iters))
        if step < warmup:
            return self.learning_rate * (step + 1) / warmup
        progress = (step - warmup) / max(1, iters - warmup)
        return self.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (self.learning_rate - self.min_lr)


def iters_for_epochs(n_targets: int, epochs: float, batch_size: int, block_size: int) -> int:
    """Steps that show ``epochs`` × ``n_targets`` predicted characters in batches of ``batch_size`` windows."""
    return max(1, math.ceil(epochs * n_targets / (batch_size * block_size)))


def _optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.learning_rate, betas=recipe.betas, fused=True)


def train(model: CharTransformer, data: np.ndarray, iters: int, recipe: TrainRecipe, seed: int,
          phase_times: dict[str, float] | None = None) -> np.ndarray:
    """Train ``model`` in place for ``iters`` AdamW steps on random windows of ``data`` (an int array
    ``(n_chunks, chunk_len)`` with ``chunk_len > block_size``; a single long text is ``(1, n)``). Returns the
    training loss of every step. ``phase_times``, if given, accumulates seconds per phase (data, forward,
    backward, optimizer; exact on the CPU, where operations run synchronously)."""
    block = model.cfg.block_size
    n_chunks, chunk_len = data.shape
    if chunk_len <= block:
        raise ValueError(f"chunks of {chunk_len} characters hold no window of block_size + 1 = {block + 1}")
    device = next(model.parameters()).device
    data_t = torch.as_tensor(data, dtype=torch.long, device=device)
    offsets = torch.arange(block + 1, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)                                                        # dropout draws, if any
    opt = _optimizer(model, recipe)
    losses = torch.empty(iters, device=device)
    times = dict.fromkeys(PHASES, 0.0)
    model.train()
    clock = time.perf_counter()
    for step in range(iters):
        rows = torch.randint(n_chunks, (recipe.batch_size, 1), generator=g, device=device)
        starts = torch.randint(chunk_len - block, (recipe.batch_size, 1), generator=g, device=device)
        window = data_t[rows, starts + offsets]
        x, y = window[:, :-1], window[:, 1:]
        for group in opt.param_groups:
            group["lr"] = recipe.lr(step, iters)
        now = time.perf_counter(); times["data"] += now - clock; clock = now
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        now = time.perf_counter(); times["forward"] += now - clock; clock = now
        loss.backward()
        now = time.perf_counter(); times["backward"] += now - clock; clock = now
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses[step] = loss.detach()
        now = time.perf_counter(); times["optimizer"] += now - clock; clock = now
    if phase_times is not None:
        for k, v in times.items():
            phase_times[k] = phase_times.get(k, 0.0) + v
    return losses.cpu().numpy()


@torch.inference_mode()
def evaluate(model: CharTransformer, ids: np.ndarray, batch_windows: int = 256) -> float:
    """Mean cross-entropy (nats per character) on a text ``ids`` cut into non-overlapping windows of
    ``block_size`` inputs and their next characters (every window's first prediction has one character of context,
    as in training)."""
    block = model.cfg.block_size
    device = next(model.parameters()).device
    n = (len(ids) - 1) // block
    if n < 1:
        raise ValueError(f"a held-out text of {len(ids)} characters holds no window of {block + 1}")
    ids_t = torch.as_tensor(ids[:n * block + 1], dtype=torch.long, device=device)
    x, y = ids_t[:-1].view(n, block), ids_t[1:].view(n, block)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i in range(0, n, batch_windows):
        logits = model(x[i:i + batch_windows])
        total += F.cross_entropy(logits.view(-1, logits.size(-1)), y[i:i + batch_windows].reshape(-1),
                                 reduction="sum").double()
    return float(total) / (n * block)


@torch.inference_mode()
def generate(model: CharTransformer, start: torch.Tensor, length: int, temperature: float,
             generator: torch.Generator, use_cache: bool = True) -> torch.Tensor:
    """Sequences ``(B, length)`` that begin with the characters ``start`` ``(B,)`` and continue with draws from
    the model at ``temperature``, all ``B`` in parallel, one forward per character: with a key/value cache
    (``use_cache``), or by re-running the model on the whole prefix (same distribution, ~``length``/2 times
    more work). ``length`` is at most ``block_size + 1``."""
    if not 1 <= length <= model.cfg.block_size + 1:
        raise ValueError(f"length must lie in 1..block_size + 1 = {model.cfg.block_size + 1}, got {length}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    model.eval()
    out = torch.empty((len(start), length), dtype=torch.long, device=start.device)
    out[:, 0] = start
    params = next(model.parameters())
    cache = KVCache(model.cfg, len(start), length - 1, params) if use_cache else None
    for t in range(1, length):
        if cache is None:
            logits = model(out[:, :t])[:, -1]
        else:
            logits = model(out[:, t - 1:t], cache)[:, -1]
            cache.length += 1
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum(dim=-1)
        u = torch.rand((len(start), 1), generator=generator, device=start.device, dtype=cdf.dtype)
        out[:, t] = torch.searchsorted(cdf, u * cdf[:, -1:])[:, 0]          # inverse-CDF draw of one character
    return out


# ---------------------------------------------------------------------------------------------------- experiment

#: the held-out play: the last play in file-name order (the classic split holds out the tail of the text)
HELD_OUT_PLAY = "winters_tale"


@dataclass(frozen=True)
class CharLMExperiment:
    """The character-LM family on real Shakespeare (``labkit.data.text.shakespeare_plays``): training text = the plays
    other than :data:`HELD_OUT_PLAY` in file-name order, as many whole plays as fit in ``train_chars`` (the opening
    ``train_chars`` of the first play when not even one fits: the smoke and quick previews); held-out text = the first
    ``held_out_chars`` of :data:`HELD_OUT_PLAY` (the whole play when it is shorter). The model ``model``, the recipe
    ``recipe`` run for ``epochs`` over each training set, synthetic chunks drawn at ``temperature``, sampled in
    batches of ``sample_batch`` chunks; the last generation's synthetic set, which only feeds the preview, has
    ``last_sample_chunks`` chunks. ``build()`` is what ``generations.run_all`` calls."""

    model: CharLMConfig = CharLMConfig()
    recipe: TrainRecipe = TrainRecipe()
    epochs: float = 1.0
    train_chars: int = 1_000_000
    held_out_chars: int = 200_000
    temperature: float = 1.0
    sample_batch: int = 512
    preview_chars: int = 300
    last_sample_chunks: int = 2000

    def text(self) -> tuple[str, str]:
        """``(train_text, held_out_text)`` of the real corpus: disjoint plays."""
        training_plays = [name for name in text_data.shakespeare_plays() if name != HELD_OUT_PLAY]
        return (text_data.play_corpus(training_plays, self.train_chars),
                text_data.play_corpus([HELD_OUT_PLAY], self.held_out_chars))

    def n_params(self) -> int:
        """Parameters of the model on this corpus's vocabulary."""
        return CharTransformer(self.model, len(Vocabulary("".join(self.text())))).n_params()

    def fit(self, vocab_size: int, train_set: np.ndarray, seed: int) -> CharTransformer:
        device = repro.torch_device()
        g = torch.Generator().manual_seed(seed)
        model = CharTransformer(self.model, vocab_size, generator=g).to(device)
        n_targets = train_set.shape[0] * (train_set.shape[1] - 1)
        iters = iters_for_epochs(n_targets, self.epochs, self.recipe.batch_size, self.model.block_size)
        train(model, train_set, iters, self.recipe, seed)
        return model

    def sample(self, model: CharTransformer, like: np.ndarray, seed: int) -> np.ndarray:
        """As many chunks as ``like`` has, each from a seed character drawn among ``like``'s first characters."""
        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(seed)
        first = torch.as_tensor(like[:, 0], device=device)
        start = first[torch.randint(len(first), (len(first),), generator=g, device=device)]
        parts = [generate(model, start[i:i + self.sample_batch], like.shape[1], self.temperature, g)
                 for i in range(0, len(start), self.sample_batch)]
        return torch.cat(parts).cpu().numpy()

    def evaluate(self, model: CharTransformer, held_out: np.ndarray) -> dict[str, float]:
        loss = evaluate(model, held_out)
        return {"loss": loss, "bits_per_char": loss / math.log(2)}

    def preview(self, vocab: Vocabulary, words_known: frozenset[str], data: np.ndarray) -> dict:
        """``text``: the first ``preview_chars`` characters of a synthetic set; ``real_word_fraction``: the fraction
        of the word tokens of all its chunks (interior tokens, see :func:`real_word_fraction`) that occur in the
        training text."""
        rows = math.ceil(self.preview_chars / data.shape[1])
        return {"text": vocab.decode(data[:rows])[:self.preview_chars],
                "real_word_fraction": real_word_fraction([vocab.decode(row) for row in data], words_known)}

    def real_word_reference(self) -> float:
        """The control of ``real_word_fraction``: the held-out real text, cut into chunks of the synthetic chunks'
        length, scored against the training text's vocabulary (1.0 would be a held-out text using only words of the
        training text)."""
        train_text, held_text = self.text()
        size = self.model.block_size + 1
        pieces = [held_text[i:i + size] for i in range(0, len(held_text) - size + 1, size)]
        return real_word_fraction(pieces, vocabulary(train_text))

    def build(self) -> tuple[Family, np.ndarray, np.ndarray]:
        train_text, held_text = self.text()
        vocab = Vocabulary(train_text + held_text)
        known = vocabulary(train_text)
        real = chunks(vocab.encode(train_text), self.model.block_size + 1)
        family = Family(fit=lambda train_set, seed: self.fit(len(vocab), train_set, seed), sample=self.sample,
                        evaluate=self.evaluate, preview=lambda data: self.preview(vocab, known, data),
                        last_sample_size=self.last_sample_chunks)
        return family, real, vocab.encode(held_text)


# --------------------------------------------------------------------------------------------------------- figure

def sample_previews(results: list[dict], seed: int, generation: int) -> dict[str, str]:
    """``{regime: preview text}`` of the synthetic set of model ``generation`` in one seed's runs (``run_all``
    results)."""
    return {res["regime"]: res["generations"][generation - 1]["preview"]["text"] for res in results
            if res["seed"] == seed}


def _panel(ax, label: str, body: str, color, width: int) -> None:
    """A framed monospace text panel: ``body`` as it would print (newlines kept, lines wrapped at ``width``), cut to
    the lines that fit the panel."""
    lines = [piece for line in body.split("\n") for piece in (textwrap.wrap(line, width) or [""])]
    fontsize = 6.5
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    fit = max(1, int(height_pt / (1.25 * fontsize)) - 1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(color)
    ax.set_title(label, fontsize=9, color=color, loc="left")
    ax.text(0.03, 0.97, "\n".join(lines[:fit]), family="monospace", fontsize=fontsize, va="top", ha="left",
            transform=ax.transAxes)


def samples_figure(real: str, first: str, last: dict[str, str], n_last: int, title: str, width: int = 52,
                   word_fractions: dict[str, float] | None = None):
    """Monospace text panels. Left: a real excerpt, and the text sampled by model 1 (trained on real text, the same
    model in every regime). Right: the text sampled by model ``n_last`` of each regime (``last[regime]``).
    ``word_fractions``, if given, adds each panel's real-word fraction to its title: keys ``"real"`` (the held-out
    control), ``"first"`` and the regimes."""
    n = len(last)
    fractions = word_fractions or {}

    def label(text: str, key: str) -> str:
        if key not in fractions:
            return text
        return f"{text}; {'held-out text: ' if key == 'real' else ''}{fractions[key]:.0%} real words"

    fig = plt.figure(figsize=(9.2, 2.3 * n + 0.5))
    grid = fig.add_gridspec(2 * n, 2, hspace=0.35, wspace=0.05, top=1 - 0.55 / (2.3 * n + 0.5), bottom=0.02,
                            left=0.02, right=0.98)
    _panel(fig.add_subplot(grid[:n, 0]), label("real text (training corpus)", "real"), real, "0.3", width)
    _panel(fig.add_subplot(grid[n:, 0]), label("sampled by model 1 (trained on real text; every regime)", "first"),
           first, "0.3", width)
    for i, (regime, body) in enumerate(last.items()):
        _panel(fig.add_subplot(grid[2 * i:2 * i + 2, 1]),
               label(f"{REGIME_LABELS[regime]}: sampled by model {n_last}", regime), body, REGIME_COLORS[regime], width)
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------------------- config

def _is_size(v) -> bool:
    return (isinstance(v, (tuple, list)) and len(v) == 3 and all(positive_int.test(x) for x in v)
            and v[2] % v[1] == 0)


_SIZES = Check(lambda v: isinstance(v, (tuple, list)) and len(v) >= 1 and all(_is_size(s) for s in v),
               "a list of (n_layer, n_head, n_embd) triples of integers >= 1 with n_embd a multiple of n_head")


@dataclass(frozen=True)
class CharLMCollapseConfig(GenerationsConfig):
    """Notebook 01b. ``seeds`` are the loop's seeds (one run per model size, regime and seed); ``model_sizes`` are
    ``(n_layer, n_head, n_embd)`` triples, each run through every regime; the recipe fields are those of
    :class:`TrainRecipe`; ``band`` is the relative band, fixed before any run, within which accumulate's held-out
    loss must stay of its generation-1 value.

    Scales. The training text is whole plays in file-name order and the held-out text is :data:`HELD_OUT_PLAY`
    (see :class:`CharLMExperiment`; the previews cut both short):

    - ``smoke`` seconds: 2 seeds, 2 generations, a one-layer model on 24 k characters.
    - ``quick`` a preview, ≈ 2 min on 2 CPU cores: 3 seeds, 4 generations, models of 0.06 M and 0.16 M parameters,
      the opening 45 k characters of the first play to train and 15 k of the held-out play, 3 epochs per generation,
      batches of 8 at learning rate 4e-3 → 4e-4. Its generation-1 models are not competent (≈ 2.4 nats/char).
    - ``full`` the committed figures, ≈ 45 min on 2 CPU cores: 3 seeds, 4 generations, models of 0.11 M
      (2 layers × 4 heads × 64) and 0.81 M parameters (4 × 4 × 128, nanoGPT's ``train_shakespeare_char`` model),
      block 64; the first seven plays whole (0.94 M characters) to train and *The Winter's Tale* whole (0.15 M) held
      out; 1.5 epochs over each generation's training set (the paper's one epoch, scaled to where this model is
      competent: one epoch reaches ≈ 1.99 nats/char, 1.5 ≈ 1.91); batches of 8 at learning rate 3e-3 → 3e-4.
      Epochs, batch and learning rate were chosen on *Henry IV Part 1* (a play in neither split) before any
      collapse run at this scale: 1 epoch at 1e-3 / 2e-3 / 3e-3 with batches of 12 gave 2.13 / 2.05 / 2.01, with
      batches of 8 at 2e-3 / 3e-3 1.997 / 1.988, and 1.5 epochs at 3e-3 with batches of 8 1.910.
    - ``paper``, for a GPU (sizes comparable to the paper's, which trains GPT-2 9 M and Llama-2 12 M–126 M for one
      epoch per iteration on TinyStories, ~470 M tokens, 8 k-token vocabulary, 5 iterations): all 36 training plays
      (4.70 M characters), block 256, two models of 10.7 M (6 layers × 6 heads × 384, nanoGPT's Shakespeare model,
      ≈ the paper's 9 M GPT-2) and 25.3 M parameters (8 × 8 × 512), batches of 64 windows, 5 epochs per generation,
      5 generations, 3 seeds, temperature 1.0 (``params={"temperature": 0.3}`` is the paper's ablation).
      Characters are not BPE tokens, so losses are in nats per character, not per token.
    """

    model_sizes: tuple = param(((2, 2, 48), (3, 4, 64)), _SIZES)
    block_size: int = param(64, positive_int)
    train_chars: int = param(45_000, positive_int)
    held_out_chars: int = param(15_000, positive_int)
    epochs: float = param(3.0, positive_float)
    batch_size: int = param(8, positive_int)
    learning_rate: float = param(4e-3, positive_float)
    min_lr: float = param(4e-4, positive_float)
    temperature: float = param(1.0, positive_float)

    SCALES: ClassVar[dict] = {
        "smoke": dict(n_generations=2, seeds=(0, 1), model_sizes=((1, 2, 32),), block_size=32, train_chars=24_000,
                      held_out_chars=6_000, epochs=1.0),
        "quick": {},
        "full": dict(model_sizes=((2, 4, 64), (4, 4, 128)), train_chars=1_000_000, held_out_chars=200_000,
                     epochs=1.5, learning_rate=3e-3, min_lr=3e-4),
        "paper": dict(n_generations=5, model_sizes=((6, 6, 384), (8, 8, 512)), block_size=256,
                      train_chars=5_000_000, held_out_chars=200_000, epochs=5.0, batch_size=64, learning_rate=1e-3,
                      min_lr=1e-4),
    }

    def validate(self) -> None:
        super().validate()
        if self.min_lr > self.learning_rate:
            raise ConfigError(f"CharLMCollapseConfig: bad value for 'min_lr': {self.min_lr!r}; allowed: at most "
                              f"learning_rate={self.learning_rate!r}")
        if self.held_out_chars < 4 * (self.block_size + 1):
            raise ConfigError(f"CharLMCollapseConfig: bad value for 'held_out_chars': {self.held_out_chars!r}; "
                              f"allowed: at least 4 windows of block_size + 1 = {self.block_size + 1}")

    def experiments(self) -> dict[str, CharLMExperiment]:
        """``{model name: experiment}``, one per model size, sharing data and recipe."""
        recipe = TrainRecipe(batch_size=self.batch_size, learning_rate=self.learning_rate, min_lr=self.min_lr)
        out = {}
        for n_layer, n_head, n_embd in self.model_sizes:
            model = CharLMConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=self.block_size)
            out[model.name] = CharLMExperiment(model=model, recipe=recipe, epochs=self.epochs,
                                               train_chars=self.train_chars, held_out_chars=self.held_out_chars,
                                               temperature=self.temperature)
        return out
