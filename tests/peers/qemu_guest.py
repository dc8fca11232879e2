"""A tiny Linux guest in QEMU, driven over its serial console (reusable test fixture).

Usage (asyncio)::

    from tests.peers.qemu_guest import QemuGuest, qemu_available

    guest = QemuGuest(extra_args=["-chardev", "socket,id=ur,host=127.0.0.1,port=P,server=on,wait=off",
                                  "-device", "usb-redir,chardev=ur,bus=ehci.0"])
    await guest.start()                        # boots; returns when the guest shell answers
    rc, out = await guest.run("ls /dev/sd*")   # one shell command, its exit code and output
    await guest.wait_for_command("test -b /dev/sda", timeout=30)   # poll until rc == 0
    await guest.stop()

* The initramfs (busybox-static + the USB/HID/storage/FAT modules of the installed Debian kernel,
  resolved through modules.dep, decompressed if .ko.xz/.ko.zst) is built once into a cache dir
  (``$AIOSPICE_CACHE`` or ``~/.cache/aiospice``) and reused while kernel and script are unchanged.
* ``/bin/usbreset /dev/bus/usb/BBB/DDD`` (built with the host's ``gcc -static`` if present) makes
  the guest reset a USB device (USBDEVFS_RESET).
* The machine always has ``-device ich9-usb-ehci1,id=ehci`` (bus ``ehci.0``); pass usb-redir,
  SPICE etc. as ``extra_args``.
* Acceleration: ``$AIOSPICE_QEMU_ACCEL`` (``kvm``/``tcg``) wins; otherwise KVM is probed with a
  short functional boot (``/dev/kvm`` may answer and still not run a guest; the result is cached
  per machine boot in the cache dir) and TCG is used when the probe fails.
* The console: the guest's init runs a plain read-eval loop on ttyS0 with echo off; each command's
  output is followed by a marker line ``@@RC=<n>@@``.  Kernel messages are kept off the console
  (``quiet``); read them with ``run("dmesg")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
MODULES = ["ehci-pci", "uhci-hcd", "usb-storage", "sd_mod", "vfat", "nls_cp437", "nls_utf8",
           "nls_iso8859-1", "nls_ascii", "usbhid", "hid-generic", "evdev", "sr_mod", "isofs"]
READY = "@@READY@@"
RC_RE = re.compile(r"@@RC=(\d+)@@\r?\n")

# /bin/usbreset PATH: USBDEVFS_RESET on a /dev/bus/usb/BBB/DDD node (a port reset from the guest),
# built with the host's gcc -static when available.
USBRESET_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <linux/usbdevice_fs.h>
int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: usbreset /dev/bus/usb/BBB/DDD\n"); return 2; }
    int fd = open(argv[1], O_WRONLY);
    if (fd < 0) { perror("open"); return 1; }
    if (ioctl(fd, USBDEVFS_RESET, 0) < 0) { perror("USBDEVFS_RESET"); return 1; }
    return 0;
}
"""

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null; done
exec </dev/ttyS0 >/dev/ttyS0 2>&1
stty -echo
echo @@READY@@
while read -r line; do
  eval "$line"
  echo "@@RC=$?@@"
