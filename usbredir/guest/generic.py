"""Fallback driver: claims any device no class driver wants and describes its descriptors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from usbredir.guest.core import UsbDeviceInfo

if TYPE_CHECKING:
    from usbredir.guest.core import UsbCore

SPEED_NAMES = {0: "low", 1: "full", 2: "high", 3: "super"}
TYPE_NAMES = {0: "control", 1: "isochronous", 2: "bulk", 3: "interrupt"}


def describe(info: UsbDeviceInfo) -> str:
    """A short lsusb -v style text of the device's descriptors."""
    dd = info.device_descriptor
    lines = [f"Port {info.port}: ID {info.vid:04x}:{info.pid:04x} {info.manufacturer} {info.product}".rstrip(),
             f"  speed {SPEED_NAMES.get(int(info.speed), '?')}, address {info.address}, state {info.state}"]
    if len(dd) >= 18:
        lines.append(f"  bcdUSB {dd[3]:x}.{dd[2]:02x} class {dd[4]:02x}/{dd[5]:02x}/{dd[6]:02x} maxp0 {dd[7]}"
                     f" serial {info.serial!r}")
    for intf in info.interfaces:
        lines.append(f"  interface {intf.number} alt {intf.alt}: class {intf.cls:02x}/{intf.subclass:02x}/"
                     f"{intf.protocol:02x}")
        for ep in intf.endpoints:
            lines.append(f"    ep {ep.address:#04x} {TYPE_NAMES[ep.type]} maxp {ep.maxp} interval {ep.interval}")
    return "\n".join(lines)


class GenericDriver:
    name = "generic"

    @classmethod
    def probe(cls, core: UsbCore, info: UsbDeviceInfo) -> GenericDriver:
        return cls(info)

    def __init__(self, info: UsbDeviceInfo) -> None:
        self.info = info

    def describe(self) -> str:
        return describe(self.info)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
