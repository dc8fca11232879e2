"""The built-in guest: an in-process desktop (terminal, clock, device panel) drawn with Pillow/numpy."""

from .guest import BuiltinGuest
from .workloads import WORKLOADS

__all__ = ["BuiltinGuest", "WORKLOADS"]
