"""Guest mass-storage driver: Bulk-Only Transport carrying SCSI commands, exposing a block device.

Error recovery as BOT §5.3 / §6.6 ask: a stalled data stage is cleared (CLEAR_FEATURE HALT) and the
CSW read anyway; a phase error or an unreadable CSW triggers Reset Recovery (class request 0xFF,
then CLEAR_FEATURE on both bulk endpoints); a failed command is followed by REQUEST SENSE.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING

from usbredir.guest.core import UsbDeviceInfo, setup
from usbredir.guest.hcd import UsbError

if TYPE_CHECKING:
    from usbredir.guest.core import UsbCore

log = logging.getLogger(__name__)

CBW = struct.Struct("<IIIBBB16s")
CSW = struct.Struct("<IIIB")
CBW_SIG, CSW_SIG = 0x43425355, 0x53425355
MAX_BLOCKS_PER_COMMAND = 256 * 1024


class ScsiError(OSError):
    def __init__(self, message: str, sense: bytes = b"") -> None:
        super().__init__(message)
        self.sense = sense


class MassStorageDriver:
    """SCSI transparent (subclass 6) Bulk-Only (protocol 0x50) interface."""

    name = "usb-storage"

    @classmethod
    def probe(cls, core: UsbCore, info: UsbDeviceInfo) -> MassStorageDriver | None:
        for intf in info.interfaces:
            if intf.cls == 8 and intf.protocol == 0x50:
                return cls(core, info, intf)
        return None

    def __init__(self, core: UsbCore, info: UsbDeviceInfo, intf) -> None:
        self.core = core
        self.info = info
        self.intf = intf
        self._tag = 0
        self._lock = asyncio.Lock()
        self.block_size = 512
        self.blocks = 0
        self.read_only = False
        self.peripheral = 0
        self.vendor = self.model = ""
        self.volume = None  # set by the subsystem after mounting
        self.pipe_in = self.pipe_out = None

    async def start(self) -> None:
        hcd, dev = self.core.hcd, self.info.handle
        ein = next(e for e in self.intf.endpoints if e.type == 2 and e.address & 0x80)
        eout = next(e for e in self.intf.endpoints if e.type == 2 and not e.address & 0x80)
        self.pipe_in = hcd.open_bulk(dev, ein.address, ein.maxp)
        self.pipe_out = hcd.open_bulk(dev, eout.address, eout.maxp)
        inq = await self.command(bytes([0x12, 0, 0, 0, 36, 0]), 36)
        self.peripheral = inq[0] & 0x1F
        self.vendor = inq[8:16].decode("ascii", "replace").strip()
        self.model = inq[16:32].decode("ascii", "replace").strip()
        for _ in range(5):  # the first TEST UNIT READY may report a unit attention
            try:
                await self.command(bytes(6))
                break
            except ScsiError:
                await asyncio.sleep(0.01)
        cap = await self.command(bytes([0x25] + [0] * 9), 8)
        if len(cap) < 8:
            raise ScsiError("short READ CAPACITY reply")
        last, self.block_size = struct.unpack(">II", cap[:8])
        if self.block_size not in (512, 1024, 2048, 4096) or last == 0xFFFFFFFF:
            raise ScsiError(f"unsupported medium: {last + 1} blocks of {self.block_size} bytes")
        self.blocks = last + 1
        if self.peripheral == 5:
            self.read_only = True
        else:
            try:
                ms = await self.command(bytes([0x1A, 0, 0x3F, 0, 192, 0]), 192)
                self.read_only = len(ms) >= 3 and bool(ms[2] & 0x80)
            except ScsiError:
                self.read_only = False

    async def stop(self) -> None:
        vol = self.volume
        if vol is not None:
            self.volume = None
            try:
                await vol.unmount(gone=self.info.state == "gone")
            except Exception:  # device already gone: nothing to flush to
                log.info("unmount of vanished %s failed", self.info.port)

    # --- BOT -------------------------------------------------------------------------
    async def _clear_halt(self, pipe) -> None:
        await self.core.hcd.control(self.info.handle, setup(0x02, 1, 0, pipe.endpoint))
        self.core.hcd.reset_toggle(pipe)

    async def reset_recovery(self) -> None:
        await self.core.hcd.control(self.info.handle, setup(0x21, 0xFF, 0, self.intf.number))
        await self._clear_halt(self.pipe_in)
        await self._clear_halt(self.pipe_out)

    async def _transport(self, cdb: bytes, length: int, data_out: bytes | None) -> tuple[bytes, int, int]:
        hcd = self.core.hcd
        self._tag = (self._tag + 1) & 0xFFFFFFFF
        is_in = data_out is None and length > 0
        n = len(data_out) if data_out is not None else length
        cbw = CBW.pack(CBW_SIG, self._tag, n, 0x80 if is_in else 0, 0, len(cdb), cdb.ljust(16, b"\0"))
        try:
            await hcd.bulk(self.pipe_out, cbw)
        except UsbError as exc:
            if exc.kind == "gone":
                raise
            await self.reset_recovery()
            raise ScsiError(f"CBW failed: {exc}") from exc
        data = b""
        if n:
            try:
                if is_in:
                    data = await hcd.bulk(self.pipe_in, length=n)
                else:
                    await hcd.bulk(self.pipe_out, data_out)
            except UsbError as exc:
                if exc.kind != "stall":
                    raise
                await self._clear_halt(self.pipe_in if is_in else self.pipe_out)
        for attempt in range(2):
            try:
                raw = await hcd.bulk(self.pipe_in, length=13)
                break
            except UsbError as exc:
                if exc.kind != "stall" or attempt:
                    await self.reset_recovery()
                    raise ScsiError(f"CSW failed: {exc}") from exc
                await self._clear_halt(self.pipe_in)
        sig, tag, residue, status = CSW.unpack(raw[:13]) if len(raw) >= 13 else (0, 0, 0, 2)
        if sig != CSW_SIG or tag != self._tag or status == 2:
            await self.reset_recovery()
            raise ScsiError(f"phase error / bad CSW {bytes(raw).hex()}")
        return data, status, residue

    async def command(self, cdb: bytes, length: int = 0, data_out: bytes | None = None) -> bytes:
        """One SCSI command; raises :class:`ScsiError` (with sense data) when it fails."""
        async with self._lock:
            data, status, _ = await self._transport(cdb, length, data_out)
            if status == 0:
                return data
            sense, _, _ = await self._transport(bytes([0x03, 0, 0, 0, 18, 0]), 18, None)
        key = sense[2] & 0xF if len(sense) > 2 else 0
        asc = sense[12] if len(sense) > 12 else 0
        raise ScsiError(f"SCSI {cdb[0]:#04x} failed: sense key {key:#x} asc {asc:#04x}", sense)

    # --- block device ----------------------------------------------------------------
    async def read_blocks(self, lba: int, count: int) -> bytes:
        out = bytearray()
        per = max(1, MAX_BLOCKS_PER_COMMAND // self.block_size)
        while count > 0:
            n = min(count, per, 0xFFFF)
            out += await self.command(struct.pack(">BBIBHB", 0x28, 0, lba, 0, n, 0), n * self.block_size)
            lba += n
            count -= n
        return bytes(out)

    async def write_blocks(self, lba: int, data: bytes | memoryview) -> None:
        if self.read_only:
            raise ScsiError("medium is write-protected")
        bs = self.block_size
        if len(data) % bs:
            raise ValueError("write must be whole blocks")
        per = max(1, MAX_BLOCKS_PER_COMMAND // bs)
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            n = min((len(view) - pos) // bs, per, 0xFFFF)
            await self.command(struct.pack(">BBIBHB", 0x2A, 0, lba, 0, n, 0), 0, bytes(view[pos:pos + n * bs]))
            lba += n
            pos += n * bs

    async def sync(self) -> None:
        try:
            await self.command(bytes([0x35] + [0] * 9))
        except ScsiError:
            pass
