"""The host's copy of the device's sample stream: DATA blocks put back in order by device sample index.

A ring buffer of int16 counts keyed by absolute device sample index (row = index mod its length). A block that
continues the stream (``first_sample`` = the next index expected) is stored. One that does not (the first after
:meth:`SampleStream.restart`, one after blocks lost in transit, or one whose ``first_sample`` was corrupted yet passed
the CRC) is held until the next block continues *it*: then both are stored, lost samples becoming a zero-filled gap;
otherwise it is dropped and counted (``implausible``), so that one corrupted index can neither blind the stream nor
fill the disk with zeros. Not thread-safe: the host driver calls it under its state lock.
"""

import numpy as np

from labkit.rig.firmware.protocol import DataBlock

__all__ = ["SampleStream"]


class SampleStream:
    """The samples received since the last :meth:`restart`, plus the gaps and implausible blocks of every stream."""

    def __init__(self):
        self.ring: np.ndarray | None = None  # (n_samples, n_channels) int16 counts; None before the first restart
        self.end: int | None = None  # absolute index of the next sample expected
        self.first = 0  # absolute index of the first sample stored since restart()
        self.gaps: list[dict[str, int]] = []  # {"start_index", "n"} of each run of samples lost in transit
        self.implausible = 0  # blocks dropped because the stream never continued them
        self._held: DataBlock | None = None  # a block that does not continue the stream, until the next one does

    def restart(self, n_samples: int, n_channels: int) -> None:
        """A new, empty stream (after a configure): ``n_samples`` rows of ring buffer, ``n_channels`` columns."""
        self.ring = np.zeros((n_samples, n_channels), np.int16)
        self.end, self.first, self._held = None, 0, None

    def store(self, block: DataBlock) -> list[DataBlock]:
        """Store ``block`` as the module docstring says; returns the blocks stored, in stream order (none, it, or
        the block held before it and it): what a recording appends."""
        if self.ring is None or block.counts.shape[1] != self.ring.shape[1]:
            return []
        held, self._held = self._held, None
        if self.end is not None and block.first_sample == self.end:
            self.implausible += int(held is not None)
            stored = [block]
        elif (
            held is not None
            and block.first_sample == held.first_sample + len(held.counts)
            and (self.end is None or held.first_sample > self.end)
        ):
            stored = [held, block]
        else:
            self.implausible += int(held is not None)
            self._held = block
            stored = []
        for b in stored:
            self._put(b)
        return stored

    def _put(self, block: DataBlock) -> None:
        first, n, size = block.first_sample, len(block.counts), len(self.ring)
        if self.end is None:
            self.first = first
        elif first > self.end:
            self.gaps.append({"start_index": self.end, "n": first - self.end})
            self.ring[np.arange(max(self.end, first - size), first) % size] = 0
        self.ring[np.arange(first, first + n) % size] = block.counts
        self.end = first + n

    def window(self, start: int, n: int) -> tuple[np.ndarray, list[dict[str, int]]]:
        """A copy of the counts of samples [start, start + n) (which must have arrived and still be in the ring) and
        the gaps that overlap them."""
        counts = self.ring[np.arange(start, start + n) % len(self.ring)].copy()
        return counts, [g for g in self.gaps if g["start_index"] < start + n and g["start_index"] + g["n"] > start]

    def since(self, start: int | None, max_n: int) -> tuple[int, np.ndarray]:
        """(absolute index of the first row, a copy of the counts) from ``start`` on, at most the newest ``max_n``
        still in the ring (the newest ``max_n`` when ``start`` is None); at least one block must have arrived."""
        oldest = max(self.first, self.end - min(len(self.ring), max_n))
        first = oldest if start is None else max(start, oldest)
        return first, self.ring[np.arange(first, self.end) % len(self.ring)].copy()
