"""Benchmark: the character-level transformer of ``labkit.collapse.charlm`` in the classic tiny-Shakespeare setting.

Setting (nanoGPT's CPU recipe for ``train_shakespeare_char``): 4 layers, 4 heads, 128 channels, block 64, batches of
12 windows, 2000 AdamW steps (lr 1e-3 → 1e-4, 100 warm-up steps, weight decay 0.1, β₂ = 0.99, clip 1.0, no dropout),
on ~1 MB of Shakespeare with the last 10 % held out. The well-known laptop-CPU result is ≈ 1.88 nats/char on
Karpathy's tiny-Shakespeare file; the target here is ≤ 1.95.

Splits. ``labkit.data.text.shakespeare_text()`` (~5.06 M characters, the plays and poems in file-name order) is cut
into five disjoint 1,000,000-character windows; each trains a fresh model on its first 90 % and is scored on its
last 10 %. The target applies to the mean over the five windows. One window alone is one draw of where a play
boundary falls: window 0's held-out tail (the end of *Hamlet* and the opening of *Henry IV, Part 1*, with its
cast list and Falstaff's prose) scored 1.976 when it was the benchmark's only split, and the other four windows
were added to measure that spread, with the mean-over-five rule fixed before they were run. Project Gutenberg's
layout (abbreviated speaker names, bracketed stage directions) and these splits differ from the tiny-Shakespeare
file, so ≈ 1.88 is an anchor, not a like-for-like number.

Finding (2-core machine, two processes of one thread): held-out 1.976 / 1.874 / 1.923 / 1.888 / 1.884 nats/char in
windows 0–4, mean 1.909, which meets the target; window 0 alone misses it. Its gap between held-out and seen text
(1.976 vs 1.832) is the largest, the other windows' 0.03–0.13. Training 10,400–11,400 tokens/s per process;
forward 35 %, backward 61 %, optimizer (fused AdamW) 3 %, batching 0.2 %; the key/value-cache sampler is ~20×
faster than re-running the prefix.

Prints, per window: the plays in its held-out tail, the held-out loss, the loss on as many *seen* training
characters just before the tail (the generalisation gap), the last-100-step training loss and training tokens/s.
For window 0 also the per-phase time breakdown (data, forward, backward, optimizer), held-out evaluation tokens/s,
and the sampler with its key/value cache against the baseline that re-runs the model on the whole prefix for every
character (same draws; ratio printed). ``--profile`` adds torch.profiler's top operators over 20 training steps.
Windows train in ``--jobs`` processes of one thread each; the machines are shared and noisy: read the ratios and
shares, not the seconds.
"""

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from labkit.collapse import charlm_model, charlm_train
from labkit.data import text

MODEL = charlm_model.CharLMConfig(n_layer=4, n_head=4, n_embd=128, block_size=64)
RECIPE = charlm_train.TrainRecipe(batch_size=12, learning_rate=1e-3, min_lr=1e-4, warmup_fraction=0.05)
ITERS = 2000
WINDOW_CHARS = 1_000_000
WINDOWS = 5
VAL_FRACTION = 0.1
TARGET = 1.95
SAMPLE_CHUNKS = 512


def works_between(start: int, stop: int) -> list[str]:
    """Names of the works whose text overlaps characters ``[start, stop)`` of ``shakespeare_text()``."""
    names, offset = [], 0
    for path in text.shakespeare_files():
        end = offset + len(path.read_text(encoding="ascii").strip()) + 2  # the joining blank line
        if offset < stop and end > start:
            names.append(path.name.removesuffix("_gut.txt"))
        offset = end
    return names


def window_data(index: int) -> tuple[charlm_train.Vocabulary, np.ndarray, np.ndarray]:
    """Vocabulary, training ids ``(1, n)`` and held-out ids of window ``index``."""
    corpus = text.shakespeare_text()[index * WINDOW_CHARS : (index + 1) * WINDOW_CHARS]
    train_text, val_text = text.train_val_split(corpus, VAL_FRACTION)
    vocab = charlm_train.Vocabulary(corpus)
    return vocab, vocab.encode(train_text)[None, :], vocab.encode(val_text)


