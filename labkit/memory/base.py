"""The interface shared by every associative memory: energy = negative log likelihood, retrieval = descent on it.

For a memory with energy E, the density it defines is the Boltzmann distribution

    p(x) = exp(−E(x)) / Z,        log p(x) = −E(x) − log Z,

so running retrieval dynamics (gradient steps or fixed-point updates that never raise E) climbs the log likelihood.
Subclasses implement :meth:`energy` and :meth:`update`; :meth:`log_density` is the unnormalised −E unless a model
knows its normaliser (then it overrides it with the exact log p). Arrays are NumPy, states along the last axis,
any leading batch axes.
"""

import abc

import numpy as np

__all__ = ["EnergyMemory"]


class EnergyMemory(abc.ABC):
    """An associative memory: an energy over states and an update that does not increase it."""

    @abc.abstractmethod
    def energy(self, x: np.ndarray) -> np.ndarray:
        """E(x) for states ``x`` of shape (..., d); returns shape (...)."""

    @abc.abstractmethod
    def update(self, x: np.ndarray) -> np.ndarray:
        """One retrieval step x → x' with E(x') ≤ E(x); same shape as ``x``."""

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log p(x) up to the constant −log Z, i.e. −E(x). Models with a known normaliser override this."""
        return -self.energy(x)

    def retrieve(self, x: np.ndarray, n_steps: int = 100, tol: float = 1e-9) -> np.ndarray:
        """Iterate :meth:`update` from ``x`` until no state moves by more than ``tol`` (max-abs) or ``n_steps`` pass."""
        if n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        x = np.asarray(x, dtype=float)
        for _ in range(n_steps):
            x_next = self.update(x)
            if np.max(np.abs(x_next - x), initial=0.0) <= tol:
                return x_next
            x = x_next
        return x
