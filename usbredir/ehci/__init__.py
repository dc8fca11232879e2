"""The emulated EHCI (USB 2.0) host controller: registers, schedules in guest memory, root ports,
a transaction-translating hub for full/low-speed devices, and the asyncio runtime that drives it."""

from usbredir.ehci.controller import EhciController
from usbredir.ehci.hub import Hub
from usbredir.ehci.memory import DmaError, GuestMemory
from usbredir.ehci.runtime import EhciRuntime

__all__ = ["DmaError", "EhciController", "EhciRuntime", "GuestMemory", "Hub"]
