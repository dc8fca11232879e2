"""The guest's USB software (an OS's USB stack in miniature) driving the EHCI model through its
registers and guest memory; :class:`UsbSubsystem` is the one object integrations use."""

from usbredir.guest.subsystem import UsbSubsystem

__all__ = ["UsbSubsystem"]
