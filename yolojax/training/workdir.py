"""What a training workdir holds besides checkpoints: the lock of the run using it and the record of its configs.

**The lock** (``<workdir>/lock``). A run holds it from start to end (:func:`hold`), so a second run on the same
workdir stops at once with one line naming the holder (pid, host, start time) instead of racing the first one
for its checkpoints and ``config.json``. The file is locked with ``fcntl.flock``: the kernel releases it when its
process ends however it ends, so a lock left by a killed run (``kill -9``, a lost machine) is stale: the next run
takes it over and says whose it was. The file is never deleted (no race between a release and a new holder); a
released lock is an empty file. Where the filesystem has no ``flock`` the holder's pid is checked instead (on
the same host). Multi-host runs lock once, from process 0; the other processes learn its answer.

**The config record.** ``config.json`` is the config in effect; ``config_history.jsonl`` gets one line per
config a run started with when it differed from the previous one ({"step", "time", "changes", "config"}), so
the settings of earlier steps are never lost. A resumed run whose config changes what the earlier steps meant
(:func:`config_changes`: the data, batch size, schedule, optimizer, loss or seed; the model is checked against
the checkpoint itself) stops with ``ConfigChangeError`` naming each field, unless the change is accepted
(``allow``; ``experiments/train.py --allow_config_change``). A run's length (``total_steps``, ``num_epochs``),
evaluation, logging and checkpoint settings and where the data is read from may change freely (recorded all
the same).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from yolojax.config.base import base_config
from yolojax.training import checkpoints

LOCK_FILE = "lock"
HISTORY_FILE = "config_history.jsonl"

# Fields (dotted prefixes) that may change between the runs of one workdir without changing what its earlier
# steps meant; every other field must match the saved config unless the change is accepted.
FREE_FIELDS = ("total_steps", "num_epochs",
               "time_budget_minutes",  # another budget plans a new length from the run's step (docs/own_data.md)
               "log_every_steps", "progress_bar", "eval.", "checkpoint.", "profile.",
               "init.",  # only step 0 is initialized
               "model.",  # checked against the checkpoint itself (checkpoints.check_model), dtype free
               "data.tfds_data_dir", "data.voc_dir", "data.voc_tarballs", "data.extract_dir", "data.eval_split",
               "data.eval_image_size", "data.eval_letterbox", "data.num_workers", "data.num_threads",
               "data.prefetch_batches", "data.check", "data.fast_decode", "data.photometric_on")


class WorkdirInUseError(OSError):
    """Another run holds the workdir; the message (one line) names it: pid, host, start time, lock file."""


class ConfigChangeError(ValueError):
    """A resumed run's config differs from the saved one in fields that change what the earlier steps meant."""


# ----------------------------------------------------------------------------------------------------- lock
def _holder_text(info: Mapping[str, Any]) -> str:
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"


def _read_info(fd: int) -> dict | None:
    """The holder recorded in the lock file, or None when it is empty (released) or unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 1 << 16)
    try:
        info = json.loads(data.decode("utf-8")) if data.strip() else None
    except ValueError:
        return {"pid": "?", "host": "?", "started": f"? (unreadable lock file: {data[:40]!r})"}
    return info if isinstance(info, dict) else None


def _alive_here(info: Mapping[str, Any]) -> bool:
    """Whether the holder recorded in ``info`` may still run: a live pid on this host, or any other host (whose
    processes cannot be seen from here)."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info.get("pid")), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


class WorkdirLock:
    """The lock of ``<workdir>/lock`` (module docstring). ``acquire()`` raises WorkdirInUseError naming the
    holder, or takes the lock (over a stale one: ``took_over`` is then the dead holder's record); ``release()``
    empties the file and unlocks it."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = os.path.abspath(os.fspath(workdir))
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self.fd: int | None = None
        self.took_over: dict | None = None

    def acquire(self) -> "WorkdirLock":
        os.makedirs(self.workdir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                checked_by_pid = False
            except BlockingIOError:
                raise self._in_use(_read_info(fd)) from None
            except OSError as e:  # a filesystem without flock: the holder's pid decides
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                checked_by_pid = True
            previous = _read_info(fd)
            if previous is not None and checked_by_pid and _alive_here(previous):
                raise self._in_use(previous)
            self.took_over = previous
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv)[:300]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        if previous is not None:
            logging.warning("workdir %s: took over the stale lock of %s: that run ended without releasing it "
                            "(killed?)", self.workdir, _holder_text(previous))
        return self

    def _in_use(self, holder: Mapping[str, Any] | None) -> WorkdirInUseError:
        who = _holder_text(holder) if holder else "another run (it has not written its name yet)"
        return WorkdirInUseError(f"workdir {self.workdir} is in use by {who}; wait for that run to end, stop it, or "
                                 f"use another --workdir (lock file {self.path})")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass  # closing the file releases the lock all the same
        finally:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def hold(workdir: str | os.PathLike) -> Iterator[WorkdirLock | None]:
    """Holds ``workdir``'s lock for the duration of the context: taken by process 0 only (one lock for a
    multi-host run), whose answer every process learns, so all stop with WorkdirInUseError when it is held.
    Yields process 0's WorkdirLock (None on the other processes)."""
    lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
    error = None
    if lock is not None:
        try:
            lock.acquire()
        except WorkdirInUseError as e:
            error = e
    if jax.process_count() > 1:
        ok = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not ok and error is None:
            error = WorkdirInUseError(f"workdir {os.path.abspath(os.fspath(workdir))} is in use by another run "
                                      f"(process 0 could not lock {os.path.join(workdir, LOCK_FILE)})")
    if error is not None:
        raise error
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


