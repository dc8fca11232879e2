"""SPICE wire formats and sans-I/O state machines (no asyncio here).

* :mod:`.link` — the link handshake, server side (:class:`~.link.ServerLink`) and client side
  (:class:`~.link.ClientLink`), RSA key and ticket helpers.
* :mod:`.channel` — one established channel: framing (:mod:`.headers`), serials, ACK window, PING/PONG.
* :mod:`.main`, :mod:`.display`, :mod:`.inputs`, :mod:`.cursor` — each channel's messages.
* :mod:`.enums`, :mod:`.caps`, :mod:`.base` — shared numbers, capability words, base messages.
"""
