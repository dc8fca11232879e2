"""Virtual USB stick: USB Mass Storage Bulk-Only Transport over a :class:`ScsiDisk` image.

One interface (class 8, SCSI transparent 0x06, BOT 0x50), bulk IN 0x81 and bulk OUT 0x02
(512 bytes, high speed).  Flow per command: CBW on OUT, data stage (streamed chunk by chunk to
or from the image), CSW on IN.  A bulk IN while no command is pending waits (a real device
NAKs), so a pipelining host never gets a premature answer.  An invalid CBW halts both
endpoints until Reset Recovery (class request 0xFF + CLEAR_FEATURE), as BOT §6.6.1 asks.
Writes become durable on SYNCHRONIZE CACHE, on a write with FUA, on eject and on
:meth:`MassStorage.close`.
"""

from __future__ import annotations

import asyncio
import enum
import struct

from usbredir.device import SetupPacket, Status, TransferResult
from usbredir.devices.base import (
    VirtualDevice,
    config_descriptor,
    device_descriptor,
    endpoint_descriptor,
    interface_descriptor,
)
from usbredir.devices.scsi import CHECK_CONDITION, Command, ScsiDisk

EP_IN, EP_OUT = 0x81, 0x02
CBW_SIG, CSW_SIG = 0x43425355, 0x53425355
CBW = struct.Struct("<IIIBBB16s")  # signature, tag, data length, flags, lun, cb length, cb
CSW = struct.Struct("<IIIB")
BOMS_RESET, GET_MAX_LUN = 0xFF, 0xFE
CSW_PASSED, CSW_FAILED, CSW_PHASE_ERROR = 0, 1, 2
VID, PID = 0x1209, 0x0001  # pid.codes test VID/PID


class Phase(enum.Enum):
    IDLE = "idle"            # waiting for a CBW
    DATA_IN = "data-in"
    DATA_OUT = "data-out"
    STATUS = "status"        # CSW ready
    NEED_RESET = "need-reset"