done
poweroff -f
"""


def kernel_version() -> str | None:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    return os.path.basename(kernels[-1])[len("vmlinuz-"):] if kernels else None


def qemu_available() -> str | None:
    """None if a guest can be booted here, else the reason why not."""
    if not os.path.exists(QEMU):
        return "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    if not os.path.exists(BUSYBOX) or "static" not in _file_kind(BUSYBOX):
        return "busybox-static missing"
    ver = kernel_version()
    if ver is None or not os.path.isdir(f"/lib/modules/{ver}"):
        return "no Debian kernel (apt-get install linux-image-amd64)"
    return None


def _file_kind(path: str) -> str:
    try:
        return subprocess.run(["file", "-L", path], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        # no `file`: a static binary has no PT_INTERP; good enough to check for the loader name
        with open(path, "rb") as f:
            return "static" if b"ld-linux" not in f.read(4096) else "dynamic"


def cache_dir() -> str:
    d = os.environ.get("AIOSPICE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "aiospice")
    os.makedirs(d, exist_ok=True)
    return d


def _resolve_modules(ver: str) -> list[str]:
    """Relative paths of MODULES and their dependencies, dependencies first."""
    base = f"/lib/modules/{ver}"
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    with open(f"{base}/modules.dep") as f:
        for line in f:
            mod, _, rest = line.partition(":")
            deps[mod] = rest.split()
            name = os.path.basename(mod).split(".ko")[0].replace("-", "_")
            by_name[name] = mod
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in deps.get(mod, []):
            visit(d)
        order.append(mod)

    for name in MODULES:
        mod = by_name.get(name.replace("-", "_"))
        if mod is not None:  # absent = built in (or not built at all)
            visit(mod)
    return order


def _read_module(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(raw)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    if path.endswith(".gz"):
        return gzip.decompress(raw)
    return raw


def build_initramfs() -> str:
    """Build (or reuse) the initramfs; returns its path."""
    ver = kernel_version()
    assert ver is not None
    mods = _resolve_modules(ver)
    key = hashlib.sha256(("\n".join([ver, INIT, USBRESET_C, *mods])).encode()).hexdigest()[:16]
    out = os.path.join(cache_dir(), f"initramfs-{ver}-{key}.cpio.gz")
    if os.path.exists(out):
        return out
    with tempfile.TemporaryDirectory() as root:
        for d in ("bin", "sbin", "proc", "sys", "dev", "mnt", "tmp", "lib/modules"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        shutil.copy(BUSYBOX, os.path.join(root, "bin/busybox"))
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for a in applets:
            link = os.path.join(root, "bin", a)
            if not os.path.exists(link):
                os.symlink("busybox", link)
        names = []
        for mod in mods:
            name = os.path.basename(mod).split(".ko")[0] + ".ko"
            with open(os.path.join(root, "lib/modules", name), "wb") as f:
                f.write(_read_module(f"/lib/modules/{ver}/{mod}"))
            names.append(name)
        with open(os.path.join(root, "modules.order"), "w") as f:
            f.write("\n".join(names) + "\n")
        gcc = shutil.which("gcc")
        if gcc:
            src = os.path.join(root, "usbreset.c")
            with open(src, "w") as f:
                f.write(USBRESET_C)
            subprocess.run([gcc, "-static", "-O2", "-o", os.path.join(root, "bin/usbreset"), src],
                           check=False, capture_output=True)
            os.unlink(src)
        init = os.path.join(root, "init")
        with open(init, "w") as f:
            f.write(INIT)
        os.chmod(init, os.stat(init).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        listing = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=listing,
                              capture_output=True, check=True).stdout
    tmp = out + f".{os.getpid()}.tmp"
    with gzip.open(tmp, "wb", compresslevel=1) as f:
        f.write(cpio)
    os.replace(tmp, out)
    return out


_ACCEL: str | None = None


async def pick_accel() -> str:
    """``kvm`` if a short functional KVM boot reaches the shell, else ``tcg`` (cached per process)."""
    global _ACCEL
    if os.environ.get("AIOSPICE_QEMU_ACCEL"):
        return os.environ["AIOSPICE_QEMU_ACCEL"]
    if _ACCEL is None:
        _ACCEL = "tcg"
        marker = os.path.join(cache_dir(), f"accel-{_boot_id()}")
        with contextlib.suppress(OSError), open(marker) as f:
            _ACCEL = f.read().strip() or "tcg"
            return _ACCEL
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            probe = QemuGuest(accel="kvm")
            try:
                await probe.start(timeout=20)
                rc, out = await probe.run("echo probe-ok", timeout=10)
                if rc == 0 and "probe-ok" in out:
                    _ACCEL = "kvm"
            except (TimeoutError, RuntimeError, OSError):
                pass
            finally:
                await probe.stop()
        with contextlib.suppress(OSError), open(marker, "w") as f:
            f.write(_ACCEL)
    return _ACCEL


def _boot_id() -> str:
    """The probe result holds for one boot of this machine."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


