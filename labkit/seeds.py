"""Integer seeds from :mod:`labkit.repro` substreams, for code that takes an ``int`` (torch, scikit-learn,
``stratified_split``).

One rule: the integer seed of purpose ``key`` under ``seed`` is the first draw below :math:`2^{31}` of the
substream ``repro.rng(seed, *key)``,

    derived_seed(seed, *key) = int(repro.rng(seed, *key).integers(2**31)),

the rule ``labkit.collapse.generations`` and ``labkit.memory.icl`` already write out inline. Distinct keys give
independent streams (``numpy.random.SeedSequence`` hashes the whole key), unlike ``seed + 1``, which is the next
run's ``seed``. A function that takes a seed gets a derived seed of its own key, never its caller's seed itself:
the callee may derive substreams of its own (``repro.rng(seed, 1)`` …) that would collide with the caller's.

Caveat of ``SeedSequence`` (so of ``repro.rng``): a key is padded with zeros to four words before hashing, so
``repro.rng(s)``, ``repro.rng(s, 0)`` and ``repro.rng(s, 0, 0)`` are one and the same stream. Never use the bare
seed and key 0 (or keys that differ only by trailing zeros) for two different purposes.
"""

from labkit import repro

__all__ = ["derived_seed"]


def derived_seed(seed: int, *key: int) -> int:
    """The integer seed of substream ``(seed, *key)``: an int in ``[0, 2**31)`` (fits torch, numpy and scikit-learn)."""
    return int(repro.rng(seed, *key).integers(2**31))
