r"""Training, evaluation and sampling of :class:`~labkit.collapse.charlm_model.CharTransformer` on characters (nanoGPT's
``train.py`` and ``sample.py``), and the character vocabulary and chunking they use.

*Recipe* (nanoGPT's ``train_shakespeare_char``, :class:`TrainRecipe`): AdamW (β = 0.9, 0.99; weight decay 0.1 on
matrices only), linear warm-up over ``warmup_fraction`` of the run then cosine decay of the learning rate to
``min_lr``,

.. math::
    \eta(s) = \eta_{\min} + \tfrac12\big(1 + \cos(\pi\,\tfrac{s - w}{S - w})\big)(\eta_{\max} - \eta_{\min})
    \quad (s \ge w),

gradient clipping at 1.0, minibatches of ``batch_size`` random windows of ``block_size + 1`` characters. The loss is
the mean cross-entropy :math:`-\frac1N\sum \ln p(c_{t+1} \mid c_{\le t})` in nats per character.

*Sampling* (:func:`generate`) runs all chunks of a batch in parallel under ``torch.inference_mode``, one forward per
character with a key/value cache, each character drawn at temperature :math:`\tau` (:math:`p \propto
\exp(\text{logits}/\tau)`) by inverse CDF (cumulative sum, binary search).
"""

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from labkit.collapse.charlm_model import CharTransformer, KVCache
from labkit.config import ConfigError, Interval, Params, param, positive_float, positive_int, tuple_of, unit_interval

__all__ = ["PHASES", "Vocabulary", "chunks", "TrainRecipe", "iters_for_epochs", "train", "evaluate", "generate"]

#: the phases of a training step whose seconds :func:`train` can accumulate
PHASES = ("data", "forward", "backward", "optimizer")


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
    return ids[: n * chunk_len].reshape(n, chunk_len)


@dataclass(frozen=True)
class TrainRecipe(Params):
    """Optimiser settings (nanoGPT's ``train_shakespeare_char``, warm-up as a fraction of the run)."""

    batch_size: int = param(12, positive_int)  # windows per step
    learning_rate: float = param(1e-3, positive_float)  # peak learning rate, after the warm-up
    min_lr: float = param(1e-4, positive_float)  # learning rate at the end of the cosine decay
    warmup_fraction: float = param(0.05, Interval(float, 0, 1, closed="both"))  # share of steps in the warm-up
    weight_decay: float = param(0.1, positive_float)  # AdamW's, on matrices only
    betas: tuple = param((0.9, 0.99), tuple_of(unit_interval, min_len=2))  # AdamW's (β1, β2)
    grad_clip: float = param(1.0, positive_float)  # largest gradient norm

    def validate(self) -> None:
        if self.min_lr > self.learning_rate:
            raise ConfigError(
                f"TrainRecipe: bad value for 'min_lr': {self.min_lr!r}; allowed: at most "
                f"learning_rate={self.learning_rate!r}"
            )

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


def train(
    model: CharTransformer,
    data: np.ndarray,
    iters: int,
    recipe: TrainRecipe,
    seed: int,
    phase_times: dict[str, float] | None = None,
) -> np.ndarray:
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
    torch.manual_seed(seed)  # dropout draws, if any
    opt = _optimizer(model, recipe)
    losses = torch.empty(iters, device=device)
    times = dict.fromkeys(PHASES, 0.0)
    model.train()
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        """Charge the time since the last lap to ``phase``."""
        nonlocal clock
        now = time.perf_counter()
        times[phase] += now - clock
        clock = now

    for step in range(iters):
        rows = torch.randint(n_chunks, (recipe.batch_size, 1), generator=g, device=device)
        starts = torch.randint(chunk_len - block, (recipe.batch_size, 1), generator=g, device=device)
        window = data_t[rows, starts + offsets]
        x, y = window[:, :-1], window[:, 1:]
        for group in opt.param_groups:
            group["lr"] = recipe.lr(step, iters)
        lap("data")
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        lap("forward")
        loss.backward()
        lap("backward")
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses[step] = loss.detach()
        lap("optimizer")
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
    ids_t = torch.as_tensor(ids[: n * block + 1], dtype=torch.long, device=device)
    x, y = ids_t[:-1].view(n, block), ids_t[1:].view(n, block)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i in range(0, n, batch_windows):
        logits = model(x[i : i + batch_windows])
        total += F.cross_entropy(
            logits.view(-1, logits.size(-1)), y[i : i + batch_windows].reshape(-1), reduction="sum"
        ).double()
    return float(total) / (n * block)


@torch.inference_mode()
def generate(
    model: CharTransformer,
    start: torch.Tensor,
    length: int,
    temperature: float,
    generator: torch.Generator,
    use_cache: bool = True,
) -> torch.Tensor:
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
            logits = model(out[:, t - 1 : t], cache)[:, -1]
            cache.length += 1
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum(dim=-1)
        u = torch.rand((len(start), 1), generator=generator, device=start.device, dtype=cdf.dtype)
        out[:, t] = torch.searchsorted(cdf, u * cdf[:, -1:])[:, 0]  # inverse-CDF draw of one character
    return out
