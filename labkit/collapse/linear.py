r"""Model collapse in linear regression: replacing versus accumulating synthetic data.

Setup (Gerstgrasser, Schaeffer et al. 2024, arXiv 2404.01413, Sec. 2; the replace case follows Dohmatob,
Feng & Kempe 2024). One design :math:`X \in \mathbb{R}^{T\times d}` with iid :math:`N(0, I_d)` rows is kept
for all iterations of a seed; only the label noise is fresh.

- Iteration 1 fits OLS to real labels :math:`y_1 = X w^* + E_1`, :math:`E_i \sim N(0, \sigma^2 I_T)`.
- Iteration :math:`n \ge 2` labels the same :math:`X` with the previous model, :math:`y_n = X\hat w_{n-1} + E_n`, and
  fits

  - ``replace``: OLS on :math:`(X, y_n)` only;
  - ``accumulate``: OLS on all data so far, :math:`([X;\dots;X], [y_1;\dots;y_n])`;
  - ``accumulate_subsample``: OLS on a uniform subsample of size :math:`T` of that pool
    (Kazdan, Schaeffer et al. 2024, "Collapse or Thrive?", arXiv 2410.16713).

Test error is the excess risk :math:`E\|\hat w_n - w^*\|^2` (isotropic covariates). With
:math:`c = \sigma^2 d / (T - d - 1)` (the expected error of one OLS fit, since
:math:`E\,\mathrm{tr}(X^\top X)^{-1} = d/(T-d-1)`):

.. math::  E^{\text{replace}}_n = n\,c, \qquad
           E^{\text{accumulate}}_n = c\sum_{i=1}^{n} \frac{1}{i^2} \;\le\; \frac{\pi^2}{6}\,c .

Why: with :math:`P = X^+` and :math:`PX = I`, replace gives :math:`\hat w_n = \hat w_{n-1} + PE_n`, so
:math:`\hat w_n - w^* = \sum_i PE_i`; stacking :math:`n` copies of :math:`X` gives
:math:`\hat w_n = \frac1n \sum_i P y_i`, so :math:`\hat w_n - w^* = \sum_i PE_i / i`.

:func:`simulate` uses exactly these OLS identities, vectorised over seeds; :func:`simulate_lstsq` is the
straightforward reference (one ``lstsq`` per seed and iteration on the explicitly built data set). Both
consume the same random draws, so they agree to rounding error (tested), and the benchmark compares them.
"""

from collections.abc import Iterable

import numpy as np
from tqdm.auto import tqdm

from labkit import repro
from labkit.config import ConfigError, one_of, positive_float, positive_int, validate_params

__all__ = ["REGIMES", "one_fit_error", "theory", "simulate", "simulate_lstsq", "sweep"]

REGIMES = ("replace", "accumulate", "accumulate_subsample")
_THEORY_REGIMES = ("replace", "accumulate")
#: the arguments every function here takes
_ARGUMENTS = dict(d=positive_int, T=positive_int, sigma2=positive_float, n_iter=positive_int, regime=one_of(*REGIMES))


def _enough_samples(d: int, T: int) -> None:
    if T <= d + 1:
        raise ConfigError(f"need T > d + 1 samples for a finite expected OLS error, got T={T}, d={d}")


@validate_params(d=positive_int, T=positive_int, sigma2=positive_float)
def one_fit_error(d: int, T: int, sigma2: float) -> float:
    """:math:`c = \\sigma^2 d / (T - d - 1)`, the expected excess risk of one OLS fit on real data."""
    _enough_samples(d, T)
    return sigma2 * d / (T - d - 1)


@validate_params(**_ARGUMENTS)
def theory(d: int, T: int, sigma2: float, n_iter: int, regime: str) -> np.ndarray:
    """Expected test error :math:`E\\|\\hat w_n - w^*\\|^2` for iterations n = 1..n_iter, shape (n_iter,).

    Closed forms exist for ``replace`` and ``accumulate``; ``accumulate_subsample`` has none (simulate it).
    """
    if regime == "accumulate_subsample":
        raise ValueError(
            "no closed form for 'accumulate_subsample'; theory() knows 'replace' and "
            "'accumulate' (simulate() runs all three)"
        )
    n = np.arange(1, n_iter + 1, dtype=float)
    c = one_fit_error(d, T, sigma2)
    return c * n if regime == "replace" else c * np.cumsum(1.0 / n**2)


def _draws(seed: int, s: int, d: int, T: int, n_iter: int, regime: str, out=None):
    """The random inputs of seed index ``s``: design, true weights, unit label noise, subsample indices.

    ``out`` may hold the (X, w_star, noise) arrays to fill in place (the same numbers, without copies).
    """
    g = repro.rng(seed, s)
    X, w_star, noise = out if out is not None else (np.empty((T, d)), np.empty(d), np.empty((n_iter, T)))
    g.standard_normal(out=X)
    g.standard_normal(out=w_star)
    g.standard_normal(out=noise)  # scaled by sigma where it is used
    picks = (
        [g.choice(n * T, size=T, replace=False) for n in range(1, n_iter + 1)]
        if regime == "accumulate_subsample"
        else None
    )
    return X, w_star, noise, picks


