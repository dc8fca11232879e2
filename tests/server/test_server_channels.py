"""The server over real TCP with our test client: main, display, inputs, cursor, several clients."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from spice_testclient import Canvas, LinkRefused, TestChannel
from spice_testguest import PaintGuest

from spice.guests.base import Rect
from spice.proto import main as pm
from spice.proto.cursor import CursorMsg
from spice.proto.display import DisplayCap, DisplayMsg, DisplayMsgc
from spice.proto.enums import ChannelType, LinkError
from spice.proto.inputs import InputsMsg, InputsMsgc
from spice.proto.link import ServerKey
from spice.server.config import ServerConfig
from spice.server.server import SpiceServer

KEY = ServerKey()
DISPLAY_INIT = struct.pack("<BqBi", 1, 1 << 20, 0, 0)


@pytest.fixture
async def server():
    guest = PaintGuest()
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw", ping_interval=0), key=KEY)
    await srv.start()
    yield srv
    await srv.close()


async def open_session(srv, **kw):
    main = await TestChannel.connect(srv.ports["plain"], ChannelType.MAIN, channel_caps={1, 2}, **kw)
    init = await main.wait_for(pm.MainMsg.INIT)
    fields = pm.MainInit.parse(init.body)
    return main, fields


async def test_main_init_name_uuid_channels_list(server):
    main, init = await open_session(server)
    assert init.session_id and init.supported_mouse_modes == 3 and init.current_mouse_mode == 2
    assert init.agent_tokens == 10
    name = await main.wait_for(pm.MainMsg.NAME)
    assert name.body == struct.pack("<I", 6) + b"paint\0"
    assert (await main.wait_for(pm.MainMsg.UUID)).body == bytes(range(16))
    main.send(pm.MainMsgc.ATTACH_CHANNELS)
    lst = pm.ChannelsList.parse((await main.wait_for(pm.MainMsg.CHANNELS_LIST)).body)
    assert {(c.type, c.id) for c in lst.channels} == {(2, 0), (3, 0), (4, 0)}
    main.send(pm.MainMsgc.MOUSE_MODE_REQUEST, struct.pack("<H", 1))
    mm = await main.wait_for(pm.MainMsg.MOUSE_MODE)
    assert pm.MouseModeMsg.parse(mm.body) == dict(supported_modes=3, current_mode=1)
    main.send(pm.MainMsgc.AGENT_DATA, b"x" * 30)
    assert (await main.wait_for(pm.MainMsg.AGENT_TOKEN)).body == struct.pack("<I", 1)
    main.close()


async def test_wrong_password_and_bad_session(server):
    with pytest.raises(LinkRefused) as e:
        await TestChannel.connect(server.ports["plain"], ChannelType.MAIN, password="nope")
    assert e.value.code == LinkError.PERMISSION_DENIED
    with pytest.raises(LinkRefused) as e:
        await TestChannel.connect(server.ports["plain"], ChannelType.DISPLAY, connection_id=12345)
    assert e.value.code == LinkError.BAD_CONNECTION_ID
    main, init = await open_session(server)
    with pytest.raises(LinkRefused) as e:
        await TestChannel.connect(server.ports["plain"], ChannelType.DISPLAY, 3, connection_id=init.session_id)
    assert e.value.code == LinkError.CHANNEL_NOT_AVAILABLE
    with pytest.raises(LinkRefused) as e:
        await TestChannel.connect(server.ports["plain"], ChannelType.SMARTCARD, connection_id=init.session_id)
    assert e.value.code == LinkError.CHANNEL_NOT_AVAILABLE
    with pytest.raises(LinkRefused) as e:
        await TestChannel.connect(server.ports["plain"], ChannelType.MAIN, 1)
    assert e.value.code == LinkError.CHANNEL_NOT_AVAILABLE
    assert server.stats.auth_failures == 1
    assert server.stats.link_failures["BAD_CONNECTION_ID"] == 1
    main.close()


async def test_expired_password(server):
    server.set_password("pw", expires_in=1e-9)
    with pytest.raises(LinkRefused) as e:
        await TestChannel.connect(server.ports["plain"], ChannelType.MAIN)
    assert e.value.code == LinkError.PERMISSION_DENIED


async def test_display_frames_pixel_exact_for_two_clients(server):
    guest: PaintGuest = server.guest
    clients = []
    for _ in range(2):
        main, init = await open_session(server)
        disp = await TestChannel.connect(server.ports["plain"], ChannelType.DISPLAY, connection_id=init.session_id,
                                         channel_caps={DisplayCap.MONITORS_CONFIG, DisplayCap.LZ4_COMPRESSION})
        disp.send(DisplayMsgc.INIT, DISPLAY_INIT)
        await disp.wait_for(DisplayMsg.MARK)
        clients.append((main, disp))
    for _main, disp in clients:
        types = [m.type for m in disp.messages]
        assert types[:3] == [DisplayMsg.SURFACE_CREATE, DisplayMsg.MONITORS_CONFIG, DisplayMsg.DRAW_COPY], types
        assert disp.messages[0].body == struct.pack("<5I", 0, 320, 200, 32, 1)
    pstats = server.display_pipeline.stats
    encodes0, shared0 = pstats.encodes, pstats.shared
    guest.fill(Rect(10, 10, 100, 50), 0x00123456)
    guest.noise(Rect(200, 100, 260, 180), seed=7)
    for _main, disp in clients:
        canvas = Canvas(320, 200)
        for _ in range(50):
            for m in disp.messages:
                canvas.apply(m)
            if np.array_equal(canvas.fb[..., :3], guest.fb[..., :3]):
                break
            disp.messages.clear()
            await disp.pump()
        assert np.array_equal(canvas.fb[..., :3], guest.fb[..., :3])
    # the changed rectangle was encoded once and the same bytes went to both clients
    assert pstats.encodes - encodes0 == 1 and pstats.shared - shared0 == 1
    for main, disp in clients:
        main.close()
        disp.close()


async def test_inputs_keys_pointer_and_motion_ack(server):
    guest: PaintGuest = server.guest
    main, init = await open_session(server)
    inp = await TestChannel.connect(server.ports["plain"], ChannelType.INPUTS, connection_id=init.session_id)
    assert inp.result.server_channel_caps == {0}  # KEY_SCANCODE announced
    assert (await inp.wait_for(InputsMsg.INIT)).body == b"\0\0"
    inp.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x1E))
    inp.send(InputsMsgc.KEY_UP, struct.pack("<I", 0x9E))
    inp.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x48E0))
    inp.send(InputsMsgc.KEY_UP, struct.pack("<I", 0xC8E0))
    inp.send(InputsMsgc.KEY_SCANCODE, bytes([0x1F, 0x9F, 0xE0, 0x1C, 0xE0, 0x9C]))
    inp.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x3A))  # caps lock -> guest LEDs -> KEY_MODIFIERS
    assert (await inp.wait_for(InputsMsg.KEY_MODIFIERS)).body == b"\4\0"
    for i in range(9):  # client mouse mode (the default): absolute positions
        inp.send(InputsMsgc.MOUSE_POSITION, struct.pack("<IIHB", i, 2 * i, 0, 0))
    inp.send(InputsMsgc.MOUSE_MOTION, struct.pack("<iiH", 50, 50, 0))  # relative: ignored in client mode
    await inp.wait_for(InputsMsg.MOUSE_MOTION_ACK, count=2)
    main.send(pm.MainMsgc.MOUSE_MODE_REQUEST, struct.pack("<H", 1))
    await main.wait_for(pm.MainMsg.MOUSE_MODE)
    inp.send(InputsMsgc.MOUSE_POSITION, struct.pack("<IIHB", 99, 99, 0, 0))  # absolute: ignored in server mode
    inp.send(InputsMsgc.MOUSE_MOTION, struct.pack("<iiH", -3, 4, 1))
    inp.send(InputsMsgc.MOUSE_PRESS, struct.pack("<BH", 1, 1))
    inp.send(InputsMsgc.MOUSE_RELEASE, struct.pack("<BH", 1, 0))
    for _ in range(50):
        if ("button", 1, False, 0) in guest.pointer:
            break
        await asyncio.sleep(0.02)
    assert guest.keys[:8] == [(0x1E, True), (0x1E, False), (0x148, True), (0x148, False),
                              (0x1F, True), (0x1F, False), (0x11C, True), (0x11C, False)]
    assert guest.pointer[:9] == [("position", i, 2 * i, 0) for i in range(9)]
    assert guest.pointer[9:] == [("motion", -3, 4, 1), ("button", 1, True, 1), ("button", 1, False, 0)]
    await inp.wait_for(InputsMsg.MOUSE_MOTION_ACK, count=3)  # 12 motions, ignored ones included
    await inp.pump(0.2)
    assert len([m for m in inp.messages if m.type == InputsMsg.MOUSE_MOTION_ACK]) == 3
    main.close()
    inp.close()


async def test_cursor_init_and_move(server):
    guest: PaintGuest = server.guest
    main, init = await open_session(server)
    main.send(pm.MainMsgc.MOUSE_MODE_REQUEST, struct.pack("<H", 1))  # server mode: moves are sent
    await main.wait_for(pm.MainMsg.MOUSE_MODE)
    cur = await TestChannel.connect(server.ports["plain"], ChannelType.CURSOR, connection_id=init.session_id)
    m = await cur.wait_for(CursorMsg.INIT)
    x, y, tl, tf, vis, flags = struct.unpack_from("<hhHHBH", m.body)
    assert (x, y, vis, flags) == (5, 6, 1, 0)
    unique, ctype, w, h, hx, hy = struct.unpack_from("<QBHHHH", m.body, 11)
    assert (ctype, w, h, hx, hy) == (0, 16, 16, 1, 2)
    assert m.body[28:] == guest.cursor.shape.pixels.tobytes()
    guest.move_cursor(40, 50)
    mv = await cur.wait_for(CursorMsg.MOVE)
    assert struct.unpack("<hh", mv.body) == (40, 50)
    main.close()
    cur.close()


async def test_closing_main_closes_session(server):
    main, init = await open_session(server)
    inp = await TestChannel.connect(server.ports["plain"], ChannelType.INPUTS, connection_id=init.session_id)
    main.close()
    await inp.read_until_closed(5)
    for _ in range(50):
        if not len(server.sessions):
            break
        await asyncio.sleep(0.02)
    assert len(server.sessions) == 0 and server.stats.sessions_open == 0


async def display_client(srv, caps, session_id=None):
    if session_id is None:
        _main, init = await open_session(srv)
        session_id = init.session_id
    disp = await TestChannel.connect(srv.ports["plain"], ChannelType.DISPLAY, connection_id=session_id,
                                     channel_caps=caps)
    disp.send(DisplayMsgc.INIT, DISPLAY_INIT)
    await disp.wait_for(DisplayMsg.MARK)
    return disp


def image_types(ch: TestChannel) -> set[int]:
    return {m.body[57 + 8] for m in ch.messages if m.type == DisplayMsg.DRAW_COPY}


async def sync_canvas(ch: TestChannel, canvas: Canvas, guest: PaintGuest) -> bool:
    for _ in range(40):
        for m in ch.messages:
            canvas.apply(m)
        ch.messages.clear()
        if np.array_equal(canvas.fb[..., :3], guest.fb[..., :3]):
            return True
        await ch.pump(0.2)
    return False


async def test_image_type_per_client_caps_and_fill_copybits(server):
    guest: PaintGuest = server.guest
    _main, init = await open_session(server)
    lz4 = await display_client(server, {DisplayCap.MONITORS_CONFIG, DisplayCap.LZ4_COMPRESSION}, init.session_id)
    plain = await display_client(server, set(), init.session_id)
    # the pipeline picks the smaller of LZ4 / LZ_RGB for LZ4 clients (and ZLIB_GLZ_RGB where LZ4 is big:
    # spice-gtk); never LZ4 for the others
    assert image_types(lz4) <= {101, 107, 109} and image_types(plain) <= {101, 107}
    assert DisplayMsg.MONITORS_CONFIG not in [m.type for m in plain.messages]  # client without the cap
    canvases = {id(ch): Canvas(320, 200) for ch in (lz4, plain)}
    for ch in (lz4, plain):
        assert await sync_canvas(ch, canvases[id(ch)], guest)
    for ch in (lz4, plain):
        ch.messages.clear()
    guest.stripes(Rect(0, 0, 320, 200))
    seen = {}
    for ch in (lz4, plain):
        await ch.wait_for(DisplayMsg.DRAW_COPY)
        seen[id(ch)] = image_types(ch)
        assert await sync_canvas(ch, canvases[id(ch)], guest)
    # LZ4 needs more than GLZ_AFTER_BYTES here: GLZ + deflate wins; LZ_RGB stays under it (never LZ4)
    assert seen[id(lz4)] == {107} and seen[id(plain)] == {101}
    guest.fill(Rect(0, 0, 320, 40), 0x00FF8000)
    guest.copy(Rect(0, 60, 320, 200), 0, 50)  # scroll up by 10 rows
    for ch in (lz4, plain):
        seen = []
        for _ in range(20):
            await ch.pump(0.2)
            seen = [m.type for m in ch.messages]
            if DisplayMsg.COPY_BITS in seen:
                break
        assert DisplayMsg.DRAW_FILL in seen and DisplayMsg.COPY_BITS in seen, seen
        assert await sync_canvas(ch, canvases[id(ch)], guest)


async def test_resize_recreates_surface(server):
    guest: PaintGuest = server.guest
    disp = await display_client(server, {DisplayCap.MONITORS_CONFIG})
    disp.messages.clear()
    guest.resize(200, 100)
    await disp.wait_for(DisplayMsg.MARK)
    types = [m.type for m in disp.messages]
    i = types.index(DisplayMsg.SURFACE_DESTROY)
    assert types[i + 1:i + 3] == [DisplayMsg.SURFACE_CREATE, DisplayMsg.MONITORS_CONFIG]
    assert disp.messages[i + 1].body == struct.pack("<5I", 0, 200, 100, 32, 1)
    canvas = Canvas(200, 100)
    assert await sync_canvas(disp, canvas, guest)


async def test_ping_measures_round_trip():
    guest = PaintGuest()
    srv = SpiceServer(guest, ServerConfig(port=0, password="pw", ping_interval=0.05), key=KEY)
    await srv.start()
    try:
        main, _ = await open_session(srv)
        for _ in range(40):
            await main.pump(0.05)
            if srv.stats.channel("main").last_rtt is not None:
                break
        rtt = srv.stats.channel("main").last_rtt
        assert rtt is not None and 0 <= rtt < 5
        snap = srv.stats.snapshot()
        assert snap["rtt_seconds"]["main"] == rtt and snap["sessions"] == 1
    finally:
        await srv.close()


async def test_full_header_client(server):
    main = await TestChannel.connect(server.ports["plain"], ChannelType.MAIN, common_caps=frozenset({0}))
    assert not main.result.mini_header
    init = await main.wait_for(pm.MainMsg.INIT)
    assert init.serial == 2 and pm.MainInit.parse(init.body).session_id  # serial 1 was SET_ACK
    main.send(pm.MainMsgc.ATTACH_CHANNELS)
    assert (await main.wait_for(pm.MainMsg.CHANNELS_LIST)).serial == 3
    main.close()


async def test_cursor_shape_change_and_hide(server):
    guest: PaintGuest = server.guest
    _main, init = await open_session(server)
    cur = await TestChannel.connect(server.ports["plain"], ChannelType.CURSOR, connection_id=init.session_id)
    await cur.wait_for(CursorMsg.INIT)
    from spice.guests.base import CursorShape, CursorState

    pix = np.full((8, 4, 4), 255, np.uint8)
    guest._cursor = CursorState(7, 8, True, CursorShape(pix, 0, 0, 2))
    guest._emit_cursor(guest._cursor)
    m = await cur.wait_for(CursorMsg.SET)
    x, y, vis, flags = struct.unpack_from("<hhBH", m.body)
    assert (vis, flags) == (1, 0) and struct.unpack_from("<QBHH", m.body, 7)[2:] == (4, 8)
    assert m.body[24:] == pix.tobytes()
    guest._cursor = CursorState(7, 8, False, guest._cursor.shape)
    guest._emit_cursor(guest._cursor)
    await cur.wait_for(CursorMsg.HIDE)
    cur.close()


async def test_inputs_release_held_keys_and_buttons_on_disconnect(server):
    guest: PaintGuest = server.guest
    main, init = await open_session(server)
    inp = await TestChannel.connect(server.ports["plain"], ChannelType.INPUTS, connection_id=init.session_id)
    await inp.wait_for(InputsMsg.INIT)
    inp.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x2A))  # left shift held
    inp.send(InputsMsgc.KEY_DOWN, struct.pack("<I", 0x1DE0))  # right ctrl held
    inp.send(InputsMsgc.MOUSE_PRESS, struct.pack("<BH", 3, 4))  # right button held
    inp.send(InputsMsgc.KEY_MODIFIERS, b"\0\0")  # round trip marker: nothing to inject
    await asyncio.sleep(0.2)
    inp.close()
    for _ in range(50):
        if ("button", 3, False, 0) in guest.pointer:
            break
        await asyncio.sleep(0.02)
    assert guest.keys == [(0x2A, True), (0x11D, True), (0x2A, False), (0x11D, False)]
    assert guest.pointer == [("button", 3, True, 4), ("button", 3, False, 0)]
    main.close()


async def test_plain_bitmap_fallback_pipeline(server):
    """The BITMAP fallback (used when spice.display.pipeline is absent) is pixel-exact too."""
    from spice.server.simple_display import SimpleDisplayPipeline

    guest: PaintGuest = server.guest
    server._pipeline = SimpleDisplayPipeline(guest)
    disp = await display_client(server, {DisplayCap.LZ4_COMPRESSION})
    assert image_types(disp) == {0}
    canvas = Canvas(320, 200)
    assert await sync_canvas(disp, canvas, guest)
    guest.noise(Rect(5, 5, 50, 60), seed=3)
    guest.copy(Rect(0, 100, 100, 150), 150, 20)
    assert await sync_canvas(disp, canvas, guest)


def test_client_profiles():
    from spice.server.session import client_profile

    assert client_profile(frozenset({0, 2, 3}), frozenset({0, 1, 5}), "tcp") == "spice-gtk"
    assert client_profile(frozenset({0, 3}), frozenset({0, 4, 8, 9, 10}), "websocket") == "spice-html5"
    assert client_profile(frozenset({0, 3}), None, "wss") == "spice-html5"
    assert client_profile(frozenset({0, 1, 3}), None, "websocket") == "web"
    assert client_profile(frozenset({0, 1, 3}), frozenset({5}), "websocket") == "web"
