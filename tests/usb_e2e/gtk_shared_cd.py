"""spice-gtk (SpiceClientGLib) redirects its emulated USB CD-ROM made from an ISO file.

Run with /usr/bin/python3: ``gtk_shared_cd.py HOST PORT PASSWORD ISO SECONDS``.  The USB device
manager is created before any usbredir channel connects; once a usbredir channel is open the shared
CD is created and redirected.  Prints one JSON object per event on stdout; exits after SECONDS or
when stdin closes.
"""

import json
import sys

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402


def say(**kw):
    print(json.dumps(kw), flush=True)


def main() -> int:
    host, port, password, iso, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
    loop = GLib.MainLoop()
    session = SpiceClientGLib.Session()
    session.set_property("host", host)
    session.set_property("port", port)
    if password:
        session.set_property("password", password)
    manager = SpiceClientGLib.UsbDeviceManager.get(session)
    manager.set_property("auto-connect", False)
    state = {"created": False}
    channels = []

    def connected(mgr, res, _data=None):
        try:
            mgr.connect_device_finish(res)
            say(event="redirected")
        except GLib.Error as err:
            say(event="redirect-failed", error=err.message)

    def device_added(mgr, dev):
        is_cd = mgr.is_device_shared_cd(dev)
        say(event="device-added", cd=bool(is_cd), description=dev.get_description(None))
        if is_cd:
            mgr.connect_device_async(dev, None, connected, None)

    def device_error(mgr, dev, err):
        say(event="device-error", error=err.message)

    GObject.Object.connect(manager, "device-added", device_added)
    GObject.Object.connect(manager, "device-error", device_error)

    def channel_event(channel, event):
        name = type(channel).__name__
        say(event="channel", channel=name, id=channel.get_property("channel-id"), what=int(event))
        if isinstance(channel, SpiceClientGLib.UsbredirChannel) and event == SpiceClientGLib.ChannelEvent.OPENED and not state["created"]:
            state["created"] = True
            ok = manager.create_shared_cd_device(iso)
            say(event="shared-cd-created", ok=bool(ok))

    def channel_new(_session, channel):
        channels.append(channel)
        GObject.Object.connect(channel, "channel-event", channel_event)
        if not isinstance(channel, SpiceClientGLib.MainChannel):
            channel.connect()

    GObject.Object.connect(session, "channel-new", channel_new)
    if not session.connect():
        say(event="connect-failed")
        return 1
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.IN | GLib.IOCondition.HUP, lambda *a: (loop.quit(), False)[1])
    loop.run()
    session.disconnect()
    say(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
