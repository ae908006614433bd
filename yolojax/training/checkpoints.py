"""Everything between a state pytree and disk: orbax checkpoints that are verified when read and heal.

Layout (see docs/checkpoints.md)::

    <workdir>/checkpoints/<step>/state   orbax PyTree (StandardSave) of the state dict, e.g.
                                         {"step", "params", "batch_stats", "opt_state", "rng", "seen"}
                                         [+ "ema": {"params", "batch_stats"}, the moving average]
    <workdir>/checkpoints/<step>/meta    JSON: caller's fields (e.g. "model", "ema") + "step", "metrics",
                                         "state_keys" (top-level keys of the state), "weights" (["raw"] or
                                         ["raw", "ema"]), "checksums"
    <workdir>/checkpoints/<step>/data    JSON: {"state": data-iterator state}
    <workdir>/checkpoints_damaged/<step> steps found damaged by :func:`restore` (moved, never deleted)

Writing (:func:`save`) refuses a state with a non-finite float leaf before anything reaches disk and records
a CRC-32 of every leaf's bytes. Reading (:func:`restore`, :func:`restore_variables`) checks the state's
structure and shapes against the target, then the checksums and finiteness of what was read; a step that
fails in any way other than "another model" is moved aside and the next older one is tried.

This module works on plain pytrees; it knows nothing of models or optimizers. Of configs it knows only the
model signature stored in ``meta`` (:func:`model_signature`, :func:`check_model`) and ``config.json``
(:func:`write_config`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import json
import logging as logging_std
import os
import re
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as cm

from yolojax.training import ema as ema_lib

PyTree = Any

ITEMS = ("state", "meta", "data")
CHECKPOINTS = "checkpoints"
DAMAGED = "checkpoints_damaged"

class CheckpointError(ValueError):
    """A checkpoint cannot be read or written; the message (one line) names the directory and step."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint of another model (or of a differently shaped state) than the caller expects."""


class NonFiniteStateError(FloatingPointError):
    """A state with a NaN/Inf float leaf; the message names the step and the leaf path."""


@dataclasses.dataclass
class Restored:
    """What :func:`restore` read.

    Attributes:
      step: the checkpoint's step.
      tree: the state, with the target's structure, dtypes and shardings, holding the target's top-level
        keys that the checkpoint has (a variables-only checkpoint from :func:`write_variables` has only
        "step", "params", "batch_stats"; the caller keeps its own values for the others).
      meta: the step's meta JSON (caller's fields plus "step", "metrics", "state_keys", "checksums").
      data_state: the data-iterator state saved with it (None for a variables-only checkpoint).
      skipped: (step, reason) for each newer step found damaged and moved aside before this one.
    """
    step: int
    tree: PyTree
    meta: dict
    data_state: Any
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)


class _Damage(Exception):
    """Internal: the step cannot be read (its files are damaged); ``reason`` is one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------------------------------------
# Leaves: paths, host copies, finiteness, checksums


def _flat(tree: PyTree) -> dict[str, Any]:
    """{"params/conv1/kernel": leaf}: orbax's own flattening (namedtuple fields by name, sequence items by
    index), so that the paths of a tree and of its checkpoint metadata agree."""
    return {"/".join(str(k) for k in keys): leaf for keys, leaf in ocp.tree.to_flat_dict(tree).items()}


def _host(leaf: Any) -> np.ndarray | None:
    """The leaf's values on this host, or None for a jax.Array sharded across hosts (not checked)."""
    if isinstance(leaf, jax.Array):
        if leaf.is_fully_addressable:
            return np.asarray(jax.device_get(leaf))
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return None
    return np.asarray(leaf)


def _is_float(a: np.ndarray) -> bool:
    return bool(jax.numpy.issubdtype(a.dtype, jax.numpy.inexact))


def _finite(a: np.ndarray) -> bool:
    return not _is_float(a) or bool(np.isfinite(a).all())


def _checksum(a: np.ndarray) -> str:
    """"<dtype>:<crc32 of the C-order bytes, 8 hex digits>"."""
    data = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return f"{a.dtype.name}:{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def first_nonfinite(tree: PyTree) -> str | None:
    """Path ("params/conv1/kernel") of the first float leaf holding a NaN or Inf, in orbax's (sorted-key)
    leaf order, or None. Copies each leaf to the host in turn (a device->host transfer of the tree)."""
    for path, leaf in _flat(tree).items():
        a = _host(leaf)
        if a is not None and not _finite(a):
            return path
    return None


