"""Many streams at different positions: :class:`StreamPool` and the grouping of their work."""

from .grouping import TaskGroup, due_groups
from .stream_pool import PoolStats, StreamPool

__all__ = ["PoolStats", "StreamPool", "TaskGroup", "due_groups"]