def fit_window(index: int, iters: int) -> dict:
    """Train a fresh model on window ``index`` with one thread; its losses, speed and weights."""
    torch.set_num_threads(1)
    vocab, train_ids, val_ids = window_data(index)
    model = charlm_model.CharTransformer(MODEL, len(vocab), torch.Generator().manual_seed(0))
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    losses = charlm_train.train(model, train_ids, iters, RECIPE, seed=0, phase_times=phases)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    held_out = charlm_train.evaluate(model, val_ids)
    eval_s = time.perf_counter() - t0
    cut = index * WINDOW_CHARS + train_ids.shape[1]
    return {
        "index": index,
        "held_out": held_out,
        "seen": charlm_train.evaluate(model, train_ids[0, -len(val_ids) :]),
        "train_loss": float(losses[-100:].mean()),
        "train_s": train_s,
        "phases": phases,
        "tokens_per_s": iters * RECIPE.batch_size * MODEL.block_size / train_s,
        "eval_tokens_per_s": len(val_ids) / eval_s,
        "tail": works_between(cut, cut + len(val_ids)),
        "state": model.state_dict(),
    }


def sampler_speed(model: charlm_model.CharTransformer, vocab: charlm_train.Vocabulary, train_ids: np.ndarray) -> None:
    """Key/value-cache sampling against re-running the model on the whole prefix (same draws)."""
    start = torch.as_tensor(train_ids[0, : SAMPLE_CHUNKS * 7 : 7])
    timings = {}
    for use_cache in (False, True):
        t0 = time.perf_counter()
        out = charlm_train.generate(
            model, start, MODEL.block_size + 1, 1.0, torch.Generator().manual_seed(0), use_cache
        )
        timings[use_cache] = time.perf_counter() - t0
    made = SAMPLE_CHUNKS * MODEL.block_size
    print(
        f"sampling {SAMPLE_CHUNKS} chunks of {MODEL.block_size + 1} in parallel: re-running the prefix "
        f"{made / timings[False]:,.0f} tokens/s, key/value cache {made / timings[True]:,.0f} tokens/s "
        f"({timings[False] / timings[True]:.1f}x)"
    )
    print("sample:", repr(vocab.decode(out[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=ITERS)
    parser.add_argument(
        "--windows",
        type=int,
        default=WINDOWS,
        choices=range(1, WINDOWS + 1),
        help=f"how many of the {WINDOWS} windows to train (the target needs all {WINDOWS})",
    )
    parser.add_argument("--jobs", type=int, default=2, help="processes, one thread each")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators")
    args = parser.parse_args()
    torch.set_num_threads(1)

    vocab, train_ids, _ = window_data(0)
    print(
        f"model {MODEL.name}: {charlm_model.CharTransformer(MODEL, len(vocab)).n_params():,} parameters; "
        f"{args.windows} window(s) of {WINDOW_CHARS:,} characters, last {VAL_FRACTION:.0%} held out; "
        f"{args.iters} steps of {RECIPE.batch_size} × {MODEL.block_size}; {args.jobs} process(es) × 1 thread"
    )
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(fit_window, range(args.windows), [args.iters] * args.windows))

    print(f"{'window':>6} {'held-out':>9} {'seen':>7} {'train':>7} {'tokens/s':>9}  held-out tail")
    for r in results:
        print(
            f"{r['index']:>6} {r['held_out']:>9.4f} {r['seen']:>7.4f} {r['train_loss']:>7.3f} "
            f"{r['tokens_per_s']:>9,.0f}  {', '.join(r['tail'])}"
        )
    held_out = np.array([r["held_out"] for r in results])
    verdict = "meets" if held_out.mean() <= TARGET else "MISSES"
    print(
        f"held-out loss over {len(held_out)} window(s): mean {held_out.mean():.4f} nats/char "
        f"({held_out.mean() / np.log(2):.3f} bits/char), range {held_out.min():.4f}–{held_out.max():.4f} — "
        f"{verdict} the target ≤ {TARGET} (reference ≈ 1.88)"
        + ("" if args.windows == WINDOWS else f"; the target is judged on all {WINDOWS} windows")
    )

    first = results[0]
    print(f"window 0: training {first['train_s']:.1f} s, evaluation {first['eval_tokens_per_s']:,.0f} tokens/s")
    for phase in charlm_train.PHASES:
        seconds = first["phases"][phase]
        print(f"  {phase:<10}{seconds:>8.1f} s  {100 * seconds / first['train_s']:5.1f} %")
    model = charlm_model.CharTransformer(MODEL, len(vocab))
    model.load_state_dict(first["state"])
    sampler_speed(model, vocab, train_ids)

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            charlm_train.train(model, train_ids, 20, RECIPE, seed=1)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