# ----------------------------------------------------------------------------------------------------------
# Manager and save


def make_manager(workdir: str | os.PathLike, *, keep: int = 3, keep_best: bool = True, async_save: bool = True,
                 best_metric: str = "map"):
    """Orbax CheckpointManager on ``<workdir>/checkpoints`` (created): keeps the latest ``keep`` steps plus,
    with ``keep_best``, the one with the highest ``metrics[best_metric]`` among steps saved with metrics.
    Close it (``mngr.close()``) when done; with ``async_save`` call ``mngr.wait_until_finished()`` before
    reading what was saved."""
    quiet_orbax_logs()
    policies = [cm.LatestN(n=keep)]
    if keep_best:
        policies.append(cm.BestN(get_metric_fn=lambda m: float(m.get(best_metric, float("-inf"))), n=1,
                                 keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(preservation_policy=cm.AnyPreservationPolicy(policies), create=True,
                                           enable_async_checkpointing=async_save)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(os.fspath(workdir)), CHECKPOINTS), options=options,
                                 item_names=ITEMS)


def _jsonable(x: Any) -> Any:
    """numpy/jax scalars and arrays in meta/metrics -> python numbers and lists (JSON)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return x


def save(mngr, step: int, tree: PyTree, *, meta: Mapping[str, Any], data_state: Any,
         metrics: Mapping[str, float] | None = None) -> bool:
    """Writes ``tree`` as checkpoint ``step`` (async if the manager is); returns False if that step exists.

    Before anything is written, every leaf is copied to the host once (one leaf at a time): a float leaf
    holding NaN/Inf raises NonFiniteStateError (nothing is written), and each leaf's CRC-32 goes into
    ``meta["checksums"]`` (leaves sharded across hosts are neither checked nor checksummed). Cost: one extra
    device->host copy of the state plus ~0.15 s per 50M float32 on one CPU core (docs/checkpoints.md).

    A step that already exists is not rewritten (a resumed run saving the step it restored, or an
    evaluation and a periodic save landing on one step): the first write stands.

    Args:
      mngr: from :func:`make_manager`.
      step: the training step (the directory name).
      tree: the state pytree (jax or numpy arrays, python scalars).
      meta: JSON fields stored with it (e.g. {"model": signature, "ema": {"decay", "warmup_steps"}}); "step",
        "metrics", "state_keys", "weights" (["raw", "ema"] when the tree has an "ema" entry, else ["raw"])
        and "checksums" are set here.
      data_state: JSON-serializable data-iterator state.
      metrics: e.g. {"map": 0.71}; given to orbax for best-checkpoint preservation and stored in meta.
    """
    step = int(step)
    if step in mngr.all_steps():
        logging.info("checkpoint step %d already in %s; not rewritten", step, mngr.directory)
        return False
    checksums = {}
    for path, leaf in _flat(tree).items():
        a = _host(leaf)
        if a is None:
            continue
        if not _finite(a):
            raise NonFiniteStateError(f"refusing to save checkpoint step {step} in {mngr.directory}: leaf {path} "
                                      f"holds NaN/Inf (nothing written)")
        checksums[path] = _checksum(a)
    metrics = _jsonable(dict(metrics)) if metrics else {}
    keys = sorted(tree) if isinstance(tree, Mapping) else []
    meta = {**_jsonable(dict(meta)), "step": step, "metrics": metrics, "state_keys": keys,
            "weights": ["raw", "ema"] if "ema" in keys else ["raw"], "checksums": checksums}
    args = ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta),
                              data=ocp.args.JsonSave({"state": data_state}))
    _check_directory(mngr, step)
    try:
        with _writing(mngr, step):
            mngr.save(step, args=args, metrics=metrics or None, force=True)
    except ocp.checkpoint_manager.StepAlreadyExistsError:
        return False
    return True


def _check_directory(mngr, step: int) -> None:
    """Before a save: CheckpointError when the checkpoints folder was deleted during the run; steps deleted from
    it by hand are forgotten (``mngr.reload()``) instead of failing orbax's clean-up of old steps."""
    directory = os.fspath(mngr.directory)
    if not os.path.isdir(directory):
        raise CheckpointError(f"the checkpoint folder {directory} was deleted during the run: nothing saved at step "
                              f"{step} (rerun to start again, or restore the folder to resume)")
    if any(not os.path.isdir(os.path.join(directory, str(s))) for s in mngr.all_steps()):
        mngr.reload()


