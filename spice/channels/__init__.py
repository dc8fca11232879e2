"""One module per SPICE channel type; :mod:`.registry` maps channel types to them.

A new channel type = one module with a :class:`~.base.Channel` subclass + one
:func:`~.registry.register_channel` call.
"""
