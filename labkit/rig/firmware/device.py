"""The rig's firmware behaviour in plain Python, independent of hardware and transport.

A :class:`Device` owns an analog front end (anything with ``fs_hz``, ``electrode_positions_mm``,
``deliver(t_s, vpp, period_ms) -> dict`` and ``acquire(start_index, n) -> µV array (n, 4)``, and optionally
``abort(t_s)``, told when a pulse in progress is cut off; the simulator's
:class:`labkit.rig.simulator.worm.Earthworm`, or real hardware behind the same methods) and is driven by two calls:
``receive(bytes, now_us)`` with what the host sent and ``step(now_us)`` as time passes; ``take_output()``
returns the bytes to send back. Time exists only through ``now_us`` (device µs since power-up), so the same
logic runs paced in real time (simulator, pty) or stepped instantly in tests.

Behaviour (docs/rig-protocol.md, "Device behaviour"):
- every command is answered: ACK, the PULSE echo for STIMULATE, or ERROR with a code and a message; a device-to-host
  type is refused (UNKNOWN_TYPE) without its payload being read;
- replays: a command is executed only if its seq is newer than the last executed one (:func:`seq_newer`), else
  refused with BAD_SEQ, so a duplicated STIMULATE never delivers twice; STOP is executed whatever its seq, and HELLO
  starts a new host session (its seq becomes the last executed one: a reconnecting host restarts at 0);
- hard limits (labkit.rig.firmware.limits) are checked here, authoritatively, whatever the host did;
- STOP is always accepted: it aborts a pulse in progress, disarms and stops streaming;
- the watchdog disarms (and aborts a pulse) when armed and no host frame passed the sequence check for
  ``watchdog_ms``;
- while streaming, DATA blocks of ``block_samples`` × n_channels int16 counts leave as soon as the samples exist,
  and a HEARTBEAT with the device state and receive counters every 100 ms.

Commands are dispatched by message type through :attr:`Device.HANDLERS` (one method per host-to-device type; the
module refuses to import if a type has none).
"""

import numpy as np

from labkit.rig.firmware.framing import MAX_SEQ_JUMP, Encoder, FrameDecoder, seq_newer
from labkit.rig.firmware.limits import LimitError, SafetyLimits
from labkit.rig.firmware.protocol import (
    HOST_TO_DEVICE,
    MAX_BLOCK_SAMPLES,
    PROTOCOL_VERSION,
    Ack,
    Configure,
    DataBlock,
    Error,
    ErrorCode,
    Heartbeat,
    Info,
    MsgType,
    PulseEcho,
    Stimulate,
)

__all__ = ["Device", "FIRMWARE", "BLOCK_SAMPLES", "SCALE_UV_PER_COUNT", "to_counts"]

FIRMWARE = "labkit-rig-fw 1.0"
HEARTBEAT_US = 100_000
BLOCK_SAMPLES = 300  # samples per DATA block unless the host configures another size
SCALE_UV_PER_COUNT = 0.2  # the ADC's µV per int16 count


def to_counts(uv: np.ndarray, scale_uv_per_count: float) -> np.ndarray:
    """The ADC's conversion: µV to int16 counts, rounded to the nearest count and clipped to the int16 range."""
    return np.clip(np.rint(uv / scale_uv_per_count), -32768, 32767).astype(np.int16)