@contextlib.contextmanager
def _writing(mngr, step: int | None) -> Iterator[None]:
    """An orbax write failure (a full disk, a read-only or deleted folder, ...) becomes one CheckpointError line
    naming the folder, the step and the innermost cause; orbax's own reports of it (its worker threads' logged
    tracebacks, tensorstore callbacks into closed event loops) are dropped (``quiet_orbax_logs``)."""
    quiet_orbax_logs()
    try:
        yield
    except (CheckpointError, NonFiniteStateError, ocp.checkpoint_manager.StepAlreadyExistsError):
        raise
    except Exception as e:
        directory = os.fspath(mngr.directory)
        gone = "; the folder was deleted during the run" if not os.path.isdir(directory) else ""
        when = f" by step {step}" if step is not None else ""  # (an asynchronous write fails at the next one)
        code = re.search(r"os_error_code='?(\d+)", str(e))  # tensorstore's errno, at the end of a long message
        why = f"{os.strerror(int(code.group(1)))} (errno {code.group(1)}): " if code else ""
        raise CheckpointError(f"writing a checkpoint to {directory} failed{when}: {why}{_one_line(e)}{gone}") from e


def wait_until_finished(mngr) -> None:
    """``mngr.wait_until_finished()``: an asynchronous write that failed is one CheckpointError line."""
    with _writing(mngr, None):
        mngr.wait_until_finished()


# ----------------------------------------------------------------------------------------------------------
# Reading one step


def _one_line(e: BaseException) -> str:
    """The innermost cause of ``e`` (orbax wraps tensorstore's DATA_LOSS / OUT_OF_RANGE ... errors) as one
    line of at most 300 characters."""
    seen = {id(e)}
    while (e.__cause__ or e.__context__) is not None and id(e.__cause__ or e.__context__) not in seen:
        e = e.__cause__ or e.__context__
        seen.add(id(e))
    message = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else e  # KeyError's str is a repr
    text = " ".join(str(message).split())
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _no_orphan_reports() -> Iterator[None]:
    """When an orbax read fails, its other pending reads are abandoned and Python prints a traceback for
    each ("Exception ignored in: <coroutine ...>" as it is garbage-collected; "Event loop is closed" from
    tensorstore's threads completing into orbax's finished event loop). Those reports are dropped
    (``quiet_orbax_logs``); on a failure, the abandoned reads get a moment to finish and are collected."""
    quiet_orbax_logs()  # (installs the filter of those reports)
    try:
        yield
    except BaseException:
        time.sleep(0.1)  # best effort: let the abandoned reads finish while they are still dropped
        raise
    finally:
        gc.collect()