class QemuGuest:
    """One QEMU process running the tiny guest (see the module docstring)."""

    def __init__(self, extra_args: list[str] | None = None, *, memory_mb: int = 256, accel: str | None = None,
                 append: str = "") -> None:
        self.extra_args = list(extra_args or [])
        self.memory_mb = memory_mb
        self.accel = accel
        self.append = append
        self.proc: asyncio.subprocess.Process | None = None
        self.console = io.StringIO()   # everything the guest printed (for failure messages)
        self._buf = ""
        self._lock = asyncio.Lock()
        # QEMU's own warnings go to a file, never into the serial stream: a warning printed in the
        # middle of a console marker would otherwise make the marker unrecognisable.
        self.stderr_log = tempfile.NamedTemporaryFile(prefix="qemu-stderr-", suffix=".log", delete=False)

    def qemu_messages(self) -> str:
        """What QEMU itself printed on stderr so far."""
        try:
            with open(self.stderr_log.name, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def command_line(self, initrd: str) -> list[str]:
        ver = kernel_version()
        return [QEMU, "-M", "pc", "-accel", self.accel or "tcg", "-m", str(self.memory_mb), "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-monitor", "none",
                "-no-reboot", "-kernel", f"/boot/vmlinuz-{ver}", "-initrd", initrd,
                "-append", f"console=ttyS0 quiet loglevel=1 panic=-1 consoleblank=0 {self.append}".strip(),
                "-device", "ich9-usb-ehci1,id=ehci", *self.extra_args]

    async def start(self, timeout: float = 90) -> None:
        """Boot and wait for the shell.  Raises TimeoutError (with the console log) if it never comes."""
        if self.accel is None:
            self.accel = await pick_accel()
        initrd = await asyncio.to_thread(build_initramfs)
        self.proc = await asyncio.create_subprocess_exec(
            *self.command_line(initrd), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self.stderr_log)
        await self._read_until(READY, timeout)

    async def _read_until(self, marker: str | re.Pattern, timeout: float) -> re.Match | str:
        assert self.proc is not None and self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if isinstance(marker, str):
                i = self._buf.find(marker)
                if i >= 0:
                    before = self._buf[:i]
                    self._buf = self._buf[i + len(marker):]
                    return before
            else:
                m = marker.search(self._buf)
                if m:
                    self._buf = self._buf[m.end():]
                    return m
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"guest: no {marker!r} within {timeout}s; console:\n{self.console.getvalue()[-3000:]}"
                                   f"\nQEMU stderr:\n{self.qemu_messages()}")
            try:
                chunk = await asyncio.wait_for(self.proc.stdout.read(65536), left)
            except TimeoutError:
                continue
            if not chunk:
                raise RuntimeError(f"QEMU exited ({self.proc.returncode}); console:\n{self.console.getvalue()[-3000:]}")
            text = chunk.decode("utf-8", "replace")
            self.console.write(text)
            self._buf += text

    async def run(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Run one shell command line in the guest; returns (exit code, output)."""
        assert self.proc is not None and self.proc.stdin is not None
        if "\n" in command:
            raise ValueError("one line only")
        async with self._lock:
            self._buf = ""
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            start = len(self.console.getvalue())
            m = await self._read_until(RC_RE, timeout)
            assert isinstance(m, re.Match)
            out = self.console.getvalue()[start:]
            out = out[:out.rfind("@@RC=")]
            return int(m.group(1)), out.replace("\r", "")

    async def check(self, command: str, timeout: float = 60) -> str:
        """:meth:`run` that raises AssertionError on a non-zero exit code."""
        rc, out = await self.run(command, timeout)
        if rc != 0:
            raise AssertionError(f"guest command failed ({rc}): {command}\n{out}")
        return out

    async def wait_for_command(self, command: str, timeout: float = 30, interval: float = 0.5) -> str:
        """Repeat ``command`` until it succeeds; returns its output."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rc, out = await self.run(command, timeout=max(5.0, deadline - loop.time()))
            if rc == 0:
                return out
            if loop.time() > deadline:
                _, dmesg = await self.run("dmesg | tail -40")
                raise TimeoutError(f"guest: `{command}` never succeeded; last output:\n{out}\ndmesg:\n{dmesg}")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Power off (kill) the guest."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 30)
        self.stderr_log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.stderr_log.name)

    async def __aenter__(self) -> QemuGuest:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
