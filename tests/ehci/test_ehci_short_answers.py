"""A device that answers short must never give the guest wrong data or a write reported done that
the device did not take: the BOT driver checks every data stage against the bytes that crossed
the bus and the CSW's dCSWDataResidue, asks again for the rest, or fails the I/O (ScsiError)."""

from __future__ import annotations

import os
import struct

import pytest

from usbredir.device import Status, TransferResult
from usbredir.devices.storage import CSW_SIG, EP_IN, EP_OUT, MassStorage, Phase
from usbredir.guest.storage import ScsiError
from usbredir.guest.subsystem import UsbSubsystem

IMG_BYTES = 4 << 20


class ShortStick(MassStorage):
    """The virtual stick, except that READ(10) data INs longer than ``cut`` bytes come back short
    and WRITE(10) data OUTs longer than ``cut`` are taken only up to ``cut`` (the first ``times``).

    ``mode`` for reads: ``lie`` (truncated data, CSW residue 0), ``honest`` (truncated data, CSW
    residue tells the truth), ``pad`` (full length on the bus, zeros after ``cut``, CSW residue
    tells the truth).  Writes always report the untaken bytes in the residue."""

    def __init__(self, path: str, *, cut: int, mode: str = "honest", times: int = 1 << 30) -> None:
        super().__init__(path)
        self.cut, self.mode, self.left = cut, mode, times
        self.op = 0
        self.shorted = 0
        self._residue: int | None = None

    def _cbw(self, data):
        if len(data) == 31:
            self.op = data[15]
        return super()._cbw(data)

    async def bulk(self, endpoint: int, data=None, length: int = 0) -> TransferResult:
        if endpoint == EP_IN and self.phase is Phase.DATA_IN and self.op == 0x28 and self.left > 0 \
                and length > self.cut:
            self.left -= 1
            self.shorted += 1
            full = bytes((await super().bulk(endpoint, None, length)).data)
            if self.mode != "lie":
                self._residue = self._host_len - self.cut
            tail = bytes(len(full) - self.cut) if self.mode == "pad" else b""
            return TransferResult(Status.SUCCESS, full[:self.cut] + tail)
        if endpoint == EP_OUT and self.phase is Phase.DATA_OUT and self.op == 0x2A and self.left > 0 \
                and len(data) > self.cut:
            self.left -= 1
            self.shorted += 1
            if self.cut:
                await super().bulk(endpoint, memoryview(data)[:self.cut], 0)
            if self.phase is Phase.DATA_OUT:
                await self._finish()  # the device gives up on the rest: residue = what it did not take
            return TransferResult(Status.SUCCESS, actual=len(data))
        res = await super().bulk(endpoint, data, length)
        raw = bytes(res.data)
        if self._residue is not None and len(raw) == 13 and raw[:4] == struct.pack("<I", CSW_SIG):
            res = TransferResult(res.status, raw[:8] + struct.pack("<I", self._residue) + raw[12:])
            self._residue = None
        return res


async def _drive(stick: MassStorage):
    usb = UsbSubsystem(debounce=0.0, reset_time=0.0, automount=False)
    await usb.start()
    port = usb.attach(stick)
    await usb.wait_for(lambda s: port in s.core.devices and getattr(s.info(port).driver, "blocks", 0) > 0, 10)
    return usb, usb.info(port).driver


@pytest.fixture
def image(tmp_path):
    data = os.urandom(IMG_BYTES)
    path = tmp_path / "short.img"
    path.write_bytes(data)
    return str(path), data


@pytest.mark.parametrize("mode", ["lie", "honest", "pad"])
@pytest.mark.parametrize("cut", [65536 + 100, 1000, 266224])
async def test_short_reads_give_the_right_bytes(image, mode, cut):
    path, want = image
    stick = ShortStick(path, cut=cut, mode=mode, times=5)
    usb, drive = await _drive(stick)
    try:
        blocks = (3 << 20) // drive.block_size
        got = await drive.read_blocks(7, blocks)
        assert stick.shorted == 5
        assert got == want[7 * 512:7 * 512 + blocks * 512]
    finally:
        await usb.close()
        await stick.close()


@pytest.mark.parametrize("mode", ["lie", "honest", "pad"])
async def test_reads_without_a_whole_block_fail(image, mode):
    path, _ = image
    stick = ShortStick(path, cut=300, mode=mode)
    usb, drive = await _drive(stick)
    try:
        with pytest.raises(ScsiError, match="less than one block"):
            await drive.read_blocks(0, 64)
        assert stick.shorted >= 3
        assert await drive.read_blocks(0, 0) == b""
    finally:
        await usb.close()
        await stick.close()


@pytest.mark.parametrize("cut", [65536, 1536, 700])
async def test_partly_taken_writes_are_written_again(image, cut):
    path, _ = image
    stick = ShortStick(path, cut=cut, times=4)
    usb, drive = await _drive(stick)
    data = os.urandom(2 << 20)
    try:
        await drive.write_blocks(100, data)
        await drive.sync()
        assert stick.shorted == 4
        assert await drive.read_blocks(100, len(data) // 512) == data
    finally:
        await usb.close()
        await stick.close()
    with open(path, "rb") as f:
        f.seek(100 * 512)
        assert f.read(len(data)) == data


async def test_writes_the_device_never_takes_fail(image):
    path, want = image
    stick = ShortStick(path, cut=0)
    usb, drive = await _drive(stick)
    try:
        with pytest.raises(ScsiError, match="WRITE"):
            await drive.write_blocks(8, os.urandom(8192))
    finally:
        await usb.close()
        await stick.close()