def _orbax_orphan(unraisable) -> bool:
    """An unraisable report of orbax's abandoned work: a pending read's coroutine collected, or tensorstore's
    threads completing into orbax's finished event loop ("Event loop is closed")."""
    orphan = (inspect.iscoroutine(unraisable.object)
              and "orbax" in getattr(getattr(unraisable.object, "cr_code", None), "co_filename", ""))
    return orphan or (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed")


def _unraisable_hook(unraisable) -> None:
    if not _orbax_orphan(unraisable):
        _unraisable_hook.previous(unraisable)


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Any failure inside becomes _Damage("<what>: <error>"), except out-of-memory (not the files' fault)."""
    try:
        yield
    except (_Damage, CheckpointMismatchError, MemoryError):
        raise
    except Exception as e:
        if "RESOURCE_EXHAUSTED" in str(e):
            raise
        raise _Damage(f"{what}: {_one_line(e)}") from e


def _read_json(mngr, step: int, item: str) -> Any:
    with _reading(f"reading {item}"):
        value = mngr.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
        if value is None:
            raise ValueError(f"item {item!r} is empty")
        return value


def _state_metadata(step_dir: str) -> dict[str, Any]:
    """{path: ArrayMetadata-like (shape, dtype)} of the step's state item, from its _METADATA."""
    handler = ocp.PyTreeCheckpointHandler()
    try:
        with _reading("reading state metadata"):
            tree = handler.metadata(epath.Path(step_dir) / "state").tree
            if not isinstance(tree, Mapping) or not tree:
                raise ValueError("no state tree")
            return tree
    finally:
        handler.close()


def _check_fits(where: str, target: Mapping[str, Any], stored: Mapping[str, Any]) -> None:
    """CheckpointMismatchError unless the stored leaves under target's keys have target's paths and shapes."""
    want, have = _flat(target), _flat({k: stored[k] for k in target})
    for path in sorted(set(want) | set(have)):
        if path not in have:
            raise CheckpointMismatchError(f"{where} does not fit: leaf {path} is not in the checkpoint")
        if path not in want:
            raise CheckpointMismatchError(f"{where} does not fit: checkpoint leaf {path} is not in the target")
        w, h = tuple(np.shape(want[path])), tuple(getattr(have[path], "shape", ()) or ())
        if w != h:
            raise CheckpointMismatchError(f"{where} does not fit: {path} has shape {h} in the checkpoint, "
                                          f"{w} in the target")


def _verify(tree: PyTree, checksums: Mapping[str, str]) -> None:
    """_Damage if a leaf's bytes differ from the CRC-32 recorded when saved, or it is non-finite."""
    for path, leaf in _flat(tree).items():
        a = _host(leaf)
        if a is None:
            continue
        # the checksum first: damaged bytes may also decode to NaN, and the mismatch is the real diagnosis
        want = checksums.get(path)
        if want is not None and want.split(":")[0] == a.dtype.name and want != _checksum(a):
            raise _Damage(f"checksum mismatch in leaf {path}")
        if not _finite(a):
            raise _Damage(f"leaf {path} holds NaN/Inf")


def _read_step(mngr, step: int, make_target: Callable[[Mapping[str, Any]], tuple[PyTree, PyTree]],
               check_meta: Callable[[dict], None] | None, read_data: bool) -> Restored:
    """Reads one step: meta -> check_meta -> state metadata -> structure check -> arrays -> data -> verify.

    ``make_target(stored_metadata_tree)`` gives (item, restore_args) for orbax's partial PyTree restore.
    Raises _Damage for anything wrong with the files, CheckpointMismatchError for another model/shape."""
    step_dir = os.path.join(os.fspath(mngr.directory), str(step))
    meta = _read_json(mngr, step, "meta")
    if not isinstance(meta, dict):
        raise _Damage("meta is not a JSON object")
    if check_meta is not None:
        check_meta(meta)
    stored = _state_metadata(step_dir)
    item, restore_args = make_target(stored)
    _check_fits(f"checkpoint step {step} in {mngr.directory}", item, stored)
    handler = ocp.PyTreeCheckpointHandler()
    try:
        with _reading("reading state"):
            tree = handler.restore(epath.Path(step_dir) / "state",
                                   args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                               partial_restore=True))
    finally:
        handler.close()
    data_state = None
    if read_data:
        data = _read_json(mngr, step, "data")
        if not isinstance(data, dict) or "state" not in data:
            raise _Damage("data item has no 'state'")
        data_state = data["state"]
    with _reading("verifying state"):
        _verify(tree, meta.get("checksums") or {})
    return Restored(step=step, tree=tree, meta=meta, data_state=data_state)


# ----------------------------------------------------------------------------------------------------------
# Healing


def _move_aside(mngr, step: int) -> str:
    """Moves ``checkpoints/<step>`` to ``checkpoints_damaged/<step>`` (``<step>.2``, ... if taken)."""
    src = os.path.join(os.fspath(mngr.directory), str(step))
    root = os.path.join(os.path.dirname(os.fspath(mngr.directory)), DAMAGED)
    dst, n = os.path.join(root, str(step)), 1
    while os.path.exists(dst):
        n += 1
        dst = os.path.join(root, f"{step}.{n}")
    if jax.process_index() == 0:
        os.makedirs(root, exist_ok=True)
        shutil.move(src, dst)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"yolojax_checkpoint_moved_{step}")
    mngr.reload()
    return dst


