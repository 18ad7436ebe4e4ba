"""The built-in schedules; importing this package registers them."""

from . import continuous, epoched, naive

__all__ = ["continuous", "epoched", "naive"]
