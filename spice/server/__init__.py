"""The asyncio side of the SPICE server.

* :class:`spice.server.server.SpiceServer` — listeners (TCP, TLS), key, password, sessions, guest.
* :func:`spice.server.connection.handle_spice_stream` — serve one SPICE byte stream (any transport).
* :mod:`spice.server.stats` — counters (``server.stats``, ``server.stats.snapshot()``).
* :mod:`spice.server.commands` — ``aiospice serve`` / ``aiospice certs``.
"""