def _restore_healing(mngr, step: int | None, read: Callable[[int], Restored]) -> Restored | None:
    """The requested step (damage: CheckpointError), or the newest intact one (damaged ones moved aside)."""
    where = mngr.directory
    if step is not None:
        step = int(step)
        if step not in mngr.all_steps():
            raise CheckpointError(f"{where}: no checkpoint for step {step} (steps: {sorted(mngr.all_steps())})")
        try:
            with _no_orphan_reports():
                return read(step)
        except _Damage as e:
            raise CheckpointError(f"checkpoint step {step} in {where} is damaged ({e.reason}); left in place")
    skipped: list[tuple[int, str]] = []
    while True:
        steps = sorted(mngr.all_steps(), reverse=True)
        if not steps:
            if skipped:
                raise CheckpointError(f"every checkpoint in {where} is damaged (steps {[s for s, _ in skipped]}, "
                                      f"moved to {os.path.join(os.path.dirname(os.fspath(where)), DAMAGED)})")
            return None
        try:
            with _no_orphan_reports():
                restored = read(steps[0])
        except _Damage as e:
            moved = _move_aside(mngr, steps[0])
            nxt = f"trying step {steps[1]}" if len(steps) > 1 else "no older checkpoint"
            logging.warning("checkpoint step %d in %s is damaged (%s); moved to %s; %s", steps[0], where, e.reason,
                         moved, nxt)
            skipped.append((steps[0], e.reason))
            continue
        restored.skipped = skipped
        return restored


def restore(mngr, target: PyTree, *, step: int | None = None,
            check_meta: Callable[[dict], None] | None = None) -> Restored | None:
    """Restores ``step`` (default: the newest intact one) into ``target``'s structure and shardings.

    Args:
      mngr: from :func:`make_manager`.
      target: the state dict with ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)`` leaves (or arrays);
        top-level keys missing from the checkpoint are left out of ``Restored.tree``.
      step: a given step must be intact (damage: CheckpointError, nothing moved).
      check_meta: called with the step's meta before any array is read; its CheckpointMismatchError (another
        model) propagates and nothing is moved.

    Without ``step``, a newest step that cannot be read (orbax/tensorstore errors, missing items or
    _METADATA, checksum mismatch, NaN/Inf leaves) is moved to ``<workdir>/checkpoints_damaged/<step>`` with
    one warning line and the next older step is tried. Returns None if there is no checkpoint; raises
    CheckpointError if every one was damaged, CheckpointMismatchError if the state's structure or shapes
    differ from ``target`` (a code or config change, not damage).
    """
    if not isinstance(target, Mapping):
        raise TypeError(f"target must be a dict of the state's top-level entries, got {type(target).__name__}")

    def make_target(stored):
        item = {k: v for k, v in target.items() if k in stored}
        return item, ocp.checkpoint_utils.construct_restore_args(item)

    return _restore_healing(mngr, step, lambda s: _read_step(mngr, s, make_target, check_meta, read_data=True))


# ----------------------------------------------------------------------------------------------------------
# Variables only (inference, converted darknet weights)

_VARIABLES = ("params", "batch_stats")


class _OrbaxInfoFilter(logging_std.Filter):
    """Drops the INFO (and DEBUG) records that orbax's own modules log through absl, and the tracebacks its
    worker threads log for a failed read or write (the same exception reaches the caller, which reports it in
    one line); keeps its warnings and every other module's records."""

    _root = os.path.dirname(os.path.abspath(ocp.__file__)) + os.sep

    def filter(self, record: logging_std.LogRecord) -> bool:
        if not os.path.abspath(record.pathname).startswith(self._root):
            return self._foreign(record)
        return record.levelno >= logging_std.WARNING and not record.exc_info

    def _foreign(self, record: logging_std.LogRecord) -> bool:
        """Another module's record: dropped only when it carries an exception raised inside orbax (asyncio's
        "exception was never retrieved" for the sibling writes of a failed one)."""
        tb = record.exc_info[2] if record.exc_info else None
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(self._root):
                return False
            tb = tb.tb_next
        return True


_ORBAX_FILTER = _OrbaxInfoFilter()


