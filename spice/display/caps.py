"""Which image types a display client decodes, from its link capabilities and profile (spice.md §11.2)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from spice.display import video
from spice.proto.display import DisplayCap, ImageType  # the one definition each; re-exported here

PROFILES = ("spice-gtk", "spice-html5", "web")

# Image types we can encode, best lossless first (ZLIB_GLZ_RGB: chosen per image, see pipeline.encode).
ENCODABLE_LOSSLESS = (ImageType.LZ4, ImageType.LZ_RGB, ImageType.BITMAP, ImageType.ZLIB_GLZ_RGB)


@dataclass(frozen=True, slots=True)
class ImageCaps:
    """What one client accepts.

    ``types``: image types it decodes; ``force``: use this type for every image (benchmarks,
    tests); ``lossy``: JPEG allowed for photographic regions;
    ``cache_pixels``: its pixmap cache size in pixels (from DISPLAY_INIT; 0 = do not use the cache);
    ``video_codecs``: the stream codecs it decodes (SpiceVideoCodecType, :mod:`spice.display.video`).
    """

    profile: str
    types: frozenset[ImageType]
    force: ImageType | None = None
    lossy: bool = False
    cache_pixels: int = 0
    video_codecs: frozenset[int] = frozenset()

    @classmethod
    def from_caps(cls, common_caps: set[int] | frozenset[int], display_caps: set[int] | frozenset[int],
                  profile: str = "spice-gtk", *, force: ImageType | int | None = None,
                  lossy: bool = False, cache_pixels: int = 0) -> ImageCaps:
        """Build the caps of a client that linked with these capability sets."""
        if profile not in PROFILES:
            raise ValueError(f"unknown display client profile {profile!r} (expected one of {PROFILES})")
        if profile == "spice-gtk":
            types = {ImageType.BITMAP, ImageType.LZ_RGB, ImageType.GLZ_RGB, ImageType.ZLIB_GLZ_RGB, ImageType.QUIC,
                     ImageType.JPEG, ImageType.FROM_CACHE, ImageType.FROM_CACHE_LOSSLESS}
            if DisplayCap.LZ4_COMPRESSION in display_caps:
                types.add(ImageType.LZ4)
        elif profile == "spice-html5":
            types = {ImageType.BITMAP, ImageType.LZ_RGB, ImageType.JPEG, ImageType.QUIC, ImageType.FROM_CACHE}
        else:  # our own browser client
            types = {ImageType.BITMAP, ImageType.LZ_RGB, ImageType.LZ4, ImageType.JPEG, ImageType.FROM_CACHE}
        # MJPEG: every client understands it without MULTI_CODEC; with MULTI_CODEC it must announce it,
        # and the others (VP8, H.264) too.
        codecs = video.client_codecs(display_caps)
        forced = None if force is None else ImageType(force)
        if forced is not None and forced not in ENCODABLE_LOSSLESS + (ImageType.JPEG,):
            raise ValueError(f"cannot encode image type {forced.name}")
        if forced == ImageType.ZLIB_GLZ_RGB and forced not in types:  # spice-gtk only (per-client GLZ ids)
            raise ValueError(f"a {profile} client does not decode {forced.name}")
        return cls(profile, frozenset(types), forced, lossy, cache_pixels, codecs)

    def with_force(self, force: ImageType | int | None) -> ImageCaps:
        return replace(self, force=None if force is None else ImageType(force))

    @property
    def lossless_type(self) -> ImageType:
        """The image type to use for lossless content."""
        if self.force is not None:
            return self.force
        for t in ENCODABLE_LOSSLESS:
            if t in self.types:
                return t
        return ImageType.BITMAP
