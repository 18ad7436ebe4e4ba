"""The built-in schedules; importing this package registers them."""

from . import continuous, deadline, epoched, naive

__all__ = ["continuous", "deadline", "epoched", "naive"]
