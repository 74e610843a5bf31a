"""What the device tells the host, in the host's terms: its INFO message as a :class:`RigInfo` (which also checks a
requested acquisition against what the device supports, before anything is sent), a PULSE echo as the
:class:`labkit.rig.host.recording.Pulse` that the host lists, records and converts to NWB, and a waveform's name as
its protocol code."""

from dataclasses import dataclass

from labkit.rig._checks import as_integer, as_real
from labkit.rig.firmware.limits import CHARGE_BALANCED, LimitError, RigError, SafetyLimits
from labkit.rig.firmware.protocol import MAX_BLOCK_SAMPLES, PROTOCOL_VERSION, ErrorCode, PulseEcho, Waveform
from labkit.rig.host.recording import Pulse

__all__ = ["RigInfo", "pulse_from_echo", "waveform_code"]

_ALLOWED_WAVEFORMS = ", ".join(w.name.lower() for w in CHARGE_BALANCED)


@dataclass(frozen=True)
class RigInfo:
    """What the device says about itself (its INFO message)."""

    firmware: str
    protocol: int
    simulated: bool
    max_channels: int
    sample_rates_hz: tuple
    block_samples: int
    scale_uv_per_count: float
    electrode_positions_mm: tuple
    limits: SafetyLimits

    @classmethod
    def from_dict(cls, d: dict) -> "RigInfo":
        """From the INFO JSON object; RigError if it lacks a key or speaks another protocol version."""
        if d.get("protocol") != PROTOCOL_VERSION:
            raise RigError(
                f"the device speaks protocol {d.get('protocol')!r}; this host speaks {PROTOCOL_VERSION} "
                "(docs/rig-protocol.md)"
            )
        try:
            return cls(
                d["firmware"],
                d["protocol"],
                d["simulated"],
                d["max_channels"],
                tuple(d["sample_rates_hz"]),
                d["block_samples"],
                d["scale_uv_per_count"],
                tuple(d["electrode_positions_mm"]),
                SafetyLimits(**d["limits"]),
            )
        except (KeyError, TypeError) as e:
            raise RigError(f"the device's INFO is unusable ({type(e).__name__}: {e}): {str(d)[:300]}") from None

    def acquisition(self, sample_rate=None, channels=4, block_samples=None) -> tuple[float, int, int]:
        """(sample rate, channels, block samples) as the device will take them: None means the device's default; a
        wrong type raises TypeError, a value the device does not support LimitError (BAD_CONFIG)."""
        rate = self.sample_rates_hz[0] if sample_rate is None else as_real("sample_rate", sample_rate)
        if rate not in self.sample_rates_hz:
            raise LimitError(
                f"sample_rate={sample_rate!r} unsupported by this device; allowed: {list(self.sample_rates_hz)}",
                ErrorCode.BAD_CONFIG,
            )
        channels = as_integer("channels", channels)
        if not 1 <= channels <= self.max_channels:
            raise LimitError(
                f"channels={channels!r} unsupported; allowed: 1 to {self.max_channels}", ErrorCode.BAD_CONFIG
            )
        block = self.block_samples if block_samples is None else as_integer("block_samples", block_samples)
        if not 1 <= block <= MAX_BLOCK_SAMPLES:
            raise LimitError(
                f"block_samples={block_samples!r}; allowed: 1 to {MAX_BLOCK_SAMPLES}, or None (the "
                f"device's default, {self.block_samples})",
                ErrorCode.BAD_CONFIG,
            )
        return rate, channels, block


def pulse_from_echo(echo: PulseEcho) -> Pulse:
    """The host's record of a PULSE echo (flags bit 0: aborted; period_ms_measured is then the part delivered)."""
    return Pulse(
        echo.request_id,
        echo.t_start_us / 1e6,
        echo.vpp_requested,
        echo.vpp_measured,
        echo.period_ms_requested,
        echo.period_ms_measured,
        Waveform(echo.waveform).name.lower(),
        bool(echo.flags & 1),
    )


def waveform_code(waveform) -> Waveform:
    """The protocol's code for a waveform name (e.g. ``"bipolar_sine"``); TypeError unless a str, LimitError
    (WAVEFORM) for a name the protocol does not know. Whether the device allows it is for SafetyLimits.check."""
    if not isinstance(waveform, str):
        raise TypeError(
            f"waveform must be a str, got {type(waveform).__name__} {waveform!r}; allowed: {_ALLOWED_WAVEFORMS}"
        )
    try:
        return Waveform[waveform.upper()]
    except KeyError:
        raise LimitError(f"unknown waveform {waveform!r}; allowed: {_ALLOWED_WAVEFORMS}", ErrorCode.WAVEFORM) from None
