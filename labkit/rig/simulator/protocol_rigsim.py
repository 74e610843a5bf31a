"""pyserial URL handler for ``rigsim://``: an in-process simulated rig (see labkit.rig.simulator.sim).

pyserial looks up ``<package>.protocol_<scheme>`` in ``serial.protocol_handler_packages``; importing
``labkit.rig`` registers this module's package (``labkit.rig.simulator``), so
``serial.serial_for_url("rigsim://?seed=1&fs=30000")`` works.
The simulator itself is reachable as ``port.sim`` (e.g. to render its camera).
"""

from urllib.parse import urlsplit

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

from labkit.rig.simulator.sim import SCHEME, SimulatedRig, parse_query

__all__ = ["Serial"]


class Serial(SerialBase):
    def __init__(self, *args, **kwargs):
        self.sim: SimulatedRig | None = None
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self.is_open:
            raise SerialException("port is already open")
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        parts = urlsplit(self._port)
        if parts.scheme != SCHEME:
            raise SerialException(f"expected {SCHEME}://?key=value&..., got {self._port!r}")
        try:
            self.sim = SimulatedRig(**parse_query(parts.query))
        except (TypeError, ValueError) as e:
            raise SerialException(f"{self._port}: {e}") from e
        self.is_open = True

    def close(self) -> None:
        if self.sim is not None:
            self.sim.close()
        self.is_open = False

    def _reconfigure_port(self) -> None:
        """Baud rate, parity etc. mean nothing to the simulator (it paces itself)."""

    def _check(self) -> SimulatedRig:
        if not self.is_open:
            raise PortNotOpenError()
        return self.sim

    @property
    def in_waiting(self) -> int:
        return self._check().in_waiting

    def read(self, size: int = 1) -> bytes:
        return self._check().read(size, self._timeout)

    def write(self, data) -> int:
        return self._check().write(bytes(data))

    def reset_input_buffer(self) -> None:
        self._check().reset_output()

    def reset_output_buffer(self) -> None:
        self._check()

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
