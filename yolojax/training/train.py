"""Training and evaluation loop: TrainState, optimizer, jitted data-parallel steps, checkpoints.

The only orchestrator is :func:`train_and_evaluate`. The step functions are pure
(``train_step(state, batch) -> (state, metrics)``) and are jitted once per input shape over a
``jax.sharding.Mesh`` with one ``'data'`` axis: the batch is sharded along its leading axis (``P('data')``),
the state is replicated (``P()``) and donated. The same code runs on one CPU, several GPUs, or a
multi-host slice (launch one process per host after ``jax.distributed.initialize()``; each host feeds its
own rows of the global batch).

The loop is a few periodic actions (``yolojax.training.periodic``): log (``yolojax.training.writers``), evaluate
(``yolojax.evaluation.loop``, the same path as ``experiments/evaluate.py``), checkpoint
(``yolojax.training.checkpoints``: never a non-finite state, restore falls back past a damaged checkpoint) and
profile. Which loss, decoder and thresholds a model uses comes from ``yolojax.models.heads``.

Box formats: batches carry normalized xyxy boxes (``docs/conventions.md``); detections leave the device as
normalized xyxy of the network input and become devkit pixels in ``yolojax.evaluation.loop``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from yolojax.data import check, formats, photometric, pipeline, sources
from yolojax.evaluation import evaluators as evaluators_lib
from yolojax.evaluation import loop as eval_loop
from yolojax.evaluation import plots
from yolojax.models import build_model, heads
from yolojax.ops import anchors as anchors_lib
from yolojax.training import checkpoints, initialization, periodic, planning
from yolojax.training import ema as ema_lib
from yolojax.training import schedules as schedules_lib
from yolojax.training import workdir as workdir_lib
from yolojax.training import writers as metric_writers

PyTree = Any
Batch = Mapping[str, np.ndarray]


# ----------------------------------------------------------------------------------------------------------
# State and optimizer
# ----------------------------------------------------------------------------------------------------------


class TrainState(train_state.TrainState):
    """Flax TrainState plus what darknet training needs to continue exactly.

    Fields: ``step`` int32 [] updates done; ``params``; ``batch_stats`` ({} without batch norm);
    ``opt_state``; ``rng`` uint32 [2] base key (per-step keys are ``fold_in(rng, step)``);
    ``seen`` int32 [] training images seen before the next batch (drives the YOLOv2 prior warm-up);
    ``ema``: None, or with ``config.optim.ema.decay > 0`` the moving average ``{"params", "batch_stats"}``
    of the variables (``yolojax.training.ema``), updated by every train step.
    """
    batch_stats: PyTree = None
    rng: jax.Array = None
    seen: jax.Array = None
    ema: PyTree = None


def decay_mask(params: PyTree) -> PyTree:
    """True for conv/dense ``kernel`` leaves only: darknet decays weights, never biases or batch-norm
    scale/offset."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
    return flax.traverse_util.unflatten_dict({k: k[-1] == "kernel" for k in flat})


