"""Periodic actions of the training loop: run something every N steps (and at the last step), and profile.

The loop calls ``action.before_step(step)`` before each update and ``action(step, is_last=...)`` after it, with
``step`` the number of updates done. Each action decides for itself whether it is due.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import jax


class PeriodicAction:
    """Calls ``fn(step)`` after every ``every_steps``-th update (``every_steps=0``: never periodically) and, with
    ``on_last``, after the last one. ``timed``: an object with an ``excluded`` float attribute that accumulates
    the seconds spent here (so training throughput leaves evaluation and checkpoint writes out)."""

    def __init__(self, fn: Callable[[int], Any], *, every_steps: int, on_last: bool = True, timed: Any = None):
        if every_steps < 0:
            raise ValueError(f"every_steps={every_steps}: expected >= 0 (0 = only at the last step)")
        self.fn, self.every_steps, self.on_last, self.timed = fn, int(every_steps), on_last, timed

    def due(self, step: int, is_last: bool) -> bool:
        return (self.every_steps > 0 and step % self.every_steps == 0) or (self.on_last and is_last)

    def before_step(self, step: int) -> None:
        del step

    def __call__(self, step: int, *, is_last: bool = False) -> None:
        if not self.due(step, is_last):
            return
        start = time.perf_counter()
        self.fn(step)
        if self.timed is not None:
            self.timed.excluded += time.perf_counter() - start


class Profile:
    """Records a ``jax.profiler`` trace (TensorBoard's profile plugin / Perfetto) of updates
    ``[start_step, start_step + num_steps)`` into ``log_dir``; ``num_steps=0`` disables it."""

    def __init__(self, log_dir: str, *, start_step: int, num_steps: int, enabled: bool = True):
        self.log_dir, self.start_step, self.num_steps = log_dir, int(start_step), int(num_steps)
        self.enabled = enabled and self.num_steps > 0 and self.start_step >= 0
        self._active = False

    def before_step(self, step: int) -> None:
        if self.enabled and not self._active and step == self.start_step:
            jax.profiler.start_trace(self.log_dir)
            self._active = True

    def __call__(self, step: int, *, is_last: bool = False) -> None:
        if self._active and (step >= self.start_step + self.num_steps or is_last):
            jax.profiler.stop_trace()
            self._active = False
