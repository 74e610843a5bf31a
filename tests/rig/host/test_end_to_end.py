"""End to end over real pseudo-terminals with a separate simulator process; crash and disconnect safety."""

import signal
import subprocess
import sys
import textwrap

import pytest

from labkit import paths
from labkit.rig import Rig, RigError, load_session
from labkit.rig.host.nwb import session_to_nwb, validate_nwb
from tests.rig.conftest import run_session


@pytest.fixture
def sim_process():
    """``python -m labkit.rig.simulator.sim --pty`` in its own process; yields (process, /dev/pts path)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit.rig.simulator.sim", "--pty", "--seed", "2"],
        cwd=paths.ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    port = proc.stdout.readline().strip()
    assert port.startswith("/dev/pts/"), port
    yield proc, port
    proc.kill()
    proc.wait()


def test_full_session_over_a_pty_gives_a_valid_nwb_file(sim_process, tmp_path):
    _, port = sim_process
    with Rig(port, session_root=tmp_path) as rig:
        assert rig.info.simulated and rig.info.limits.max_vpp == 10.0
        pulses, rec = run_session(rig, tmp_path / "session")
        assert len(pulses) == 10 and rig.counters["lost_frames"] == 0 and rig.counters["bad_frames"] == 0
    loaded, meta = load_session(tmp_path / "session")
    assert meta["closed_cleanly"] and len(loaded.pulses) == 10 and not loaded.gaps
    assert validate_nwb(session_to_nwb(tmp_path / "session", tmp_path / "session.nwb")) == []


def test_disconnect_mid_stream_leaves_a_readable_recording(sim_process, tmp_path):
    proc, port = sim_process
    with Rig(port, session_root=tmp_path) as rig:
        rig.configure()
        with rig.record(tmp_path / "session"):
            rig.read(0.5)
            proc.kill()
            proc.wait()
            with pytest.raises(RigError, match="link lost"):
                rig.read(1.0)
    loaded, meta = load_session(tmp_path / "session")
    assert loaded.duration_s >= 0.45 and meta["closed_cleanly"]


CHILD = textwrap.dedent("""
    import sys
    from labkit.rig import Rig
    with Rig("rigsim://?seed=3", session_root=sys.argv[1]) as rig:
        rig.configure()
        with rig.record(sys.argv[1]) as writer:
            while True:
                rig.read(0.05)
                print(writer.next_index, flush=True)          # samples handed to the writer so far
""")


def test_kill_9_loses_at_most_the_last_flush_interval(tmp_path):
    folder = tmp_path / "session"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder)], cwd=paths.ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        received = [int(child.stdout.readline()) for _ in range(20)]  # about a second of data
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    loaded, meta = load_session(folder)
    assert not meta["closed_cleanly"]
    last_index = loaded.first_sample_index + len(loaded.samples_uv)
    assert last_index >= received[-1] - int(0.1 * 30000) - 300  # ≤ 100 ms + one block behind
