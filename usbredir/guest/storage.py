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
MAX_BLOCKS_PER_COMMAND = 256 * 1024  # bytes per READ/WRITE(10) for CD/DVD units (spice-gtk's CD
MAX_BYTES_DISK = 1024 * 1024         # answers larger bulk INs short); disks take 1 MiB commands
MAX_NO_PROGRESS = 3  # short answers in a row that moved no whole block before the I/O fails


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

    async def _transport(self, cdb: bytes, length: int, data_out: bytes | None) -> tuple[bytes, int, int, int]:
        """CBW, data stage, CSW; returns (data in, bytes moved in the data stage, status, residue)."""
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
        moved = 0
        if n:
            try:
                if is_in:
                    data = await hcd.bulk(self.pipe_in, length=n)
                    moved = len(data)
                else:
                    moved = await hcd.bulk(self.pipe_out, data_out)
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
        return data, moved, status, residue

    async def command(self, cdb: bytes, length: int = 0, data_out: bytes | None = None) -> bytes:
        """One SCSI command; raises :class:`ScsiError` (with sense data) when it fails."""
        return (await self.command_ex(cdb, length, data_out))[0]

    async def command_ex(self, cdb: bytes, length: int = 0, data_out: bytes | None = None) -> tuple[bytes, int]:
        """One SCSI command; returns (data in, bytes the command really transferred): the smaller
        of what crossed the bus and what the CSW's dCSWDataResidue admits (BOT 5.2)."""
        async with self._lock:
            data, moved, status, residue = await self._transport(cdb, length, data_out)
            if status == 0:
                expected = len(data_out) if data_out is not None else length
                return data, max(0, min(moved, expected - residue))
            sense, _, _, _ = await self._transport(bytes([0x03, 0, 0, 0, 18, 0]), 18, None)
        key = sense[2] & 0xF if len(sense) > 2 else 0
        asc = sense[12] if len(sense) > 12 else 0
        raise ScsiError(f"SCSI {cdb[0]:#04x} failed: sense key {key:#x} asc {asc:#04x}", sense)

    # --- block device ----------------------------------------------------------------
    def _per_command(self) -> int:
        limit = MAX_BLOCKS_PER_COMMAND if self.peripheral == 5 else MAX_BYTES_DISK
        return max(1, min(limit // self.block_size, 0xFFFF))

    def _no_progress(self, op: str, lba: int, tries: int) -> int:
        if tries + 1 >= MAX_NO_PROGRESS:
            raise ScsiError(f"{op} at block {lba}: the device transferred less than one block "
                            f"{MAX_NO_PROGRESS} times")
        return tries + 1

    async def read_blocks(self, lba: int, count: int) -> bytes:
        """``count`` blocks from ``lba``.  A short answer (fewer bytes on the bus, or a CSW residue)
        keeps only the whole blocks that really arrived and asks again for the rest; an answer
        without a single block, ``MAX_NO_PROGRESS`` times in a row, fails the read (ScsiError)."""
        out = bytearray()
        bs = self.block_size
        per = self._per_command()
        tries = 0
        while count > 0:
            n = min(count, per)
            data, done = await self.command_ex(struct.pack(">BBIBHB", 0x28, 0, lba, 0, n, 0), n * bs)
            got = min(done // bs, n)
            if got < n:
                log.info("short READ(10) at %d: %d of %d bytes (%d on the bus)", lba, done, n * bs, len(data))
                if not got:
                    tries = self._no_progress("READ(10)", lba, tries)
                    continue
            tries = 0
            out += memoryview(data)[:got * bs]
            lba += got
            count -= got
        return bytes(out)

    async def write_blocks(self, lba: int, data: bytes | memoryview) -> None:
        if self.read_only:
            raise ScsiError("medium is write-protected")
        bs = self.block_size
        if len(data) % bs:
            raise ValueError("write must be whole blocks")
        per = self._per_command()
        view = memoryview(data)
        pos = 0
        tries = 0
        while pos < len(view):
            n = min((len(view) - pos) // bs, per)
            _, done = await self.command_ex(struct.pack(">BBIBHB", 0x2A, 0, lba, 0, n, 0), 0,
                                            bytes(view[pos:pos + n * bs]))
            got = min(done // bs, n)  # blocks the device took; the rest is written again
            if got < n:
                log.info("short WRITE(10) at %d: device took %d of %d bytes", lba, done, n * bs)
                if not got:
                    tries = self._no_progress("WRITE(10)", lba, tries)
                    continue
            tries = 0
            lba += got
            pos += got * bs

    async def sync(self) -> None:
        try:
            await self.command(bytes([0x35] + [0] * 9))
        except ScsiError:
            pass
