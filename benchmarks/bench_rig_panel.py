"""Benchmark of the live panel's trace drawing (labkit.rig.ui.plots.TracePlot), against a baseline in the same run.

The traces are blitted over a saved background; when an axis limit changes step the whole figure is drawn again,
and a click on the panel (STOP included) waits for a draw under way on the kernel's event loop. TracePlot lays
the figure out once (constrained layout, for the widest tick labels) and then keeps that layout. The baseline is
the same figure with constrained layout left on, re-laid out at every whole draw. Reported: ms per PNG for a whole
draw, both ways (median and max of ``--draws``), and for a blit.
"""

import argparse
import statistics
import time

import numpy as np

from labkit.rig.ui.display import WIDTH_PX, Snapshot
from labkit.rig.ui.plots import TracePlot

_PEAKS_UV = (40.0, 90.0, 180.0, 450.0, 900.0, 1800.0)  # each in a different limit step: every update redraws whole


def _snapshot(peak_uv: float) -> Snapshot:
    t = np.linspace(-2.0, 0.0, 2 * WIDTH_PX)
    traces = np.tile(np.sin(40 * t)[:, None] * peak_uv, (1, 4))
    return Snapshot(t, traces, t, 0.01 * np.sin(t), 0.0, 2.0, np.zeros((0, 2)), {}, "idle", False, None, None, "")


def _draw_ms(plot: TracePlot, draws: int, scale: float = 1.0) -> list[float]:
    """ms per PNG over ``draws`` updates cycling through the limit steps (``scale`` 1.01: same limits, blits)."""
    times = []
    for i in range(draws):
        plot.update(_snapshot(_PEAKS_UV[i % len(_PEAKS_UV)] * scale))
        t0 = time.perf_counter()
        plot.png()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--draws", type=int, default=60)
    args = parser.parse_args()
    kept = TracePlot()
    relaid = TracePlot()
    relaid.figure.set_layout_engine("constrained")  # the baseline: layout recomputed at every whole draw
    for plot in (kept, relaid):
        _draw_ms(plot, len(_PEAKS_UV))  # warm-up: fonts, caches
    fast, slow = _draw_ms(kept, args.draws), _draw_ms(relaid, args.draws)
    kept.update(_snapshot(_PEAKS_UV[0]))
    kept.png()
    blit = [_draw_ms(kept, 1, scale=1.01)[0] for _ in range(args.draws)]
    print(
        f"whole draw, layout kept: {statistics.median(fast):.1f} ms (max {max(fast):.1f}); re-laid out each time "
        f"(baseline): {statistics.median(slow):.1f} ms (max {max(slow):.1f}); ratio "
        f"{statistics.median(slow) / statistics.median(fast):.2f}x; blit {statistics.median(blit):.1f} ms"
    )


if __name__ == "__main__":
    main()
