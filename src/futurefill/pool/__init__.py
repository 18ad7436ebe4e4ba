"""Many streams at different positions: :class:`StreamPool` and the grouping of their work.

Examples
--------
Every method of a :class:`StreamPool`, each slot checked against the offline convolution of
its own inputs:

>>> import numpy as np, futurefill
>>> phi = futurefill.decaying_random_filters(4, 64, seed=0)  # 4 channels, 64 taps
>>> u = np.random.default_rng(0).standard_normal((4, 16))
>>> pool = futurefill.StreamPool(phi, length=32, capacity=4, backend="numpy")
>>> a = pool.admit(length=20)  # at most 20 steps
>>> b = pool.admit(prompt=u[:, :10])  # after a 10-input prompt, open-ended (until 64 taps)
>>> y = pool.step([a, b], np.stack([u[:, 0], u[:, 10]]))  # one call, each at its position
>>> pool.position(a), pool.position(b), pool.steps(b), pool.remaining(a), pool.remaining(b)
(1, 11, 1, 19, 53)
>>> bool(np.allclose(y[1], futurefill.causal_conv(u[:, :11], phi)[:, 10]))
True
>>> c = pool.fork(b)  # b's exact state, diverging from here
>>> pool.mark(c)  # record c's steps, so that drafted ones can be undone
>>> drafted = pool.step([c], u[None, :, 11])
>>> pool.rewind(c, 1); pool.commit(c)
>>> bool(np.array_equal(pool.step([c], u[None, :, 11]), drafted))  # the undone step again
True
>>> d = pool.load_state_dict(pool.state_dict(b))  # b as plain data, admitted again
>>> x = np.stack([u[:, 11], u[:, 11]])  # the same input for b and d
>>> first = pool.emit([b, d], x[:, :2], channels=slice(0, 2))  # layers sharing a pool emit
>>> second = pool.emit([b, d], x[:, 2:], channels=slice(2, 4))  # their channels, then one
>>> pool.advance([b, d])  # advance fills the future
>>> y = np.concatenate([first, second], axis=1)
>>> bool(np.allclose(y, futurefill.causal_conv(u[:, :12], phi)[:, 11]))  # both rows b's
True
>>> pool.release(a); e = pool.admit()  # a's slot, zeroed, for a new stream
>>> y = np.concatenate([pool.prefill(e, u[:, :3]), pool.prefill(e, u[:, 3:8])], axis=-1)
>>> bool(np.allclose(y, futurefill.causal_conv(u[:, :8], phi)))  # a prompt, in chunks
True
"""

from .grouping import TaskGroup, due_groups
from .stream_pool import PoolStats, StreamPool

__all__ = ["PoolStats", "StreamPool", "TaskGroup", "due_groups"]
