"""What a training run settles when it starts, from its data and its machine: anchors fitted to the training
boxes (``config.model.anchors = "auto"``) and a schedule length that fits a time budget
(``config.time_budget_minutes``). Both are written to the workdir, so evaluation, detection, export, a resumed run
and a re-run see the same values.

Auto anchors (``resolve_anchors``): k-means with distance 1 - IoU (``yolojax.ops.anchors.kmeans_anchors``, the same
clustering and seed as ``experiments/compute_anchors.py``) on the cleaned training boxes (``sources.box_shapes``:
clipped, empty boxes dropped, difficult objects left out when training drops them), converted to the config's unit
(cells of 32 px at ``data.image_size``, times ``augment.zoom`` when training zooms). The workdir's ``config.json``
then holds the anchors themselves, and ``<workdir>/anchors.json`` what they were fitted on and their mean best IoU;
a later run on the same workdir with the same data, input size and number of anchors reuses that file instead of
clustering again.

Time budget (``TimeBudget``, ``plan_total_steps``): the clock starts when training starts. The first steps of the
run follow the schedule planned for ``num_epochs``; after the first epoch (at least ``MIN_MEASURE_STEPS``, at most
``MAX_MEASURE_STEPS`` steps, the first, compiling step not counted) the loop times one evaluation, and the schedule
length becomes the largest number of steps whose training, evaluations (the periodic ones and the final one) and a
safety reserve (the first step's compile time for the recompiled step, and ``RESERVE_FRACTION`` of the budget) end
within the budget. The plan is saved as ``<workdir>/time_budget.json``; a run of the same workdir with the same
budget keeps it (a resumed run finishes the planned schedule; a finished run trains nothing), a run with another
budget plans again from its own step and its own clock: it trains for the new budget. Should the steps become
slower than measured (a machine that got busy), the run ends early, with its evaluation, rather than late
(``TimeBudget.out_of_time``; the log says so).
"""
from __future__ import annotations

import ast
import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from absl import logging

from yolojax.config import data as data_defaults
from yolojax.data import sources
from yolojax.ops import anchors as anchors_lib
from yolojax.training import workdir as workdir_lib

AUTO = "auto"
ANCHORS_FILE = "anchors.json"
BUDGET_FILE = "time_budget.json"
KMEANS_RESTARTS, KMEANS_SEED = 5, 0  # experiments/compute_anchors.py's defaults: both give the same anchors
MIN_MEASURE_STEPS, MAX_MEASURE_STEPS = 5, 100
RESERVE_FRACTION = 0.02


# ------------------------------------------------------------------------------------------------ anchors
def parse_anchors(value: Any, field: str = "config.model.anchors") -> Any:
    """``value`` as ``"auto"`` or a tuple of (w, h) pairs. A string other than "auto" is read as a Python literal
    (what a ``--config.model.anchors="((1.2, 1.5), ...)"`` override of a config whose anchors are "auto" gives);
    ValueError naming ``field`` when it is neither."""
    if isinstance(value, str):
        if value.strip() == AUTO:
            return AUTO
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(f"{field}={value!r}: expected 'auto' or ((w, h), ...) in cells of 32 px at "
                             "data.image_size") from None
    try:
        pairs = tuple((float(w), float(h)) for w, h in value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}={value!r}: expected 'auto' or ((w, h), ...) in cells of 32 px at "
                         "data.image_size") from None
    if not pairs or not all(w > 0 and h > 0 and math.isfinite(w * h) for w, h in pairs):
        raise ValueError(f"{field}={value!r}: expected at least one (w, h) pair, each side positive")
    return pairs


def wants_auto_anchors(config: ml_collections.ConfigDict) -> bool:
    """Whether ``config.model.anchors`` is "auto" (the own-data default of configs/custom.py)."""
    anchors = config.model.anchors
    return isinstance(anchors, str) and anchors.strip() == AUTO


