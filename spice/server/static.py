"""Static files of the web client (``web/``): safe path resolution, MIME types, ETags.

Rules: no directory listing (a directory answers with its ``index.html`` or 404), no escapes from the
root (``..``, percent-encoded or backslash variants, NUL, dot-files, symlinks anywhere on the path).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from spice.server.http import Response, error_response

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "web"
MAX_FILE_BYTES = 8 * 1024 * 1024

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
    ".map": "application/json",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


class StaticFiles:
    """Serves files below ``root``; contents and ETags are cached by (mtime, size)."""

    def __init__(self, root: Path | str = DEFAULT_ROOT) -> None:
        self.root = Path(root).resolve()
        self._cache: dict[Path, tuple[tuple[int, int], StaticFile]] = {}

    def resolve(self, url_path: str) -> Path | None:
        """Map a request path (without query) to a regular file below the root, or None."""
        path = url_path.split("?", 1)[0].split("#", 1)[0]
        decoded = unquote(path, errors="strict")
        # A second decoding round must not change anything: refuse double-encoded input outright.
        if "%" in decoded and unquote(decoded) != decoded:
            return None
        if "\\" in decoded or "\x00" in decoded or not decoded.startswith("/"):
            return None
        parts = [p for p in decoded.split("/") if p]
        if any(p in (".", "..") or p.startswith(".") for p in parts):
            return None
        candidate = self.root.joinpath(*parts) if parts else self.root
        # Refuse symlinks on any component below the root.
        probe = self.root
        for p in parts:
            probe = probe / p
            if probe.is_symlink():
                return None
        if candidate.is_dir():
            candidate = candidate / "index.html"
            if candidate.is_symlink():
                return None
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.root) or not real.is_file():
            return None
        return real

    def load(self, path: Path) -> StaticFile | None:
        try:
            st = path.stat()
        except OSError:
            return None
        if st.st_size > MAX_FILE_BYTES:
            return None
        key = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit and hit[0] == key:
            return hit[1]
        body = path.read_bytes()
        ctype = MIME_TYPES.get(path.suffix.lower(), "application/octet-stream")
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        item = StaticFile(body, ctype, etag)
        self._cache[path] = (key, item)
        return item

    def respond(self, url_path: str, if_none_match: str | None = None) -> Response:
        """Build the response for a GET of ``url_path`` (200, 304 or 404)."""
        try:
            path = self.resolve(url_path)
        except UnicodeDecodeError:
            path = None
        item = self.load(path) if path is not None else None
        if item is None:
            return error_response(404)
        headers = [("ETag", item.etag), ("Cache-Control", "no-cache")]
        if if_none_match and item.etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(304, headers=headers)
        return Response(200, item.body, item.content_type, headers)
