"""Inputs channel: keyboard (set-1 scancodes, incl. KEY_SCANCODE) and pointer to the guest."""

from __future__ import annotations

from spice.guests.base import GuestListener
from spice.proto.enums import ChannelType
from spice.proto.headers import Message
from spice.proto.inputs import (
    BUTTON,
    MOTION,
    MOTION_ACK_BUNCH,
    POSITION,
    U16,
    U32,
    InputsCap,
    InputsMsg,
    InputsMsgc,
    ScancodeDecoder,
)
from spice.proto.main import MouseMode

from .base import Channel

# SPICE modifier flag -> set-1 make code of the lock key that toggles it
LOCK_KEYS = ((1, 0x46), (2, 0x45), (4, 0x3A))


class InputsChannel(Channel):
    channel_type = ChannelType.INPUTS
    name = "inputs"
    max_message = 4096
    known_messages = frozenset(InputsMsgc)
    #: parse input in the socket's callback (plain TCP): no loop turn between a key and the guest
    direct_read = True

    @classmethod
    def server_caps(cls, server) -> frozenset[int]:
        return frozenset({InputsCap.KEY_SCANCODE})

    def start(self) -> None:
        self.guest = self.server.guest
        self.decoder = ScancodeDecoder()
        self.motions = 0
        self.held: set[int] = set()  # keys down, released if the client goes away
        self.buttons = 0
        self._keyed = False  # key events since the last after_feed
        self.listener = GuestListener(on_leds=self._on_leds)
        self.guest.add_listener(self.listener)
        self.send(InputsMsg.INIT, U16.pack(self.guest.leds & 7))

    def close(self) -> None:
        """Release whatever this client still holds, as spice-server does on disconnect."""
        self.guest.remove_listener(self.listener)
        for code in sorted(self.held):
            self.guest.key_event(code, False)
        self.held.clear()
        for button in (1, 2, 3, 6, 7):
            mask = 1 << (button - 1)
            if self.buttons & mask:
                self.buttons &= ~mask
                self.guest.pointer_button(button, False, self.buttons)

    def _on_leds(self, leds: int) -> None:
        self.send(InputsMsg.KEY_MODIFIERS, U16.pack(leds & 7))

    def after_feed(self) -> None:
        """End of a batch of received messages: let a guest that renders lazily (``flush_pending()`` /
        ``flush()``) draw the keys now rather than a loop turn later (key-to-pixel latency); its frame
        goes out at once.  ``flush_pending`` renders only if the keys changed something (not for a
        release)."""
        if self._keyed:
            self._keyed = False
            flush = getattr(self.guest, "flush_pending", None) or getattr(self.guest, "flush", None)
            if flush is not None:
                flush()

    def _keys(self, keys: list[tuple[int, bool]]) -> None:
        self._keyed = self._keyed or bool(keys)
        for code, pressed in keys:
            if pressed:
                self.held.add(code)
            else:
                self.held.discard(code)
            self.guest.key_event(code, pressed)

    def _motion_ack(self) -> None:
        self.motions += 1
        if self.motions % MOTION_ACK_BUNCH == 0:
            self.send(InputsMsg.MOUSE_MOTION_ACK)

    def on_message(self, msg: Message) -> None:
        t, body = msg.type, msg.body
        if t in (InputsMsgc.KEY_DOWN, InputsMsgc.KEY_UP):
            self.check_size(msg, 4)
            (code,) = U32.unpack_from(body)
            keys = self.decoder.feed_code(code)
            # the press/release bit must agree with the message type; drop junk like html5's "B5 E0"
            want = t == InputsMsgc.KEY_DOWN
            self._keys([k for k in keys if k[1] == want])
        elif t == InputsMsgc.KEY_SCANCODE:
            self._keys(self.decoder.feed(body))
        elif t == InputsMsgc.KEY_MODIFIERS:
            self.check_size(msg, 2)
            (wanted,) = U16.unpack_from(body)
            have = self.guest.leds
            for flag, make in LOCK_KEYS:
                if (wanted ^ have) & flag:
                    self.guest.key_event(make, True)
                    self.guest.key_event(make, False)
        elif t == InputsMsgc.MOUSE_MOTION:
            self.check_size(msg, MOTION.size)
            dx, dy, buttons = MOTION.unpack_from(body)
            if self.session.mouse_mode == MouseMode.SERVER:  # as spice-server: relative only in server mode
                self.buttons = buttons
                self.guest.pointer_motion(dx, dy, buttons)
            self._motion_ack()
        elif t == InputsMsgc.MOUSE_POSITION:
            self.check_size(msg, POSITION.size)
            x, y, buttons, display_id = POSITION.unpack_from(body)
            if display_id == 0 and self.session.mouse_mode == MouseMode.CLIENT:  # absolute only in client mode
                self.buttons = buttons
                self.guest.pointer_position(x, y, buttons)
            self._motion_ack()
        elif t in (InputsMsgc.MOUSE_PRESS, InputsMsgc.MOUSE_RELEASE):
            self.check_size(msg, BUTTON.size)
            button, buttons = BUTTON.unpack_from(body)
            if 1 <= button <= 7:
                self.buttons = buttons
                self.guest.pointer_button(button, t == InputsMsgc.MOUSE_PRESS, buttons)