def fit_anchors(data_cfg: Mapping[str, Any], num_anchors: int, image_size: float) -> dict[str, Any]:
    """k-means anchors of ``data_cfg``'s training split at a ``image_size`` px training input.

    Returns {"anchors": [[w, h], ...] in cells of 32 px at ``image_size`` (sorted by area), "mean_iou": the mean
    best shape IoU of the training boxes with them, "num_boxes", and what they were fitted on: "image_size",
    "num_anchors", "format", "root", "train_split", "drop_difficult"}. ValueError when the split has fewer boxes
    than anchors."""
    wh = sources.box_shapes(data_cfg, data_cfg["train_split"], include_difficult=not data_cfg["drop_difficult"])
    if len(wh) < num_anchors:
        raise ValueError(f"config.model.anchors='auto': the training split {data_cfg['train_split']!r} has "
                         f"{len(wh)} boxes, fewer than config.model.v2.num_anchors={num_anchors}")
    normalized, mean_iou = anchors_lib.kmeans_anchors(wh, num_anchors, restarts=KMEANS_RESTARTS, seed=KMEANS_SEED)
    grid = anchors_lib.anchors_normalized_to_grid(normalized, image_size / 32)
    return {"anchors": [[round(float(w), 6), round(float(h), 6)] for w, h in grid], "mean_iou": float(mean_iou),
            "num_boxes": int(len(wh)), **_fitted_on(data_cfg, num_anchors, image_size)}


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _fitted_on(data_cfg: Mapping[str, Any], num_anchors: int, image_size: float) -> dict[str, Any]:
    return {"image_size": _number(image_size), "num_anchors": int(num_anchors), "source": str(data_cfg["source"]),
            "format": str(data_cfg.get("format", "")), "root": str(data_cfg.get("root", "")),
            "train_split": str(data_cfg["train_split"]), "drop_difficult": bool(data_cfg["drop_difficult"])}


def with_anchors(config: ml_collections.ConfigDict, anchors: Any) -> ml_collections.ConfigDict:
    """A copy of ``config`` (locked as it was) whose ``model.anchors`` is ``anchors`` (a tuple of pairs)."""
    out = ml_collections.ConfigDict(config.to_dict())
    with out.ignore_type():
        out.model.anchors = tuple(tuple(float(v) for v in pair) for pair in anchors)
    if config.is_locked:
        out.lock()
    return out


def resolve_anchors(config: ml_collections.ConfigDict, workdir: str | None = None, *,
                    is_main: bool = True) -> tuple[ml_collections.ConfigDict, dict | None]:
    """``config`` with its ``model.anchors`` as numbers: "auto" fitted by :func:`fit_anchors` (or read back from
    ``<workdir>/anchors.json`` when it was fitted there on the same data, input size and number of anchors), a
    literal string parsed. Returns (config, the fit summary or None when the anchors were given). Writes
    ``anchors.json`` (process 0, ``is_main``) only when it fits anew. Configs of the v1 family are returned as
    they are."""
    anchors = config.model.anchors
    if not isinstance(anchors, str):
        return config, None
    parsed = parse_anchors(anchors)
    if parsed != AUTO:
        return with_anchors(config, parsed), None
    num, size = int(config.model.v2.num_anchors), data_defaults.anchor_input_size(config.data)
    path = os.path.join(workdir, ANCHORS_FILE) if workdir else None
    saved = workdir_lib.read_json(path) if path else None
    wanted = _fitted_on(config.data, num, size)
    if saved is not None and all(saved.get(k) == v for k, v in wanted.items()) and len(saved.get("anchors", ())) == num:
        summary = saved
        logging.info("anchors: auto, as fitted before in %s (mean best IoU %.3f)", path, summary["mean_iou"])
    else:
        summary = fit_anchors(config.data, num, size)
        if path and is_main:
            workdir_lib.write_json(path, summary)
        text = ", ".join(f"({w:.3f}, {h:.3f})" for w, h in summary["anchors"])
        logging.info("anchors: auto: k-means on %d training boxes at %g px: %s (cells of 32 px), mean best IoU "
                     "%.3f", summary["num_boxes"], size, text, summary["mean_iou"])
    return with_anchors(config, summary["anchors"]), summary


# ------------------------------------------------------------------------------------------------ time budget
def evaluations_between(step: int, total: int, every_steps: int) -> int:
    """How many evaluations a run from ``step`` to ``total`` does: one every ``every_steps`` (0 = none) in
    ``(step, total]``, plus the final one when ``total`` is not such a step."""
    if total <= step:
        return 0
    if every_steps <= 0:
        return 1
    periodic = total // every_steps - step // every_steps
    return periodic + (0 if total % every_steps == 0 else 1)


