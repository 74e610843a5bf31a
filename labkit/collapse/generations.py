"""One generation loop for every model family, and one executor seam to run it over regimes and seeds.

Model-fitting iterations (Gerstgrasser, Schaeffer et al. 2024, arXiv 2404.01413, Secs. 3–5): generation 1 trains a
fresh model on the real training set; generation n ≥ 2 trains a fresh model, with the identical recipe, on

- ``replace``: the synthetic set sampled from model n−1 only;
- ``accumulate``: the real set plus every synthetic set so far (the pool grows by one real-set size a generation);
- ``accumulate_subsample``: a uniform subsample, of the real set's size, of that pool (Kazdan, Schaeffer et al.
  2024, arXiv 2410.16713: accumulation at a fixed training budget).

Each synthetic set has the real set's size (and, for conditional models, the real set's conditions). Every model
is evaluated on held-out *real* data.

A model family is a :class:`Family` (fit / sample / evaluate / preview); an *experiment* is a picklable object whose
``build()`` returns ``(family, real_train, held_out)`` inside whichever process runs it, so only small configs travel
(and generation 1's synthetic set, which every regime of a seed shares). :func:`run_all` runs every (regime, seed)
through a local process pool, or through a Dask distributed cluster when given a scheduler address (how the paper
scale leaves one machine); :func:`run` takes them from the execution settings (:mod:`labkit.execution`), which are
not the notebook's parameters.
"""

import concurrent.futures
import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from labkit import execution, repro

__all__ = [
    "REGIMES",
    "Family",
    "Experiment",
    "first_generation",
    "run_generations",
    "run_all",
    "Runs",
    "run",
    "metric_table",
    "preview_table",
    "summarise",
    "collapse_claims",
]

REGIMES = ("replace", "accumulate", "accumulate_subsample")


def _concat(parts: list) -> Any:
    return np.concatenate(parts)


@dataclass(frozen=True)
class Family:
    """What the loop needs from a model family. Data sets are anything with ``len`` and numpy-index selection.

    - ``fit(train, seed) -> model``: a fresh model trained with the family's fixed recipe;
    - ``sample(model, like, seed) -> data``: a synthetic set the size of ``like`` (and conditioned on it, if the
      model is conditional, e.g. the same molecular graphs);
    - ``evaluate(model, held_out) -> dict``: metrics on held-out real data; ``"loss"`` (lower is better) is required;
    - ``preview(data) -> Any``: a small JSON-able or array excerpt kept per generation for figures (text, images);
    - ``concat(list_of_data) -> data``: pool concatenation (numpy arrays by default);
    - ``last_sample_size``: the last generation's synthetic set trains no model and feeds only ``preview``; when set,
      only the first this many items of the real set are matched there (``None``: the whole set, like every other
      generation).
    """

    fit: Callable[[Any, int], Any]
    sample: Callable[[Any, Any, int], Any]
    evaluate: Callable[[Any, Any], dict]
    preview: Callable[[Any], Any] = lambda data: None
    concat: Callable[[list], Any] = _concat
    last_sample_size: int | None = None


class Experiment(Protocol):
    def build(self) -> tuple[Family, Any, Any]:
        """``(family, real_train, held_out)``, deterministic, built in the process that runs the generations."""


def _seeds(seed: int, n: int) -> tuple[int, int, int]:
    """``(fit, sample, pick)`` seeds of generation ``n`` of run ``seed``."""
    return tuple(int(repro.rng(seed, n, k).integers(2**31)) for k in range(3))


def _generation(family: Family, train, real_train, held_out, n: int, seed: int, last: bool) -> tuple[dict, Any]:
    """Model ``n``: fit on ``train``, scored on ``held_out``, sampled like ``real_train``. Returns its record and its
    synthetic set."""
    fit_seed, sample_seed, _ = _seeds(seed, n)
    model = family.fit(train, fit_seed)
    metrics = {k: float(v) for k, v in family.evaluate(model, held_out).items()}
    if "loss" not in metrics:
        raise ValueError("Family.evaluate must return a 'loss' (lower is better)")
    like = real_train
    if last and family.last_sample_size is not None:
        like = real_train[np.arange(min(family.last_sample_size, len(real_train)))]
    synthetic = family.sample(model, like, sample_seed)
    if len(synthetic) != len(like):
        raise ValueError(f"Family.sample returned {len(synthetic)} items; the real set has {len(like)}")
    return {
        "generation": n,
        "train_size": len(train),
        "metrics": metrics,
        "preview": family.preview(synthetic),
    }, synthetic


