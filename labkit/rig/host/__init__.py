"""The host side of the link: the driver (``driver``: one :class:`~labkit.rig.host.driver.Rig` per serial URL or
port; ``stream``: the received samples reassembled by device index; ``info``: what the device says, in host terms),
the crash-safe session folder it records into (``recording``) and its conversion to NWB (``nwb``). Importing the
package imports none of its modules.
"""

__all__ = ["driver", "stream", "info", "recording", "nwb"]
