"""Benchmark: where 01b's training time goes at the committed ``full`` sizes, and what the CPU ecosystem buys.

For each model of ``CharLMCollapseConfig``'s ``full`` preset (2 layers × 4 heads × 64 and 4 × 4 × 128, block 64) and
its recipe (batches of 8, AdamW), in this one process, all timed against the current implementation (eager,
one thread, the batch of the recipe) measured in the same run:

- the per-phase split of a training step (data, forward, backward, optimizer; ``charlm_train.train``'s ``phase_times``);
- ``torch.compile`` (inductor, default mode) of the model for the training step: steady-state tokens/s ratio, and
  the one-off compile time a fresh worker process pays;
- larger batches (16, 32 windows) at one thread: tokens/s ratio (more tokens per step, fewer optimiser updates per
  epoch: a recipe change, not a free speed-up);
- two threads for one process against one (the loop's workers use one thread each, two processes at once);
- bfloat16 autocast (the CPU has AMX where ``torch.backends.mkldnn`` reports it): tokens/s ratio.

The numbers are ratios of medians over ``--repeats`` timings of ``--steps`` steps each; the machines are shared and
noisy, so read the ratios, not the seconds. Usage: ``python benchmarks/bench_charlm_speed.py [--steps 40]``.
"""

import argparse
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from labkit.collapse import charlm, charlm_model, charlm_train

VOCAB = 65
BLOCK = 64


def _steps(model, opt, batch: int, steps: int, autocast: bool = False) -> float:
    """Seconds for ``steps`` training steps on random windows (the data phase is negligible: see the split)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(VOCAB, (steps, batch, BLOCK), generator=g)
    y = torch.randint(VOCAB, (steps, batch, BLOCK), generator=g)
    start = time.perf_counter()
    for i in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x[i])
        loss = F.cross_entropy(logits.float().view(-1, VOCAB), y[i].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def _tokens_per_s(make, batch: int, steps: int, repeats: int, threads: int = 1, autocast: bool = False) -> float:
    torch.set_num_threads(threads)
    model, opt = make()
    _steps(model, opt, batch, 3, autocast)  # warm-up (and compile)
    seconds = statistics.median(_steps(model, opt, batch, steps, autocast) for _ in range(repeats))
    torch.set_num_threads(1)
    return batch * BLOCK * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    full = charlm.CharLMCollapseConfig.from_params(scale="full")
    recipe = full.recipe
    print(
        f"torch {torch.__version__}; mkldnn bf16 {torch.backends.mkldnn.is_available()}; "
        f"full recipe: batches of {recipe.batch_size}, block {full.block_size}"
    )
    for n_layer, n_head, n_embd in full.model_sizes:
        cfg = charlm_model.CharLMConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=full.block_size)

        def make(compiled: bool = False, cfg: charlm_model.CharLMConfig = cfg):
            model = charlm_model.CharTransformer(cfg, VOCAB, torch.Generator().manual_seed(0))
            opt = charlm_train._optimizer(model, recipe)
            return (torch.compile(model) if compiled else model), opt

        times: dict[str, float] = {}
        data = np.random.default_rng(0).integers(VOCAB, size=(2000, BLOCK + 1))
        charlm_train.train(make()[0], data, 20 * args.steps // 20 or 1, recipe, 0, phase_times=times)
        total = sum(times.values())
        print(
            f"\n{cfg.name} ({make()[0].n_params():,} parameters): phases "
            + ", ".join(f"{k} {v / total:.0%}" for k, v in times.items())
        )
        base = _tokens_per_s(make, recipe.batch_size, args.steps, args.repeats)
        print(f"  eager, batch {recipe.batch_size}, 1 thread: {base:,.0f} tokens/s (the baseline)")
        start = time.perf_counter()
        model, opt = make(compiled=True)
        _steps(model, opt, recipe.batch_size, 1)
        print(f"  torch.compile: first step {time.perf_counter() - start:.1f} s (compile, once per process)")
        compiled = _tokens_per_s(lambda: make(compiled=True), recipe.batch_size, args.steps, args.repeats)
        print(f"  torch.compile: {compiled / base:.2f}× the baseline's tokens/s")
        for batch in (16, 32):
            print(f"  batch {batch}: {_tokens_per_s(make, batch, args.steps, args.repeats) / base:.2f}×")
        print(f"  2 threads: {_tokens_per_s(make, recipe.batch_size, args.steps, args.repeats, threads=2) / base:.2f}×")
        print(
            f"  bf16 autocast: "
            f"{_tokens_per_s(make, recipe.batch_size, args.steps, args.repeats, autocast=True) / base:.2f}×"
        )


if __name__ == "__main__":
    main()
