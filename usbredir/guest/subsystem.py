"""The built-in guest's USB subsystem: guest RAM, one EHCI controller, its driver, the USB core
with class drivers, hubs for many (and full/low-speed) devices, mounted filesystems.

Integration surface (thin on purpose)::

    usb = UsbSubsystem(); await usb.start()
    port = usb.attach(device)            # "1.3" = root port 1, hub port 3
    usb.rows()                           # device panel rows
    await usb.listdir(port, "/"); await usb.read_file(port, "/A.TXT"); await usb.write_file(...)
    await usb.eject(port); usb.detach(port); await usb.close()
"""

from __future__ import annotations

import asyncio
import logging

from usbredir.device import Speed, UsbDevice
from usbredir.ehci.controller import EhciController
from usbredir.ehci.hub import Hub
from usbredir.ehci.memory import GuestMemory
from usbredir.ehci.runtime import EhciRuntime
from usbredir.guest.core import UsbCore, UsbDeviceInfo
from usbredir.guest.dma import DmaPool
from usbredir.guest.generic import SPEED_NAMES, GenericDriver
from usbredir.guest.hcd import EhciHcd
from usbredir.guest.hid import HidBootDriver
from usbredir.guest.hub import HubDriver
from usbredir.guest.storage import MassStorageDriver
from usbredir.guest.volumes import mount

log = logging.getLogger(__name__)


