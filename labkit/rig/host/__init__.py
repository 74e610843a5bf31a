"""The host side of the link: the driver (``driver``: one :class:`~labkit.rig.host.driver.Rig` per serial URL or
port; ``stream``: the received samples reassembled by device index; ``info``: what the device says, in host terms),
the crash-safe session folder it records into (``recording``, with the closed-loop search's trials in
``search_log``) and its conversion to NWB (``nwb``). Importing the package imports none of its modules.
"""

__all__ = ["driver", "stream", "info", "recording", "search_log", "nwb"]
