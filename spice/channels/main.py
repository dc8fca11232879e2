"""Main channel: MAIN_INIT, CHANNELS_LIST, mouse modes, NAME/UUID, agent tokens."""

from __future__ import annotations

import time

from spice.proto import main as pm
from spice.proto.enums import ChannelType
from spice.proto.headers import Message
from spice.proto.main import MainCap, MainMsg, MainMsgc, MouseMode

from .base import Channel, ChannelError, log

AGENT_TOKENS = 10
#: the "guest RAM" spice-gtk sizes its GLZ window from (half of it, at least 12 MiB; spice-session.c): QEMU's
#: default qxl device (64 MiB), so the window holds 32 MiB of images to reference (glzref)
RAM_HINT = 64 << 20


class MainChannel(Channel):
    channel_type = ChannelType.MAIN
    name = "main"
    max_message = 64 * 1024
    pings = True
    direct_read = True  # (small control messages: parsed in the socket's callback, no read task wake-up)
    known_messages = frozenset(MainMsgc)

    @classmethod
    def server_caps(cls, server) -> frozenset[int]:
        return frozenset({MainCap.NAME_AND_UUID, MainCap.AGENT_CONNECTED_TOKENS})

    def start(self) -> None:
        s = self.session
        guest = self.server.guest
        self.send(MainMsg.INIT, pm.build_init(
            session_id=s.id, display_channels_hint=1, supported_mouse_modes=int(s.supported_mouse_modes),
            current_mouse_mode=int(s.mouse_mode), agent_connected=False, agent_tokens=AGENT_TOKENS,
            multi_media_time=int(time.monotonic() * 1000), ram_hint=RAM_HINT))
        if MainCap.NAME_AND_UUID in self.client_caps:
            self.send(MainMsg.NAME, pm.build_name(getattr(guest, "name", None) or self.server.config.name))
            self.send(MainMsg.UUID, bytes(getattr(guest, "uuid", bytes(16)))[:16].ljust(16, b"\0"))

    def on_message(self, msg: Message) -> None:
        t = msg.type
        if t == MainMsgc.ATTACH_CHANNELS:
            self.send(MainMsg.CHANNELS_LIST, pm.build_channels_list(self.server.channel_list(self.conn.profile)))
        elif t == MainMsgc.MOUSE_MODE_REQUEST:
            self.check_size(msg, 2)
            (mode,) = pm.U16.unpack_from(msg.body)
            s = self.session
            if mode in (MouseMode.SERVER, MouseMode.CLIENT) and mode & s.supported_mouse_modes:
                s.mouse_mode = MouseMode(mode)
            else:
                log.info("%s: mouse mode %d not supported, staying in %s", self.conn.name, mode, s.mouse_mode.name)
            self.send(MainMsg.MOUSE_MODE, pm.build_mouse_mode(int(s.supported_mouse_modes), int(s.mouse_mode)))
        elif t == MainMsgc.AGENT_DATA:
            # no agent yet: consume and return the credit so the client never stalls
            self.send(MainMsg.AGENT_TOKEN, pm.U32.pack(1))
        elif t in (MainMsgc.AGENT_START, MainMsgc.AGENT_TOKEN):
            self.check_size(msg, 4)
        elif t == MainMsgc.CLIENT_INFO:
            pass
        elif t in MainMsgc:
            log.debug("%s: ignoring %s", self.conn.name, MainMsgc(t).name)
        else:  # pragma: no cover - filtered by known_messages
            raise ChannelError(f"unknown main message {t}")
