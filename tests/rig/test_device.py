"""The firmware logic: answers, streaming, hard limits (authoritative), stop, watchdog."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.rig import protocol as p
from labkit.rig.limits import SafetyLimits
from tests.rig.conftest import DeviceHarness

MS = 1000


def _types(frames):
    return [f.type for f in frames]


def _armed(h, at_us=0):
    h.send(p.Arm(), at_us)
    return h


def test_hello_answers_with_its_limits_and_geometry(harness):
    info, = [f.msg.info for f in harness.send(p.Hello()) if f.type == p.MsgType.INFO]
    assert info["limits"] == SafetyLimits().to_dict() and info["sample_rates_hz"] == [30000.0]
    assert info["electrode_positions_mm"] == [30.0, 50.0, 70.0, 90.0]


def test_streams_consecutive_blocks_at_the_configured_rate(harness):
    assert harness.send(p.Configure(30000, 4, 300))[0].msg == p.Ack(p.MsgType.CONFIGURE, 0)
    harness.send(p.Start())
    frames = harness.advance(1_000_000)
    blocks = [f.msg for f in frames if f.type == p.MsgType.DATA]
    assert len(blocks) == 100 and [b.first_sample for b in blocks] == list(range(0, 30000, 300))
    samples = np.concatenate([b.counts for b in blocks])
    np.testing.assert_array_equal(samples[:, 0], np.arange(30000) % 1000)      # 0.2 µV per count
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
    cases = [(p.Stimulate(1, 12.0, 3000, 1), p.ErrorCode.LIMIT_VPP), (p.Stimulate(2, -1.0, 3000, 1), p.ErrorCode.LIMIT_VPP),
             (p.Stimulate(3, float("nan"), 3000, 1), p.ErrorCode.LIMIT_VPP),
             (p.Stimulate(4, 3.0, 400, 1), p.ErrorCode.LIMIT_PERIOD), (p.Stimulate(5, 3.0, 25000, 1), p.ErrorCode.LIMIT_PERIOD),
             (p.Stimulate(6, 3.0, 3000, p.Waveform.MONOPHASIC_SQUARE), p.ErrorCode.WAVEFORM)]
    for cmd, code in cases:
        err, = [f.msg for f in harness.send(cmd) if f.type == p.MsgType.ERROR]
        assert err.code == code, cmd
    assert harness.frontend.delivered == []


def test_pulse_echo_after_delivery_and_rate_limit(harness):
    _armed(harness)
    assert harness.send(p.Stimulate(1, 4.0, 3000, 1), at_us=10 * MS) == []          # echo once delivered
    echo, = [f.msg for f in harness.advance(13 * MS) if f.type == p.MsgType.PULSE]
    assert (echo.request_id, echo.t_start_us, echo.vpp_requested, echo.flags) == (1, 10 * MS, 4.0, 0)
    err, = [f.msg for f in harness.send(p.Stimulate(2, 4.0, 3000, 1), at_us=60 * MS)]
    assert err.code == p.ErrorCode.LIMIT_RATE and "10.0 pulses/s" in err.message
    harness.send(p.Stimulate(3, 4.0, 3000, 1), at_us=110 * MS)
    assert len(harness.frontend.delivered) == 2


def test_stop_is_always_accepted_and_halts_everything(harness):
    harness.send(p.Configure(30000, 4, 300))
    harness.send(p.Start())
    _armed(harness, 5 * MS)
    harness.send(p.Stimulate(1, 4.0, 10000, 1), at_us=20 * MS)
    frames = harness.send(p.Stop(), at_us=22 * MS)
    echo, = [f.msg for f in frames if f.type == p.MsgType.PULSE]
    assert echo.flags == 1 and echo.period_ms_measured == 2.0                     # aborted after 2 ms
    assert any(f.type == p.MsgType.ACK and f.msg.ref_type == p.MsgType.STOP for f in frames)
    assert not harness.device.armed and not harness.device.streaming
    assert not [f for f in harness.advance(500 * MS) if f.type == p.MsgType.DATA]
    for state_change in (p.Stop(), p.Stop()):                                       # also when idle, repeatedly
        assert harness.send(state_change)[0].type == p.MsgType.ACK


def test_watchdog_disarms_when_the_host_goes_quiet(harness):
    _armed(harness)
    for t in range(50, 1000, 50):                                                 # heartbeats keep it armed
        harness.send(p.Heartbeat(), at_us=t * MS)
    assert harness.device.armed
    harness.send(p.Stimulate(1, 4.0, 20000, 1), at_us=1000 * MS)
    frames = harness.advance(1200 * MS)
    assert harness.device.armed and not [f for f in frames if f.type == p.MsgType.ERROR]
    frames = harness.advance(1251 * MS)
    err, = [f.msg for f in frames if f.type == p.MsgType.ERROR]
    assert err.code == p.ErrorCode.WATCHDOG and err.ref_seq == 0 and not harness.device.armed


COMMANDS = st.one_of(
    st.just(p.Arm()), st.just(p.Disarm()), st.just(p.Stop()), st.just(p.Heartbeat()),
    st.builds(p.Stimulate, st.integers(0, 100), st.one_of(st.floats(-20, 30, width=32), st.just(float("nan"))),
              st.integers(0, 40_000), st.sampled_from([0, 1, 2, 3])),
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
    for t, vpp, period in h.frontend.delivered:
        assert 0 < vpp <= limits.max_vpp and limits.min_period_ms <= period <= limits.max_period_ms
    assert all(b - a >= 1 / limits.max_rate_hz - 1e-9 for a, b in zip(times, times[1:]))