def first_generation(family: Family, real_train, held_out, n_generations: int, seed: int) -> tuple[dict, Any]:
    """Generation 1 of run ``seed``: the model trained on the real set, the same in every regime. Returns its record and
    synthetic set, which :func:`run_generations` takes as ``first`` so every regime of a seed shares one model 1."""
    return _generation(family, real_train, real_train, held_out, 1, seed, last=n_generations == 1)


def run_generations(
    family: Family,
    real_train,
    held_out,
    regime: str,
    n_generations: int,
    seed: int,
    first: tuple[dict, Any] | None = None,
) -> dict:
    """Run ``n_generations`` model-fitting iterations under ``regime``; returns per-generation records.

    Record ``n`` (1-based) holds ``train_size`` (what model n was trained on), ``metrics`` (held-out real data)
    and ``preview`` (of the synthetic set model n produced). ``first``: generation 1's record and synthetic set
    (:func:`first_generation` of the same family, data, ``n_generations`` and ``seed``), computed here when not given.
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; allowed: {', '.join(REGIMES)}")
    if n_generations < 1:
        raise ValueError(f"n_generations must be >= 1, got {n_generations!r}")
    n_real = len(real_train)
    record, synthetic = first or first_generation(family, real_train, held_out, n_generations, seed)
    pool, records = [real_train], [record]
    for n in range(2, n_generations + 1):
        if regime == "replace":
            train = synthetic
        else:
            pool.append(synthetic)
            train = family.concat(pool)
            if regime == "accumulate_subsample":
                pick_seed = _seeds(seed, n - 1)[2]
                train = train[np.random.default_rng(pick_seed).choice(len(train), n_real, replace=False)]
        record, synthetic = _generation(family, train, real_train, held_out, n, seed, last=n == n_generations)
        records.append(record)
    return {"regime": regime, "seed": seed, "generations": records}


def _limit_threads(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def _first_task(experiment: Experiment, seed: int, n_generations: int, threads: int) -> tuple[dict, Any]:
    """Generation 1 of ``seed`` in a worker: fixed thread counts, then :func:`first_generation`."""
    _limit_threads(threads)
    family, real_train, held_out = experiment.build()
    return first_generation(family, real_train, held_out, n_generations, seed)


def _run_task(
    experiment: Experiment, regime: str, seed: int, n_generations: int, threads: int, first: tuple[dict, Any]
) -> dict:
    """Generations 2.. of one (regime, seed) in a worker, from the shared generation 1."""
    _limit_threads(threads)
    family, real_train, held_out = experiment.build()
    return run_generations(family, real_train, held_out, regime, n_generations, seed, first=first)


def run_all(
    experiment: Experiment,
    regimes: Iterable[str],
    seeds: Iterable[int],
    n_generations: int,
    *,
    scheduler: str = "",
    max_workers: int = 2,
) -> list[dict]:
    """Every (regime, seed) of ``experiment``, sorted by regime then seed.

    One task per seed trains generation 1 (the real-data model, shared by every regime of that seed); as soon as it
    is done, one task per regime continues from it, the most expensive regime (accumulate, whose pool grows) first.
    ``scheduler`` empty: a local process pool of ``max_workers`` (each worker gets ``threads // max_workers``
    BLAS/torch threads, at least one). Otherwise a Dask scheduler address (``tcp://host:8786``): tasks go to that
    cluster, whose workers need this package installed.
    """
    regimes, seeds = list(regimes), list(seeds)
    for r in regimes:
        if r not in REGIMES:
            raise ValueError(f"unknown regime {r!r}; allowed: {', '.join(REGIMES)}")
    regimes.sort(key=lambda r: r != "accumulate")
    threads = max(1, execution.current().threads // max(1, max_workers))
    bar = tqdm(total=len(seeds) * (1 + len(regimes)), desc="generations")
    results = []
    if scheduler:
        from dask.distributed import Client, as_completed

        with Client(scheduler) as client:
            firsts = {s: client.submit(_first_task, experiment, s, n_generations, threads, pure=False) for s in seeds}
            futures = [
                client.submit(_run_task, experiment, r, s, n_generations, threads, firsts[s], pure=False)
                for s in seeds
                for r in regimes
            ]
            first_keys = {f.key for f in firsts.values()}
            for future in as_completed([*firsts.values(), *futures]):
                if future.key not in first_keys:
                    results.append(future.result())
                bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # torch is not fork-safe once threads exist
        with concurrent.futures.ProcessPoolExecutor(max_workers, mp_context=context) as pool:
            pending = {pool.submit(_first_task, experiment, s, n_generations, threads): s for s in seeds}
            runs = set()
            while pending or runs:
                done, _ = concurrent.futures.wait({*pending, *runs}, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    if future in pending:
                        seed = pending.pop(future)
                        runs |= {
                            pool.submit(_run_task, experiment, r, seed, n_generations, threads, future.result())
                            for r in regimes
                        }
                    else:
                        runs.discard(future)
                        results.append(future.result())
                    bar.update()
    bar.close()
    order = {r: i for i, r in enumerate(REGIMES)}
    return sorted(results, key=lambda res: (order[res["regime"]], res["seed"]))


@dataclass(frozen=True)
class Runs:
    """What a notebook of 01b–01d gets back: its ``experiment`` and :func:`run_all`'s ``results`` for it."""

    experiment: Any
    results: list[dict]

    def table(self, metric: str = "loss") -> dict[str, np.ndarray]:
        """:func:`metric_table` of these results."""
        return metric_table(self.results, metric)

    def previews(self, key: str) -> dict[str, np.ndarray]:
        """:func:`preview_table` of these results."""
        return preview_table(self.results, key)

    def of_seed(self, seed: int) -> dict[str, dict]:
        """``{regime: result}`` of the runs of loop seed ``seed``."""
        return {res["regime"]: res for res in self.results if res["seed"] == seed}


def run(experiment: Experiment, cfg) -> Runs:
    """:func:`run_all` of ``experiment`` over the regimes, seeds and generations of ``cfg`` (a
    ``labkit.collapse.config.GenerationsConfig``), on the scheduler or local pool the execution settings name
    (:func:`labkit.execution.current`)."""
    where = execution.current()
    return Runs(
        experiment,
        run_all(
            experiment, cfg.regimes, cfg.seeds, cfg.n_generations, scheduler=where.scheduler, max_workers=where.workers
        ),
    )


def _per_regime(results: list[dict], value: Callable[[dict], Any]) -> dict[str, np.ndarray]:
    """``{regime: array (n_seeds, n_generations)}`` of ``value(generation record)``."""
    table: dict[str, list] = {}
    for res in results:
        table.setdefault(res["regime"], []).append([value(g) for g in res["generations"]])
    return {r: np.asarray(v) for r, v in table.items()}


def metric_table(results: list[dict], metric: str = "loss") -> dict[str, np.ndarray]:
    """``{regime: array (n_seeds, n_generations)}`` of one held-out metric."""
    return _per_regime(results, lambda g: g["metrics"][metric])


def preview_table(results: list[dict], key: str) -> dict[str, np.ndarray]:
    """``{regime: array (n_seeds, n_generations)}`` of a number a family's ``preview`` keeps per generation (e.g. the
    class entropy of a synthetic set)."""
    return _per_regime(results, lambda g: g["preview"][key])


def summarise(table: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per-generation ``mean`` and ``std`` (sample standard deviation, ddof = 1) over seeds of a table
    ``{regime: (n_seeds, n_generations)}``, per regime: what 01b–01d record next to their figures."""
    return {regime: {"mean": v.mean(axis=0), "std": v.std(axis=0, ddof=1)} for regime, v in table.items()}


def collapse_claims(table: dict[str, np.ndarray], band: float) -> dict[str, dict]:
    """The two claims of each 01b–01d notebook, measured on a ``metric_table`` (losses, lower is better).

    - replace collapses: every seed's last-generation loss exceeds every seed's first-generation loss, i.e. the
      rise is larger than the seed spread;
    - accumulate does not: its mean last-generation loss is within ``band`` (relative) of its mean first-generation
      loss, or below it.
    """
    rep, acc = table["replace"], table["accumulate"]
    rise = float(rep[:, -1].mean() - rep[:, 0].mean())
    spread = float(max(np.ptp(rep[:, 0]), np.ptp(rep[:, -1])))
    acc_change = float(acc[:, -1].mean() / acc[:, 0].mean() - 1)
    return {
        "replace": {
            "passed": bool(rep[:, -1].min() > rep[:, 0].max()),
            "first": float(rep[:, 0].mean()),
            "last": float(rep[:, -1].mean()),
            "rise": rise,
            "seed_spread": spread,
        },
        "accumulate": {
            "passed": bool(acc_change <= band),
            "first": float(acc[:, 0].mean()),
            "last": float(acc[:, -1].mean()),
            "relative_change": acc_change,
            "band": band,
        },
    }
