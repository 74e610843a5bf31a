"""The host side of the link: the driver (``driver``: one :class:`~labkit.rig.host.driver.Rig` per serial URL or port,
standing on ``link``: its reader and heartbeat threads, requests and their answers, and failure; ``stream``: the
received samples reassembled by device index; ``info``: what the device says, in host terms), the crash-safe session
folder it records into (``recording``: the format, its rules and its writer; ``session_reader``: ``load_session``;
``append_file``: the crash-safe append-only files both use; the closed-loop search's trials in ``search_log``) and its
conversion to NWB (``nwb``). Importing the package imports none of its modules.
"""

__all__ = ["link", "driver", "stream", "info", "append_file", "recording", "session_reader", "search_log", "nwb"]
