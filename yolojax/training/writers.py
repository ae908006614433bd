"""Metric writers: a tiny interface (``write_scalars(step, {name: value})``, ``close()``) with TensorBoard and
console implementations, so the training loop does not care where its numbers go.

TensorBoard event files are written on process 0 only (``<workdir>/tensorboard``); the console writer prints one
line per call with the chosen keys.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

# What the console line shows of the training metrics (all of them go to TensorBoard).
CONSOLE_KEYS = ("train/loss", "train/coord", "train/obj", "train/noobj", "train/class", "train/lr",
                "train/images_per_sec")


class MetricWriter(Protocol):
    """What the training loop writes its metrics to."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardWriter:
    def __init__(self, logdir: str):
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(logdir=logdir)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for k, v in scalars.items():
            if np.ndim(v) == 0:
                self._tb.add_scalar(k, float(v), step)
        self._tb.flush()

    def close(self) -> None:
        self._tb.close()


class ConsoleWriter:
    """``step N: loss=... lr=...`` for the scalars whose names are in ``keys`` (all, if ``keys`` is None);
    calls with none of them print nothing."""

    def __init__(self, print_fn: Callable[[str], None] = print, keys: Sequence[str] | None = None):
        self.print_fn, self.keys = print_fn, keys

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        shown = [(k, scalars[k]) for k in (self.keys if self.keys is not None else scalars) if k in scalars]
        if shown:
            self.print_fn(f"step {step}: " + " ".join(f"{k.split('/')[-1]}={float(v):.4g}" for k, v in shown))

    def close(self) -> None:
        pass


class MultiWriter:
    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for w in self.writers:
            w.write_scalars(step, scalars)

    def close(self) -> None:
        for w in self.writers:
            w.close()


def create_default_writer(workdir: str, *, console: bool = True, print_fn: Callable[[str], None] = print,
                          console_keys: Sequence[str] | None = CONSOLE_KEYS) -> MetricWriter:
    """TensorBoard in ``<workdir>/tensorboard`` plus the console, on process 0 (``console=False`` elsewhere
    gives a writer that writes nothing)."""
    if not console:
        return MultiWriter([])
    return MultiWriter([TensorBoardWriter(os.path.join(workdir, "tensorboard")),
                        ConsoleWriter(print_fn, console_keys)])
