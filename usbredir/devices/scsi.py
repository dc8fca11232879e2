"""A SCSI direct-access disk (SBC subset) on an image file, independent of the transport.

:meth:`ScsiDisk.command` decodes a CDB into a :class:`Command` that says which way data goes and
how much; the transport (Bulk-Only Transport in :mod:`usbredir.devices.storage`) then streams
data with :meth:`Command.read` / :meth:`Command.write` and ends with :meth:`Command.finish`.
READ/WRITE stream straight from/to the image (``os.pread``/``os.pwrite``), so a 4 GiB command
never allocates more than the chunk the host asked for.  SYNCHRONIZE CACHE and
:meth:`ScsiDisk.close` fsync the image.
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass

BLOCK = 512
GOOD, CHECK_CONDITION = 0x00, 0x02
# sense keys
NO_SENSE, NOT_READY, MEDIUM_ERROR, ILLEGAL_REQUEST, UNIT_ATTENTION, DATA_PROTECT = 0, 2, 3, 5, 6, 7
# (asc, ascq)
INVALID_OPCODE = (0x20, 0x00)
LBA_OUT_OF_RANGE = (0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x24, 0x00)
WRITE_PROTECTED = (0x27, 0x00)
MEDIUM_NOT_PRESENT = (0x3A, 0x00)
WRITE_ERROR = (0x0C, 0x00)
READ_ERROR = (0x11, 0x00)

(TEST_UNIT_READY, REQUEST_SENSE, INQUIRY, MODE_SELECT_6, MODE_SENSE_6, START_STOP_UNIT,
 PREVENT_ALLOW, READ_FORMAT_CAPACITIES, READ_CAPACITY_10, READ_10, WRITE_10, VERIFY_10,
 SYNC_CACHE_10, MODE_SENSE_10, READ_16, WRITE_16, VERIFY_16, SYNC_CACHE_16, SERVICE_ACTION_IN_16,
 READ_12, WRITE_12) = (0x00, 0x03, 0x12, 0x15, 0x1A, 0x1B, 0x1E, 0x23, 0x25, 0x28, 0x2A, 0x2F, 0x35,
                       0x5A, 0x88, 0x8A, 0x8F, 0x91, 0x9E, 0xA8, 0xAA)
READ_CAPACITY_16_SA = 0x10


@dataclass(slots=True)
class Sense:
    key: int = NO_SENSE
    asc: int = 0
    ascq: int = 0

    def fixed(self) -> bytes:
        """18-byte fixed-format sense data."""
        return bytes((0x70, 0, self.key, 0, 0, 0, 0, 10, 0, 0, 0, 0, self.asc, self.ascq, 0, 0, 0, 0))


class Command:
    """One decoded SCSI command.

    ``data_in`` bytes go to the host (``direction == "in"``), ``data_out`` bytes are expected
    from it (``direction == "out"``); ``direction is None`` means no data stage.
    """

    def __init__(self, disk: ScsiDisk, *, direction: str | None = None, length: int = 0,
                 payload: bytes = b"", offset: int = 0, error: tuple[int, tuple[int, int]] | None = None,
                 sync: bool = False) -> None:
        self.disk = disk
        self.direction = direction
        self.length = length          # bytes of the data stage this command wants
        self.done = 0                 # bytes moved so far
        self._payload = payload       # small replies
        self._offset = offset         # image offset for READ/WRITE
        self._error = error
        self._sync = sync

    def read(self, n: int) -> bytes:
        """Next ``n`` (or fewer, at the end) data-in bytes."""
        n = max(0, min(n, self.length - self.done))
        if self._payload or self._offset < 0:
            chunk = self._payload[self.done:self.done + n]
        else:
            chunk = self.disk._pread(self._offset + self.done, n)
            if len(chunk) < n:  # image shrank under us
                self._error = (MEDIUM_ERROR, READ_ERROR)
                self.length = self.done + len(chunk)
        self.done += len(chunk)
        return chunk

    def write(self, chunk: bytes | memoryview) -> None:
        """Next data-out bytes (anything beyond ``length`` is ignored)."""
        n = max(0, min(len(chunk), self.length - self.done))
        if n and self._error is None:
            try:
                self.disk._pwrite(self._offset + self.done, memoryview(chunk)[:n])
            except OSError:
                self._error = (MEDIUM_ERROR, WRITE_ERROR)
        self.done += n

    async def finish(self) -> int:
        """Complete the command; returns the SCSI status (sense kept on the disk)."""
        if self._error is None and self._sync:
            try:
                await self.disk.flush()
            except OSError:
                self._error = (MEDIUM_ERROR, WRITE_ERROR)
        if self._error is not None:
            key, (asc, ascq) = self._error
            self.disk.sense = Sense(key, asc, ascq)
            return CHECK_CONDITION
        self.disk.sense = Sense()
        return GOOD


class ScsiDisk:
    """Direct-access block device on ``path`` (512-byte blocks)."""

    VENDOR = b"aiospice"
    MODEL = b"Virtual Stick"
    REVISION = b"0.1 "

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
        self.blocks = os.fstat(self._fd).st_size // BLOCK
        self.sense = Sense()
        self.prevent_removal = False
        self.dirty = False
        self.started = True
        self.bytes_read = 0
        self.bytes_written = 0

    # --- image I/O -------------------------------------------------------------------
    def _pread(self, offset: int, n: int) -> bytes:
        data = os.pread(self._fd, n, offset)
        self.bytes_read += len(data)
        return data

    def _pwrite(self, offset: int, data: memoryview) -> None:
        os.pwrite(self._fd, data, offset)
        self.dirty = True
        self.bytes_written += len(data)

    async def flush(self) -> None:
        """Make every write so far durable (fsync in a worker thread)."""
        if self.dirty and self._fd >= 0:
            self.dirty = False
            await asyncio.to_thread(os.fsync, self._fd)

    def close(self) -> None:
        """fsync and close the image (idempotent)."""
        if self._fd >= 0:
            if not self.read_only:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    # --- command decoding -------------------------------------------------------------
    def command(self, cdb: bytes) -> Command:
        """Decode ``cdb``; errors come back as a Command that fails in :meth:`Command.finish`."""
        if not cdb:
            return self._fail(ILLEGAL_REQUEST, INVALID_OPCODE)
        op = cdb[0]
        handler = _HANDLERS.get(op)
        if handler is None:
            return self._fail(ILLEGAL_REQUEST, INVALID_OPCODE)
        if self._fd < 0 and op not in (INQUIRY, REQUEST_SENSE):
            return self._fail(NOT_READY, MEDIUM_NOT_PRESENT)
        try:
            return handler(self, cdb)
        except (struct.error, IndexError):
            return self._fail(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)

    def _fail(self, key: int, asc: tuple[int, int]) -> Command:
        return Command(self, error=(key, asc))

    def _reply(self, payload: bytes, alloc: int) -> Command:
        payload = payload[:alloc]
        return Command(self, direction="in", length=len(payload), payload=payload)

    def _ok(self, **kw) -> Command:
        return Command(self, **kw)

    # --- handlers ---------------------------------------------------------------------
    def _inquiry(self, cdb: bytes) -> Command:
        alloc = struct.unpack_from(">H", cdb, 3)[0]
        if cdb[1] & 1:  # EVPD
            page = cdb[2]
            if page == 0x00:
                body = bytes((0x00, 0x80))
            elif page == 0x80:
                body = b"AIOSPICE0001"
            else:
                return self._fail(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
            return self._reply(bytes((0, page, 0, len(body))) + body, alloc)
        if cdb[2]:
            return self._fail(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
        data = (bytes((0x00, 0x80, 0x06, 0x02, 31, 0, 0, 0)) + self.VENDOR.ljust(8)[:8]
                + self.MODEL.ljust(16)[:16] + self.REVISION.ljust(4)[:4])
        return self._reply(data, alloc)

    def _test_unit_ready(self, cdb: bytes) -> Command:
        return self._ok()

    def _request_sense(self, cdb: bytes) -> Command:
        sense, self.sense = self.sense, Sense()
        return self._reply(sense.fixed(), cdb[4])

    def _read_capacity_10(self, cdb: bytes) -> Command:
        last = min(self.blocks - 1, 0xFFFFFFFF) if self.blocks else 0
        return self._reply(struct.pack(">II", last, BLOCK), 8)

    def _service_action_in(self, cdb: bytes) -> Command:
        if cdb[1] & 0x1F != READ_CAPACITY_16_SA:
            return self._fail(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
        alloc = struct.unpack_from(">I", cdb, 10)[0]
        data = struct.pack(">QI", max(self.blocks - 1, 0), BLOCK) + bytes(20)
        return self._reply(data, alloc)

    def _read_format_capacities(self, cdb: bytes) -> Command:
        alloc = struct.unpack_from(">H", cdb, 7)[0]
        data = bytes((0, 0, 0, 8)) + struct.pack(">I", self.blocks) + bytes((2,)) + BLOCK.to_bytes(3, "big")
        return self._reply(data, alloc)

    def _mode_sense(self, cdb: bytes) -> Command:
        six = cdb[0] == MODE_SENSE_6
        page = cdb[2] & 0x3F
        alloc = cdb[4] if six else struct.unpack_from(">H", cdb, 7)[0]
        pages = b""
        if page in (0x08, 0x3F):  # caching: write cache enabled, so hosts send SYNCHRONIZE CACHE
            pages += bytes((0x08, 0x12, 0x04)) + bytes(17)
        if page == 0x1C:  # informational exceptions control
            pages += bytes((0x1C, 0x0A)) + bytes(10)
        if not pages:
            return self._fail(ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
        wp = 0x80 if self.read_only else 0x00
        if six:
            data = bytes((3 + len(pages), 0, wp, 0)) + pages
        else:
            data = struct.pack(">HBBBBH", 6 + len(pages), 0, wp, 0, 0, 0) + pages
        return self._reply(data, alloc)

    def _start_stop(self, cdb: bytes) -> Command:
        self.started = bool(cdb[4] & 1)
        if cdb[4] & 2 and not self.read_only:  # eject: make it durable first
            return self._ok(sync=True)
        return self._ok()

    def _prevent_allow(self, cdb: bytes) -> Command:
        self.prevent_removal = bool(cdb[4] & 1)
        return self._ok()

    def _sync_cache(self, cdb: bytes) -> Command:
        return self._ok(sync=True)

    def _verify(self, cdb: bytes) -> Command:
        return self._ok()

    def _rw(self, cdb: bytes) -> Command:
        op = cdb[0]
        if op in (READ_10, WRITE_10):
            lba, count = struct.unpack_from(">I", cdb, 2)[0], struct.unpack_from(">H", cdb, 7)[0]
        elif op in (READ_12, WRITE_12):
            lba, count = struct.unpack_from(">II", cdb, 2)
        else:
            lba, count = struct.unpack_from(">QI", cdb, 2)
        if lba + count > self.blocks:
            return self._fail(ILLEGAL_REQUEST, LBA_OUT_OF_RANGE)
        writing = op in (WRITE_10, WRITE_12, WRITE_16)
        if writing and self.read_only:
            cmd = self._fail(DATA_PROTECT, WRITE_PROTECTED)
            cmd.direction, cmd.length, cmd._offset = "out", count * BLOCK, lba * BLOCK
            return cmd
        fua = bool(cdb[1] & 0x08) and writing
        return self._ok(direction="out" if writing else "in", length=count * BLOCK, offset=lba * BLOCK,
                        sync=fua)


_HANDLERS = {
    INQUIRY: ScsiDisk._inquiry,
    TEST_UNIT_READY: ScsiDisk._test_unit_ready,
    REQUEST_SENSE: ScsiDisk._request_sense,
    READ_CAPACITY_10: ScsiDisk._read_capacity_10,
    SERVICE_ACTION_IN_16: ScsiDisk._service_action_in,
    READ_FORMAT_CAPACITIES: ScsiDisk._read_format_capacities,
    MODE_SENSE_6: ScsiDisk._mode_sense,
    MODE_SENSE_10: ScsiDisk._mode_sense,
    START_STOP_UNIT: ScsiDisk._start_stop,
    PREVENT_ALLOW: ScsiDisk._prevent_allow,
    SYNC_CACHE_10: ScsiDisk._sync_cache,
    SYNC_CACHE_16: ScsiDisk._sync_cache,
    VERIFY_10: ScsiDisk._verify,
    VERIFY_16: ScsiDisk._verify,
    READ_10: ScsiDisk._rw, WRITE_10: ScsiDisk._rw,
    READ_12: ScsiDisk._rw, WRITE_12: ScsiDisk._rw,
    READ_16: ScsiDisk._rw, WRITE_16: ScsiDisk._rw,
}
