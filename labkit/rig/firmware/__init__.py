"""The device side of the rig's link, independent of hardware and transport: the messages (``protocol``), how they
travel (``framing``: COBS frames, CRC, sequence numbers), the hard stimulation limits (``limits``) and the firmware's
behaviour (``device``). It imports nothing else of the rig; the host, the simulator and real boards all speak it.
Importing the package imports none of its modules.
"""

__all__ = ["protocol", "framing", "limits", "device"]