class Device:
    def __init__(
        self,
        frontend,
        *,
        limits: SafetyLimits = SafetyLimits(),
        block_samples: int = BLOCK_SAMPLES,
        scale_uv_per_count: float = SCALE_UV_PER_COUNT,
        max_channels: int = 4,
        simulated: bool = True,
    ):
        self.frontend = frontend
        self.limits = limits
        self.scale = scale_uv_per_count
        self.max_channels = max_channels
        self.simulated = simulated
        self.fs_hz = frontend.fs_hz
        self.n_channels = max_channels
        self.block_samples = block_samples
        self.armed = self.streaming = False
        self.next_sample = 0  # first sample index not yet sent
        self.last_pulse_us: int | None = None
        self.pending: tuple[Stimulate, int, dict] | None = None  # pulse in progress: command, start, measured
        self.last_host_us = 0
        self.last_heartbeat_us = 0
        self.pulses_delivered = 0
        self.bad_seq_frames = 0  # host frames not executed for their seq (replayed, or far ahead)
        self._last_seq: int | None = None  # seq of the last host frame that passed the sequence check
        self._decoder = FrameDecoder(decodes=HOST_TO_DEVICE)
        self._encoder = Encoder()
        self._out = bytearray()
        self._now = 0

    # --- transport side ---------------------------------------------------------------------------
    def receive(self, data: bytes, now_us: int) -> None:
        self._now = now_us
        for frame in self._decoder.feed(data):
            if frame.type not in HOST_TO_DEVICE:
                self._refuse(frame, ErrorCode.UNKNOWN_TYPE, f"{frame.type.name} is not a host command")
            elif frame.type == MsgType.HELLO or self._last_seq is None or seq_newer(frame.seq, self._last_seq):
                self._last_seq = frame.seq
                self.last_host_us = now_us
                self._handle(frame)
            else:
                self._stale(frame)

    def step(self, now_us: int) -> None:
        self._now = now_us
        if self.pending is not None:
            cmd, start_us, measured = self.pending
            if now_us >= start_us + cmd.period_us:
                self._finish_pulse(aborted=False)
        if self.armed and now_us - self.last_host_us > self.limits.watchdog_ms * 1000:
            self._halt()
            self._send(
                Error(
                    ErrorCode.WATCHDOG,
                    0,
                    0,
                    f"watchdog: no host frame for {self.limits.watchdog_ms:g} ms; stimulation stopped and disarmed",
                )
            )
        if self.streaming:
            available = int(now_us * self.fs_hz // 1_000_000)
            while self.next_sample + self.block_samples <= available:
                uv = self.frontend.acquire(self.next_sample, self.block_samples)[:, : self.n_channels]
                self._send(DataBlock(self.next_sample, self.scale, to_counts(uv, self.scale)))
                self.next_sample += self.block_samples
        if now_us - self.last_heartbeat_us >= HEARTBEAT_US:
            self.last_heartbeat_us = now_us
            c = self._decoder
            self._send(
                Heartbeat(
                    int(self.armed),
                    int(self.streaming),
                    self.next_sample,
                    c.bad_frames % 2**32,
                    c.lost_frames % 2**32,
                    self.bad_seq_frames % 2**32,
                )
            )

    def take_output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    @property
    def link_counters(self) -> dict[str, int]:
        return {**self._decoder.counters(), "bad_seq_frames": self.bad_seq_frames}

    # --- firmware logic ----------------------------------------------------------------------------
    def info(self) -> dict:
        return {
            "firmware": FIRMWARE,
            "protocol": PROTOCOL_VERSION,
            "simulated": self.simulated,
            "max_channels": self.max_channels,
            "sample_rates_hz": [self.fs_hz],
            "block_samples": self.block_samples,
            "scale_uv_per_count": self.scale,
            "electrode_positions_mm": [float(x) for x in self.frontend.electrode_positions_mm],
            "limits": self.limits.to_dict(),
        }

    def _send(self, msg) -> None:
        self._out += self._encoder.encode(msg, self._now)

    def _refuse(self, frame, code: ErrorCode, message: str) -> None:
        self._send(Error(code, frame.type, frame.seq, message))

    def _ack(self, frame) -> None:
        self._send(Ack(frame.type, frame.seq))

    def _halt(self) -> None:
        if self.pending is not None:
            cmd, start_us, _ = self.pending
            self._finish_pulse(aborted=self._now < start_us + cmd.period_us)
        self.armed = False

    def _stale(self, frame) -> None:
        """A host frame whose seq is not newer than the last executed one (or far ahead): not executed, except STOP,
        which stops whatever its seq (stopping twice is harmless); HEARTBEAT is dropped silently."""
        self.bad_seq_frames += 1
        if frame.type == MsgType.STOP:
            self._handle(frame)
        elif frame.type != MsgType.HEARTBEAT:
            ahead = (frame.seq - self._last_seq) % 2**32
            why = f"more than {MAX_SEQ_JUMP} ahead of" if 0 < ahead < 2**31 else "not newer than"
            self._refuse(
                frame,
                ErrorCode.BAD_SEQ,
                f"seq {frame.seq} is {why} the last executed seq {self._last_seq} "
                "(a replayed or corrupted frame): not executed",
            )

    def _finish_pulse(self, aborted: bool) -> None:
        """Echo the pulse in progress; an aborted one was delivered from its start until now, and the front end is
        told so (the simulated worm then responds only to the part delivered)."""
        cmd, start_us, measured = self.pending
        self.pending = None
        if aborted and hasattr(self.frontend, "abort"):
            self.frontend.abort(self._now / 1e6)
        delivered_ms = (self._now - start_us) / 1000 if aborted else measured["period_ms_measured"]
        self._send(
            PulseEcho(
                cmd.request_id,
                start_us,
                cmd.vpp,
                measured["vpp_measured"],
                cmd.period_us / 1000,
                delivered_ms,
                cmd.waveform,
                int(aborted),
            )
        )

    def _handle(self, frame) -> None:
        self.HANDLERS[frame.type](self, frame)

    # --- command handlers: one per host-to-device message type, listed in HANDLERS ------------------
    def _on_hello(self, frame) -> None:
        self._halt()  # a new host session starts disarmed, whatever came before
        self._send(Info(self.info()))

    def _on_heartbeat(self, frame) -> None:
        """Feeding the watchdog (done in receive) is all it does."""

    def _on_stop(self, frame) -> None:  # always accepted
        self._halt()
        self.streaming = False
        self._ack(frame)

    def _on_start(self, frame) -> None:
        self.streaming = True
        self.next_sample = int(self._now * self.fs_hz // 1_000_000)
        self._ack(frame)

    def _on_arm(self, frame) -> None:
        self.armed = True
        self._ack(frame)

    def _on_disarm(self, frame) -> None:
        self._halt()
        self._ack(frame)

    def _on_configure(self, frame) -> None:
        msg: Configure = frame.msg
        if self.streaming:
            return self._refuse(frame, ErrorCode.BUSY, "configure while streaming: send STOP first")
        if msg.sample_rate_hz != self.fs_hz:
            return self._refuse(
                frame,
                ErrorCode.BAD_CONFIG,
                f"sample rate {msg.sample_rate_hz} Hz unsupported; allowed: {self.fs_hz:g} Hz",
            )
        if not 1 <= msg.n_channels <= self.max_channels:
            return self._refuse(
                frame, ErrorCode.BAD_CONFIG, f"{msg.n_channels} channels unsupported; allowed: 1 to {self.max_channels}"
            )
        if not 1 <= msg.block_samples <= MAX_BLOCK_SAMPLES:
            return self._refuse(
                frame,
                ErrorCode.BAD_CONFIG,
                f"block of {msg.block_samples} samples unsupported; allowed: 1 to {MAX_BLOCK_SAMPLES}",
            )
        self.n_channels, self.block_samples = msg.n_channels, msg.block_samples
        self._ack(frame)

    def _on_stimulate(self, frame) -> None:
        msg: Stimulate = frame.msg
        if not self.armed:
            return self._refuse(frame, ErrorCode.NOT_ARMED, "stimulate while disarmed: send ARM first")
        if self.pending is not None:
            return self._refuse(frame, ErrorCode.BUSY, "a pulse is still being delivered")
        since = None if self.last_pulse_us is None else (self._now - self.last_pulse_us) / 1e6
        try:
            self.limits.check(msg.vpp, msg.period_us / 1000, msg.waveform, since)
        except LimitError as e:
            return self._refuse(frame, e.code, str(e))
        measured = self.frontend.deliver(self._now / 1e6, msg.vpp, msg.period_us / 1000)
        self.pending = (msg, self._now, measured)
        self.last_pulse_us = self._now
        self.pulses_delivered += 1

    #: message type -> handler: a new host command is a message declared in labkit.rig.firmware.protocol plus an
    #: entry here (checked below: every host-to-device type has one)
    HANDLERS = {
        MsgType.HELLO: _on_hello,
        MsgType.HEARTBEAT: _on_heartbeat,
        MsgType.STOP: _on_stop,
        MsgType.CONFIGURE: _on_configure,
        MsgType.START: _on_start,
        MsgType.ARM: _on_arm,
        MsgType.DISARM: _on_disarm,
        MsgType.STIMULATE: _on_stimulate,
    }


if set(Device.HANDLERS) != HOST_TO_DEVICE:
    raise TypeError(
        f"Device.HANDLERS must cover exactly the host-to-device types; missing: "
        f"{sorted(t.name for t in HOST_TO_DEVICE - set(Device.HANDLERS))}, extra: "
        f"{sorted(t.name for t in set(Device.HANDLERS) - HOST_TO_DEVICE)}"
    )
