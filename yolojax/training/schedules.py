"""Learning-rate schedules from the papers and darknet, as optax schedules of the update step.

Conventions:
  * ``step`` is optax's 0-based update count (0 for the first update).
  * Darknet numbers its updates from 1 (``get_current_batch`` reads ``seen / batch`` after ``seen`` was
    already incremented), so the darknet policies (``burn_in``, ``steps``) are evaluated at ``step + 1``:
    the first update gets ``lr * (1 / burn_in) ** 4``, never exactly 0, and a ``steps=`` boundary ``b``
    takes effect from the update whose darknet number is ``b``.
  * Epochs are converted to steps in exactly one place, :func:`epochs_to_steps`.

Pure functions of Python numbers; the returned schedules are jit-able ``step -> lr`` callables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

Schedule = optax.Schedule


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Number of optimizer updates in one pass over ``num_examples`` (the remainder is dropped).

    Raises ValueError naming the values if the dataset is smaller than one batch.
    """
    if global_batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {global_batch_size}")
    if num_examples < global_batch_size:
        raise ValueError(
            f"the training split has {num_examples} examples, fewer than one batch of {global_batch_size}")
    return num_examples // global_batch_size


def epochs_to_steps(epochs: float, steps_in_epoch: int) -> int:
    """The one epoch -> step conversion: ``round(epochs * steps_in_epoch)``."""
    return int(round(epochs * steps_in_epoch))


def piecewise_steps(base_lr: float, boundaries: Sequence[int], scales: Sequence[float], *,
                    darknet_numbering: bool = True) -> Schedule:
    """Darknet's ``policy=steps`` on ``optax.piecewise_constant_schedule``: the rate is multiplied by
    ``scales[i]`` once the update number reaches ``boundaries[i]`` (scales compound, as in darknet; a boundary
    of -1 applies from the start).

    With ``darknet_numbering`` the update number is ``step + 1`` (see module docstring).
    """
    if len(boundaries) != len(scales):
        raise ValueError(f"steps and scales differ in length: {list(boundaries)} vs {list(scales)}")
    if any(b2 < b1 for b1, b2 in zip(boundaries, boundaries[1:])):
        raise ValueError(f"steps must be non-decreasing, got {list(boundaries)}")
    merged: dict[int, float] = {}
    for b, s in zip(boundaries, scales):  # a repeated boundary compounds its scales, as darknet does
        merged[int(b)] = merged.get(int(b), 1.0) * float(s)
    # A numpy scalar, not a jax array: a jitted step embeds it as a literal, with no device -> host copy when
    # it compiles (the step loop runs under train.no_host_transfers).
    main = optax.piecewise_constant_schedule(np.float32(base_lr), merged)
    offset = 1 if darknet_numbering else 0
    if not offset:
        return main

    def schedule(step):
        return main(jnp.asarray(step) + offset)

    return schedule


def with_burn_in(schedule: Schedule, base_lr: float, burn_in_steps: int, power: float = 4.0) -> Schedule:
    """Darknet ``burn_in``: ``base_lr * (n / burn_in) ** power`` for darknet update numbers
    ``n = step + 1 < burn_in``, then ``schedule(step)``. ``burn_in_steps <= 0`` returns ``schedule``."""
    if burn_in_steps <= 0:
        return schedule

    def burned(step):
        n = jnp.asarray(step, jnp.float32) + 1.0
        warm = base_lr * (n / burn_in_steps) ** power
        return jnp.where(n < burn_in_steps, warm, schedule(step))

    return burned


def with_linear_warmup(schedule: Schedule, init_lr: float, warmup_steps: int) -> Schedule:
    """Linear ramp from ``init_lr`` at step 0 to ``schedule(warmup_steps)`` at ``warmup_steps``, then
    ``schedule`` (the YOLOv1 paper: "slowly raise the learning rate from 1e-3 to 1e-2")."""
    if warmup_steps <= 0:
        return schedule

    def warmed(step):
        step = jnp.asarray(step, jnp.float32)
        target = schedule(warmup_steps)
        frac = jnp.clip(step / warmup_steps, 0.0, 1.0)
        return jnp.where(step < warmup_steps, init_lr + frac * (target - init_lr), schedule(step))

    return warmed


