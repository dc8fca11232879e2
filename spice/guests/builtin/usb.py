"""USB in the built-in guest: G's :class:`~usbredir.guest.subsystem.UsbSubsystem` attached to a
:class:`~spice.guests.builtin.BuiltinGuest`.

``attach_usb(guest, usb)`` installs the shell commands and the device panel
(:func:`usbredir.guest.shellcmds.install`: ``lsusb``, ``ls``, ``cat``, ``cp``, ``write``, ``rm``,
``eject``), adds a RAM folder ``ram:`` that ``ls``, ``cat``, ``cp`` and ``rm`` also reach
(``cp 1.1:/A.TXT ram:/A.TXT``, ``cp ram:/A.TXT 1.1:/B.TXT``), and routes HID boot reports of redirected keyboards and mice into the guest like its own
input: key usages become set-1 scancodes for ``guest.key_event``, mouse reports become
``pointer_motion`` / ``pointer_button``.  Returns a function that undoes all of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from usbredir.guest.hid import HidBootDriver
from usbredir.guest.shellcmds import install
from usbredir.guest.subsystem import UsbSubsystem

from ..base import MouseButton

E0 = 0x100

# HID keyboard usage (page 7) -> PC/AT set-1 make code (E0 keys as 0x100 | code)
USAGE_TO_SET1: dict[int, int] = dict(zip(range(0x04, 0x1E), (
    0x1E, 0x30, 0x2E, 0x20, 0x12, 0x21, 0x22, 0x23, 0x17, 0x24, 0x25, 0x26, 0x32,
    0x31, 0x18, 0x19, 0x10, 0x13, 0x1F, 0x14, 0x16, 0x2F, 0x11, 0x2D, 0x15, 0x2C), strict=True))
USAGE_TO_SET1.update({0x1E + i: 0x02 + i for i in range(10)})  # 1..9, 0
USAGE_TO_SET1.update({
    0x28: 0x1C, 0x29: 0x01, 0x2A: 0x0E, 0x2B: 0x0F, 0x2C: 0x39, 0x2D: 0x0C, 0x2E: 0x0D, 0x2F: 0x1A,
    0x30: 0x1B, 0x31: 0x2B, 0x32: 0x2B, 0x33: 0x27, 0x34: 0x28, 0x35: 0x29, 0x36: 0x33, 0x37: 0x34,
    0x38: 0x35, 0x39: 0x3A, 0x44: 0x57, 0x45: 0x58, 0x46: E0 | 0x37, 0x47: 0x46, 0x49: E0 | 0x52,
    0x4A: E0 | 0x47, 0x4B: E0 | 0x49, 0x4C: E0 | 0x53, 0x4D: E0 | 0x4F, 0x4E: E0 | 0x51, 0x4F: E0 | 0x4D,
    0x50: E0 | 0x4B, 0x51: E0 | 0x50, 0x52: E0 | 0x48, 0x53: 0x45, 0x54: E0 | 0x35, 0x55: 0x37,
    0x56: 0x4A, 0x57: 0x4E, 0x58: E0 | 0x1C, 0x62: 0x52, 0x63: 0x53, 0x64: 0x56,
})
USAGE_TO_SET1.update({0x3A + i: 0x3B + i for i in range(10)})  # F1..F10
USAGE_TO_SET1.update(dict(zip(range(0x59, 0x62), (0x4F, 0x50, 0x51, 0x4B, 0x4C, 0x4D, 0x47, 0x48, 0x49),
                              strict=True)))  # keypad 1..9
# modifier byte bit -> set-1 code: LCtrl LShift LAlt LGUI RCtrl RShift RAlt RGUI
MODIFIER_SET1 = (0x1D, 0x2A, 0x38, E0 | 0x5B, E0 | 0x1D, 0x36, E0 | 0x38, E0 | 0x5C)
# HID button bit -> (SPICE button, SPICE mask bit)
HID_BUTTONS = ((MouseButton.LEFT, MouseButton.MASK_LEFT), (MouseButton.RIGHT, MouseButton.MASK_RIGHT),
               (MouseButton.MIDDLE, MouseButton.MASK_MIDDLE))


class HidBridge:
    """Turns one HID boot device's reports into guest key / pointer events."""

    def __init__(self, guest, kind: str) -> None:
        self.guest = guest
        self.kind = kind
        self.keys: set[int] = set()  # set-1 codes held
        self.buttons = 0  # SPICE mask

    def report(self, report: bytes) -> None:
        if self.kind == "keyboard" and len(report) >= 3:
            self._keyboard(report)
        elif self.kind == "mouse" and len(report) >= 3:
            self._mouse(report)

    def _keyboard(self, report: bytes) -> None:
        if all(k == 0x01 for k in report[2:8]):  # ErrorRollOver: keep the previous state
            return
        codes = {MODIFIER_SET1[b] for b in range(8) if report[0] >> b & 1}
        codes |= {USAGE_TO_SET1[u] for u in report[2:8] if u in USAGE_TO_SET1}
        for code in sorted(self.keys - codes):
            self.guest.key_event(code, False)
        # modifiers first so that a shifted key arriving in the same report comes out shifted
        for code in sorted(codes - self.keys, key=lambda c: c not in MODIFIER_SET1):
            self.guest.key_event(code, True)
        self.keys = codes

    def _mouse(self, report: bytes) -> None:
        dx = int.from_bytes(report[1:2], "little", signed=True)
        dy = int.from_bytes(report[2:3], "little", signed=True)
        mask = 0
        for bit, (_, m) in enumerate(HID_BUTTONS):
            if report[0] >> bit & 1:
                mask |= m
        if dx or dy:
            self.guest.pointer_motion(dx, dy, self.buttons)
        for button, m in HID_BUTTONS:
            if (mask ^ self.buttons) & m:
                self.buttons ^= m
                self.guest.pointer_button(button, bool(mask & m), self.buttons)
        wheel = int.from_bytes(report[3:4], "little", signed=True) if len(report) >= 4 else 0
        if wheel:
            button = MouseButton.UP if wheel > 0 else MouseButton.DOWN
            for _ in range(min(abs(wheel), 10)):
                self.guest.pointer_button(button, True, self.buttons)
                self.guest.pointer_button(button, False, self.buttons)

    def release(self) -> None:
        for code in sorted(self.keys):
            self.guest.key_event(code, False)
        self.keys.clear()
        for button, m in HID_BUTTONS:
            if self.buttons & m:
                self.buttons &= ~m
                self.guest.pointer_button(button, False, self.buttons)