def plan_total_steps(*, budget_seconds: float, elapsed_seconds: float, step: int, seconds_per_step: float,
                     eval_seconds: float, eval_every_steps: int, reserve_seconds: float) -> int:
    """The largest total number of steps ``T >= step`` such that a run now at ``step``, ``elapsed_seconds`` into
    its budget, ends with its last evaluation within ``budget_seconds``::

        elapsed + (T - step) * seconds_per_step + evaluations_between(step, T, eval_every) * eval_seconds
            + reserve_seconds <= budget_seconds

    ``step`` itself when not even one more step fits (the run then ends at once, with its evaluation)."""
    if seconds_per_step <= 0:
        raise ValueError(f"plan_total_steps: seconds_per_step must be positive, got {seconds_per_step}")

    def cost(total: int) -> float:
        return (elapsed_seconds + (total - step) * seconds_per_step
                + evaluations_between(step, total, eval_every_steps) * eval_seconds + reserve_seconds)

    high = step + max(int((budget_seconds - elapsed_seconds - reserve_seconds) // seconds_per_step), 0)
    low = step
    if cost(step + 1) > budget_seconds:
        return step
    while low < high:  # cost is non-decreasing in T: the last T with cost(T) <= budget
        mid = (low + high + 1) // 2
        if cost(mid) <= budget_seconds:
            low = mid
        else:
            high = mid - 1
    return low


def measure_steps(steps_in_epoch: int) -> int:
    """Steps timed before the plan: the first epoch, at least ``MIN_MEASURE_STEPS`` and at most
    ``MAX_MEASURE_STEPS`` (the first, compiling step of the run not counted)."""
    return int(min(max(steps_in_epoch, MIN_MEASURE_STEPS), MAX_MEASURE_STEPS))


@dataclasses.dataclass
class BudgetPlan:
    """A time budget's plan, as ``<workdir>/time_budget.json`` holds it (seconds are of the clock of the run that
    planned)."""

    budget_minutes: float
    total_steps: int  # the schedule's length
    start_step: int  # the step the planning run started from
    measured_steps: int  # steps timed (after the first one)
    seconds_per_step: float
    compile_seconds: float  # the run's first step (compilation included)
    eval_seconds: float  # the timed evaluation
    eval_every_steps: int
    reserve_seconds: float
    planned_at_seconds: float  # clock of the run when it planned (evaluation included)
    steps_in_epoch: int
    ended_at_step: int = -1  # >= 0: the run ended there, out of time (TimeBudget.out_of_time), before total_steps

    @property
    def num_epochs(self) -> float:
        return self.total_steps / max(self.steps_in_epoch, 1)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "num_epochs": self.num_epochs}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "BudgetPlan":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names})


