"""The channel registry: one table maps a SPICE channel type to the module implementing it.

A new channel type is one module ``spice/channels/<name>.py`` defining a
:class:`~spice.channels.base.Channel` subclass plus one :func:`register_channel` call (or one
line in ``_TABLE``).  The main channel's CHANNELS_LIST is built from this table.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from spice.proto.enums import ChannelType

if TYPE_CHECKING:
    from .base import Channel

_TABLE: dict[int, str] = {
    ChannelType.MAIN: "spice.channels.main:MainChannel",
    ChannelType.DISPLAY: "spice.channels.display:DisplayChannel",
    ChannelType.CURSOR: "spice.channels.cursor:CursorChannel",
    ChannelType.INPUTS: "spice.channels.inputs:InputsChannel",
    ChannelType.USBREDIR: "spice.channels.usbredir:UsbredirChannel",
}
_loaded: dict[int, type[Channel]] = {}


def register_channel(channel_type: int, target: str | type[Channel]) -> None:
    """Register ``"package.module:Class"`` (or the class itself) for ``channel_type``."""
    if isinstance(target, str):
        _TABLE[channel_type] = target
        _loaded.pop(channel_type, None)
    else:
        _TABLE[channel_type] = f"{target.__module__}:{target.__qualname__}"
        _loaded[channel_type] = target


def unregister_channel(channel_type: int) -> None:
    _TABLE.pop(channel_type, None)
    _loaded.pop(channel_type, None)


def channel_types() -> list[int]:
    return list(_TABLE)


def channel_class(channel_type: int) -> type[Channel] | None:
    """The class for ``channel_type`` (imported on first use), or None if not registered."""
    cls = _loaded.get(channel_type)
    if cls is None and channel_type in _TABLE:
        mod, _, name = _TABLE[channel_type].partition(":")
        cls = _loaded[channel_type] = getattr(importlib.import_module(mod), name)
    return cls