RAM_PREFIX = "ram:"
RAM_LIMIT = 64 << 20  # bytes the RAM folder holds


class RamFolder:
    """A flat in-memory folder (the guest's RAM disk) reachable as ``ram:NAME`` in the shell."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    @staticmethod
    def name(spec: str) -> str:
        name = spec[len(RAM_PREFIX):].strip("/")
        if not name or "/" in name:
            raise FileNotFoundError(f"{spec}: the RAM folder is flat (ram:/NAME)")
        return name.upper()

    def read(self, spec: str) -> bytes:
        try:
            return self.files[self.name(spec)]
        except KeyError:
            raise FileNotFoundError(f"{spec}: no such file") from None

    def write(self, spec: str, data: bytes) -> None:
        name = self.name(spec)
        if sum(len(v) for k, v in self.files.items() if k != name) + len(data) > RAM_LIMIT:
            raise OSError(f"RAM folder full ({RAM_LIMIT >> 20} MiB)")
        self.files[name] = bytes(data)


def _install_ram(guest, usb: UsbSubsystem, ram: RamFolder) -> Callable[[], None]:
    """Wrap G's ls/cat/cp/rm so that ``ram:`` paths reach the RAM folder (others pass through)."""
    shell = guest.shell
    originals = {name: shell.commands[name] for name in ("ls", "cat", "cp", "rm") if name in shell.commands}

    async def delegate(name: str, argv: list[str], out) -> None:
        r = originals[name].handler(argv, out)
        if inspect.isawaitable(r):
            await r

    def stick_spec(spec: str) -> tuple[str, str]:
        port, sep, path = spec.partition(":")
        if sep and port and port[0].isdigit():
            return port, path or "/"
        if not usb.volumes:
            raise FileNotFoundError("no USB filesystem mounted")
        return sorted(usb.volumes)[0], spec

    async def read_any(spec: str) -> bytes:
        if spec.startswith(RAM_PREFIX):
            return ram.read(spec)
        return await usb.read_file(*stick_spec(spec))

    async def ls(argv, out):
        if len(argv) > 1 and argv[1].startswith(RAM_PREFIX):
            for name, data in sorted(ram.files.items()):
                out(f"- {len(data):>8}  {name}")
            return
        await delegate("ls", argv, out)

    async def cat(argv, out):
        if len(argv) > 1 and argv[1].startswith(RAM_PREFIX):
            for line in ram.read(argv[1]).decode("utf-8", "replace").splitlines()[:200]:
                out(line)
            return
        await delegate("cat", argv, out)

    async def cp(argv, out):
        if len(argv) == 3 and any(a.startswith(RAM_PREFIX) for a in argv[1:]):
            data = await read_any(argv[1])
            if argv[2].startswith(RAM_PREFIX):
                ram.write(argv[2], data)
            else:
                await usb.write_file(*stick_spec(argv[2]), data)
            out(f"copied {len(data)} bytes")
            return
        await delegate("cp", argv, out)

    async def rm(argv, out):
        if len(argv) == 2 and argv[1].startswith(RAM_PREFIX):
            ram.files.pop(ram.name(argv[1]), None)
            return
        await delegate("rm", argv, out)

    wrappers = {"ls": ls, "cat": cat, "cp": cp, "rm": rm}
    for name, cmd in originals.items():
        shell.register(name, wrappers[name], cmd.help + " (ram:/NAME = the RAM folder)")

    def uninstall() -> None:
        for name, cmd in originals.items():
            shell.register(name, cmd.handler, cmd.help)

    return uninstall


def attach_usb(guest, usb: UsbSubsystem) -> Callable[[], None]:
    """Shell commands, device panel and HID input for ``guest``; returns the uninstall function."""
    uninstall_shell = install(guest, usb)
    guest.ram_folder = RamFolder()
    uninstall_ram = _install_ram(guest, usb, guest.ram_folder)
    bridges: dict[str, HidBridge] = {}

    def on_event(what: str, info) -> None:
        drv = info.driver
        if what == "configured" and isinstance(drv, HidBootDriver) and drv.kind in ("keyboard", "mouse"):
            bridge = bridges[info.port] = HidBridge(guest, drv.kind)
            drv.on_report = lambda _drv, report: bridge.report(bytes(report))
        elif what == "remove":
            bridge = bridges.pop(info.port, None)
            if bridge is not None:
                bridge.release()

    usb.core.listeners.append(on_event)

    def uninstall() -> None:
        if on_event in usb.core.listeners:
            usb.core.listeners.remove(on_event)
        for bridge in bridges.values():
            bridge.release()
        bridges.clear()
        uninstall_ram()
        uninstall_shell()

    return uninstall
