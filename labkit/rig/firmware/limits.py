"""Hard stimulation limits, one definition shared by the device (authoritative) and the host (early, clear errors).

Defaults follow the rig design notes (docs/rig-protocol.md): at most 10 V peak-to-peak, pulse period 0.5–20 ms,
at most 10 pulses per second, charge-balanced waveforms only (one full bipolar sine cycle), and a 250 ms
heartbeat watchdog. Open stimulators enforce such limits in firmware and log what was delivered (e.g. Stimjim,
Cermak et al. 2019, eNeuro); the host repeats the check so that a bad request never reaches the wire.
"""

import math
from dataclasses import asdict, dataclass

from labkit.rig._checks import is_real
from labkit.rig.firmware.protocol import ErrorCode, Waveform

__all__ = ["RigError", "LimitError", "SafetyLimits", "CHARGE_BALANCED"]

CHARGE_BALANCED = (Waveform.BIPOLAR_SINE,)


class RigError(RuntimeError):
    """Anything the rig refused or could not do; ``code`` is the protocol's ErrorCode when there is one."""

    def __init__(self, message: str, code: ErrorCode | None = None):
        super().__init__(message)
        self.code = code


class LimitError(RigError, ValueError):
    """A request outside what the device allows: the stimulation hard limits, or a configuration it does not support."""


@dataclass(frozen=True)
class SafetyLimits:
    max_vpp: float = 10.0
    min_period_ms: float = 0.5
    max_period_ms: float = 20.0
    max_rate_hz: float = 10.0
    watchdog_ms: float = 250.0

    def check(self, vpp: float, period_ms: float, waveform: int, since_last_pulse_s: float | None = None) -> None:
        """Raise :class:`LimitError` (with its ErrorCode) unless the pulse is allowed."""
        if not (is_real(vpp) and math.isfinite(vpp) and 0 < vpp <= self.max_vpp):
            raise LimitError(
                f"vpp={vpp!r} V is outside the hard limit; allowed: 0 < vpp <= {self.max_vpp} V", ErrorCode.LIMIT_VPP
            )
        if not (
            is_real(period_ms) and math.isfinite(period_ms) and self.min_period_ms <= period_ms <= self.max_period_ms
        ):
            raise LimitError(
                f"period_ms={period_ms!r} is outside the hard limit; allowed: "
                f"{self.min_period_ms} to {self.max_period_ms} ms",
                ErrorCode.LIMIT_PERIOD,
            )
        if waveform not in CHARGE_BALANCED:
            allowed = ", ".join(w.name.lower() for w in CHARGE_BALANCED)
            raise LimitError(f"waveform {waveform!r} is not charge-balanced; allowed: {allowed}", ErrorCode.WAVEFORM)
        min_interval = 1.0 / self.max_rate_hz
        if since_last_pulse_s is not None and since_last_pulse_s < min_interval:
            raise LimitError(
                f"pulse rate limit: {since_last_pulse_s * 1e3:.1f} ms since the last pulse; allowed: at "
                f"most {self.max_rate_hz} pulses/s (>= {min_interval * 1e3:.0f} ms apart)",
                ErrorCode.LIMIT_RATE,
            )

    def to_dict(self) -> dict:
        return asdict(self)
