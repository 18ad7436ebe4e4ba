"""The built-in schedules; importing this package registers them."""

from . import continuous, deadline, epoched, naive, reuse

__all__ = ["continuous", "deadline", "epoched", "naive", "reuse"]
