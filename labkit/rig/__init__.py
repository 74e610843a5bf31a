"""The earthworm neuromuscular rig: protocol, firmware logic, simulator, host driver and recordings.

Importing ``labkit.rig`` registers the ``rigsim://`` pyserial URL handler (labkit.rig.protocol_rigsim), so
``Rig("rigsim://?seed=1")`` drives the simulator in-process, exactly as ``Rig("/dev/ttyACM0")`` drives a board.
"""

import serial

from labkit.rig import protocol_rigsim  # noqa: F401  the rigsim:// handler; a static import, so that the input
#                                         hash of every notebook that uses the rig covers the simulator's code
from labkit.rig.driver import Rig, RigInfo
from labkit.rig.limits import LimitError, RigError, SafetyLimits
from labkit.rig.recording import Pulse, Recording, SessionError, load_session

if "labkit.rig" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("labkit.rig")

__all__ = ["Rig", "RigInfo", "RigError", "LimitError", "SafetyLimits", "Pulse", "Recording", "SessionError",
           "load_session"]
