"""The firmware logic: answers, streaming, hard limits (authoritative), stop, watchdog."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.rig.firmware import framing
from labkit.rig.firmware import protocol as p
from labkit.rig.firmware.device import Device
from labkit.rig.firmware.limits import SafetyLimits
from labkit.rig.simulator.worm import Earthworm
from tests.rig.conftest import DeviceHarness
from tests.rig.firmware.test_protocol import frame

MS = 1000


def _types(frames):
    return [f.type for f in frames]


def _armed(h, at_us=0):
    h.send(p.Arm(), at_us)
    return h


def test_every_host_command_has_one_handler_in_the_dispatch_table():
    assert set(Device.HANDLERS) == set(p.HOST_TO_DEVICE)
    assert all(callable(handler) for handler in Device.HANDLERS.values())


def test_hello_answers_with_its_limits_and_geometry(harness):
    (info,) = [f.msg.info for f in harness.send(p.Hello()) if f.type == p.MsgType.INFO]
    assert info["limits"] == SafetyLimits().to_dict() and info["sample_rates_hz"] == [30000.0]
    assert info["electrode_positions_mm"] == [30.0, 50.0, 70.0, 90.0]


def test_streams_consecutive_blocks_at_the_configured_rate(harness):
    assert harness.send(p.Configure(30000, 4, 300))[0].msg == p.Ack(p.MsgType.CONFIGURE, 0)
    harness.send(p.Start())
    frames = harness.advance(1_000_000)
    blocks = [f.msg for f in frames if f.type == p.MsgType.DATA]
    assert len(blocks) == 100 and [b.first_sample for b in blocks] == list(range(0, 30000, 300))
    samples = np.concatenate([b.counts for b in blocks])
    np.testing.assert_array_equal(samples[:, 0], np.arange(30000) % 1000)  # 0.2 µV per count
    heartbeats = [f.msg for f in frames if f.type == p.MsgType.HEARTBEAT]
    assert heartbeats[-1].streaming == 1


def test_bad_configuration_is_refused_with_the_allowed_values(harness):
    err = harness.send(p.Configure(20000, 4, 300))[0].msg
    assert err.code == p.ErrorCode.BAD_CONFIG and "allowed: 30000 Hz" in err.message
    err = harness.send(p.Configure(30000, 5, 300))[0].msg
    assert err.code == p.ErrorCode.BAD_CONFIG and "allowed: 1 to 4" in err.message


def test_stimulation_needs_arming(harness):
    err = harness.send(p.Stimulate(1, 3.0, 3000, 1))[0].msg
    assert err.code == p.ErrorCode.NOT_ARMED and not harness.frontend.delivered


def test_device_refuses_out_of_limit_pulses_even_without_host_checks(harness):
    _armed(harness)
    cases = [
        (p.Stimulate(1, 12.0, 3000, 1), p.ErrorCode.LIMIT_VPP),
        (p.Stimulate(2, -1.0, 3000, 1), p.ErrorCode.LIMIT_VPP),
        (p.Stimulate(3, float("nan"), 3000, 1), p.ErrorCode.LIMIT_VPP),
        (p.Stimulate(4, 3.0, 400, 1), p.ErrorCode.LIMIT_PERIOD),
        (p.Stimulate(5, 3.0, 25000, 1), p.ErrorCode.LIMIT_PERIOD),
        (p.Stimulate(6, 3.0, 3000, p.Waveform.MONOPHASIC_SQUARE), p.ErrorCode.WAVEFORM),
    ]
    for cmd, code in cases:
        (err,) = [f.msg for f in harness.send(cmd) if f.type == p.MsgType.ERROR]
        assert err.code == code, cmd
    assert harness.frontend.delivered == []


def test_pulse_echo_after_delivery_and_rate_limit(harness):
    _armed(harness)
    assert harness.send(p.Stimulate(1, 4.0, 3000, 1), at_us=10 * MS) == []  # echo once delivered
    (echo,) = [f.msg for f in harness.advance(13 * MS) if f.type == p.MsgType.PULSE]
    assert (echo.request_id, echo.t_start_us, echo.vpp_requested, echo.flags) == (1, 10 * MS, 4.0, 0)
    (err,) = [f.msg for f in harness.send(p.Stimulate(2, 4.0, 3000, 1), at_us=60 * MS)]
    assert err.code == p.ErrorCode.LIMIT_RATE and "10.0 pulses/s" in err.message
    harness.send(p.Stimulate(3, 4.0, 3000, 1), at_us=110 * MS)
    assert len(harness.frontend.delivered) == 2


def test_stop_is_always_accepted_and_halts_everything(harness):
    harness.send(p.Configure(30000, 4, 300))
    harness.send(p.Start())
    _armed(harness, 5 * MS)
    harness.send(p.Stimulate(1, 4.0, 10000, 1), at_us=20 * MS)
    frames = harness.send(p.Stop(), at_us=22 * MS)
    (echo,) = [f.msg for f in frames if f.type == p.MsgType.PULSE]
    assert echo.flags == 1 and echo.period_ms_measured == 2.0  # aborted after 2 ms
    assert any(f.type == p.MsgType.ACK and f.msg.ref_type == p.MsgType.STOP for f in frames)
    assert not harness.device.armed and not harness.device.streaming
    assert not [f for f in harness.advance(500 * MS) if f.type == p.MsgType.DATA]
    for state_change in (p.Stop(), p.Stop()):  # also when idle, repeatedly
        assert harness.send(state_change)[0].type == p.MsgType.ACK


def test_watchdog_disarms_when_the_host_goes_quiet(harness):
    _armed(harness)
    for t in range(50, 1000, 50):  # heartbeats keep it armed
        harness.send(p.Heartbeat(), at_us=t * MS)
    assert harness.device.armed
    harness.send(p.Stimulate(1, 4.0, 20000, 1), at_us=1000 * MS)
    frames = harness.advance(1200 * MS)
    assert harness.device.armed and not [f for f in frames if f.type == p.MsgType.ERROR]
    frames = harness.advance(1251 * MS)
    (err,) = [f.msg for f in frames if f.type == p.MsgType.ERROR]
    assert err.code == p.ErrorCode.WATCHDOG and err.ref_seq == 0 and not harness.device.armed


COMMANDS = st.one_of(
    st.just(p.Arm()),
    st.just(p.Disarm()),
    st.just(p.Stop()),
    st.just(p.Heartbeat()),
    st.builds(
        p.Stimulate,
        st.integers(0, 100),
        st.one_of(st.floats(-20, 30, width=32), st.just(float("nan"))),
        st.integers(0, 40_000),
        st.sampled_from([0, 1, 2, 3]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(COMMANDS, st.integers(0, 300 * MS)), max_size=60))
def test_no_command_sequence_makes_the_device_exceed_its_limits(script):
    h = DeviceHarness()
    limits = h.device.limits
    for cmd, wait in script:
        h.advance(h.now + wait)
        was_armed, n_delivered = h.device.armed, len(h.frontend.delivered)
        h.send(cmd)
        assert was_armed or len(h.frontend.delivered) == n_delivered, "delivered while disarmed"
    times = [t for t, _, _ in h.frontend.delivered]
    for _, vpp, period in h.frontend.delivered:
        assert 0 < vpp <= limits.max_vpp and limits.min_period_ms <= period <= limits.max_period_ms
    assert all(b - a >= 1 / limits.max_rate_hz - 1e-9 for a, b in zip(times, times[1:]))


# --- hostile frames, replays, aborted pulses, counters ------------------------------------------------------------


def test_device_to_host_types_are_refused_without_reading_their_payload(harness):
    for i, kind in enumerate(sorted(p.DEVICE_TO_HOST - p.HOST_TO_DEVICE)):
        harness.device.receive(frame(kind, b"[" * 5000, seq=100 + i), harness.now)  # json would recurse too deep
        (err,) = [f.msg for f in harness.advance(harness.now)]
        assert (err.code, err.ref_type, err.ref_seq) == (p.ErrorCode.UNKNOWN_TYPE, kind, 100 + i)
    assert [f.type for f in harness.send(p.Hello())] == [p.MsgType.INFO]  # and it goes on
    assert harness.send(p.Arm())[0].msg == p.Ack(p.MsgType.ARM, 1)
    assert harness.device.link_counters["bad_frames"] == 0


def test_a_replayed_stimulate_is_never_delivered_twice(harness):
    _armed(harness)
    wire = harness.host.encode(p.Stimulate(1, 4.0, 3000, 1), 10 * MS)
    harness.device.receive(wire, 10 * MS)
    assert [f.type for f in harness.advance(14 * MS)] == [p.MsgType.PULSE]
    harness.device.receive(wire, 150 * MS)  # the same frame again, later
    (err,) = [f.msg for f in harness.advance(150 * MS) if f.type == p.MsgType.ERROR]
    assert (err.code, err.ref_seq) == (p.ErrorCode.BAD_SEQ, 1) and "not executed" in err.message
    assert len(harness.frontend.delivered) == 1 and harness.device.bad_seq_frames == 1


def test_a_replayed_stop_still_stops(harness):
    stop = harness.host.encode(p.Stop(), 0)  # seq 0
    harness.device.receive(stop, 0)
    _armed(harness, 1 * MS)
    harness.send(p.Stimulate(1, 4.0, 10000, 1), at_us=2 * MS)
    harness.device.receive(stop, 4 * MS)  # an old STOP: stopping twice
    frames = harness.advance(4 * MS)  # is harmless
    assert p.Ack(p.MsgType.STOP, 0) in [f.msg for f in frames]
    (echo,) = [f.msg for f in frames if f.type == p.MsgType.PULSE]
    assert echo.flags == 1 and not harness.device.armed and harness.device.bad_seq_frames == 1


def test_the_sequence_window_wraps_at_2_to_the_32(harness):
    harness.host.seq = 2**32 - 2
    _armed(harness)  # seq 2**32 - 2
    assert harness.send(p.Disarm())[0].msg == p.Ack(p.MsgType.DISARM, 2**32 - 1)
    assert harness.send(p.Arm())[0].msg == p.Ack(p.MsgType.ARM, 0)  # 0 comes after 2**32 - 1
    replay = framing.Encoder()
    replay.seq = 2**32 - 1
    harness.device.receive(replay.encode(p.Disarm(), 0), 0)
    assert harness.advance(0)[0].msg.code == p.ErrorCode.BAD_SEQ and harness.device.armed


def test_a_seq_far_ahead_is_refused_and_does_not_move_the_window(harness):
    _armed(harness)  # seq 0
    far = framing.Encoder()
    far.seq = 2**20  # e.g. a corrupted seq
    harness.device.receive(far.encode(p.Disarm(), 0), 0)
    assert harness.advance(0)[0].msg.code == p.ErrorCode.BAD_SEQ and harness.device.armed
    assert harness.send(p.Disarm())[0].msg == p.Ack(p.MsgType.DISARM, 1)


def test_hello_starts_a_new_host_session(harness):
    harness.host.seq = 5000
    _armed(harness)
    harness.send(p.Stop())
    new_host = framing.Encoder()  # a reconnecting host starts at 0
    harness.device.receive(new_host.encode(p.Hello(), 0) + new_host.encode(p.Arm(), 0), 0)
    assert [f.type for f in harness.advance(0)] == [p.MsgType.INFO, p.MsgType.ACK] and harness.device.armed


def test_a_duplicated_hello_mid_session_disarms_so_replays_after_it_cannot_deliver(harness):
    """HELLO resets the sequence window; it also disarms, so a stray old HELLO followed by replays of the frames
    that came after it (ARM excepted) cannot deliver a pulse."""
    hello = harness.host.encode(p.Hello(), 0)  # seq 0
    harness.device.receive(hello, 0)
    _armed(harness, 1 * MS)  # seq 1
    stimulate = harness.host.encode(p.Stimulate(1, 4.0, 3000, 1), 2 * MS)  # seq 2
    harness.device.receive(stimulate, 2 * MS)
    harness.advance(200 * MS)
    harness.device.receive(hello + stimulate, 300 * MS)  # the link duplicates both
    frames = harness.advance(300 * MS)
    (err,) = [f.msg for f in frames if f.type == p.MsgType.ERROR]
    assert err.code == p.ErrorCode.NOT_ARMED and not harness.device.armed
    assert len(harness.frontend.delivered) == 1


def test_replayed_heartbeats_do_not_feed_the_watchdog(harness):
    _armed(harness)
    heartbeat = harness.host.encode(p.Heartbeat(), 0)
    for t in range(0, 400, 50):
        harness.device.receive(heartbeat, t * MS)
        harness.advance(t * MS)
    assert not harness.device.armed and harness.device.bad_seq_frames == 7


def test_heartbeat_reports_the_device_receive_counters(harness):
    harness.device.receive(b"\x00\x07\x01garbage\x00", 0)  # one bad frame
    harness.send(p.Hello())  # seq 0
    harness.host.encode(p.Heartbeat(), 0)  # seq 1, lost in transit
    arm = harness.host.encode(p.Arm(), 0)  # seq 2
    harness.device.receive(arm + arm, 0)  # ...and replayed
    heartbeat = [f.msg for f in harness.advance(100 * MS) if f.type == p.MsgType.HEARTBEAT][-1]
    assert (heartbeat.bad_frames, heartbeat.lost_frames, heartbeat.bad_seq_frames) == (1, 1, 1)


def _worm_session(stop_at_us=None, stop=p.Stop(), vpp=3.0, period_us=20_000, seed=3):
    """A stepped Device on a simulated earthworm: one pulse at 50 ms, optionally cut off by ``stop`` at ``stop_at_us``.
    Returns (the worm's pulse event, the echo, counts (n, 4) from sample 0)."""
    h = DeviceHarness()
    h.frontend = Earthworm(fs_hz=30000.0, seed=seed)
    h.device = Device(h.frontend)
    frames = h.send(p.Configure(30000, 4, 300)) + h.send(p.Start()) + h.send(p.Arm(), 1 * MS)
    frames += h.send(p.Stimulate(1, vpp, period_us, 1), at_us=50 * MS)
    if stop_at_us is not None:
        frames += h.send(stop, at_us=stop_at_us)
    frames += h.advance(200 * MS)
    (echo,) = [f.msg for f in frames if f.type == p.MsgType.PULSE]
    counts = np.concatenate([f.msg.counts for f in frames if f.type == p.MsgType.DATA])
    (event,) = [e for e in h.frontend.events() if e["kind"] == "pulse"]
    event["events"] = h.frontend.events()
    return event, echo, counts


def event_spikes(event):
    return [e for e in event["events"] if e["kind"] == "spike" and e["cause"] == "evoked"]


def test_a_pulse_stopped_before_a_fibre_reaches_threshold_does_not_recruit_it():
    event, echo, _ = _worm_session()  # 3 Vpp, 20 ms: the MGF fires 2.2 ms in,
    assert event["fibres"] == ("MGF", "LGF") and echo.flags == 0  # the LGF 3.4 ms in
    event, echo, _ = _worm_session(stop_at_us=51 * MS)  # ...but only 1 ms was delivered
    assert (echo.flags, echo.period_ms_measured) == (1, 1.0)
    assert event["fibres"] == () and event["delivered_ms"] == pytest.approx(1.0)
    event, _, _ = _worm_session(stop_at_us=53 * MS)
    assert event["fibres"] == ("MGF",) and [s["fibre"] for s in event_spikes(event)] == ["MGF"]


def test_a_stopped_pulse_drives_the_worm_only_until_the_stop():
    _, _, full = _worm_session()
    event, echo, cut = _worm_session(stop_at_us=55 * MS, stop=p.Disarm())  # 5 ms into the 20 ms pulse
    assert (echo.flags, echo.period_ms_measured) == (1, 5.0) and event["fibres"] == ("MGF", "LGF")
    t = np.arange(len(full)) / 30000.0
    worm = Earthworm(fs_hz=30000.0, seed=3)
    gain = worm.params.artefact_uv_per_v * 3.0 * np.exp(-worm.electrode_positions_mm / worm.params.artefact_length_mm)
    artefact = gain * np.sin(2 * np.pi * (t[:, None] - 0.050) / 0.020) / 0.2  # in counts
    after = (t >= 0.055) & (t < 0.070)
    np.testing.assert_array_equal(full[~after], cut[~after])  # the same up to the stop, and after
    assert np.abs((full - cut)[after] - artefact[after]).max() <= 1  # the artefact's last 15 ms is gone
