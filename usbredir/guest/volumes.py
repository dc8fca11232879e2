"""Filesystems on a guest block device: FAT through pyfatfs (read/write) and ISO 9660 (read-only).

pyfatfs is synchronous, the block device is async (its I/O runs through the EHCI schedules on this
same event loop), so every filesystem call runs in a worker thread whose file object turns each
read/write into a coroutine on the loop and waits for it.  Reads go through a small block cache
with read-ahead; writes go straight to the device.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from usbredir.guest.storage import MassStorageDriver

READ_AHEAD = 128 * 1024
CACHE_BYTES = 4 << 20
DIRTY_BYTES = 4 << 20
OP_READ_BUDGET = 32 << 20  # plus twice the file size for reads/writes


class BlockFile(io.RawIOBase):
    """A seekable file over a :class:`MassStorageDriver`, for use from a worker thread only."""

    def __init__(self, drive: MassStorageDriver, loop: asyncio.AbstractEventLoop, offset: int = 0,
                 writable: bool = True) -> None:
        super().__init__()
        self.drive = drive
        self.loop = loop
        self.bs = drive.block_size
        self.base = offset
        self.size = drive.blocks * self.bs - offset
        self.pos = 0
        self._writable = writable and not drive.read_only
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._dirty: dict[int, bytes] = {}
        self.name = f"usb:{drive.info.port}"
        self.dead = False  # the device went away: every access fails at once
        self.budget = -1  # bytes one filesystem operation may still read (-1: unlimited)

    def _call(self, fn, *args):
        if self.dead or self.loop.is_closed():
            raise OSError("USB device is gone")
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(60)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else self.size + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def _blocks(self, first: int, count: int) -> bytes:
        out = []
        lba = first
        end = first + count
        while lba < end:
            blk = self._dirty.get(lba)
            if blk is None:
                blk = self._cache.get(lba)
                if blk is not None:
                    self._cache.move_to_end(lba)
            if blk is not None:
                out.append(blk)
                lba += 1
                continue
            n = max(end - lba, READ_AHEAD // self.bs)
            n = min(n, self.drive.blocks - lba)
            if n <= 0:
                raise OSError("read beyond the end of the medium")
            data = self._call(self.drive.read_blocks, lba, n)
            for i in range(n):
                if lba + i not in self._dirty:
                    self._cache[lba + i] = data[i * self.bs:(i + 1) * self.bs]
            while len(self._cache) * self.bs > CACHE_BYTES:
                self._cache.popitem(last=False)
            take = min(n, end - lba)
            out.extend(self._dirty.get(lba + i) or data[i * self.bs:(i + 1) * self.bs] for i in range(take))
            lba += take
        return b"".join(out)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = max(0, min(n, self.size - self.pos))
        if not n:
            return b""
        if self.budget >= 0:  # cache hits count too: a looping cluster chain may never miss
            self.budget -= n
            if self.budget < 0:
                raise OSError("filesystem operation read far more than it should: corrupt volume?")
        start = self.base + self.pos
        first, last = start // self.bs, (start + n - 1) // self.bs
        blob = self._blocks(first, last - first + 1)
        off = start - first * self.bs
        self.pos += n
        return blob[off:off + n]

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def write(self, data) -> int:
        """Buffered: whole blocks go to a dirty map, written back in runs by :meth:`flush`."""
        if not self._writable:
            raise OSError("read-only medium")
        data = bytes(data)
        if not data:
            return 0
        bs = self.bs
        start = self.base + self.pos
        first, last = start // bs, (start + len(data) - 1) // bs
        off = start - first * bs
        if off or (start + len(data)) % bs:
            blob = bytearray(self._blocks(first, last - first + 1))
            blob[off:off + len(data)] = data
        else:
            blob = data
        for i in range(last - first + 1):
            self._dirty[first + i] = bytes(blob[i * bs:(i + 1) * bs])
            self._cache.pop(first + i, None)
        self.pos += len(data)
        if len(self._dirty) * bs > DIRTY_BYTES:
            self.flush()
        return len(data)

    def flush(self) -> None:
        """Write dirty blocks back, contiguous runs as single commands."""
        if not self._dirty:
            return
        lbas = sorted(self._dirty)
        run_start = prev = lbas[0]
        for lba in lbas[1:] + [None]:
            if lba is not None and lba == prev + 1:
                prev = lba
                continue
            blob = b"".join(self._dirty[i] for i in range(run_start, prev + 1))
            self._call(self.drive.write_blocks, run_start, blob)
            if lba is not None:
                run_start = prev = lba
        for lba, blk in self._dirty.items():
            self._cache[lba] = blk
        self._dirty.clear()


@dataclass
class DirEntry:
    name: str
    is_dir: bool
    size: int


def _partition_offset(sector0: bytes) -> int:
    """Byte offset of the FAT volume: 0 for a superfloppy, else the first MBR partition."""
    if sector0[510:512] != b"\x55\xaa":
        return 0
    if sector0[0x36:0x39] == b"FAT" or sector0[0x52:0x57] == b"FAT32" or sector0[0] in (0xEB, 0xE9):
        return 0
    for i in range(4):
        entry = sector0[446 + 16 * i:462 + 16 * i]
        if entry[4] in (0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E):
            return struct.unpack_from("<I", entry, 8)[0] * 512
    return 0


def _pyfatfs(fp):
    """A pyfatfs filesystem on ``fp`` with the FAT type decided correctly.

    pyfatfs 1.1.0 decides FAT12/16 in ``parse_header`` before it has computed the root-directory
    size, so volumes just under 4085 clusters (mkfs.vfat's 8 MiB FAT12) are read as FAT16 and
    every file longer than a few clusters fails with StopIteration.  Parsing the header twice
    (the second time with the root-directory size known) gives the right type.
    """
    import datetime

    from fs.base import FS
    from pyfatfs.PyFat import PyFat
    from pyfatfs.PyFatFS import PyFatBytesIOFS

    class _PyFat(PyFat):
        def parse_header(self) -> None:
            super().parse_header()
            super().parse_header()

    class _FatFS(PyFatBytesIOFS):
        def __init__(self, fp) -> None:
            FS.__init__(self)
            self.preserve_case = True
            self.fs = _PyFat(lazy_load=True)
            self.fs.set_fp(fp)
            self.tz = datetime.UTC

    return _FatFS(fp)


class FatVolume:
    """A mounted FAT filesystem; every method is async and serialised."""

    kind = "fat"

    def __init__(self, fs, blockfile: BlockFile, pool: ThreadPoolExecutor) -> None:
        self.fs = fs  # a pyfatfs PyFatBytesIOFS (PyFilesystem2 API)
        self.file = blockfile
        self.read_only = not blockfile.writable()
        self._lock = threading.Lock()
        self._pool = pool

    @classmethod
    async def mount(cls, drive: MassStorageDriver) -> FatVolume:
        """The volume's pyfatfs runs in its own worker thread, never in the loop's default
        executor: its blocking device reads wait on the loop, and a default pool filled with them
        would starve whatever else needs it (in-process devices' fsync, getaddrinfo)."""
        loop = asyncio.get_running_loop()
        sector0 = await drive.read_blocks(0, 1)
        offset = _partition_offset(sector0[:512])
        bf = BlockFile(drive, loop, offset, writable=not drive.read_only)
        pool = ThreadPoolExecutor(1, thread_name_prefix=f"usbfat-{drive.info.port}")
        try:
            fs = await loop.run_in_executor(pool, _pyfatfs, bf)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        return cls(fs, bf, pool)

    async def _in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _budgeted(self, fn, args, extra: int = 0):
        """Run ``fn`` with a read budget, so a FAT with a cluster-chain loop cannot read forever."""
        with self._lock:
            self.file.budget = OP_READ_BUDGET + 2 * extra
            try:
                return fn(*args)
            finally:
                self.file.budget = -1

    async def _run(self, fn, *args):
        return await self._in_pool(self._budgeted, fn, args)

    async def listdir(self, path: str = "/") -> list[DirEntry]:
        def ls():
            out = []
            for info in self.fs.scandir(path, namespaces=["details"]):
                out.append(DirEntry(info.name, info.is_dir, info.size or 0))
            return out
        return await self._run(ls)

    async def read(self, path: str) -> bytes:
        def read():
            size = self.fs.getinfo(path, namespaces=["details"]).size or 0
            self.file.budget += 2 * size
            return self.fs.readbytes(path)
        return await self._run(read)

    async def _mutate(self, fn, *args):
        """A changing operation; its blocks reach the device before it returns."""
        def call():
            try:
                return self._budgeted(fn, args, sum(len(a) for a in args if isinstance(a, bytes)))
            finally:
                with self._lock:
                    self.file.flush()
        return await self._in_pool(call)

    async def write(self, path: str, data: bytes) -> None:
        if self.read_only:
            raise OSError("read-only filesystem")
        await self._mutate(self.fs.writebytes, path, data)

    async def remove(self, path: str) -> None:
        await self._mutate(self.fs.remove, path)

    async def makedir(self, path: str) -> None:
        await self._mutate(self.fs.makedir, path)

    async def unmount(self, gone: bool = False) -> None:
        """Flush and close; with ``gone`` (device unplugged) just drop everything."""
        if self.fs is None:
            return
        fs, self.fs = self.fs, None
        try:
            await self._unmount(fs, gone)
        finally:
            self._pool.shutdown(wait=False)

    async def _unmount(self, fs, gone: bool) -> None:
        if not gone:
            try:
                await self._mutate(fs.close)
                if not self.read_only:
                    await self.file.drive.sync()
                return
            except Exception:  # the device vanished while flushing
                pass
        self.file.dead = True
        fs.fs.initialized = False  # so PyFat.__del__ does not try to flush to a dead device
        try:
            fs.close()
        except Exception:  # noqa: BLE001 - nothing left to close properly
            pass


class IsoVolume:
    """A read-only ISO 9660 filesystem (Joliet names when present, else primary names)."""

    kind = "iso9660"
    read_only = True

    def __init__(self, drive: MassStorageDriver, root: tuple[int, int], joliet: bool) -> None:
        self.drive = drive
        self.root = root
        self.joliet = joliet

    @staticmethod
    async def probe(drive: MassStorageDriver) -> bool:
        blob = await IsoVolume._read(drive, 16 * 2048, 2048)
        return blob[1:6] == b"CD001"

    @staticmethod
    async def _read(drive: MassStorageDriver, offset: int, length: int) -> bytes:
        bs = drive.block_size
        first = offset // bs
        last = (offset + length - 1) // bs
        data = await drive.read_blocks(first, last - first + 1)
        return data[offset - first * bs:offset - first * bs + length]

    @classmethod
    async def mount(cls, drive: MassStorageDriver) -> IsoVolume:
        pvd_root = None
        joliet_root = None
        for i in range(16, 32):
            vd = await cls._read(drive, i * 2048, 2048)
            if vd[1:6] != b"CD001" or vd[0] == 255:
                break
            rec = vd[156:190]
            root = struct.unpack_from("<I", rec, 2)[0], struct.unpack_from("<I", rec, 10)[0]
            if vd[0] == 1:
                pvd_root = root
            elif vd[0] == 2 and vd[88:91] in (b"%/@", b"%/C", b"%/E"):
                joliet_root = root
        if pvd_root is None:
            raise OSError("no ISO 9660 primary volume descriptor")
        return cls(drive, joliet_root or pvd_root, joliet_root is not None)

    async def _dir(self, extent: tuple[int, int]) -> list[tuple[str, bool, int, int]]:
        lba, size = extent
        if size > 16 << 20:
            raise OSError("directory too large")
        blob = await self._read(self.drive, lba * 2048, size)
        out = []
        pos = 0
        while pos < len(blob):
            n = blob[pos]
            if n == 0:  # records do not cross sectors: skip to the next one
                pos = (pos // 2048 + 1) * 2048
                continue
            rec = blob[pos:pos + n]
            pos += n
            if len(rec) < 34:
                break
            name_len = rec[32]
            raw = rec[33:33 + name_len]
            if raw in (b"\x00", b"\x01"):
                continue
            name = raw.decode("utf-16-be", "replace") if self.joliet else raw.decode("ascii", "replace")
            name = name.split(";")[0]
            if not self.joliet and name.endswith("."):
                name = name[:-1]
            out.append((name, bool(rec[25] & 2), struct.unpack_from("<I", rec, 2)[0],
                        struct.unpack_from("<I", rec, 10)[0]))
        return out

    async def _lookup(self, path: str) -> tuple[str, bool, int, int]:
        entry = ("/", True, *self.root)
        for part in [p for p in path.split("/") if p]:
            if not entry[1]:
                raise FileNotFoundError(path)
            for e in await self._dir((entry[2], entry[3])):
                if e[0] == part or e[0].upper() == part.upper():
                    entry = e
                    break
            else:
                raise FileNotFoundError(path)
        return entry

    async def listdir(self, path: str = "/") -> list[DirEntry]:
        entry = await self._lookup(path)
        if not entry[1]:
            raise NotADirectoryError(path)
        return [DirEntry(n, d, 0 if d else s) for n, d, _, s in await self._dir((entry[2], entry[3]))]

    async def read(self, path: str) -> bytes:
        entry = await self._lookup(path)
        if entry[1]:
            raise IsADirectoryError(path)
        return await self._read(self.drive, entry[2] * 2048, entry[3]) if entry[3] else b""

    async def write(self, path: str, data: bytes) -> None:
        raise OSError("read-only filesystem (ISO 9660)")

    async def unmount(self, gone: bool = False) -> None:
        pass


async def mount(drive: MassStorageDriver) -> FatVolume | IsoVolume | None:
    """Mount what the drive holds: ISO 9660 (CD-ROM images) or FAT; None if neither."""
    if drive.blocks * drive.block_size >= 17 * 2048 and await IsoVolume.probe(drive):
        return await IsoVolume.mount(drive)
    sector0 = await drive.read_blocks(0, max(1, 512 // drive.block_size))
    off = _partition_offset(sector0[:512])
    boot = sector0[:512] if off == 0 else await IsoVolume._read(drive, off, 512)
    if boot[510:512] == b"\x55\xaa" and (boot[0x36:0x39] == b"FAT" or boot[0x52:0x57] == b"FAT32"):
        return await FatVolume.mount(drive)
    return None
