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
``build()`` returns ``(family, real_train, held_out)`` inside whichever process runs it, so only small configs travel.
:func:`run_all` runs every (regime, seed) through a local process pool, or through a Dask distributed cluster when
given a scheduler address (how the paper scale leaves one machine).
"""

import concurrent.futures
import multiprocessing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

import numpy as np
from tqdm.auto import tqdm

from labkit import repro

__all__ = ["REGIMES", "Family", "Experiment", "run_generations", "run_all", "metric_table", "preview_table",
           "collapse_claims"]

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
    - ``concat(list_of_data) -> data``: pool concatenation (numpy arrays by default).
    """

    fit: Callable[[Any, int], Any]
    sample: Callable[[Any, Any, int], Any]
    evaluate: Callable[[Any, Any], dict]
    preview: Callable[[Any], Any] = lambda data: None
    concat: Callable[[list], Any] = _concat


class Experiment(Protocol):
    def build(self) -> tuple[Family, Any, Any]:
        """``(family, real_train, held_out)``, deterministic, built in the process that runs the generations."""


def run_generations(family: Family, real_train, held_out, regime: str, n_generations: int, seed: int) -> dict:
    """Run ``n_generations`` model-fitting iterations under ``regime``; returns per-generation records.

    Record ``n`` (1-based) holds ``train_size`` (what model n was trained on), ``metrics`` (held-out real data)
    and ``preview`` (of the synthetic set model n produced).
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; allowed: {', '.join(REGIMES)}")
    if n_generations < 1:
        raise ValueError(f"n_generations must be >= 1, got {n_generations!r}")
    n_real = len(real_train)
    pool, train, records = [real_train], real_train, []
    for n in range(1, n_generations + 1):
        fit_seed, sample_seed, pick_seed = (int(repro.rng(seed, n, k).integers(2**31)) for k in range(3))
        model = family.fit(train, fit_seed)
        metrics = {k: float(v) for k, v in family.evaluate(model, held_out).items()}
        if "loss" not in metrics:
            raise ValueError("Family.evaluate must return a 'loss' (lower is better)")
        synthetic = family.sample(model, real_train, sample_seed)
        if len(synthetic) != n_real:
            raise ValueError(f"Family.sample returned {len(synthetic)} items; the real set has {n_real}")
        records.append({"generation": n, "train_size": len(train), "metrics": metrics,
                        "preview": family.preview(synthetic)})
        if regime == "replace":
            train = synthetic
        else:
            pool.append(synthetic)
            train = family.concat(pool)
            if regime == "accumulate_subsample":
                train = train[np.random.default_rng(pick_seed).choice(len(train), n_real, replace=False)]
    return {"regime": regime, "seed": seed, "generations": records}


def _run_task(experiment: Experiment, regime: str, seed: int, n_generations: int, threads: int) -> dict:
    """One (regime, seed) in a worker: fixed thread counts, then the loop."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    family, real_train, held_out = experiment.build()
    return run_generations(family, real_train, held_out, regime, n_generations, seed)


def run_all(experiment: Experiment, regimes: Iterable[str], seeds: Iterable[int], n_generations: int, *,
            scheduler: str = "", max_workers: int = 2) -> list[dict]:
    """Every (regime, seed) of ``experiment``, sorted by regime then seed.

    ``scheduler`` empty: a local process pool of ``max_workers`` (each worker gets ``threads // max_workers``
    BLAS/torch threads, at least one). Otherwise a Dask scheduler address (``tcp://host:8786``): tasks go to that
    cluster, whose workers need this package installed.
    """
    tasks = [(r, s) for r in regimes for s in seeds]
    for r, _ in tasks:
        if r not in REGIMES:
            raise ValueError(f"unknown regime {r!r}; allowed: {', '.join(REGIMES)}")
    threads = max(1, repro.thread_count() // max(1, max_workers))
    bar = tqdm(total=len(tasks), desc="generations")
    results = []
    if scheduler:
        from dask.distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = [client.submit(_run_task, experiment, r, s, n_generations, threads, pure=False)
                       for r, s in tasks]
            for future in as_completed(futures):
                results.append(future.result())
                bar.update()
    else:
        context = multiprocessing.get_context("spawn")          # torch is not fork-safe once threads exist
        with concurrent.futures.ProcessPoolExecutor(max_workers, mp_context=context) as pool:
            futures = [pool.submit(_run_task, experiment, r, s, n_generations, threads) for r, s in tasks]
            for future in concurrent.futures.as_completed(futures):
                results.append(future.result())
                bar.update()
    bar.close()
    order = {r: i for i, r in enumerate(REGIMES)}
    return sorted(results, key=lambda res: (order[res["regime"]], res["seed"]))


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
        "replace": {"passed": bool(rep[:, -1].min() > rep[:, 0].max()), "first": float(rep[:, 0].mean()),
                    "last": float(rep[:, -1].mean()), "rise": rise, "seed_spread": spread},
        "accumulate": {"passed": bool(acc_change <= band), "first": float(acc[:, 0].mean()),
                       "last": float(acc[:, -1].mean()), "relative_change": acc_change, "band": band},
    }