def make_optimizer(optim_cfg: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Optimizer from ``config.optim``.

    'sgd' (default, darknet): g + weight_decay * w (kernels only) into momentum, then -lr; this is darknet's
    update (``axpy(-decay*batch, w, dw); w += lr/batch * dw; dw *= momentum``) with gradients already
    averaged over the batch. 'adam' (the Keras seeds): Adam with the same masked decay added to the gradient.
    ``grad_clip_norm > 0`` clips by global norm first. ``freeze`` (a regex over "/"-joined parameter paths,
    ``initialization.freeze_mask``) gives the matching leaves no update and no weight decay.
    """
    parts = []
    if optim_cfg.grad_clip_norm and optim_cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim_cfg.grad_clip_norm))
    if optim_cfg.weight_decay and optim_cfg.weight_decay > 0:
        parts.append(optax.add_decayed_weights(optim_cfg.weight_decay, mask=decay_mask))
    if optim_cfg.name == "sgd":
        parts.append(optax.sgd(schedule, momentum=optim_cfg.momentum or None, nesterov=optim_cfg.nesterov))
    elif optim_cfg.name == "adam":
        parts.append(optax.adam(schedule, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps))
    else:
        raise ValueError(f"config.optim.name={optim_cfg.name!r}: expected 'sgd' or 'adam'")
    tx = optax.chain(*parts)
    if optim_cfg.get("freeze", ""):
        tx = initialization.freeze(tx, functools.partial(initialization.freeze_mask, regex=optim_cfg.freeze))
    return tx


# ----------------------------------------------------------------------------------------------------------
# Mesh and shardings
# ----------------------------------------------------------------------------------------------------------


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over all (global) devices with axis ``'data'``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``'data'``."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(batch: Batch, mesh: Mesh) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global jax arrays sharded along ``'data'``.

    Each process passes its own rows (local batch = global batch / process count), so this is the same call on
    one host and on a multi-host slice.
    """
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def enable_compilation_cache(cache_dir: str) -> str:
    """Turns on JAX's persistent compilation cache in ``cache_dir`` (``config.compilation_cache_dir``; ``~``
    expanded; "" = off), so a rerun, a resumed run or another run of the same model loads its compiled steps
    (one per multi-scale size) from disk instead of compiling them again. A cache JAX already has
    (``JAX_COMPILATION_CACHE_DIR``, ``jax.config.update("jax_compilation_cache_dir", ...)``) is kept as it is.
    Returns the directory in use ("" = none)."""
    current = jax.config.jax_compilation_cache_dir
    if current or not cache_dir:
        return current or ""
    path = os.path.abspath(os.path.expanduser(cache_dir))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    return path


@contextlib.contextmanager
def no_host_transfers():
    """What the step loop runs under between log steps: no device -> host transfer at all (a metric read, a
    ``float()`` or ``device_get`` would make the host wait for the device every step) and no implicit device ->
    device transfer (a state on the wrong sharding). The loop adds no implicit host -> device transfer for the
    step itself (a numpy argument); the prefetched batches' copies to the device are what it allows. Enforced by
    the runtime on GPUs and TPUs (on the CPU, whose arrays already live in host memory, device -> host reads are
    not checked; ``tests/test_accelerator.py`` checks them there)."""
    with jax.transfer_guard_device_to_host("disallow_explicit"), jax.transfer_guard_device_to_device("disallow"):
        yield


# ----------------------------------------------------------------------------------------------------------
# Steps (pure functions; jitted by the caller)
# ----------------------------------------------------------------------------------------------------------


def _variables(params: PyTree, batch_stats: PyTree) -> dict:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def all_finite(tree: PyTree) -> jax.Array:
    """bool []: every floating leaf of ``tree`` is finite (one fused reduction on device)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def train_step(state: TrainState, batch: Mapping[str, jax.Array], *, loss_fn: Callable,
               schedule: optax.Schedule, freeze_stats: str = "", ema: Mapping[str, Any] | None = None,
               freeze: str = ""
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD update on a global batch.

    batch: image uint8 [B, H, W, 3] (or float32 in [0, 1]); boxes float32 [B, M, 4] normalized xyxy; classes
    int32 [B, M]; mask bool [B, M]; optional photometric float32 [B, 3]: each row's darknet hue / saturation /
    exposure jitter as the pipeline drew it, applied here on the device (``data.photometric.train_inputs``;
    absent when the pipeline applied it or none is configured). Model outputs are cast to float32 before the loss
    (bf16 compute, f32 loss and params).
    ``freeze_stats``: a regex over "batch_stats/..." paths whose batch-norm statistics stay fixed.
    ``ema``: ``ema.settings(config.optim)`` ({"decay", "warmup_steps"}) when ``state.ema`` is kept; the average
    then moves towards the new variables (``yolojax.training.ema.update``; ``freeze``, the parameter regex of
    ``config.optim.freeze``, and ``freeze_stats`` keep frozen leaves of the EMA unchanged).
    Returns the new state and scalar metrics: 'loss', the loss parts, 'lr', 'grad_norm', 'ema_decay' (with
    ``ema``: d_t of this step) and 'state_finite' (1.0 when every parameter, batch statistic, optimizer and
    EMA leaf of the new state is finite; the loop stops on 0 before any checkpoint holds that state).
    """
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    images = photometric.train_inputs(batch["image"], batch.get("photometric"))

    def objective(params):
        outputs, mutated = state.apply_fn(_variables(params, state.batch_stats), images, train=True,
                                          mutable=["batch_stats"], rngs={"dropout": dropout_rng})
        total, parts = loss_fn(outputs.astype(jnp.float32), batch["boxes"], batch["classes"], batch["mask"],
                               state.seen)
        return total, (parts, mutated)

    (loss, (parts, mutated)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads)
    new_stats = mutated.get("batch_stats", state.batch_stats) if state.batch_stats else state.batch_stats
    if freeze_stats and state.batch_stats:
        new_stats = initialization.keep_frozen_stats(new_stats, state.batch_stats, freeze_stats)
    new_state = new_state.replace(batch_stats=new_stats, seen=state.seen + batch["image"].shape[0])
    extra = {}
    if ema is not None and state.ema is not None:
        new_state = new_state.replace(ema=ema_lib.update(
            state.ema, {"params": new_state.params, "batch_stats": new_stats}, new_state.step, **ema,
            freeze=freeze, freeze_stats=freeze_stats))
        extra["ema_decay"] = ema_lib.decay_at(new_state.step, **ema)
    finite = all_finite((new_state.params, new_state.batch_stats, new_state.opt_state, new_state.ema))
    metrics = {"loss": loss, **{k: jnp.asarray(v, jnp.float32) for k, v in parts.items()},
               "lr": jnp.asarray(schedule(state.step), jnp.float32), "grad_norm": optax.global_norm(grads),
               **extra, "state_finite": finite.astype(jnp.float32)}
    return new_state, metrics


def eval_step(state: TrainState, images: jax.Array, *, head: heads.Head,
              nms_kwargs: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Forward pass, decode and fixed-size per-class NMS, all on device (``Head.forward_detect``).

    images uint8 [B, H, W, 3] (or float32 in [0, 1]) -> {"boxes": [B, K, 4] normalized xyxy of the input,
    "scores": [B, K], "classes": [B, K] int32 (-1 pad), "count": [B] int32}.
    """
    return head.forward_detect(state.apply_fn, _variables(state.params, state.batch_stats), images, **nms_kwargs)


@dataclasses.dataclass
class Steps:
    """The jitted step functions of one run and the shardings they use."""

    mesh: Mesh
    train: Callable  # (state, batch) -> (state, metrics); state donated
    eval: Callable  # (state, images) -> detections
    state_sharding: PyTree


def make_steps(config: ml_collections.ConfigDict, mesh: Mesh, abstract_state: TrainState,
               schedule: optax.Schedule) -> Steps:
    """Jits train/eval steps with explicit shardings. jit caches one executable per input shape, so
    multi-scale training compiles once per size (10 sizes at most in the paper's recipe)."""
    head = heads.Head.from_config(config)
    state_sharding = jax.tree.map(lambda _: replicated(mesh), abstract_state)
    data = batch_sharding(mesh)
    freeze_stats = config.optim.freeze if config.optim.get("freeze_batch_stats", True) else ""
    ema = ema_lib.settings(config.optim) if abstract_state.ema is not None else None
    train = jax.jit(functools.partial(train_step, loss_fn=head.loss_fn(config.loss), schedule=schedule,
                                      freeze_stats=freeze_stats, ema=ema, freeze=config.optim.get("freeze", "")),
                    in_shardings=(state_sharding, data), out_shardings=(state_sharding, replicated(mesh)),
                    donate_argnums=(0,))
    nms_kwargs = dict(score_threshold=config.eval.score_threshold, iou_threshold=config.eval.nms_iou_threshold,
                      max_detections=config.eval.max_detections)
    evaluate = jax.jit(functools.partial(eval_step, head=head, nms_kwargs=nms_kwargs),
                       in_shardings=(state_sharding, data), out_shardings=data)
    return Steps(mesh=mesh, train=train, eval=evaluate, state_sharding=state_sharding)


def create_train_state(config: ml_collections.ConfigDict, model: flax.linen.Module, tx: optax.GradientTransformation,
                       mesh: Mesh, image_size: int) -> TrainState:
    """Initializes a replicated TrainState directly with its shardings (no host copy of the parameters).

    Initialization uses ``fold_in(PRNGKey(seed), 0)``; dropout/step keys fold the step into ``fold_in(..., 1)``.
    """
    root = jax.random.PRNGKey(config.seed)

    def init(root):
        images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
        variables = model.init({"params": jax.random.fold_in(root, 0), "dropout": jax.random.fold_in(root, 2)},
                               images, train=False)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), apply_fn=model.apply, params=params, tx=tx,
                          opt_state=tx.init(params), batch_stats=variables.get("batch_stats", {}),
                          rng=jax.random.fold_in(root, 1), seen=jnp.zeros((), jnp.int32))

    abstract = jax.eval_shape(init, root)
    sharding = jax.tree.map(lambda _: replicated(mesh), abstract)
    init = jax.jit(init, out_shardings=sharding)
    if mesh.devices.flat[0].platform == "cpu":
        # It runs once: XLA:CPU's full LLVM optimization of its random-normal kernels took 4x longer to compile
        # (quickstart: 10 s against 2.5 s of CPU) than level 1, which gives the same values.
        return init.lower(root).compile(compiler_options={"xla_backend_optimization_level": 1})(root)
    return init(root)


def state_to_tree(state: TrainState) -> dict:
    """The arrays of a TrainState as a plain dict (what ``yolojax.training.checkpoints`` writes); "ema" only when the
    state keeps one."""
    tree = {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
            "opt_state": state.opt_state, "rng": state.rng, "seen": state.seen}
    if state.ema is not None:
        tree["ema"] = state.ema
    return tree


def with_fresh_ema(state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    """``state`` with ema_0 = a copy of its variables when ``config.optim.ema`` is on, else with no EMA."""
    if ema_lib.settings(config.optim) is None:
        return state.replace(ema=None)
    return state.replace(ema=ema_lib.start({"params": state.params, "batch_stats": state.batch_stats}))


def evaluated_state(state: TrainState) -> tuple[TrainState, str]:
    """The state evaluation runs and which weights it holds: the EMA variables in place of the raw ones
    ("ema") when the state keeps an EMA, else ``state`` itself ("raw"). Same pytree structure, so the jitted
    eval step does not recompile."""
    if state.ema is None:
        return state, "raw"
    return state.replace(params=state.ema["params"], batch_stats=state.ema["batch_stats"]), "ema"


# ----------------------------------------------------------------------------------------------------------
# Evaluation (device: forward + decode + NMS; host: the one evaluation path, yolojax.evaluation.loop)
# ----------------------------------------------------------------------------------------------------------


def _all_rows(x: jax.Array | np.ndarray) -> np.ndarray:
    """A global array sharded over 'data', or host-local rows -> the rows of every host in process order, on
    every host (``multihost_utils.process_allgather``; one host: its own rows)."""
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


_GT_KEYS = ("boxes", "classes", "mask", "difficult", "orig_size", "index")


def _common_capacity(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An eval batch with its ground truth padded to the most objects per image of any host's batch: eval batches
    hold every object (M varies with the images), and hosts gather rows of one shape."""
    m = batch["mask"].shape[1]
    top = int(np.max(_all_rows(np.asarray([m], np.int32)))) if jax.process_count() > 1 else m
    out = dict(batch)
    for key, fill in (("boxes", 0.0), ("classes", -1), ("mask", False), ("difficult", False)):
        widths = [(0, 0), (0, top - m)] + [(0, 0)] * (batch[key].ndim - 2)
        out[key] = np.pad(batch[key], widths, constant_values=fill)
    return out


def evaluate(steps: Steps, state: TrainState, config: ml_collections.ConfigDict, class_names: tuple[str, ...],
             *, keep_images: int = 0) -> dict[str, Any]:
    """Scores ``state`` on ``config.data.eval_split`` through the one evaluation path (``yolojax.evaluation.loop``),
    with ``config.eval``'s thresholds.

    Returns the evaluators' metrics (``evaluators_lib.compute``: VOC's "map_07", "map_area", per-class APs and
    precision-recall curves, the confusion matrix and error breakdown "analysis", and the COCO-style ones) plus
    "num_images", "images_per_sec", "eval_seconds" (the loop over the split); with ``keep_images`` also "images":
    the first ``keep_images`` eval images with their detections and ground truth (``plots.EvalImages``, for
    drawing; the same images at every evaluation).
    """
    data = pipeline.EvalData(config.data, config.data.eval_split)
    size = int(config.data.eval_image_size)
    per_process = config.eval.batch_size // jax.process_count()
    kept = plots.EvalImages(keep_images, gather=_all_rows)

    def gathered():  # local images (to shard) + every host's ground truth rows
        for batch in data.batches(per_process, size):
            batch = _common_capacity(batch)
            yield {"image": batch["image"], **{k: _all_rows(batch[k]) for k in _GT_KEYS}}

    def detect(batch):
        images = shard_batch({"image": batch["image"]}, steps.mesh)["image"]
        return {k: _all_rows(v) for k, v in steps.eval(state, images).items()}

    evaluators = evaluators_lib.make_evaluators(class_names, config.eval.match_iou_threshold)
    stats = eval_loop.evaluate_batches(detect, gathered(), evaluators, image_id=data.image_id,
                                       input_hw=(size, size), letterbox=bool(config.data.eval_letterbox),
                                       on_batch=kept if keep_images else None)
    result = evaluators_lib.compute(evaluators)
    result.update(num_images=stats["num_images"], images_per_sec=stats["images_per_sec"], eval_seconds=stats["seconds"])
    if keep_images:
        result["images"] = kept
    return result


def log_evaluation(writer: metric_writers.MetricWriter, step: int, result: Mapping[str, Any],
                     config: ml_collections.ConfigDict, *, prefix: str = "eval", title: str = "") -> float:
    """Writes an evaluation to ``writer`` (``writers.write_evaluation``: the scalars, and with
    ``config.eval.tensorboard_images`` the precision-recall, confusion-matrix and eval-image pictures, drawn on the
    host from ``result``: no forward pass). Returns the seconds the pictures took (0 without them)."""
    images, start = None, time.perf_counter()
    if config.eval.get("tensorboard_images", True):
        images = plots.evaluation_images(result, result.get("images"), score_threshold=config.eval.score_threshold,
                                         draw_score_threshold=heads.DRAW_SCORE_THRESHOLD, title=title)
    metric_writers.write_evaluation(writer, step, result, prefix=prefix, images=images)
    return time.perf_counter() - start if images else 0.0


# ----------------------------------------------------------------------------------------------------------
# Checks before anything is compiled
# ----------------------------------------------------------------------------------------------------------


class NonFiniteLossError(FloatingPointError):
    """The loss or the state became NaN or inf; the message names the step and the loss parts."""


def check_finite(step: int, metrics: Mapping[str, float]) -> None:
    """NonFiniteLossError naming the step (and the loss parts) if the loss or the new state is not finite."""
    if not math.isfinite(float(metrics["loss"])) or float(metrics.get("state_finite", 1.0)) != 1.0:
        what = "loss" if not math.isfinite(float(metrics["loss"])) else "parameters or optimizer state"
        parts = ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(metrics.items()) if k != "state_finite")
        raise NonFiniteLossError(f"{what} became nan or inf at step {step}: {parts}")


def check_batch_size(config: ml_collections.ConfigDict, mesh: Mesh) -> int:
    """The per-process batch; the global batch must split evenly over devices and processes."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    for field in ("batch_size", "eval.batch_size"):
        value = config.batch_size if field == "batch_size" else config.eval.batch_size
        if value <= 0 or value % n_dev or value % n_proc:
            raise ValueError(f"config.{field}={value} does not split over {n_dev} devices in {n_proc} processes")
    return config.batch_size // n_proc


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_values(config: ml_collections.ConfigDict) -> None:
    """Each value that would otherwise train silently wrong or fail deep inside a worker or jit, named with its
    field: counts, sizes and batch sizes positive (input sizes multiples of the 32-px stride), ``total_steps``
    -1 or positive, a positive finite learning rate, non-negative weight decay and momentum, ``optim.freeze`` a
    valid regex."""
    for field, value, low in (("log_every_steps", config.log_every_steps, 1),
                              ("checkpoint.every_steps", config.checkpoint.every_steps, 1),
                              ("eval.every_steps", config.eval.every_steps, 0),
                              ("checkpoint.keep", config.checkpoint.keep, 1),
                              ("batch_size", config.batch_size, 1),
                              ("eval.batch_size", config.eval.batch_size, 1),
                              ("eval.max_detections", config.eval.max_detections, 1),
                              ("data.max_boxes", config.data.max_boxes, 1),
                              ("data.multiscale_every_steps", config.data.multiscale_every_steps, 1),
                              ("schedule.burn_in_steps", config.schedule.get("burn_in_steps", 0), 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"config.{field}={value!r}: expected an integer >= {low}"
                             + (" (0 = only at the end)" if field == "eval.every_steps" else ""))
    if isinstance(config.total_steps, bool) or not isinstance(config.total_steps, int) or \
            not (config.total_steps == -1 or config.total_steps > 0):
        raise ValueError(f"config.total_steps={config.total_steps!r}: expected a positive number of steps, or -1 "
                         f"for config.num_epochs={config.num_epochs!r} epochs")
    if config.total_steps == -1 and not (_number(config.num_epochs) and config.num_epochs > 0):
        raise ValueError(f"config.num_epochs={config.num_epochs!r}: expected a positive number (or set "
                         "config.total_steps)")
    sizes = [("data.image_size", config.data.image_size), ("data.eval_image_size", config.data.eval_image_size)]
    sizes += [(f"data.multiscale_sizes[{i}]", v) for i, v in enumerate(config.data.multiscale_sizes)]
    for field, value in sizes:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 32:
            raise ValueError(f"config.{field}={value!r}: expected a positive multiple of 32 (the models' stride)")
    optim = config.optim
    if not (_number(optim.base_lr) and optim.base_lr > 0):
        raise ValueError(f"config.optim.base_lr={optim.base_lr!r}: expected a learning rate > 0")
    for field in ("weight_decay", "momentum", "grad_clip_norm"):
        value = optim.get(field, 0.0)
        if not (_number(value) and value >= 0):
            raise ValueError(f"config.optim.{field}={value!r}: expected a number >= 0")
    initialization.freeze_mask({}, optim.get("freeze", ""))  # an invalid regex: named
    budget = config.get("time_budget_minutes", 0.0)
    if not (_number(budget) and budget >= 0):
        raise ValueError(f"config.time_budget_minutes={budget!r}: expected a number of minutes >= 0 (0 = no budget)")


def check_freeze(config: ml_collections.ConfigDict, model: flax.linen.Module) -> None:
    """ValueError naming ``config.optim.freeze`` when the regex matches no parameter of ``model`` (a typo would
    otherwise freeze nothing, silently). Traces the model's init (``jax.eval_shape``); nothing is compiled."""
    regex = config.optim.get("freeze", "")
    if not regex:
        return
    size = int(config.data.image_size)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                                               jnp.zeros((1, size, size, 3), jnp.float32), train=False))
    mask = initialization.freeze_mask(shapes["params"], regex)
    if not any(jax.tree.leaves(mask)):
        leaves = jax.tree_util.tree_leaves_with_path(shapes["params"])
        paths = [initialization.path_of("params", kp) for kp, _ in leaves]
        raise ValueError(f"config.optim.freeze={regex!r} matches no parameter of config.model.name="
                         f"{config.model.name!r} (paths look like {', '.join(paths[:3])}, ...)")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Cross-field checks that would otherwise fail deep inside jit or after compilation, each naming the fields
    (:func:`check_values` first)."""

    check_values(config)
    if planning.wants_auto_anchors(config):  # fitted after the data check (planning.resolve_anchors)
        heads.family_of(config.model.name)  # an unknown model name: named
    else:
        heads.Head.from_config(config)  # unknown model name / anchors that do not fit: named
    num_classes = int(config.model.num_classes)
    names = sources.class_names(config.data)
    n_data = len(names)
    if num_classes != n_data:
        fmt = config.data.get("format", "")
        raise ValueError(f"config.model.num_classes={num_classes} but the dataset (config.data.source="
                         f"{config.data.source!r}{f', format={fmt!r}' if fmt else ''}) has {n_data} classes "
                         f"({', '.join(names[:5])}{', ...' if n_data > 5 else ''}): set "
                         f"--config.model.num_classes={n_data}")
    ema_lib.settings(config.optim)  # a decay outside [0, 1) or a negative warm-up: named
    if config.eval.metric not in ("map_07", "map_area"):
        raise ValueError(f"config.eval.metric={config.eval.metric!r}: expected 'map_07' or 'map_area'")
    if config.init.darknet_weights and not os.path.isfile(config.init.darknet_weights):
        raise FileNotFoundError(f"config.init.darknet_weights={config.init.darknet_weights!r} is not a file")


# ----------------------------------------------------------------------------------------------------------
# Experiment
# ----------------------------------------------------------------------------------------------------------


def initialize(state: TrainState, config: ml_collections.ConfigDict, model: flax.linen.Module,
               workdir: str | None = None) -> TrainState:
    """Initializes the variables of a fresh ``state`` from ``config.init``: darknet weights by layer order
    (``init.darknet_weights``, read with ``init.darknet_cfg`` or the shipped cfg of the model's trunk), then a
    yolojax checkpoint by path and shape (``init.checkpoint``, a workdir or checkpoint dir; its EMA weights when it
    holds them, ``checkpoints.restore_variables``' default). What was copied
    and what kept its random initialization goes to the log and to ``<workdir>/init_report.json``."""
    init = config.init
    if not (init.darknet_weights or init.checkpoint):
        return state
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    reports = []
    if init.darknet_weights:
        variables, report = initialization.from_darknet(model, variables, init.darknet_weights,
                                                        model_cfg=config.model, cfg_path=init.darknet_cfg or None)
        reports.append(("darknet_weights", report))
    if init.checkpoint:
        if not os.path.exists(init.checkpoint):
            raise FileNotFoundError(f"config.init.checkpoint={init.checkpoint!r} does not exist")
        source, source_meta = checkpoints.restore_variables(init.checkpoint)  # its EMA weights when it has them
        variables, report = initialization.from_variables(variables, source, source=init.checkpoint)
        reports.append(("checkpoint", report))
        if jax.process_index() == 0:
            logging.info("init (checkpoint): the %s weights of step %s of %s", source_meta["restored_weights"],
                         source_meta.get("step"), init.checkpoint)
    if jax.process_index() == 0:
        for what, report in reports:
            for line in report.lines():
                logging.info("init (%s): %s", what, line)
        if workdir is not None:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "init_report.json"), "w") as f:
                json.dump({what: json.loads(report.to_json()) for what, report in reports}, f, indent=2)

    def put(new, current):
        return jax.device_put(jnp.asarray(new, current.dtype), current.sharding)

    return state.replace(params=jax.tree.map(put, variables["params"], state.params),
                         batch_stats=jax.tree.map(put, variables.get("batch_stats", {}), state.batch_stats))


@dataclasses.dataclass
class Experiment:
    """What a config builds before the training loop (handy in notebooks and tests)."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    model: flax.linen.Module
    schedule: optax.Schedule
    steps: Steps
    state: TrainState
    steps_in_epoch: int
    total_steps: int  # the run's last step
    class_names: tuple[str, ...]
    schedule_steps: int = 0  # the length the schedule spans (total_steps unless config.total_steps cuts it)


def build_experiment(config: ml_collections.ConfigDict, mesh: Mesh | None = None,
                     workdir: str | None = None, *, schedule_steps: int | None = None) -> Experiment:
    """Model, schedule, optimizer, initial (replicated, ``config.init``-initialized) state and jitted steps.

    ``config.model.anchors = "auto"`` is fitted here, after the data check (``planning.resolve_anchors``; with a
    ``workdir``, ``<workdir>/anchors.json``): ``Experiment.config`` holds the anchors. The schedule spans
    ``schedule_steps`` (a time budget's plan) or ``config.num_epochs``; ``config.total_steps > 0`` ends the run
    there without changing the schedule. ``<workdir>/init_report.json`` is written only for a workdir without
    checkpoints (a resumed or finished run keeps its own)."""

    check_config(config)
    enable_compilation_cache(config.get("compilation_cache_dir", ""))  # configs saved before the field: off

    # Every annotation and listed image before anything is compiled: all problems at once, cached.
    check.require_clean(config.data, (config.data.train_split, config.data.eval_split))
    if heads.family_of(config.model.name) == "v2":
        config, _ = planning.resolve_anchors(config, workdir, is_main=jax.process_index() == 0)
        heads.Head.from_config(config)  # anchors that do not fit num_anchors: named
    mesh = make_mesh() if mesh is None else mesh
    check_batch_size(config, mesh)
    num_train = len(sources.make_source(config.data, config.data.train_split))
    steps_in_epoch = schedules_lib.steps_per_epoch(num_train, config.batch_size)
    schedule_total = int(schedule_steps) if schedule_steps else schedules_lib.total_steps_for(config.num_epochs,
                                                                                               steps_in_epoch)
    total_steps = int(config.total_steps) if config.total_steps > 0 else schedule_total
    schedule = schedules_lib.build_schedule(config.schedule, base_lr=config.optim.base_lr,
                                            steps_in_epoch=steps_in_epoch, total_steps=schedule_total)
    model = build_model(config.model)
    check_freeze(config, model)
    state = create_train_state(config, model, make_optimizer(config.optim, schedule), mesh, config.data.image_size)
    fresh = workdir is None or not workdir_lib.has_checkpoints(workdir)
    state = initialize(state, config, model, workdir if fresh else None)
    state = with_fresh_ema(state, config)  # ema_0 = the initialized variables
    steps = make_steps(config, mesh, state, schedule)
    return Experiment(config=config, mesh=mesh, model=model, schedule=schedule, steps=steps, state=state,
                      steps_in_epoch=steps_in_epoch, total_steps=total_steps,
                      class_names=sources.class_names(config.data), schedule_steps=schedule_total)


# ----------------------------------------------------------------------------------------------------------
# The loop: a few periodic actions
# ----------------------------------------------------------------------------------------------------------


def describe_data(config: ml_collections.ConfigDict, workdir: str, class_names: Sequence[str], *,
                  check_anchors: bool = True) -> None:
    """At the start of a run on a dataset of files: saves the class names (the order the model learns them) as
    ``<workdir>/class_names.names`` when they were discovered from the annotations, and warns when the config's
    anchors fit the training boxes far worse than k-means would (``anchors.anchor_fit_warning``; the usual
    cause is anchors made for another input size)."""
    data = config.data
    if data.source != "files":
        return
    if not data.get("class_names") and not data.get("names_file"):
        formats.save_class_names(workdir, class_names)
    head = heads.Head.from_config(config)
    if head.family == "v2" and check_anchors:  # not for anchors fitted by k-means ("auto")
        wh = sources.box_shapes(data, data.train_split)
        grid = int(data.image_size) // 32
        warning = anchors_lib.anchor_fit_warning(head.anchors_array, wh, grid) if len(wh) else None
        if warning:
            logging.warning("%s", warning)


def _fetch_metrics(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
    """Device metrics of the last steps -> host floats (one transfer per log interval, not per step)."""
    host = jax.device_get([m for _, m in pending])
    return [(s, {k: float(v) for k, v in m.items()}) for (s, _), m in zip(pending, host)]


class _Logger:
    """The log action: buffers device metrics, and every ``log_every_steps`` fetches them, checks that the loss
    and state are finite, and writes their means (plus training images/s, evaluation and checkpoint time
    excluded) to the metric writer."""

    def __init__(self, writer, batch_size: int, step: int):
        self.writer, self.batch_size = writer, batch_size
        self.pending: list[tuple[int, dict]] = []
        self.excluded = 0.0  # seconds spent in other actions (evaluation, checkpoints)
        self._last = {"step": step, "time": time.perf_counter(), "excluded": 0.0}

    def add(self, step: int, metrics: dict) -> None:
        self.pending.append((step, metrics))

    def flush(self, step: int) -> None:
        if not self.pending:
            return
        host = _fetch_metrics(self.pending)
        self.pending.clear()
        for s, m in host:
            check_finite(s, m)
        now = time.perf_counter()
        busy = now - self._last["time"] - (self.excluded - self._last["excluded"])
        mean = {k: float(np.mean([m[k] for _, m in host])) for k in host[-1][1] if k != "state_finite"}
        mean["images_per_sec"] = (step - self._last["step"]) * self.batch_size / max(busy, 1e-9)
        self._last.update(step=step, time=now, excluded=self.excluded)
        self.writer.write_scalars(step, {f"train/{k}": v for k, v in mean.items()})


def _eval_summary(step: int, result: Mapping[str, Any], image_seconds: float) -> str:
    line = (f"eval step {step} ({result.get('weights', 'raw')} weights): mAP@0.5 VOC07={result['map_07']:.4f} "
            f"area={result['map_area']:.4f}")
    if "coco" in result:
        line += f" COCO AP={result['coco']['AP']:.4f}"
    line += (f" ({result['num_images']} images in {result['eval_seconds']:.1f} s, {result['images_per_sec']:.1f} "
             "img/s")
    return line + (f"; TensorBoard pictures drawn in {image_seconds:.2f} s)" if image_seconds else ")")


def write_final_metrics(workdir: str, result: Mapping[str, Any], train_images_per_sec: float) -> None:
    """``<workdir>/final_metrics.json``: {"step", "weights" ("ema" or "raw": which variables were scored),
    "map_07", "map_area", "num_images", "train_images_per_sec", "coco": {...}} of the run's last evaluation
    (process 0); read by ``experiments/ablate.py``."""
    if jax.process_index() != 0:
        return
    out = {"step": int(result["step"]), "weights": str(result.get("weights", "raw")),
           "map_07": float(result["map_07"]), "map_area": float(result["map_area"]),
           "num_images": int(result["num_images"]), "train_images_per_sec": float(train_images_per_sec)}
    if "coco" in result:
        out["coco"] = {k: float(v) for k, v in result["coco"].items() if np.ndim(v) == 0}
    workdir_lib.write_json(os.path.join(workdir, "final_metrics.json"), out)


def read_final_metrics(workdir: str) -> dict[str, Any] | None:
    """``<workdir>/final_metrics.json`` (:func:`write_final_metrics`), or None when there is none (or it is not
    readable JSON)."""
    return workdir_lib.read_json(os.path.join(workdir, "final_metrics.json"))


def _with_schedule(config: ml_collections.ConfigDict, exp: Experiment, state: TrainState, schedule_steps: int
                   ) -> tuple[TrainState, Steps, Experiment]:
    """(state, steps, experiment) with a schedule spanning ``schedule_steps``: a new optimizer (same state
    structure, so ``opt_state`` carries over) and re-jitted steps; the run ends there unless
    ``config.total_steps`` cuts it."""
    schedule = schedules_lib.build_schedule(config.schedule, base_lr=config.optim.base_lr,
                                            steps_in_epoch=exp.steps_in_epoch, total_steps=schedule_steps)
    state = state.replace(tx=make_optimizer(config.optim, schedule))
    steps = make_steps(config, exp.mesh, state, schedule)
    total = int(config.total_steps) if config.total_steps > 0 else int(schedule_steps)
    return state, steps, dataclasses.replace(exp, schedule=schedule, steps=steps, total_steps=total,
                                             schedule_steps=int(schedule_steps))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False,
                       clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Trains ``config`` in ``workdir``, evaluating and checkpointing periodically.

    The run holds the workdir's lock (``yolojax.training.workdir``): WorkdirInUseError (one line naming the
    holder) when another run has it; a lock left by a killed run is taken over. Before anything is built, a
    resumed run's config is compared with the saved one: ConfigChangeError for a change of what the earlier
    steps meant (data, batch size, schedule, optimizer, loss, seed) unless ``allow_config_change``; the config
    goes to ``config.json`` and, when it changed, to ``config_history.jsonl``.

    Resumes from the newest intact checkpoint in ``workdir`` (a damaged one is moved aside and reported;
    CheckpointMismatchError if of another model). Stops with NonFiniteLossError, the last good checkpoint
    intact, if the loss or state goes non-finite (a non-finite state is never written). Returns the last
    evaluation (see :func:`evaluate`; of the EMA weights when ``config.optim.ema`` is on) plus 'step',
    'weights' ("ema" or "raw"), 'train_seconds' (wall time of the training loop without
    evaluation and checkpoint writes, compilation included) and 'experiment', 'state'. A workdir already trained
    to the last step (with its ``final_metrics.json``) trains, evaluates and writes nothing: the saved final
    metrics are returned (train_seconds 0).

    Extending a run: with a larger ``num_epochs`` (or time budget) than a finished workdir was trained for, the
    run continues from its last checkpoint under the schedule of the new length (docs/own_data.md).
    ``config.time_budget_minutes > 0``: the schedule's length comes from the step time measured in the first
    epoch (``yolojax.training.planning``; ``clock`` is its clock, seconds).
    """
    budget = planning.TimeBudget(config.get("time_budget_minutes", 0.0), clock=clock)  # the clock starts here
    workdir = os.path.abspath(workdir)
    with workdir_lib.hold(workdir):
        workdir_lib.check_resume(workdir, config, allow=allow_config_change)
        return _train_and_evaluate(config, workdir, budget)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, budget: planning.TimeBudget
                        ) -> dict[str, Any]:
    plan = budget.saved_plan(workdir)  # a plan made for this budget is kept (resume, re-run)
    exp = build_experiment(config, workdir=workdir, schedule_steps=plan.total_steps if plan else None)
    auto_anchors = planning.wants_auto_anchors(config)
    config = exp.config  # with its anchors fitted when they were "auto"
    mesh, steps, state, total_steps = exp.mesh, exp.steps, exp.state, exp.total_steps
    if plan is not None and plan.ended_at_step >= 0 and config.total_steps <= 0:
        total_steps = plan.ended_at_step  # the planned run ended out of time there: it is finished
    is_main = jax.process_index() == 0
    ck = config.checkpoint
    mngr = checkpoints.make_manager(workdir, keep=ck.keep, keep_best=ck.keep_best, async_save=ck.async_save)
    data_state = {"step": 0}
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          state_to_tree(state))
    restored = checkpoints.restore(
        mngr, target, check_meta=lambda meta: checkpoints.check_model(meta, config, f"workdir {workdir!r}"))
    if restored is not None and "opt_state" not in restored.tree:  # variables only (experiments/convert_darknet.py)
        seen = min(int(restored.meta.get("seen", 0)), np.iinfo(np.int32).max)
        state = state.replace(**{k: v for k, v in restored.tree.items() if k != "step"},
                              seen=jnp.asarray(seen, jnp.int32))
        if is_main:
            logging.info("starting from the variables of %s/checkpoints/%d (%s; seen=%d)", workdir, restored.step,
                         restored.meta.get("source", "converted weights"), seen)
    elif restored is not None:
        state, data_state = state.replace(**restored.tree), restored.data_state
        if is_main:
            logging.info("resuming %s from its checkpoint at step %d", workdir, restored.step)
    if restored is not None and state.ema is not None and "ema" not in restored.tree:
        state = with_fresh_ema(state, config)  # a checkpoint without EMA: the average starts from its weights
        if is_main:
            logging.info("EMA (config.optim.ema.decay=%s) starts from the weights of step %d: the checkpoint "
                         "holds none", config.optim.ema.decay, restored.step)
    step = int(jax.device_get(state.step))
    window = None  # (first, last): the steps the time budget measures between, when it has to plan
    if budget.enabled and plan is None:
        window = budget.measure_window(step, exp.steps_in_epoch)
        if config.total_steps <= 0 and exp.schedule_steps <= window[1]:  # past num_epochs: extending by budget
            schedule_steps = budget.guess_total_steps(workdir, step, minimum=window[1] + 1)
            state, steps, exp = _with_schedule(config, exp, state, schedule_steps)
        total_steps = exp.total_steps
    finished = read_final_metrics(workdir) if step >= total_steps else None
    if finished is not None:  # nothing to train: the run's own final metrics stay as they are
        mngr.close()
        if is_main:
            logging.info("%s is already trained to step %d of %d: nothing to do (final_metrics.json kept)",
                         workdir, step, total_steps)
        return {**finished, "train_seconds": 0.0, "experiment": exp, "state": state}
    workdir_lib.record_config(workdir, config, step=step)
    if is_main:
        describe_data(config, workdir, exp.class_names, check_anchors=not auto_anchors)
    train_iter = pipeline.make_train_iterator(config.data, seed=config.seed, global_batch_size=config.batch_size,
                                              start_step=int(data_state["step"]))
    batches = pipeline.prefetch_to_device(train_iter, batch_sharding(mesh))

    bar = tqdm(total=total_steps, initial=step, disable=not (is_main and config.progress_bar), dynamic_ncols=True,
               desc="train", unit="step")
    writer = metric_writers.create_default_writer(workdir, console=is_main, print_fn=bar.write,
                                                  console_keys=metric_writers.CONSOLE_KEYS)
    logger = _Logger(writer, config.batch_size, step)
    result: dict[str, Any] = {}
    meta = {"model": checkpoints.model_signature(config)}
    if state.ema is not None:  # which weights the checkpoints hold: checkpoints.save adds meta["weights"]
        meta["ema"] = ema_lib.settings(config.optim)

    def log_action(step: int) -> None:
        logger.flush(step)

    def eval_action(step: int) -> None:
        nonlocal result
        if result.get("step") == step:  # already evaluated at this step (the time budget's timed evaluation)
            return
        logger.flush(step)
        evaluated, weights = evaluated_state(state)  # the EMA weights when kept
        # Every process keeps the images (gathering them is collective); process 0 draws and writes them.
        keep = plots.GRID_IMAGES if config.eval.get("tensorboard_images", True) else 0
        result = evaluate(steps, evaluated, config, exp.class_names, keep_images=keep)
        result.update(step=step, weights=weights)
        image_seconds = log_evaluation(writer, step, result, config) if is_main else 0.0
        if is_main:
            bar.write(_eval_summary(step, result, image_seconds))

    def checkpoint_action(step: int) -> None:
        logger.flush(step)  # never checkpoint a state that went non-finite
        metric = {"map": float(result[config.eval.metric])} if result.get("step") == step else None
        checkpoints.save(mngr, step, state_to_tree(state), meta={**meta, "metrics": metric or {}},
                         data_state=batches.get_state(), metrics=metric)

    actions = [
        periodic.PeriodicAction(log_action, every_steps=config.log_every_steps, on_last=True),
        periodic.PeriodicAction(eval_action, every_steps=config.eval.every_steps, on_last=True, timed=logger),
        periodic.PeriodicAction(checkpoint_action, every_steps=config.checkpoint.every_steps, on_last=True,
                                timed=logger),
        periodic.Profile(os.path.join(workdir, "profile"), start_step=config.profile.start_step,
                         num_steps=config.profile.num_steps, enabled=is_main),
    ]
    def plan_action(step: int, metrics: dict) -> None:
        """The time budget: starts timing at the window's first step; at its last, times one evaluation and
        sets the schedule's length (and the run's) from the measurements."""
        nonlocal state, steps, exp, total_steps, window
        jax.block_until_ready(metrics["loss"])
        if step == window[0]:
            budget.mark(step, window[0])
            return
        measured = budget.clock()
        start = time.perf_counter()
        eval_action(step)
        logger.excluded += time.perf_counter() - start
        plan = budget.make_plan(step, eval_seconds=budget.clock() - measured,
                                eval_every_steps=config.eval.every_steps, steps_in_epoch=exp.steps_in_epoch,
                                measure_end=measured)
        state, steps, exp = _with_schedule(config, exp, state, max(plan.total_steps, step))
        total_steps = exp.total_steps
        window = None
        bar.total = total_steps
        bar.refresh()
        if is_main:
            budget.save(workdir)
            bar.write(f"time budget {budget.minutes:g} min: {plan.seconds_per_step:.3f} s/step, evaluation "
                      f"{plan.eval_seconds:.1f} s, {plan.planned_at_seconds:.0f} s spent: the schedule ends at step "
                      f"{plan.total_steps} ({plan.num_epochs:.1f} epochs; {budget.plan_path(workdir)})")

    loop_start = time.perf_counter()
    if window is not None:
        budget.first_step_started()
    try:
        while step < total_steps:
            for action in actions:
                action.before_step(step)
            with no_host_transfers():  # metrics stay on the device until the log step fetches them
                batch = next(batches)  # on the device already (prefetched)
                with jax.transfer_guard_host_to_device("disallow"):
                    state, metrics = steps.train(state, batch)
            step += 1
            logger.add(step, metrics)
            bar.update(1)
            if window is not None and step in window:
                plan_action(step, metrics)
            elif step < total_steps and budget.check_due(step):
                jax.block_until_ready(metrics["loss"])  # the device's step, not the host's (which runs ahead)
                if budget.out_of_time(step, total_steps):
                    total_steps = budget.plan.ended_at_step = step
                    if is_main:
                        bar.write(f"time budget {budget.minutes:g} min: out of time at step {step} of the "
                                  f"{budget.plan.total_steps} planned (the steps became slower than measured): "
                                  "the run ends here")
                        budget.save(workdir)
            for action in actions:
                action(step, is_last=step == total_steps)
        train_seconds = time.perf_counter() - loop_start - logger.excluded
        bar.close()
        if result.get("step") != step:
            eval_action(step)
    finally:
        bar.close()
        try:
            checkpoints.wait_until_finished(mngr)  # an asynchronous write that failed: one CheckpointError line
        finally:
            with contextlib.suppress(Exception):  # (its failure, if any, was raised just above)
                mngr.close()
            writer.close()
    write_final_metrics(workdir, result, (step - int(data_state["step"])) * config.batch_size
                        / max(train_seconds, 1e-9))
    result.update(train_seconds=train_seconds, experiment=exp, state=state)
    return result