def quiet_orbax_logs() -> None:
    """Quiets orbax without lowering absl's verbosity: a filter on absl's (and asyncio's) logger drops orbax's
    INFO records and the tracebacks logged for its failed work (:class:`_OrbaxInfoFilter`), and
    ``sys.unraisablehook`` drops the reports of its abandoned work after a failure (:func:`_orbax_orphan`); every
    other record and report goes on as before. Idempotent."""
    for name in ("absl", "asyncio"):
        logger = logging_std.getLogger(name)
        if _ORBAX_FILTER not in logger.filters:
            logger.addFilter(_ORBAX_FILTER)
    if sys.unraisablehook is not _unraisable_hook:
        _unraisable_hook.previous = sys.unraisablehook
        sys.unraisablehook = _unraisable_hook


def resolve_checkpoint_dir(path: str | os.PathLike) -> tuple[str, int | None]:
    """A workdir, its checkpoints/ folder or ``checkpoints/<step>`` -> (checkpoints folder, step or None); the
    workdir is the folder's parent. CheckpointError (one line) for a missing path or one that is neither."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint or workdir not found: {path}")
    name, parent = os.path.basename(path), os.path.dirname(path)
    if name.isdigit() and os.path.basename(parent) == CHECKPOINTS:
        return parent, int(name)
    if name == CHECKPOINTS and os.path.isdir(path):
        return path, None
    if os.path.isdir(os.path.join(path, CHECKPOINTS)):
        return os.path.join(path, CHECKPOINTS), None
    raise CheckpointError(f"{path}: not a yolojax workdir (no {CHECKPOINTS}/ folder) nor a checkpoint "
                          f"({CHECKPOINTS}/<step>)")


def _read_manager(directory: str):
    quiet_orbax_logs()
    options = ocp.CheckpointManagerOptions(create=False)  # (read_only=True logs two warnings per call)
    return ocp.CheckpointManager(directory, options=options, item_names=ITEMS)


def restore_variables(path: str | os.PathLike, *, step: int | None = None,
                      check_meta: Callable[[dict], None] | None = None, weights: str = "auto") -> tuple[dict, dict]:
    """Model variables from a workdir (its newest intact checkpoint, healing as :func:`restore`) or one
    checkpoint ``<workdir>/checkpoints/<step>`` (must be intact).

    ``weights``: "raw" reads the trained variables (``params``, ``batch_stats``); "ema" their moving average
    (the state's ``ema`` entry, written when training ran with ``config.optim.ema.decay > 0``); "auto" (default)
    the EMA when the checkpoint has one, else the raw ones. Only that tree is read (orbax partial restore; the
    optimizer state and the other weights are neither read nor needed), as host numpy arrays with their saved
    dtypes. Works for training checkpoints and for :func:`write_variables` ones (raw only).
    Returns ({"params": ..., "batch_stats": ... (if saved non-empty)}, meta), where ``meta`` is the step's
    meta plus "restored_weights": "ema" or "raw". ``check_meta(meta)`` is called before any array is read, as
    in :func:`restore` (what it raises propagates). Raises CheckpointError (one line) if the path does not
    exist, is not a workdir or holds no checkpoint, or if ``weights="ema"`` and the checkpoint read holds no
    EMA (naming it); ValueError for another ``weights``.
    """


    ema_lib.check_choice(weights)
    directory, path_step = resolve_checkpoint_dir(path)
    if step is not None and path_step is not None and int(step) != path_step:
        raise CheckpointError(f"{path}: is checkpoint step {path_step}, but step={step} was asked for")
    step = path_step if step is None else step

    def make_target(stored, step):
        if "params" not in stored:
            raise _Damage("state has no params")
        if weights == "ema" and "ema" not in stored:  # not damage: nothing is moved
            raise CheckpointError(f"checkpoint {os.path.join(directory, str(step))} holds no EMA weights (trained "
                                  "without config.optim.ema.decay > 0, or converted); use weights='raw'")
        if weights != "raw" and "ema" in stored:
            item = {"ema": {k: stored["ema"][k] for k in _VARIABLES if k in stored["ema"]}}
        else:
            item = {k: stored[k] for k in _VARIABLES if k in stored}
        return item, jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)

    def read(s):
        return _read_step(mngr, s, lambda stored: make_target(stored, s), check_meta, read_data=False)

    quiet_orbax_logs()
    mngr = _read_manager(directory)
    try:
        restored = _restore_healing(mngr, step, read)
    finally:
        mngr.close()
    if restored is None:
        raise CheckpointError(f"{directory}: holds no checkpoint")
    which = "ema" if "ema" in restored.tree else "raw"
    tree = restored.tree["ema"] if which == "ema" else restored.tree
    variables = {k: v for k, v in tree.items() if k in _VARIABLES and (k == "params" or v)}
    return variables, {**restored.meta, "restored_weights": which}


def write_variables(workdir: str | os.PathLike, variables: Mapping[str, PyTree], *, meta: Mapping[str, Any],
                    step: int = 0, overwrite: bool = True) -> str:
    """Writes model variables as checkpoint ``step`` of ``workdir`` (e.g. converted darknet weights).

    The state item holds {"step": int32 scalar, "params", "batch_stats" ({} if none)}; no optimizer state
    and no EMA (meta "weights": ["raw"]).
    :func:`restore_variables` reads it; :func:`restore` of a training target returns those three keys only.
    Re-running into the same workdir replaces that step (``overwrite``; the old one is kept until the new
    one is written); a workdir with checkpoints of other steps is refused (CheckpointError). Verified and
    checksummed like :func:`save`. Returns the checkpoint directory.
    """
    unknown = sorted(set(variables) - set(_VARIABLES))
    if "params" not in variables or unknown:
        raise CheckpointError(f"variables must be {{'params', 'batch_stats'}}, got keys {sorted(variables)}")
    step = int(step)
    workdir = os.path.abspath(os.fspath(workdir))
    tree = {"step": np.asarray(step, np.int32), "params": variables["params"],
            "batch_stats": variables.get("batch_stats") or {}}
    quiet_orbax_logs()
    mngr = make_manager(workdir, keep=1, keep_best=False, async_save=False)
    try:
        steps = sorted(mngr.all_steps())
        others = [s for s in steps if s != step]
        if others:
            raise CheckpointError(f"{mngr.directory} already holds checkpoints of steps {others}; "
                                  f"write the variables into a new workdir")
        if steps and not overwrite:
            raise CheckpointError(f"{mngr.directory} already holds checkpoint step {step} (overwrite=False)")
        old = None
        if steps:
            old = os.path.join(workdir, f"{CHECKPOINTS}_replaced", str(step))
            if os.path.exists(old):
                shutil.rmtree(old)
            os.makedirs(os.path.dirname(old), exist_ok=True)
            shutil.move(os.path.join(os.fspath(mngr.directory), str(step)), old)
            mngr.reload()
        try:
            save(mngr, step, tree, meta=meta, data_state=None)
            mngr.wait_until_finished()
        except BaseException:
            if old is not None and not os.path.exists(os.path.join(os.fspath(mngr.directory), str(step))):
                shutil.move(old, os.path.join(os.fspath(mngr.directory), str(step)))
                os.rmdir(os.path.dirname(old))
            raise
        if old is not None:
            shutil.rmtree(os.path.dirname(old))
    finally:
        mngr.close()
    return os.path.join(workdir, CHECKPOINTS, str(step))


# ----------------------------------------------------------------------------------------------------------
# Configs: the model signature in meta, and config.json beside the checkpoints.


def model_signature(config: Any) -> dict:
    """What must agree between a checkpoint and the config that resumes or loads it: the model section (minus
    the compute dtype, which may change between runs) as plain JSON."""
    model = json.loads(config.model.to_json_best_effort())
    model.pop("dtype", None)
    return model


def _diff(a: Any, b: Any, prefix: str = "model") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{prefix}.{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    return [] if a == b else [f"{prefix}: checkpoint {a!r} vs config {b!r}"]


def check_model(meta: Mapping[str, Any], config: Any, where: str) -> None:
    """CheckpointMismatchError (one line) listing the model fields that differ between a checkpoint's meta and
    ``config``."""
    diffs = _diff(dict(meta.get("model", {})), model_signature(config))
    if diffs:
        raise CheckpointMismatchError(f"{where} holds a checkpoint of another model ({'; '.join(diffs)}); use a "
                                      "new --workdir or the matching config")


def write_config(workdir: str | os.PathLike, config: Any) -> str:
    """Writes the resolved config (after overrides) as ``<workdir>/config.json`` (process 0; atomically)."""
    path = os.path.join(os.path.abspath(os.fspath(workdir)), "config.json")
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))
        os.replace(path + ".tmp", path)
    return path
