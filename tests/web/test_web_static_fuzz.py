"""Property test: no request path resolves outside the web root (encoded dots, slashes, symlinks)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from spice.server.static import StaticFiles

PIECES = [
    "..",
    ".",
    "%2e",
    "%2E",
    "%2e%2e",
    "%252e",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "/",
    "//",
    "%00",
    "a",
    "sub",
    "index.html",
    "link",
    "up",
    "secret.txt",
    "%",
    "%%",
    "~",
    ".git",
    "%c0%ae",
]


def make_root(tmp: str) -> StaticFiles:
    root = os.path.join(tmp, "web")
    os.makedirs(os.path.join(root, "sub"), exist_ok=True)
    for p in ("index.html", "sub/index.html", "sub/a"):
        with open(os.path.join(root, p), "w") as f:
            f.write("ok")
    with open(os.path.join(tmp, "secret.txt"), "w") as f:
        f.write("secret")
    for name, target in (("link", os.path.join(tmp, "secret.txt")), ("up", tmp)):
        if not os.path.lexists(os.path.join(root, name)):
            os.symlink(target, os.path.join(root, name))
    return StaticFiles(root)


def test_no_path_escapes_root(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("fuzz"))
    files = make_root(tmp)
    root = os.path.realpath(os.path.join(tmp, "web"))

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.sampled_from(PIECES), min_size=0, max_size=8))
    def check(parts):
        path = "/" + "".join(p if p.startswith(("/", "%", "\\")) else p + "/" for p in parts).rstrip("/")
        try:
            resolved = files.resolve(path)
        except UnicodeDecodeError:
            return
        if resolved is not None:
            real = os.path.realpath(resolved)
            assert real.startswith(root + os.sep), (path, real)
            assert os.path.isfile(real)
            with open(real) as f:
                assert f.read() == "ok", path
        resp = files.respond(path)
        assert resp.status in (200, 404)
        assert b"secret" not in resp.body

    check()
