"""The earthworm neuromuscular rig: firmware logic, simulator, host driver and recordings, analysis, experiments, UI.

Sub-packages, one role each, each importing only those listed before it (tests/rig/test_layout.py checks it):
``firmware`` (the wire protocol, the hard limits, the device's logic), ``simulator`` (the simulated worm, its
camera, the simulated rig and the ``rigsim://`` pyserial handler, a simulator-free recording generator), ``host``
(the driver, session folders, NWB), ``analysis`` (signal analysis, video tracking, blind validation),
``experiments`` (notebook 05a's mapping session, the closed-loop search and notebook 05c's evaluation of it) and
``ui`` (the live panel of notebook 05b with its Auto-map, the sweep explorer).

Importing ``labkit.rig`` registers the ``rigsim://`` pyserial URL handler (labkit.rig.simulator.protocol_rigsim),
so ``Rig("rigsim://?seed=1")`` drives the simulator in-process, exactly as ``Rig("/dev/ttyACM0")`` drives a board.
"""

import serial

from labkit.rig.firmware.limits import LimitError, RigError, SafetyLimits
from labkit.rig.host.driver import Rig, RigInfo
from labkit.rig.host.recording import Pulse, Recording, SessionError
from labkit.rig.host.session_reader import load_session
from labkit.rig.simulator import protocol_rigsim  # noqa: F401  the rigsim:// handler; a static import, so that the

#                                                   input hash of every notebook that uses the rig covers the simulator

if "labkit.rig.simulator" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("labkit.rig.simulator")  # pyserial imports <package>.protocol_rigsim

__all__ = [
    "Rig",
    "RigInfo",
    "RigError",
    "LimitError",
    "SafetyLimits",
    "Pulse",
    "Recording",
    "SessionError",
    "load_session",
]
