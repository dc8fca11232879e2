"""Display channel: primary surface, MONITORS_CONFIG, MARK, and the pipeline's draw commands.

Pixels come from the shared display pipeline (``server.display_pipeline``, encoded once per
encoder and fanned out); this module only marshals its commands into DRAW_FILL / DRAW_COPY /
COPY_BITS / SURFACE_* / INVAL_LIST and pulls new ones only while the ACK window has room.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from typing import Any

from spice.display.caps import ImageCaps
from spice.display.commands import CopyBits, DrawCopy, DrawFill, InvalList, Resize

try:  # video streams (MJPEG) arrived later in spice.display; tolerate older trees
    from spice.display.commands import StreamCreate, StreamData, StreamDestroy
except ImportError:  # pragma: no cover
    StreamCreate = StreamData = StreamDestroy = ()
from spice.proto import display as pd
from spice.proto.display import DisplayCap, DisplayMsg, DisplayMsgc
from spice.proto.enums import ChannelType
from spice.proto.headers import Message
from spice.server.session import client_profile

from .base import Channel, ChannelError, log

INVAL_ENTRY = struct.Struct("<BQ")
#: DRAW_FILL with a RECTS clip: DisplayBase up to num_rects, [rects], solid brush + rop + empty QMask
FILL_RECTS_HEAD = struct.Struct("<IiiiiBI")
FILL_SOLID_TAIL = struct.Struct("<BIHBiiI")
CLIP_RECTS = 1

#: STREAM_ACTIVATE_REPORT (spice.md §6.10): stream_id, unique_id, max_window_size, timeout_ms
STREAM_ACTIVATE_REPORT = 319
ACTIVATE_REPORT = struct.Struct("<IIII")
#: STREAM_REPORT (client): stream_id, unique_id, start/end mm time, num_frames, num_drops, last_frame_delay,
#: audio_delay
STREAM_REPORT = struct.Struct("<IIIIIIiI")
REPORT_WINDOW, REPORT_TIMEOUT_MS = 5, 1000  # what libspice-server asks for
#: stream frames are stamped this far ahead of the client's multimedia clock (spice.md §5.8): spice-gtk drops
#: a frame that is decoded after its stamp; 30 ms lost a third of full-screen frames on a busy host
#: (libspice-server keeps a larger margin, up to 400 ms)
STREAM_DELAY_MS = 100


def draw_fill_parts(cmd: DrawFill) -> list[bytes]:
    """DRAW_FILL body of ``cmd`` on surface 0, in pieces (a RECTS clip's rects are the command's own,
    shared bytes: never copied here); spice.proto ``Clip`` is inline: type, num_rects, rects."""
    r = cmd.rect
    if not cmd.clip:
        return [pd.build_draw_fill(r.left, r.top, r.right, r.bottom, cmd.color)]
    return [FILL_RECTS_HEAD.pack(0, r.top, r.left, r.bottom, r.right, CLIP_RECTS, len(cmd.clip) // 16), cmd.clip,
            FILL_SOLID_TAIL.pack(pd.BRUSH_SOLID, cmd.color, pd.ROP_OP_PUT, 0, 0, 0, 0)]


class DisplayChannel(Channel):
    channel_type = ChannelType.DISPLAY
    name = "display"
    flow_control = True
    max_message = 4096
    known_messages = frozenset(DisplayMsgc)
    #: bytes per take() from the pipeline (keeps one pull bounded; the window bounds the rest)
    take_bytes = 1 << 20
    #: write new drawing from the wake-up itself when the socket is idle (see :meth:`wakeup`)
    direct_write = True
    #: ACKs and stream reports parsed in the socket's callback (one loop turn, no read task wake-up)
    direct_read = True

    @classmethod
    def server_caps(cls, server) -> frozenset[int]:
        return frozenset({DisplayCap.MONITORS_CONFIG, DisplayCap.STREAM_REPORT, DisplayCap.PREF_VIDEO_CODEC_TYPE})

    def start(self) -> None:
        self.client: Any = None
        self.queue: deque[Any] = deque()
        self.marked = False
        self._write_soon = False
        self.reports = DisplayCap.STREAM_REPORT in self.client_caps
        self._report_ids: dict[int, int] = {}  # stream id -> unique id of the report we activated
        self._unique = 0
        self.stream_reports = 0
        self.profile = client_profile(self.common_caps, self.client_caps, self.conn.transport)
        self.monitors = DisplayCap.MONITORS_CONFIG in self.client_caps
        self._codec_preference: list[int] | None = None  # PREFERRED_VIDEO_CODEC_TYPE (may come before INIT)
        self._stream_frames: dict[int, int] = {}  # open stream id -> STREAM_DATA sent since its STREAM_CREATE
        self._stale_refusals: dict[int, int] = {}  # stream id -> "no such stream" answers still to come for
        # frames of a stream whose decoder failed (see _stream_refused)
        # drawing starts when DISPLAY_INIT arrives (spice-server waits for it too)

    def close(self) -> None:
        if self.client is not None:
            self.client.detach()
            self.client = None

    def on_message(self, msg: Message) -> None:
        if msg.type == DisplayMsgc.INIT:
            self.check_size(msg, pd.DisplayInit.sizeof())
            if self.client is not None:
                return
            init = pd.DisplayInit.parse(msg.body[:pd.DisplayInit.sizeof()])
            caps = ImageCaps.from_caps(self.common_caps, self.client_caps, self.profile,
                                       cache_pixels=max(0, init.pixmap_cache_size))
            w, h = self.server.guest.size
            self._create_surface(w, h, destroy=False)
            self.client = self.server.display_pipeline.attach(caps, self.wakeup)
            self._apply_codec_preference()
            glz = getattr(self.client, "glz", None)  # (the plain-bitmap pipeline sends no GLZ)
            if glz is not None:
                glz.set_window(init.glz_dictionary_window_size)
            log.info("%s: display client %s, lossless %s", self.conn.name, self.profile, caps.lossless_type.name)
        elif msg.type == DisplayMsgc.STREAM_REPORT:
            self.check_size(msg, STREAM_REPORT.size)
            sid, uid, _, _, frames, drops, delay, _ = STREAM_REPORT.unpack_from(msg.body)
            if frames == 0 and drops == 0xFFFFFFFF:
                self._stream_refused(sid)
            elif self.client is not None and self._report_ids.get(sid) == uid:  # else: an old stream's report
                self._stale_refusals.pop(sid, None)
                self.stream_reports += 1
                self.client.stream_report(frames, drops, delay)
        elif msg.type == DisplayMsgc.PREFERRED_VIDEO_CODEC_TYPE:
            self.check_size(msg, 1)
            n = msg.body[0]
            self.check_size(msg, 1 + n)
            self._codec_preference = list(msg.body[1:1 + n])
            self._apply_codec_preference()
            log.info("%s: preferred video codecs %s", self.conn.name, self._codec_preference)
        elif msg.type in DisplayMsgc:
            pass  # the other preferences: only sent after caps we do not announce (6)
        else:  # pragma: no cover - filtered by known_messages
            raise ChannelError(f"unknown display message {msg.type}")

    def _stream_refused(self, sid: int) -> None:
        """spice-gtk's "no such stream" report (unique id 0, drops 0xFFFFFFFF): its decoder for stream
        ``sid`` failed, and it answers each further frame of it the same way.  The first one makes the
        pipeline drop that codec for this client (and reopen the stream in the next one, with the same
        id); the answers to frames sent before that are not about the new stream."""
        if self.client is None or sid not in self._stream_frames:
            return
        stale = self._stale_refusals.get(sid, 0)
        if stale:
            self._stale_refusals[sid] = stale - 1
            return
        self._stale_refusals[sid] = max(0, self._stream_frames[sid] - 1)
        self.stream_reports += 1
        self.client.stream_report(0, 0xFFFFFFFF, 0)

    def _apply_codec_preference(self) -> None:
        setter = getattr(self.client, "set_codec_preference", None)  # (the plain-bitmap pipeline has none)
        if setter is not None and self._codec_preference is not None:
            setter(self._codec_preference)

    def _create_surface(self, w: int, h: int, destroy: bool) -> None:
        if destroy:
            self.send(DisplayMsg.SURFACE_DESTROY, struct.pack("<I", 0))
        self.send(DisplayMsg.SURFACE_CREATE, pd.build_surface_create(w, h))
        if self.monitors:
            self.send(DisplayMsg.MONITORS_CONFIG, pd.build_monitors_config(w, h))
        self.marked = False

    def wakeup(self) -> None:
        """New drawing: written by :meth:`_write_now` when the socket is idle — right after the
        pipeline absorbed the guest's frame, or on the next loop turn (input-to-pixel latency: no trip
        through the connection's write task, which still paces everything else); never from inside
        the pipeline's frame handling.  The write task is woken only for what that leaves behind."""
        if not self.direct_write:
            self.conn.wakeup()
        elif not self._write_soon:
            self._write_soon = True
            after_frame = getattr(self.server.display_pipeline, "after_frame", None)
            if after_frame is None or not after_frame(self._write_now):  # not inside a guest frame
                asyncio.get_running_loop().call_soon(self._write_now)

    def _write_now(self) -> None:
        self._write_soon = False
        conn = self.conn
        transport = getattr(conn.writer, "transport", None)
        if (self.direct_write and self.marked and transport is not None and not transport.is_closing()
                and transport.get_write_buffer_size() == 0 and not getattr(conn, "_closing", True)):
            proto = conn.protocol
            more = True  # (writing to the transport below draws nothing new: its answer stays true)
            while proto.room > 0:
                more = self.has_pending()
                if not more:
                    break
                before = proto.queued
                self.produce()
                if proto.queued == before:
                    break
            if conn.write_out():
                flush = getattr(conn.writer, "flush", None)
                if flush is not None:  # WebSocket: frame and send now, not on the next loop turn
                    flush()
                if not more and proto.queued == 0:
                    return  # all written: nothing for the write task
        self.conn.wakeup()

    def has_pending(self) -> bool:
        return bool(self.queue) or (self.client is not None and self.client.pending)

    def produce(self) -> None:
        if not self.queue:
            if self.client is None:
                return
            self.queue.extend(self.client.take(self.take_bytes))
            if not self.marked:
                self.queue.append(None)  # MARK after the first full frame
        # send what the window allows; the rest waits in this (bounded: one take) queue
        proto = self.conn.protocol
        while self.queue and proto.room > 0:
            self._send_command(self.queue.popleft())

    def _send_command(self, cmd: Any) -> None:
        send = self.conn.protocol.send  # produce()'s callers write (or wake the write task) afterwards
        if cmd is None:
            send(DisplayMsg.MARK)
            self.marked = True
        elif isinstance(cmd, DrawCopy):
            r = cmd.rect
            # the encoded image is shared by every client with the same caps: never copy it here
            self.conn.protocol.send_parts(DisplayMsg.DRAW_COPY,
                                          [pd.build_draw_copy_head(r.left, r.top, r.right, r.bottom), cmd.image])
        elif isinstance(cmd, DrawFill):
            if cmd.clip:  # RECTS clip: the command's rect bytes go out as they are
                self.conn.protocol.send_parts(DisplayMsg.DRAW_FILL, draw_fill_parts(cmd))
            else:
                r = cmd.rect
                send(DisplayMsg.DRAW_FILL, pd.build_draw_fill(r.left, r.top, r.right, r.bottom, cmd.color))
        elif isinstance(cmd, CopyBits):
            r = cmd.rect
            send(DisplayMsg.COPY_BITS, pd.build_copy_bits(cmd.src_x, cmd.src_y, r.left, r.top, r.right, r.bottom))
        elif isinstance(cmd, Resize):
            self._create_surface(cmd.width, cmd.height, destroy=True)
            if not self.queue or self.queue[-1] is not None:
                self.queue.append(None)
        elif isinstance(cmd, StreamData):
            mm = int(max(cmd.timestamp, time.monotonic()) * 1000) + STREAM_DELAY_MS
            self.conn.protocol.send_parts(DisplayMsg.STREAM_DATA,
                                          [pd.STREAM_DATA.pack(cmd.stream_id, mm & 0xFFFFFFFF, len(cmd.data)), cmd.data])
            self._stream_frames[cmd.stream_id] = self._stream_frames.get(cmd.stream_id, 0) + 1
        elif isinstance(cmd, StreamCreate):
            r = cmd.rect
            send(DisplayMsg.STREAM_CREATE, pd.build_stream_create(cmd.stream_id, r.left, r.top, r.right, r.bottom,
                                                                  cmd.codec))
            self._stream_frames[cmd.stream_id] = 0
            if self.reports:
                self._unique = (self._unique + 1) & 0xFFFFFFFF
                self._report_ids[cmd.stream_id] = self._unique
                send(STREAM_ACTIVATE_REPORT, ACTIVATE_REPORT.pack(cmd.stream_id, self._unique, REPORT_WINDOW,
                                                                  REPORT_TIMEOUT_MS))
        elif isinstance(cmd, StreamDestroy):
            send(DisplayMsg.STREAM_DESTROY, struct.pack("<I", cmd.stream_id))
            self._report_ids.pop(cmd.stream_id, None)
            self._stream_frames.pop(cmd.stream_id, None)
        elif isinstance(cmd, InvalList):
            body = struct.pack("<H", len(cmd.ids)) + b"".join(INVAL_ENTRY.pack(1, i) for i in cmd.ids)
            send(DisplayMsg.INVAL_LIST, body)
        else:
            raise TypeError(f"unknown draw command {cmd!r}")