def _ols(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Batched minimum-norm least squares, A (S, m, d), y (S, m) -> (S, d)."""
    G = A.transpose(0, 2, 1) @ A
    b = np.einsum("smd,sm->sd", A, y)
    try:
        return np.linalg.solve(G, b[..., None])[..., 0]
    except np.linalg.LinAlgError:  # a subsample with fewer than d distinct rows: use the pseudo-inverse
        return np.einsum("sdm,sm->sd", np.linalg.pinv(A), y)


def _simulate_chunk(seed: int, seeds: range, d: int, T: int, sigma2: float, n_iter: int, regime: str) -> np.ndarray:
    S, sigma = len(seeds), np.sqrt(sigma2)
    X, w_star, noise = np.empty((S, T, d)), np.empty((S, d)), np.empty((S, n_iter, T))  # noise: unit variance
    picks = [_draws(seed, s, d, T, n_iter, regime, out=(X[i], w_star[i], noise[i]))[3] for i, s in enumerate(seeds)]
    Xt = X.transpose(0, 2, 1)
    P = np.linalg.inv(Xt @ X) @ Xt  # X^+ = (X'X)^{-1} X', (S, d, T)
    PE = sigma * (noise @ P.transpose(0, 2, 1))  # P E_n for every iteration, (S, n_iter, d)

    if regime == "replace":  # w_n = w_{n-1} + P E_n
        err = np.cumsum(PE, axis=1)
        return np.einsum("snd,snd->sn", err, err)

    errors = np.empty((S, n_iter))
    w_prev = w_star  # the labeller of iteration 1 is the truth
    if regime == "accumulate":  # w_n = (1/n) sum_i P y_i, P y_i = w_{i-1} + P E_i
        total = np.zeros_like(w_star)
        for n in range(n_iter):
            total = total + w_prev + PE[:, n]
            w_prev = total / (n + 1)
            errors[:, n] = ((w_prev - w_star) ** 2).sum(axis=1)
        return errors

    labellers = np.empty((S, n_iter, d))  # accumulate_subsample
    rows = np.arange(S)[:, None]
    for n in range(n_iter):
        labellers[:, n] = w_prev
        pick = np.stack([p[n] for p in picks])  # (S, T) indices into the pool of (n+1)*T
        it, t = pick // T, pick % T  # which iteration's labels, which row of X
        A = X[rows, t]  # (S, T, d)
        y = np.einsum("std,std->st", A, labellers[rows, it]) + sigma * noise[rows, it, t]
        w_prev = _ols(A, y)
        errors[:, n] = ((w_prev - w_star) ** 2).sum(axis=1)
    return errors


@validate_params(**_ARGUMENTS, n_seeds=positive_int)
def simulate(d: int, T: int, sigma2: float, n_iter: int, regime: str, n_seeds: int, seed: int) -> np.ndarray:
    """Monte-Carlo test errors :math:`\\|\\hat w_n - w^*\\|^2`, shape (n_seeds, n_iter).

    Each seed draws its own design X (reused across its iterations), true weights and fresh label noise.
    Memory stays bounded: seeds are processed in chunks of at most ~2 M noise draws.
    """
    _enough_samples(d, T)
    chunk = max(1, 2_000_000 // (n_iter * T))
    return np.concatenate(
        [
            _simulate_chunk(seed, range(start, min(start + chunk, n_seeds)), d, T, sigma2, n_iter, regime)
            for start in range(0, n_seeds, chunk)
        ]
    )


@validate_params(**_ARGUMENTS)
def simulate_lstsq(d: int, T: int, sigma2: float, n_iter: int, regime: str, n_seeds: int, seed: int) -> np.ndarray:
    """The straightforward reference for :func:`simulate`: build each data set and call ``np.linalg.lstsq``."""
    _enough_samples(d, T)
    errors = np.empty((n_seeds, n_iter))
    for s in range(n_seeds):
        X, w_star, noise, picks = _draws(seed, s, d, T, n_iter, regime)
        w_hat, pool_y = w_star, []
        for n in range(n_iter):
            pool_y.append(X @ w_hat + np.sqrt(sigma2) * noise[n])
            if regime == "replace":
                A, y = X, pool_y[-1]
            elif regime == "accumulate":
                A, y = np.vstack([X] * (n + 1)), np.concatenate(pool_y)
            else:
                A, y = np.vstack([X] * (n + 1))[picks[n]], np.concatenate(pool_y)[picks[n]]
            w_hat = np.linalg.lstsq(A, y, rcond=None)[0]
            errors[s, n] = np.sum((w_hat - w_star) ** 2)
    return errors


def sweep(
    d_values: Iterable[int],
    T_values: Iterable[int],
    sigma2_values: Iterable[float],
    n_iter: int,
    n_seeds: int,
    seed: int,
    regimes: Iterable[str] = REGIMES,
) -> list[dict]:
    """Simulate every (d, T, sigma2, regime) with T > d + 1 (the grid of arXiv 2410.16713, Fig. 2).

    Returns one dict per configuration: ``d, T, sigma2, regime, errors`` (n_seeds, n_iter) and ``theory``
    (n_iter,) or None. Each configuration has its own random stream derived from ``seed``.
    """
    configs = [(d, T, s2, r) for d in d_values for T in T_values for s2 in sigma2_values for r in regimes if T > d + 1]
    results = []
    for k, (d, T, s2, r) in enumerate(tqdm(configs, desc="linear sweep")):
        sub_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        results.append(
            {
                "d": d,
                "T": T,
                "sigma2": s2,
                "regime": r,
                "errors": simulate(d, T, s2, n_iter, r, n_seeds, sub_seed),
                "theory": theory(d, T, s2, n_iter, r) if r in _THEORY_REGIMES else None,
            }
        )
    return results