class TimeBudget:
    """The time budget of one run: its clock, its measurements and its plan.

    ``minutes`` <= 0: no budget (every method is then a no-op). ``clock``: seconds, monotonic (tests pass a fake).
    """

    def __init__(self, minutes: float, *, clock: Callable[[], float] = time.perf_counter):
        self.minutes = float(minutes or 0.0)
        self.clock = clock
        self.started = clock() if self.enabled else 0.0
        self.plan: BudgetPlan | None = None
        self._first_step_start: float | None = None
        self._compile_seconds = 0.0
        self._measure_start: tuple[int, float] | None = None
        self._last_check: tuple[int, float] | None = None

    @property
    def enabled(self) -> bool:
        return self.minutes > 0

    @property
    def seconds(self) -> float:
        return 60.0 * self.minutes

    def elapsed(self) -> float:
        return self.clock() - self.started

    def saved_plan(self, workdir: str) -> BudgetPlan | None:
        """The plan of ``<workdir>/time_budget.json`` when it was made for this budget, else None."""
        if not self.enabled:
            return None
        saved = workdir_lib.read_json(self.plan_path(workdir))
        if saved is None or float(saved.get("budget_minutes", -1)) != self.minutes:
            return None
        try:
            self.plan = BudgetPlan.from_json(saved)
        except TypeError:  # a file of another version: plan again
            return None
        return self.plan

    def plan_path(self, workdir: str) -> str:
        return os.path.join(workdir, BUDGET_FILE)

    def guess_total_steps(self, workdir: str, step: int, *, minimum: int) -> int:
        """The provisional schedule length of a run that plans from ``step`` past its ``num_epochs`` (extending a
        finished run by a new budget): ``step`` plus the steps the budget holds at the step time of the
        workdir's last plan, or ``minimum`` without one."""
        saved = workdir_lib.read_json(self.plan_path(workdir)) or {}
        seconds_per_step = float(saved.get("seconds_per_step", 0.0) or 0.0)
        if seconds_per_step <= 0:
            return int(minimum)
        return max(int(minimum), step + int(self.seconds * (1.0 - RESERVE_FRACTION) / seconds_per_step))

    def measure_window(self, start_step: int, steps_in_epoch: int) -> tuple[int, int]:
        """(first, last) step numbers (updates done) between which the step time is measured."""
        return start_step + 1, start_step + 1 + measure_steps(steps_in_epoch)

    def first_step_started(self) -> None:
        self._first_step_start = self.clock()

    def mark(self, step: int, first: int) -> None:
        """Called (after the device finished ``step``) at the window's first step: starts the timing."""
        now = self.clock()
        if step == first and self._first_step_start is not None:
            self._compile_seconds = now - self._first_step_start
        self._measure_start = (step, now)

    def make_plan(self, step: int, *, eval_seconds: float, eval_every_steps: int, steps_in_epoch: int,
                  measure_end: float) -> BudgetPlan:
        """The plan at ``step`` (the window's last step, timed at ``measure_end``), given the timed evaluation."""
        first, started = self._measure_start
        seconds_per_step = max((measure_end - started) / max(step - first, 1), 1e-6)
        reserve = self._compile_seconds + RESERVE_FRACTION * self.seconds
        elapsed = self.elapsed()
        total = plan_total_steps(budget_seconds=self.seconds, elapsed_seconds=elapsed, step=step,
                                 seconds_per_step=seconds_per_step, eval_seconds=eval_seconds,
                                 eval_every_steps=eval_every_steps, reserve_seconds=reserve)
        self.plan = BudgetPlan(budget_minutes=self.minutes, total_steps=int(total), start_step=first - 1,
                               measured_steps=int(step - first), seconds_per_step=float(seconds_per_step),
                               compile_seconds=float(self._compile_seconds), eval_seconds=float(eval_seconds),
                               eval_every_steps=int(eval_every_steps), reserve_seconds=float(reserve),
                               planned_at_seconds=float(elapsed), steps_in_epoch=int(steps_in_epoch))
        return self.plan

    def check_due(self, step: int) -> bool:
        """Whether the loop should wait for the device and ask :meth:`out_of_time` after ``step``: about once a
        second of planned steps (the host runs ahead of the device; waiting every step would cost overlap)."""
        if not self.enabled or self.plan is None:
            return False
        return step % max(1, int(1.0 / max(self.plan.seconds_per_step, 1e-6))) == 0

    def out_of_time(self, step: int, total_steps: int) -> bool:
        """Whether the steps until the next check (at the slower of the planned and the recent step time) and the
        final evaluation would end past the budget: steps that became slower than measured (e.g. a machine that
        got busy). The loop then ends the run at ``step``, with its evaluation, before the schedule's end.
        Call after the device finished ``step``."""
        if not self.enabled or self.plan is None:
            return False
        now = self.elapsed()
        per_step = self.plan.seconds_per_step
        if self._last_check is not None and step > self._last_check[0]:
            per_step = max(per_step, (now - self._last_check[1]) / (step - self._last_check[0]))
        self._last_check = (step, now)
        every = max(1, int(1.0 / max(self.plan.seconds_per_step, 1e-6)))
        ahead = min(every, max(total_steps - step, 0))
        return now + ahead * per_step + self.plan.eval_seconds + RESERVE_FRACTION * self.seconds > self.seconds

    def save(self, workdir: str) -> None:
        if self.plan is not None:
            workdir_lib.write_json(self.plan_path(workdir), self.plan.to_json())


__all__ = ["AUTO", "ANCHORS_FILE", "BUDGET_FILE", "BudgetPlan", "TimeBudget", "evaluations_between",
           "fit_anchors", "measure_steps", "parse_anchors", "plan_total_steps", "resolve_anchors", "with_anchors",
           "wants_auto_anchors"]
