"""`aiospice usb share` against QEMU's usb-redir (the reference usb-guest) with a Linux guest."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import pytest
from urhost_helpers import (
    ROOT,
    fat_read,
    free_port,
    fsck_clean,
    kill_share,
    make_fat_image,
    redir_args,
    sha256,
    start_share,
    stop_share,
)

from tests.peers.qemu_guest import QemuGuest

pytestmark = [pytest.mark.peer, pytest.mark.timeout(240)]


async def test_storage_share_to_qemu(tmp_path, need_qemu):
    payload = os.urandom(3 << 20) + b"tail"
    img = str(tmp_path / "stick.img")
    make_fat_image(img, 32, {"DATA.BIN": payload})
    port = free_port()
    guest = QemuGuest(redir_args(port))
    share = None
    try:
        await guest.start()
        share = await start_share("--to", f"127.0.0.1:{port}", "--storage", img)
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        await guest.check("mount -t vfat /dev/sda /mnt")
        out = await guest.check("sha256sum /mnt/DATA.BIN")
        assert out.split()[0] == sha256(payload)
        await guest.check("dd if=/dev/urandom of=/mnt/NEW.BIN bs=4096 count=300 2>/dev/null")
        written = (await guest.check("sha256sum /mnt/NEW.BIN")).split()[0]
        await guest.check("umount /mnt")
        rc, log = await stop_share(share)
        assert rc == 0, log
        assert "device_disconnect" in log or "detached" in log, log
        # the guest saw the device go away
        await guest.wait_for_command("! test -b /dev/sda", timeout=30)
    finally:
        await kill_share(share)
        await guest.stop()
    ok, report = fsck_clean(img)
    assert ok, report
    assert sha256(fat_read(img, "NEW.BIN")) == written
    assert fat_read(img, "DATA.BIN") == payload


async def test_keyboard_key_reaches_guest(need_qemu):
    from usbredir.devices.hid import HidKeyboard
    from usbredir.host import serve_stream

    port = free_port()
    guest = QemuGuest(redir_args(port))
    kbd = HidKeyboard()
    stop = asyncio.Event()
    hosts = []
    session = None
    try:
        await guest.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = asyncio.create_task(serve_stream(kbd, reader, writer, stop=stop, on_host=hosts.append))
        out = await guest.wait_for_command("grep -l 'aiospice keyboard' /sys/class/input/event*/device/name",
                                           timeout=60)
        event = out.strip().splitlines()[0].split("/")[4]
        assert event.startswith("event")
        devices = await guest.check("cat /proc/bus/input/devices")
        assert "aiospice keyboard" in devices
        # keep one fd open on the evdev node: usbhid starts polling (start_interrupt_receiving)
        await guest.check(f"dd if=/dev/input/{event} of=/tmp/ev bs=24 count=6 2>/dev/null &")
        for _ in range(200):
            if hosts and 0x81 in hosts[0]._streams:
                break
            await asyncio.sleep(0.05)
        assert 0x81 in hosts[0]._streams, "guest never started interrupt receiving"
        # QEMU's EHCI + usb-redir stop and restart receiving once right after the first poll and
        # drop what they had buffered (seen here); like a person, start typing a moment later
        await asyncio.sleep(0.5)
        kbd.type_text("a")
        await guest.wait_for_command("test $(stat -c %s /tmp/ev) -ge 144", timeout=30)
        dump = await guest.check("hexdump -v -e '24/1 \"%02x \" \"\\n\"' /tmp/ev")
        events = [bytes.fromhex(line.replace(" ", ""))[16:] for line in dump.split("\n") if line.strip()]
        key_a = [(e[0], e[2], e[4]) for e in events]  # (type, code, value)
        assert (1, 30, 1) in key_a and (1, 30, 0) in key_a, dump   # EV_KEY KEY_A press + release
    finally:
        stop.set()
        if session is not None:
            await asyncio.wait_for(session, 15)
        await guest.stop()


async def test_storage_share_spice_to_qemu(tmp_path, need_qemu):
    """`aiospice usb share spice://` against QEMU's own SPICE server (libspice-server)."""
    payload = os.urandom(1 << 20)
    img = str(tmp_path / "stick.img")
    make_fat_image(img, 16, {"DATA.BIN": payload})
    secret = tmp_path / "pw"
    secret.write_text("s3cret")
    port = free_port()
    guest = QemuGuest(["-object", f"secret,id=s0,file={secret}",
                       "-spice", f"port={port},addr=127.0.0.1,password-secret=s0",
                       "-chardev", "spicevmc,name=usbredir,id=ur0",
                       "-device", "usb-redir,chardev=ur0,id=redir0,bus=ehci.0"])
    share = None
    try:
        await guest.start()
        # wrong password: refused, clear message, exit code 1
        bad = await start_share(f"spice://127.0.0.1:{port}", "--password", "wrong", "--storage", img)
        out, _ = await asyncio.wait_for(bad.communicate(), 30)
        assert bad.returncode == 1 and b"PERMISSION_DENIED" in out, out
        env_share = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spice.cli", "usb", "share", f"spice://127.0.0.1:{port}", "--storage", img,
            cwd=ROOT, env={**os.environ, "AIOSPICE_PASSWORD": "s3cret"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        share = env_share
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        await guest.check("mount -t vfat /dev/sda /mnt")
        assert (await guest.check("sha256sum /mnt/DATA.BIN")).split()[0] == sha256(payload)
        await guest.check("echo written-through-spice > /mnt/SPICE.TXT")
        await guest.check("dd if=/dev/zero of=/mnt/ZERO.BIN bs=65536 count=8 2>/dev/null && umount /mnt")
        rc, log = await stop_share(share)
        assert rc == 0, log
        assert "usbredir channel 0 linked (lz4 on)" in log, log
        sent_lz4, got_lz4 = map(int, re.search(r"sent \d+ data \+ (\d+) lz4, received \d+ data \+ (\d+) lz4", log).groups())
        assert sent_lz4 > 0 and got_lz4 > 0, log  # LZ4 COMPRESSED_DATA used both ways
        await guest.wait_for_command("! test -b /dev/sda", timeout=30)
    finally:
        await kill_share(share)
        await guest.stop()
    assert fsck_clean(img)[0]
    assert fat_read(img, "SPICE.TXT") == b"written-through-spice\n"


async def test_pyusb_device_via_listen_to_qemu(tmp_path, need_qemu):
    """A PyusbDevice (pyusb over a virtual-device backend) served with --listen; QEMU connects."""
    import usb.core

    from usbredir.devices.pyusb_device import PyusbDevice
    from usbredir.devices.pyusb_virtual import VirtualBackend
    from usbredir.devices.storage import MassStorage
    from usbredir.share import StatusLine, share_tcp_listen

    payload = os.urandom(2 << 20)
    img = str(tmp_path / "stick.img")
    make_fat_image(img, 16, {"DATA.BIN": payload})
    stick = MassStorage(img)
    backend = VirtualBackend(stick, asyncio.get_running_loop())
    dev = PyusbDevice(await asyncio.to_thread(usb.core.find, backend=backend))
    port = free_port()
    stop = asyncio.Event()
    status = StatusLine(quiet=True)
    server = asyncio.create_task(share_tcp_listen(dev, "127.0.0.1", port, stop, status))
    guest = QemuGuest(redir_args(port, server=False))
    try:
        await guest.start()
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        await guest.check("mount -t vfat /dev/sda /mnt")
        assert (await guest.check("sha256sum /mnt/DATA.BIN")).split()[0] == sha256(payload)
        await guest.check("echo via-pyusb > /mnt/PYUSB.TXT && umount /mnt")
        assert backend.calls > 50  # the transfers really went through pyusb
        stop.set()
        await asyncio.wait_for(server, 20)
    finally:
        stop.set()
        await guest.stop()
        await stick.close()
    assert fsck_clean(img)[0]
    assert fat_read(img, "PYUSB.TXT") == b"via-pyusb\n"


async def test_keyboard_cli_type_text(need_qemu):
    """`aiospice usb share --to ... --keyboard --type-text hi`: the letters arrive as key events."""
    port = free_port()
    guest = QemuGuest(redir_args(port))
    share = None
    try:
        await guest.start()
        # the logger waits for the keyboard and opens its evdev node as soon as it appears
        # (2 keys x (MSC_SCAN + KEY + SYN) x (press + release) = 12 events of 24 bytes)
        await guest.check("(until f=$(grep -l 'aiospice keyboard' /sys/class/input/event*/device/name"
                          " 2>/dev/null); do usleep 20000; done; e=$(echo $f | cut -d/ -f5);"
                          " dd if=/dev/input/$e of=/tmp/ev bs=24 count=12) >/dev/null 2>&1 &")
        share = await start_share("--to", f"127.0.0.1:{port}", "--keyboard", "--type-text", "hi",
                                  "--type-delay", "2")
        await guest.wait_for_command("test $(stat -c %s /tmp/ev) -ge 288", timeout=30)
        dump = await guest.check("hexdump -v -e '24/1 \"%02x \" \"\\n\"' /tmp/ev")
        keys = [(e[2], e[4]) for e in (bytes.fromhex(line.replace(" ", ""))[16:] for line in dump.split("\n")
                                       if line.strip()) if e[0] == 1]
        assert keys == [(35, 1), (35, 0), (23, 1), (23, 0)], dump  # KEY_H, KEY_I press/release
        rc, log = await stop_share(share)
        assert rc == 0 and "typed 2 characters" in log, log
    finally:
        await kill_share(share)
        await guest.stop()


def make_tls_dir(path) -> str:
    """ca-cert.pem, server-cert.pem, server-key.pem for 127.0.0.1 (QEMU's x509-dir layout)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aiospice test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "ca-cert.pem"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(path, "server-cert.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(path, "server-key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return str(path)


async def test_storage_share_spice_tls_to_qemu(tmp_path, need_qemu):
    """`aiospice usb share spice+tls://` with a CA file, against QEMU's SPICE TLS port."""
    payload = os.urandom(256 << 10)
    img = str(tmp_path / "stick.img")
    make_fat_image(img, 16, {"DATA.BIN": payload})
    x509 = make_tls_dir(tmp_path / "x509")
    port = free_port()
    guest = QemuGuest(["-spice", f"tls-port={port},addr=127.0.0.1,x509-dir={x509},disable-ticketing=on",
                       "-chardev", "spicevmc,name=usbredir,id=ur0",
                       "-device", "usb-redir,chardev=ur0,id=redir0,bus=ehci.0"])
    share = None
    try:
        await guest.start()
        share = await start_share(f"spice+tls://127.0.0.1:{port}", "--ca-file", f"{x509}/ca-cert.pem",
                                  "--storage", img + ",ro")
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        await guest.check("mount -t vfat -o ro /dev/sda /mnt")
        assert (await guest.check("sha256sum /mnt/DATA.BIN")).split()[0] == sha256(payload)
        await guest.check("umount /mnt")
        rc, log = await stop_share(share)
        assert rc == 0, log
    finally:
        await kill_share(share)
        await guest.stop()


async def test_two_devices_over_two_spice_usbredir_channels(tmp_path, need_qemu):
    """One usbredir channel per device: a stick and a keyboard through QEMU's SPICE server at once."""
    img = str(tmp_path / "stick.img")
    make_fat_image(img, 16, {"A.TXT": b"two channels\n"})
    port = free_port()
    guest = QemuGuest(["-spice", f"port={port},addr=127.0.0.1,disable-ticketing=on",
                       "-chardev", "spicevmc,name=usbredir,id=ur0", "-chardev", "spicevmc,name=usbredir,id=ur1",
                       "-device", "usb-redir,chardev=ur0,id=redir0,bus=ehci.0",
                       "-device", "usb-redir,chardev=ur1,id=redir1,bus=ehci.0"])
    share = None
    try:
        await guest.start()
        share = await start_share(f"spice://127.0.0.1:{port}", "--storage", img, "--keyboard")
        await guest.wait_for_command("test -b /dev/sda", timeout=60)
        await guest.wait_for_command("grep -q 'aiospice keyboard' /proc/bus/input/devices", timeout=60)
        await guest.check("mount -t vfat /dev/sda /mnt")
        assert (await guest.check("cat /mnt/A.TXT")) == "two channels\n"
        await guest.check("umount /mnt")
        rc, log = await stop_share(share)
        assert rc == 0, log
        assert "usbredir channel 0 linked" in log and "usbredir channel 1 linked" in log, log
        await guest.wait_for_command("! grep -q 'aiospice keyboard' /proc/bus/input/devices", timeout=30)
    finally:
        await kill_share(share)
        await guest.stop()


async def test_mouse_and_tablet_reach_guest(need_qemu):
    """The boot mouse gives EV_REL motion, the tablet EV_ABS positions, in the Linux guest."""
    from usbredir.devices.hid import HidMouse, HidTablet
    from usbredir.host import serve_stream

    p1, p2 = free_port(), free_port()
    guest = QemuGuest(["-chardev", f"socket,id=ur1,host=127.0.0.1,port={p1},server=on,wait=off,nodelay=on",
                       "-device", "usb-redir,chardev=ur1,id=redir1,bus=ehci.0",
                       "-chardev", f"socket,id=ur2,host=127.0.0.1,port={p2},server=on,wait=off,nodelay=on",
                       "-device", "usb-redir,chardev=ur2,id=redir2,bus=ehci.0"])
    mouse, tablet = HidMouse(), HidTablet()
    stop = asyncio.Event()
    sessions = []
    try:
        await guest.start()
        hosts: dict = {}
        for dev, port in ((mouse, p1), (tablet, p2)):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            sessions.append(asyncio.create_task(
                serve_stream(dev, r, w, stop=stop, on_host=lambda h, d=dev: hosts.__setitem__(d, h))))
        logs = {}
        for dev, name in ((mouse, "aiospice mouse"), (tablet, "aiospice tablet")):
            out = await guest.wait_for_command(f"grep -l '{name}' /sys/class/input/event*/device/name", timeout=60)
            ev = out.strip().splitlines()[0].split("/")[4]
            logs[dev] = f"/tmp/{ev}"
            await guest.check(f"dd if=/dev/input/{ev} of=/tmp/{ev} bs=24 count=3 2>/dev/null &")
        for dev in (mouse, tablet):
            async with asyncio.timeout(30):
                while not (dev in hosts and 0x81 in hosts[dev]._streams):
                    await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        mouse.move(5, -3)
        tablet.move_to(0x4000, 0x2000)
        got = {}
        for dev, path in logs.items():
            await guest.wait_for_command(f"test $(stat -c %s {path}) -ge 72", timeout=30)
            dump = await guest.check(f"hexdump -v -e '24/1 \"%02x \" \"\\n\"' {path}")
            evs = [bytes.fromhex(line.replace(" ", ""))[16:] for line in dump.split("\n") if line.strip()]
            got[dev] = {(e[0] | e[1] << 8, e[2] | e[3] << 8, int.from_bytes(e[4:8], "little", signed=True))
                        for e in evs}
        assert {(2, 0, 5), (2, 1, -3)} <= got[mouse], got[mouse]            # EV_REL REL_X / REL_Y
        assert {(3, 0, 0x4000), (3, 1, 0x2000)} <= got[tablet], got[tablet]  # EV_ABS ABS_X / ABS_Y
    finally:
        stop.set()
        for t in sessions:
            await asyncio.wait_for(t, 15)
        await guest.stop()
