"""The live panel's stimulus settings and their safety rule: a setting in force is always inside the device's hard
limits (from its INFO). :func:`clamp_stimulus` clamps a finite number into [lowest, highest] of
:func:`stimulus_ranges` and refuses (LimitError, previous value kept) anything that is not a finite number; the host
driver and the device check every pulse again.
"""

import math
from dataclasses import dataclass, replace

from labkit.rig._checks import is_real
from labkit.rig.firmware.limits import LimitError, SafetyLimits

__all__ = ["MIN_VPP", "MIN_RATE_HZ", "StimulusSettings", "stimulus_ranges", "clamp_stimulus"]

MIN_VPP = 0.1  # V: the panel's lowest voltage (the device accepts any vpp > 0)
MIN_RATE_HZ = 0.1  # pulses/s: the panel's slowest schedule


@dataclass(frozen=True)
class StimulusSettings:
    """One bipolar sine cycle of ``vpp`` volts peak-to-peak and ``period_ms``, repeated at ``rate_hz``."""

    vpp: float = 4.0
    period_ms: float = 3.0
    rate_hz: float = 1.0


def stimulus_ranges(limits: SafetyLimits) -> dict[str, tuple[float, float]]:
    """The allowed (lowest, highest) of each stimulus setting under the device's ``limits``."""
    return {
        "vpp": (MIN_VPP, limits.max_vpp),
        "period_ms": (limits.min_period_ms, limits.max_period_ms),
        "rate_hz": (MIN_RATE_HZ, limits.max_rate_hz),
    }


def clamp_stimulus(limits: SafetyLimits, current: StimulusSettings, **changes) -> StimulusSettings:
    """``current`` with ``changes`` applied, each clamped into :func:`stimulus_ranges`; a non-finite or non-numeric
    value raises :class:`LimitError` naming it (nothing is applied then)."""
    ranges = stimulus_ranges(limits)
    clamped = {}
    for name, value in changes.items():
        if name not in ranges:
            raise LimitError(f"unknown stimulus setting {name!r}; allowed: {', '.join(ranges)}")
        lo, hi = ranges[name]
        if not (is_real(value) and math.isfinite(value)):
            raise LimitError(f"{name}={value!r} is not a finite number; allowed: {lo:g} to {hi:g}")
        clamped[name] = float(min(max(float(value), lo), hi))
    return replace(current, **clamped)
