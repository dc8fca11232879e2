"""The display pipeline: guest frames -> per-client SPICE drawing commands.

* :mod:`.pipeline` — :class:`DisplayPipeline` (one per guest) and :class:`DisplayClient` (one per
  display channel): coalesced damage on an 8-pixel cell grid, pass-through fills/copies, shared
  encodes, pixmap cache, MJPEG streams and JPEG stills for lossy clients, frame-rate cap.
* :mod:`.commands` — what a client takes (DrawFill, DrawCopy, CopyBits, Resize, InvalList, Stream*).
* :mod:`.caps` — ImageCaps: what a client decodes (profiles spice-gtk / spice-html5 / web).
* :mod:`.images`, :mod:`.lz`, :mod:`.decode` — SpiceImage encoders (BITMAP, LZ_RGB, LZ4, JPEG) and
  decoders; :mod:`.streams` — video detection; :mod:`.region` — the cell grid.
* :mod:`.bench`, :mod:`.wirebench`, :mod:`.probe_viewer`, :mod:`.xworkload`, :mod:`.synthetic` —
  ``aiospice bench display`` (in-process, and on the wire vs Xspice).
"""