# ------------------------------------------------------------------------------------------- configs
def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"optim.base_lr": 0.001, ...}: the leaves of a config as JSON values (tuples as lists)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.loads(json.dumps(value))}


def _as_json(config: Any) -> dict:
    return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def read_json(path: str | os.PathLike) -> dict | None:
    """A workdir's JSON file as a dict, or None when there is none or it is not readable (or not an object)."""
    try:
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def write_json(path: str | os.PathLike, value: Mapping[str, Any]) -> None:
    """Writes ``value`` as indented JSON to ``path`` atomically (a ``.tmp`` beside it, then renamed), creating
    its folder."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)


def saved_config(workdir: str | os.PathLike) -> dict | None:
    """``<workdir>/config.json`` as JSON, or None when there is none or it is not readable."""
    return read_json(os.path.join(os.fspath(workdir), "config.json"))


def config_changes(before: Mapping[str, Any], after: Any) -> list[dict[str, Any]]:
    """[{"field", "before", "after", "free"}] for each field that differs between the config ``before`` (JSON)
    and ``after``; "free" is True for :data:`FREE_FIELDS` (a field absent on one side reads "<missing>"), and for
    a field that ``before`` lacks because it was added to yolojax later, when it is at its default
    (``base_config``'s): new switches are off by default, which is what the earlier steps ran with."""
    a, b = _flat(before), _flat(_as_json(after))
    defaults = _flat(_as_json(base_config()))
    out = []
    for field in sorted(set(a) | set(b)):
        old, new = a.get(field, "<missing>"), b.get(field, "<missing>")
        if old != new:
            added = field not in a and field in defaults and defaults[field] == new
            out.append({"field": field, "before": old, "after": new,
                        "free": added or any(field == f or (f.endswith(".") and field.startswith(f))
                                             for f in FREE_FIELDS)})
    return out


def has_checkpoints(workdir: str | os.PathLike) -> bool:
    """Whether ``<workdir>/checkpoints`` holds a step > 0: earlier training steps exist (step 0 is at most the
    converted variables of ``experiments/convert_darknet.py``)."""
    try:
        names = os.listdir(os.path.join(os.fspath(workdir), checkpoints.CHECKPOINTS))
        return any(name.isdigit() and int(name) > 0 for name in names)
    except OSError:
        return False


def check_resume(workdir: str | os.PathLike, config: Any, *, allow: bool = False) -> list[dict[str, Any]]:
    """The changes of ``config`` against the workdir's saved one ([] when there is none). ConfigChangeError (one
    line, naming each field with its saved and new value) when the workdir has checkpoints and a change is not
    free, unless ``allow``."""
    before = saved_config(workdir)
    if before is None:
        return []
    changes = config_changes(before, config)
    bound = [c for c in changes if not c["free"]]
    if bound and not allow and has_checkpoints(workdir):
        listed = "; ".join(f"{c['field']}: {c['before']!r} (saved) vs {c['after']!r} (now)" for c in bound)
        raise ConfigChangeError(
            f"workdir {os.path.abspath(os.fspath(workdir))} was trained with another config ({listed}): these "
            "change what its earlier steps meant. Resume with the saved config (--config <workdir>/config.json), "
            "use a new --workdir, or accept the change with --allow_config_change (recorded in "
            f"{HISTORY_FILE})")
    return changes


def record_config(workdir: str | os.PathLike, config: Any, *, step: int) -> None:
    """Writes ``config`` as ``<workdir>/config.json`` and appends it to ``config_history.jsonl`` when it differs
    from the previous one (or the history is new), with the step it starts at and its changes (process 0). A
    ``config.json`` written before the history existed becomes its first line."""
    if jax.process_index() != 0:
        return
    workdir = os.path.abspath(os.fspath(workdir))
    history = os.path.join(workdir, HISTORY_FILE)
    before = saved_config(workdir)
    now = _as_json(config)
    lines = []
    if before is not None and not os.path.exists(history):
        lines.append({"step": None, "time": None, "changes": [], "config": before, "note": "config.json found "
                      "without a history"})
    changes = config_changes(before, now) if before is not None else []
    if before is None or changes or not os.path.exists(history):
        lines.append({"step": int(step), "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                      "changes": changes, "config": now})
    if lines:
        os.makedirs(workdir, exist_ok=True)
        with open(history, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    checkpoints.write_config(workdir, config)


def read_history(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of ``<workdir>/config_history.jsonl`` ([] when there is none)."""
    path = os.path.join(os.fspath(workdir), HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