class UsbSubsystem:
    """Controller + guest USB software; devices attach behind built-in TT hubs by default."""

    def __init__(self, *, memory_size: int = 32 << 20, n_ports: int = 6, hub_ports: int = 8,
                 debounce: float = 0.02, reset_time: float = 0.01, automount: bool = True) -> None:
        self.memory = GuestMemory(memory_size)
        self.hub_ports = hub_ports
        self.automount = automount
        self.controller = EhciController(self.memory, n_ports=n_ports, irq=self._irq)
        self.dma = DmaPool(self.memory, 0x10000, memory_size - 0x10000)
        self.hcd = EhciHcd(self.memory, self.controller.mmio_read, self.controller.mmio_write, self.dma)
        self.core = UsbCore(self.hcd, debounce=debounce, reset_time=reset_time)
        self.core.drivers = [HubDriver.probe, MassStorageDriver.probe, HidBootDriver.probe, GenericDriver.probe]
        self.core.listeners.append(self._on_event)
        self.hubs: dict[int, Hub] = {}
        self.volumes: dict[str, object] = {}
        self.runtime: EhciRuntime | None = None
        self._mounts: dict[str, asyncio.Task] = {}
        self._memory_size = memory_size
        self.hcd.on_fatal = self._on_fatal
        self._recovery: asyncio.Task | None = None
        self.recoveries = 0

    def _irq(self, level: bool) -> None:
        self.hcd.irq(level)

    async def start(self) -> None:
        self.runtime = EhciRuntime(self.controller)
        await self.hcd.start()
        self.core.start()

    def _on_fatal(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        """Host system error: drop every device, reset and restart the controller, re-enumerate."""
        self.recoveries += 1
        log.error("EHCI halted (%s): resetting the controller", self.controller.last_error or "HSE")
        for port in sorted({p.split(".")[0] for p in self.core.devices}):
            await self.core.disconnect(port)
        self.dma = DmaPool(self.memory, 0x10000, self._memory_size - 0x10000)  # old structures are gone
        self.hcd.dma = self.dma
        await self.hcd.start()

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
        for t in self._mounts.values():
            t.cancel()
        await self.core.stop()
        await self.hcd.stop()
        if self.runtime:
            await self.runtime.close()

    # --- plugging ----------------------------------------------------------------------
    def attach(self, device: UsbDevice, port: str | None = None) -> str:
        """Plug a device in; returns its port name.  Without ``port`` it goes to the first free
        hub port (a new hub is plugged into a free root port when all hubs are full)."""
        c = self.controller
        if port is not None:
            parts = [int(p) for p in port.split(".")]
            if len(parts) == 1:
                c.attach(device, parts[0])
            else:
                self.hubs[parts[0]].connect(parts[1], device)
            return port
        for root, hub in sorted(self.hubs.items()):
            free = hub.free_ports()
            if free:
                hub.connect(free[0], device)
                return f"{root}.{free[0]}"
        free_roots = [i + 1 for i, s in enumerate(c.ports) if s is None]
        if not free_roots:
            if device.speed in (Speed.HIGH, Speed.SUPER):
                raise RuntimeError("no free USB port")
            raise RuntimeError("no free hub port for a full/low-speed device")
        root = free_roots[0]
        hub = Hub(self.hub_ports)
        c.attach(hub, root)
        self.hubs[root] = hub
        hub.connect(1, device)
        return f"{root}.1"

    def detach(self, port: str) -> UsbDevice | None:
        """Unplug the device on ``port`` (the guest sees the disconnect)."""
        parts = [int(p) for p in port.split(".")]
        if len(parts) == 1:
            slot = self.controller.detach(parts[0])
            self.hubs.pop(parts[0], None)
        else:
            hub = self.hubs.get(parts[0])
            slot = hub.disconnect(parts[1]) if hub else None
        return slot.device if slot else None

    # --- what the guest sees -----------------------------------------------------------
    def devices(self) -> list[UsbDeviceInfo]:
        return sorted(self.core.devices.values(), key=lambda i: [int(p) for p in i.port.split(".")])

    def rows(self) -> list[dict]:
        """Device-panel rows: port, speed, id, product, driver, state, bytes."""
        return [{"port": i.port, "speed": SPEED_NAMES.get(int(i.speed), "?"), "id": f"{i.vid:04x}:{i.pid:04x}",
                 "product": i.product, "driver": i.driver_name, "state": i.state, "bytes": i.bytes_moved,
                 "mounted": i.port in self.volumes}
                for i in self.devices() if i.driver_name != "hub"]

    def info(self, port: str) -> UsbDeviceInfo:
        return self.core.devices[port]

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        """Wait until ``predicate(self)`` holds (device tree changes wake the check)."""
        async def loop():
            while not predicate(self):
                self.core.changed.clear()
                try:
                    await asyncio.wait_for(self.core.changed.wait(), 0.05)
                except TimeoutError:
                    pass
        await asyncio.wait_for(loop(), timeout)

    async def wait_mounted(self, port: str, timeout: float = 10.0):
        await self.wait_for(lambda s: port in s.volumes, timeout)
        return self.volumes[port]

    # --- storage -----------------------------------------------------------------------
    def _on_event(self, what: str, info: UsbDeviceInfo) -> None:
        if what == "configured" and isinstance(info.driver, MassStorageDriver) and self.automount:
            self._mounts[info.port] = self.core.spawn(self._mount(info))
        elif what == "remove":
            self.volumes.pop(info.port, None)
            t = self._mounts.pop(info.port, None)
            if t:
                t.cancel()

    async def _mount(self, info: UsbDeviceInfo) -> None:
        drive = info.driver
        try:
            vol = await mount(drive)
        except Exception as exc:  # a broken filesystem must not take the bus down
            log.warning("mount of %s failed: %s", info.port, exc)
            info.state = f"mount failed: {exc}"
            return
        if vol is None:
            info.state = "configured (no filesystem)"
            return
        drive.volume = vol
        self.volumes[info.port] = vol
        self.core._notify("mount", info)

    def volume(self, port: str):
        vol = self.volumes.get(port)
        if vol is None:
            raise FileNotFoundError(f"nothing mounted on port {port}")
        return vol

    async def listdir(self, port: str, path: str = "/"):
        return await self.volume(port).listdir(path)

    async def read_file(self, port: str, path: str) -> bytes:
        return await self.volume(port).read(path)

    async def write_file(self, port: str, path: str, data: bytes) -> None:
        await self.volume(port).write(path, data)

    async def copy(self, src_port: str, src: str, dst_port: str, dst: str) -> int:
        data = await self.read_file(src_port, src)
        await self.write_file(dst_port, dst, data)
        return len(data)

    async def eject(self, port: str) -> None:
        """Unmount (flushes FAT and the device cache); the device stays attached."""
        vol = self.volumes.pop(port, None)
        info = self.core.devices.get(port)
        if info is not None and isinstance(info.driver, MassStorageDriver):
            info.driver.volume = None
        if vol is not None:
            await vol.unmount()