class MassStorage(VirtualDevice):
    """USB stick serving ``path`` (read-only when ``read_only``)."""

    PRODUCT = "aiospice virtual stick"
    SERIAL = "A10591CE0001"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        super().__init__()
        self.disk = ScsiDisk(path, read_only=read_only)
        body = (interface_descriptor(0, 2, 0x08, 0x06, 0x50)
                + endpoint_descriptor(EP_IN, 0x02, 512, 0) + endpoint_descriptor(EP_OUT, 0x02, 512, 0))
        self._config = config_descriptor(1, 1, body, attributes=0x80, max_power_ma=200)
        self._device = device_descriptor(VID, PID, 0x0100)
        self.phase = Phase.IDLE
        self._cmd: Command | None = None
        self._tag = 0
        self._host_len = 0      # dCBWDataTransferLength
        self._host_left = 0     # bytes of the host's data stage still to move
        self._phase_error = False
        self._csw = b""
        self._changed = asyncio.Event()
        self.closed = False
        self.commands = 0

    @property
    def device_descriptor(self) -> bytes:
        return self._device

    @property
    def config_descriptors(self) -> list[bytes]:
        return [self._config]

    # --- class requests -----------------------------------------------------------------
    async def class_control(self, setup: SetupPacket, data: bytes) -> TransferResult:
        if setup.request_type == 0x21 and setup.request == BOMS_RESET and setup.index == 0:
            self._to(Phase.IDLE)
            return TransferResult(Status.SUCCESS)
        if setup.request_type == 0xA1 and setup.request == GET_MAX_LUN and setup.index == 0:
            return TransferResult(Status.SUCCESS, b"\x00"[:setup.length])
        return TransferResult(Status.STALL)

    def on_clear_halt(self, endpoint: int) -> None:
        if self.phase is Phase.NEED_RESET:
            self.halted.add(endpoint)  # stays halted until Reset Recovery

    def on_configured(self, value: int) -> None:
        self._to(Phase.IDLE)

    async def reset(self) -> None:
        await super().reset()
        self._to(Phase.IDLE)

    def _to(self, phase: Phase) -> None:
        self.phase = phase
        if phase in (Phase.IDLE, Phase.NEED_RESET):
            self._cmd = None
        self._changed.set()

    # --- bulk ---------------------------------------------------------------------------
    async def bulk(self, endpoint: int, data: bytes | memoryview | None = None, length: int = 0) -> TransferResult:
        if self.closed:
            return TransferResult(Status.IOERROR)
        if not self.configuration or endpoint not in (EP_IN, EP_OUT):
            return TransferResult(Status.STALL)
        if endpoint in self.halted:
            return TransferResult(Status.STALL)
        if endpoint == EP_OUT:
            return await self._bulk_out(memoryview(data if data is not None else b""))
        return await self._bulk_in(length)

    async def _bulk_out(self, data: memoryview) -> TransferResult:
        if self.phase is Phase.IDLE:
            return self._cbw(data)
        if self.phase is Phase.DATA_OUT:
            n = min(len(data), self._host_left)
            assert self._cmd is not None
            if self._cmd.direction == "out":
                self._cmd.write(data[:n])
            self._host_left -= n
            if self._host_left == 0 or len(data) % 512:
                await self._finish()
            return TransferResult(Status.SUCCESS, actual=n)
        return TransferResult(Status.STALL)

    def _cbw(self, data: memoryview) -> TransferResult:
        if len(data) != CBW.size or struct.unpack_from("<I", data)[0] != CBW_SIG:
            self.halted.update((EP_IN, EP_OUT))
            self._to(Phase.NEED_RESET)
            return TransferResult(Status.STALL)
        _, tag, xfer, flags, lun, cb_len, cb = CBW.unpack(data)
        self.commands += 1
        self._tag, self._host_len, self._host_left = tag, xfer, xfer
        self._phase_error = False
        if lun != 0 or not 1 <= (cb_len & 0x1F) <= 16:
            cmd = self.disk._fail(5, (0x25, 0x00))  # LOGICAL UNIT NOT SUPPORTED
        else:
            cmd = self.disk.command(cb[:cb_len & 0x1F])
        self._cmd = cmd
        host_in = bool(flags & 0x80)
        if cmd.direction is not None and xfer == 0:
            self._phase_error = True                       # device wants data, host none
        elif cmd.direction == "in" and not host_in or cmd.direction == "out" and host_in:
            self._phase_error = True                       # direction mismatch (BOT cases 8, 10)
        elif cmd.length > xfer:
            self._phase_error = True                       # device has more than the host takes
        if xfer == 0:
            self.phase = Phase.STATUS
            self._csw = b""
            self._changed.set()  # _bulk_in finishes the command lazily
        else:
            self.phase = Phase.DATA_IN if host_in else Phase.DATA_OUT
            self._changed.set()
        return TransferResult(Status.SUCCESS, actual=len(data))

    async def _finish(self) -> None:
        cmd = self._cmd
        assert cmd is not None
        status = await cmd.finish()
        if self._phase_error:
            code = CSW_PHASE_ERROR
        else:
            code = CSW_FAILED if status == CHECK_CONDITION else CSW_PASSED
        if self.phase is Phase.DATA_OUT:
            used = cmd.done if cmd.direction == "out" else 0
        else:
            used = self._host_len - self._host_left
        residue = max(0, self._host_len - used)
        self._csw = CSW.pack(CSW_SIG, self._tag, residue, code)
        self.phase = Phase.STATUS
        self._changed.set()

    async def _bulk_in(self, length: int) -> TransferResult:
        while self.phase in (Phase.IDLE, Phase.DATA_OUT):  # nothing to send yet: NAK
            self._changed.clear()
            await self._changed.wait()
            if self.closed:
                return TransferResult(Status.IOERROR)
            if self.phase is Phase.NEED_RESET or EP_IN in self.halted:
                return TransferResult(Status.STALL)
        if self.phase is Phase.DATA_IN:
            cmd = self._cmd
            assert cmd is not None
            n = min(length, self._host_left)
            chunk = cmd.read(n) if cmd.direction == "in" else b""
            self._host_left -= len(chunk)
            if len(chunk) < n or self._host_left == 0:
                await self._finish()
            return TransferResult(Status.SUCCESS, chunk)
        if self.phase is Phase.STATUS:
            if not self._csw:
                await self._finish()
            if length < CSW.size:
                return TransferResult(Status.BABBLE)
            csw, self._csw = self._csw, b""
            self._to(Phase.IDLE)
            return TransferResult(Status.SUCCESS, csw)
        return TransferResult(Status.STALL)

    async def close(self) -> None:
        """Flush and close the image; pending transfers end with IOERROR."""
        if not self.closed:
            self.closed = True
            self._changed.set()
            await asyncio.to_thread(self.disk.close)
