"""labkit.rig.host.stream: DATA blocks put back in order by device sample index; gaps and implausible blocks counted."""

import numpy as np

from labkit.rig.firmware.protocol import DataBlock
from labkit.rig.host.stream import SampleStream


def block(first: int, n: int = 10, value: int | None = None) -> DataBlock:
    counts = (
        np.full((n, 2), value, np.int16)
        if value is not None
        else (np.arange(first, first + n, dtype=np.int16)[:, None] * np.ones(2, np.int16))
    )
    return DataBlock(first, 0.2, counts)


def test_a_first_block_is_held_until_the_next_one_continues_it():
    s = SampleStream()
    assert s.store(block(100)) == []  # nothing before restart()
    s.restart(50, 2)
    assert s.store(block(100)) == [] and s.end is None  # held: nothing continues it yet
    stored = s.store(block(110))
    assert [b.first_sample for b in stored] == [100, 110] and (s.first, s.end) == (100, 120)
    counts, gaps = s.window(105, 10)
    np.testing.assert_array_equal(counts[:, 0], np.arange(105, 115))
    assert gaps == []


def test_lost_blocks_become_a_zero_filled_gap_and_a_corrupted_index_is_dropped():
    s = SampleStream()
    s.restart(100, 2)
    s.store(block(0)), s.store(block(10))
    assert s.store(block(40)) == []  # held: blocks 20..39 may have been lost
    assert [b.first_sample for b in s.store(block(50))] == [40, 50]
    assert s.gaps == [{"start_index": 20, "n": 20}] and s.end == 60
    counts, gaps = s.window(15, 30)
    assert not counts[5:25].any() and gaps == s.gaps
    assert s.store(block(10**9, value=-7)) == [] and s.store(block(60))[0].first_sample == 60
    assert s.implausible == 1 and not np.any(s.ring == -7)
    first, rows = s.since(None, 25)
    assert first == 45 and len(rows) == 25
    assert s.since(55, 1000)[0] == 55


def test_gaps_and_implausible_blocks_outlive_a_restart():
    s = SampleStream()
    s.restart(100, 2)
    s.store(block(0)), s.store(block(10)), s.store(block(30)), s.store(block(40))
    s.restart(100, 2)
    assert (s.end, s.first) == (None, 0) and s.gaps == [{"start_index": 20, "n": 10}]
