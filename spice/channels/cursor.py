"""Cursor channel: CURSOR_INIT with the guest's ALPHA pointer, then SET/MOVE/HIDE as it changes.

Guest updates only mark state dirty; :meth:`CursorChannel.produce` sends the latest state when
the ACK window has room, so a client that stops reading never makes the server queue moves.
"""

from __future__ import annotations

from spice.guests.base import CursorState, GuestListener
from spice.proto import cursor as pc
from spice.proto.cursor import CursorMsg
from spice.proto.enums import ChannelType
from spice.proto.main import MouseMode

from .base import Channel


def cursor_bytes(state: CursorState) -> bytes:
    shape = state.shape
    if shape is None:
        return pc.build_cursor(None)
    h, w = shape.pixels.shape[:2]
    return pc.build_cursor(shape.serial, w, h, shape.hot_x, shape.hot_y, shape.pixels.tobytes())


class CursorChannel(Channel):
    channel_type = ChannelType.CURSOR
    name = "cursor"
    flow_control = True
    direct_read = True  # (ACKs: parsed in the socket's callback, no read task wake-up)
    max_message = 4096
    known_messages = frozenset()

    def start(self) -> None:
        self.guest = self.server.guest
        st = self.guest.cursor
        self.send(CursorMsg.INIT, pc.build_init(st.x, st.y, st.visible and st.shape is not None, cursor_bytes(st)))
        self.sent_shape = st.shape.serial if st.shape else None
        self.sent_visible = st.visible
        self.sent_pos = (st.x, st.y)
        self.listener = GuestListener(on_cursor=lambda s: self.wakeup(), on_cursor_move=lambda x, y: self.wakeup())
        self.guest.add_listener(self.listener)

    def close(self) -> None:
        self.guest.remove_listener(self.listener)

    def has_pending(self) -> bool:
        st = self.guest.cursor
        shape = st.shape.serial if st.shape else None
        return shape != self.sent_shape or st.visible != self.sent_visible or (st.x, st.y) != self.sent_pos

    def produce(self) -> None:
        st = self.guest.cursor
        shape = st.shape.serial if st.shape else None
        if not st.visible:
            if self.sent_visible:
                self.send(CursorMsg.HIDE)
        elif shape != self.sent_shape or not self.sent_visible:
            self.send(CursorMsg.SET, pc.build_set(st.x, st.y, st.shape is not None, cursor_bytes(st)))
        elif (st.x, st.y) != self.sent_pos and self.session.mouse_mode == MouseMode.SERVER:
            # in client mouse mode the client draws its own pointer where it is: no echo of positions
            self.send(CursorMsg.MOVE, pc.build_move(st.x, st.y))
        self.sent_shape, self.sent_visible, self.sent_pos = shape, st.visible, (st.x, st.y)
