"""The simulated preparation and rig: the earthworm's numbers (``worm_params``) and signals (``worm``) and body twitches
(``worm_body``), its camera (``video``), firmware logic on that worm paced in real time (``sim``: in-process or on a
pseudo-terminal) and a clock for scripted sessions that holds at scheduled pulse onsets (``holding_clock``), the
``rigsim://`` pyserial URL handler (``protocol_rigsim``; pyserial finds it by that name in this package) and
recordings built without the simulator (``synthetic``). Importing the package imports none of its modules.
"""

__all__ = ["worm_params", "worm_body", "worm", "video", "sim", "holding_clock", "protocol_rigsim", "synthetic"]