def yolov1_paper(steps_in_epoch: int, *, base_lr: float = 1e-2, warmup_init_lr: float = 1e-3,
                 warmup_epochs: float = 2.0, boundaries_epochs: Sequence[float] = (75, 105),
                 scales: Sequence[float] = (0.1, 0.1)) -> Schedule:
    """YOLOv1 paper (sec. 2.2): warm-up 1e-3 -> 1e-2 over the first epochs, 1e-2 until epoch 75, 1e-3 until
    105, 1e-4 until 135. ``warmup_epochs`` = 2 matches darknet's yolo-v1-paper.cfg (1e-2 reached at batch
    600 = 2.3 epochs of 07+12 at batch 64)."""
    bounds = [epochs_to_steps(e, steps_in_epoch) for e in boundaries_epochs]
    main = piecewise_steps(base_lr, bounds, scales, darknet_numbering=False)
    return with_linear_warmup(main, warmup_init_lr, epochs_to_steps(warmup_epochs, steps_in_epoch))


def yolov2_paper(steps_in_epoch: int, *, base_lr: float = 1e-3, boundaries_epochs: Sequence[float] = (60, 90),
                 scales: Sequence[float] = (0.1, 0.1), burn_in_steps: int = 1000,
                 power: float = 4.0) -> Schedule:
    """YOLO9000 paper (sec. 3): 1e-3, divided by 10 at epochs 60 and 90 (of 160), with darknet's
    ``burn_in=1000`` (yolov2-voc.cfg) in front."""
    bounds = [epochs_to_steps(e, steps_in_epoch) for e in boundaries_epochs]
    return with_burn_in(piecewise_steps(base_lr, bounds, scales), base_lr, burn_in_steps, power)


def build_schedule(cfg: Any, *, base_lr: float, steps_in_epoch: int, total_steps: int) -> Schedule:
    """The schedule described by a ``config.schedule`` section.

    Fields: ``name`` in {'steps', 'cosine', 'constant'}; ``boundaries_epochs`` and ``scales`` (for 'steps');
    ``warmup`` in {'none', 'linear', 'burn_in'} with ``warmup_epochs`` + ``warmup_init_lr`` (linear) or
    ``burn_in_steps`` + ``burn_in_power`` (darknet burn_in, counted in updates as darknet does);
    ``darknet_numbering`` (bool). 'cosine' decays from ``base_lr`` to 0 at ``total_steps``.
    """
    name = cfg.name
    if name == "steps":
        bounds = [epochs_to_steps(e, steps_in_epoch) for e in cfg.boundaries_epochs]
        main = piecewise_steps(base_lr, bounds, cfg.scales, darknet_numbering=cfg.darknet_numbering)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(base_lr, max(total_steps, 1))
    elif name == "constant":
        main = optax.constant_schedule(base_lr)
    else:
        raise ValueError(f"config.schedule.name={name!r}: expected 'steps', 'cosine' or 'constant'")
    warmup = cfg.warmup
    if warmup == "burn_in":
        return with_burn_in(main, base_lr, cfg.burn_in_steps, cfg.burn_in_power)
    if warmup == "linear":
        return with_linear_warmup(main, cfg.warmup_init_lr, epochs_to_steps(cfg.warmup_epochs, steps_in_epoch))
    if warmup == "none":
        return main
    raise ValueError(f"config.schedule.warmup={warmup!r}: expected 'none', 'linear' or 'burn_in'")


def total_steps_for(num_epochs: float, steps_in_epoch: int, override: int = -1) -> int:
    """Steps of a run: ``num_epochs`` of updates, or ``override`` when positive (``--config.total_steps=N``
    cuts a run short without changing its schedule)."""
    if override is not None and override > 0:
        return int(override)
    return max(1, epochs_to_steps(num_epochs, steps_in_epoch))


__all__ = [
    "Schedule", "steps_per_epoch", "epochs_to_steps", "piecewise_steps", "with_burn_in", "with_linear_warmup",
    "yolov1_paper", "yolov2_paper", "build_schedule", "total_steps_for",
]
