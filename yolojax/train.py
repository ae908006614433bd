"""Training and evaluation loop: TrainState, optimizer, jitted data-parallel steps, checkpoints.

The only orchestrator is :func:`train_and_evaluate`. The step functions are pure
(``train_step(state, batch) -> (state, metrics)``) and are jitted once per input shape over a
``jax.sharding.Mesh`` with one ``'data'`` axis: the batch is sharded along its leading axis (``P('data')``),
the state is replicated (``P()``) and donated. The same code runs on one CPU, several GPUs, or a
multi-host slice (launch one process per host after ``jax.distributed.initialize()``; each host feeds its
own rows of the global batch).

Box formats: batches carry normalized xyxy boxes (see CONTRACT "Batch"); detections leave the device as
normalized xyxy and are converted to VOC 1-based pixel xyxy (``boxes.normalized_to_voc_px``) with each
image's original size before they reach the evaluator.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from yolojax import schedules as schedules_lib
from yolojax.data import photometric  # [input pipeline #12] uint8 batches -> float (+ jitter) on the device

PyTree = Any
Batch = Mapping[str, np.ndarray]

V1_FAMILY = ("yolov1", "fast_yolo")
V2_FAMILY = ("yolov2", "tiny_yolov2")


# ----------------------------------------------------------------------------------------------------------
# State and optimizer
# ----------------------------------------------------------------------------------------------------------


class TrainState(train_state.TrainState):
    """Flax TrainState plus what darknet training needs to continue exactly.

    Fields: ``step`` int32 [] updates done; ``params``; ``batch_stats`` ({} without batch norm);
    ``opt_state``; ``rng`` uint32 [2] base key (per-step keys are ``fold_in(rng, step)``);
    ``seen`` int32 [] training images seen before the next batch (drives the YOLOv2 prior warm-up).
    """

    batch_stats: PyTree = None
    rng: jax.Array = None
    seen: jax.Array = None


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
    ``grad_clip_norm > 0`` clips by global norm first.
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
    return optax.chain(*parts)


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


# ----------------------------------------------------------------------------------------------------------
# Model, loss and decode glue (reads the config; no tunable constant lives in step code)
# ----------------------------------------------------------------------------------------------------------


def model_family(model_cfg: ml_collections.ConfigDict) -> str:
    """'v1' for YOLOv1/Fast YOLO, 'v2' for YOLOv2/Tiny YOLOv2 (ValueError naming config.model.name)."""
    if model_cfg.name in V1_FAMILY:
        return "v1"
    if model_cfg.name in V2_FAMILY:
        return "v2"
    raise ValueError(f"config.model.name={model_cfg.name!r}: expected one of {V1_FAMILY + V2_FAMILY}")


def anchors_of(config: ml_collections.ConfigDict) -> jnp.ndarray:
    """``config.model.anchors`` as float32 [A, 2] (w, h) in grid units of the 13x13 grid at 416."""
    anchors = np.asarray(config.model.anchors, np.float32).reshape(-1, 2)
    if anchors.shape[0] != config.model.v2.num_anchors:
        raise ValueError(f"config.model.anchors has {anchors.shape[0]} anchors but "
                         f"config.model.v2.num_anchors={config.model.v2.num_anchors}")
    return jnp.asarray(anchors)


def make_loss_fn(config: ml_collections.ConfigDict) -> Callable[..., tuple[jax.Array, dict]]:
    """``loss_fn(outputs, boxes, classes, mask, seen) -> (total, parts)`` with the options in ``config.loss``
    (passed as keyword arguments, so a misspelled option is a TypeError naming it)."""
    from yolojax import losses

    kwargs = config.loss.to_dict()
    if model_family(config.model) == "v1":
        v1 = config.model.v1

        def loss_fn(outputs, boxes, classes, mask, seen):
            del seen
            return losses.yolov1_loss(outputs, boxes, classes, mask, grid_size=v1.grid_size,
                                      boxes_per_cell=v1.boxes_per_cell, num_classes=config.model.num_classes,
                                      **kwargs)
    else:
        anchors = anchors_of(config)

        def loss_fn(outputs, boxes, classes, mask, seen):
            return losses.yolov2_loss(outputs, boxes, classes, mask, anchors=anchors, seen=seen, **kwargs)
    return loss_fn


def make_decode_fn(config: ml_collections.ConfigDict) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """Raw model outputs -> (boxes [B, N, 4] normalized xyxy, scores [B, N, C])."""
    from yolojax import postprocess

    if model_family(config.model) == "v1":
        v1 = config.model.v1
        return functools.partial(postprocess.decode_yolov1, grid_size=v1.grid_size,
                                 boxes_per_cell=v1.boxes_per_cell, num_classes=config.model.num_classes)
    anchors = anchors_of(config)
    return lambda outputs: postprocess.decode_yolov2(outputs, anchors)


def _variables(params: PyTree, batch_stats: PyTree) -> dict:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


# ----------------------------------------------------------------------------------------------------------
# Steps (pure functions; jitted by the caller)
# ----------------------------------------------------------------------------------------------------------


def train_step(state: TrainState, batch: Mapping[str, jax.Array], *, loss_fn: Callable,
               schedule: optax.Schedule, augment_cfg: Mapping[str, Any] | None = None,
               data_seed: int = 0) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD update on a global batch.

    batch: image uint8 [B, H, W, 3] (photometric jitter of ``augment_cfg`` / ``data_seed`` / step applied here,
    on the device) or float32 in [0, 1] (used as is); boxes float32 [B, M, 4] normalized xyxy; classes int32 [B, M];
    mask bool [B, M]. Model outputs are cast to float32 before the loss (bf16 compute, f32 loss and params).
    Returns the new state and scalar metrics: 'loss', the loss parts, 'lr', 'grad_norm'.
    """
    dropout_rng = jax.random.fold_in(state.rng, state.step)
    # [input pipeline #12] uint8 -> float32 [0, 1] with darknet's HSV jitter of (data_seed, step, row), on device.
    images = photometric.train_inputs(batch["image"], augment_cfg, data_seed, state.step)

    def objective(params):
        outputs, mutated = state.apply_fn(_variables(params, state.batch_stats), images, train=True,
                                          mutable=["batch_stats"], rngs={"dropout": dropout_rng})
        total, parts = loss_fn(outputs.astype(jnp.float32), batch["boxes"], batch["classes"], batch["mask"],
                               state.seen)
        return total, (parts, mutated)

    (loss, (parts, mutated)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads=grads)
    new_state = new_state.replace(
        batch_stats=mutated.get("batch_stats", state.batch_stats) if state.batch_stats else state.batch_stats,
        seen=state.seen + batch["image"].shape[0])
    metrics = {"loss": loss, **{k: jnp.asarray(v, jnp.float32) for k, v in parts.items()},
               "lr": jnp.asarray(schedule(state.step), jnp.float32), "grad_norm": optax.global_norm(grads)}
    return new_state, metrics


def eval_step(state: TrainState, images: jax.Array, *, decode_fn: Callable,
              nms_kwargs: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Forward pass, decode and fixed-size per-class NMS, all on device.

    images uint8 or float32 [B, H, W, 3] -> {"boxes": [B, K, 4] normalized xyxy, "scores": [B, K], "classes": [B, K]
    int32 (-1 pad), "count": [B] int32}.
    """
    from yolojax import postprocess

    images = photometric.to_float(images)  # [input pipeline #12] uint8 eval batches -> float32 [0, 1]
    outputs = state.apply_fn(_variables(state.params, state.batch_stats), images, train=False)
    boxes, scores = decode_fn(outputs.astype(jnp.float32))
    return postprocess.batched_nms(boxes, scores, **nms_kwargs)


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
    state_sharding = jax.tree.map(lambda _: replicated(mesh), abstract_state)
    data = batch_sharding(mesh)
    train = jax.jit(functools.partial(train_step, loss_fn=make_loss_fn(config), schedule=schedule,
                                      # [input pipeline #12] the device-side photometric augmentation
                                      augment_cfg=dict(config.data.augment), data_seed=int(config.seed)),
                    in_shardings=(state_sharding, data), out_shardings=(state_sharding, replicated(mesh)),
                    donate_argnums=(0,))
    nms_kwargs = dict(score_threshold=config.eval.score_threshold, iou_threshold=config.eval.nms_iou_threshold,
                      max_detections=config.eval.max_detections)
    evaluate = jax.jit(functools.partial(eval_step, decode_fn=make_decode_fn(config), nms_kwargs=nms_kwargs),
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
    return jax.jit(init, out_shardings=sharding)(root)


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------


class CheckpointMismatchError(ValueError):
    """The workdir holds a checkpoint of a different model than the config describes."""


def state_to_tree(state: TrainState) -> dict:
    """The arrays of a TrainState as a plain dict (what is written to disk)."""
    return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
            "opt_state": state.opt_state, "rng": state.rng, "seen": state.seen}


def make_checkpoint_manager(workdir: str, ckpt_cfg: ml_collections.ConfigDict):
    """Orbax manager in ``workdir/checkpoints``: keeps the last ``keep`` checkpoints plus the best by the
    metric stored with a checkpoint (checkpoints saved at evaluation time carry ``{'map': ...}``)."""
    import orbax.checkpoint as ocp
    from orbax.checkpoint import checkpoint_managers as cm

    policies = [cm.LatestN(n=ckpt_cfg.keep)]
    if ckpt_cfg.keep_best:
        policies.append(cm.BestN(get_metric_fn=lambda m: m["map"], n=1, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(preservation_policy=cm.AnyPreservationPolicy(policies), create=True,
                                           enable_async_checkpointing=ckpt_cfg.async_save)
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options,
                                 item_names=("state", "meta", "data"))


def _model_signature(config: ml_collections.ConfigDict) -> dict:
    """What must agree between a checkpoint and the config that resumes it: the model section (minus
    compute dtype, which may change between runs) as plain JSON."""
    model = json.loads(config.model.to_json_best_effort())
    model.pop("dtype", None)
    return model


def _diff(a: Any, b: Any, prefix: str = "model") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{prefix}.{k}")
        return out
    return [] if a == b else [f"{prefix}: checkpoint {a!r} vs config {b!r}"]


def check_checkpoint_matches(meta: Mapping[str, Any], config: ml_collections.ConfigDict, where: str) -> None:
    """Raises CheckpointMismatchError listing the differing model fields."""
    diffs = _diff(meta.get("model", {}), _model_signature(config))
    if diffs:
        raise CheckpointMismatchError(
            f"{where} holds a checkpoint of another model; use a new --workdir or the matching config:\n  "
            + "\n  ".join(diffs))


def save_checkpoint(mngr, state: TrainState, config: ml_collections.ConfigDict, data_state: Any,
                    metrics: Mapping[str, float] | None = None) -> None:
    import orbax.checkpoint as ocp

    step = int(jax.device_get(state.step))
    meta = {"model": _model_signature(config), "step": step, "metrics": dict(metrics or {})}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state_to_tree(state)), meta=ocp.args.JsonSave(meta),
                              data=ocp.args.JsonSave({"state": data_state}))
    mngr.save(step, args=args, metrics=dict(metrics) if metrics else None, force=True)


def restore_checkpoint(mngr, state: TrainState, config: ml_collections.ConfigDict, workdir: str,
                       step: int | None = None) -> tuple[TrainState, Any] | None:
    """Restores the latest (or given) checkpoint into ``state``'s structure and shardings, after checking
    that it was written for the same model. Returns (state, data iterator state) or None if there is none."""
    import orbax.checkpoint as ocp

    step = mngr.latest_step() if step is None else step
    if step is None:
        return None
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    check_checkpoint_matches(meta, config, f"workdir {workdir!r} (step {step})")
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          state_to_tree(state))
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                          data=ocp.args.JsonRestore()))
    tree = restored["state"]
    state = state.replace(**tree)
    return state, restored["data"]["state"]


# ----------------------------------------------------------------------------------------------------------
# Evaluation (device: forward + decode + NMS; host: VOC evaluator)
# ----------------------------------------------------------------------------------------------------------


def _host_rows(x: jax.Array) -> np.ndarray:
    """A global array sharded over 'data' -> all its rows on every host (multi-host: allgather)."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _gather_local(x: np.ndarray) -> np.ndarray:
    """Host-local rows -> the rows of all hosts, in process order."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True))


def add_batch_to_evaluator(evaluator, dets: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
                           image_ids: Callable[[int], str] = str) -> int:
    """Feeds one eval batch to a VOCEvaluator; padding rows (index -1) are skipped.

    dets: host numpy from :func:`eval_step` (normalized xyxy); batch: eval batch with boxes (normalized xyxy),
    classes, mask, difficult, orig_size (height, width), index. Both sets of boxes are converted to VOC
    1-based pixel xyxy with the original image size. Returns the number of images added.
    """
    from yolojax import boxes as boxes_lib

    added = 0
    for i, index in enumerate(np.asarray(batch["index"])):
        if index < 0:
            continue
        height, width = (int(v) for v in batch["orig_size"][i])
        k = int(dets["count"][i])
        valid = np.asarray(batch["mask"][i], bool)
        evaluator.add(
            image_ids(int(index)),
            det_boxes=boxes_lib.normalized_to_voc_px(np.asarray(dets["boxes"][i][:k], np.float64), width, height),
            det_scores=np.asarray(dets["scores"][i][:k], np.float64),
            det_classes=np.asarray(dets["classes"][i][:k], np.int64),
            gt_boxes=boxes_lib.normalized_to_voc_px(np.asarray(batch["boxes"][i][valid], np.float64), width,
                                                    height),
            gt_classes=np.asarray(batch["classes"][i][valid], np.int64),
            gt_difficult=np.asarray(batch["difficult"][i][valid], bool))
        added += 1
    return added


def evaluate(steps: Steps, state: TrainState, eval_batches: Iterable[Batch], class_names: tuple[str, ...],
             iou_threshold: float = 0.5, keep_detections: bool = False) -> dict[str, Any]:
    """VOC mAP of ``state`` over the eval batches (both metrics; see yolojax.evaluation.VOCEvaluator).

    Returns the evaluator's dict plus 'num_images' and 'images_per_sec'; with ``keep_detections`` also
    'detections': the host detections of the first batch (for drawing).
    """
    from yolojax.evaluation import VOCEvaluator

    evaluator = VOCEvaluator(class_names=class_names, iou_threshold=iou_threshold)
    num, first, start = 0, None, time.perf_counter()
    for batch in eval_batches:
        images = shard_batch({"image": batch["image"]}, steps.mesh)["image"]
        dets = {k: _host_rows(v) for k, v in steps.eval(state, images).items()}
        gt = {k: _gather_local(batch[k]) for k in ("boxes", "classes", "mask", "difficult", "orig_size", "index")}
        num += add_batch_to_evaluator(evaluator, dets, gt)
        if keep_detections and first is None:
            first = (dets, {**gt, "image": _gather_local(batch["image"])})
    result = dict(evaluator.compute())
    result["num_images"] = num
    result["images_per_sec"] = num / max(time.perf_counter() - start, 1e-9)
    if keep_detections:
        result["detections"] = first
    return result


# ----------------------------------------------------------------------------------------------------------
# Logging helpers
# ----------------------------------------------------------------------------------------------------------


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the message names the step and the loss parts."""


def check_finite(step: int, metrics: Mapping[str, float]) -> None:
    if not math.isfinite(float(metrics["loss"])):
        parts = ", ".join(f"{k}={float(v):.6g}" for k, v in sorted(metrics.items()))
        raise NonFiniteLossError(f"loss became nan or inf at step {step}: {parts}")


def format_metrics(step: int, total: int, metrics: Mapping[str, float]) -> str:
    """One concise console line."""
    keys = [k for k in ("loss", "coord", "obj", "noobj", "class") if k in metrics]
    body = " ".join(f"{k}={metrics[k]:.4g}" for k in keys)
    extra = f" lr={metrics['lr']:.3g}" if "lr" in metrics else ""
    if "images_per_sec" in metrics:
        extra += f" img/s={metrics['images_per_sec']:.1f}"
    return f"step {step}/{total} {body}{extra}"


class _Writer:
    """TensorBoard event files on process 0 (no-op elsewhere)."""

    def __init__(self, workdir: str):
        self._tb = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"))

    def scalars(self, step: int, values: Mapping[str, float], prefix: str) -> None:
        if self._tb is not None:
            for k, v in values.items():
                if np.ndim(v) == 0:
                    self._tb.add_scalar(f"{prefix}/{k}", float(v), step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


# ----------------------------------------------------------------------------------------------------------
# Orchestrator
# ----------------------------------------------------------------------------------------------------------


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes the resolved config (after overrides) as ``workdir/config.json`` (process 0)."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def check_batch_size(config: ml_collections.ConfigDict, mesh: Mesh) -> int:
    """The per-process batch; the global batch must split evenly over devices and processes."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    for field in ("batch_size", "eval.batch_size"):
        value = config.batch_size if field == "batch_size" else config.eval.batch_size
        if value % n_dev or value % n_proc:
            raise ValueError(f"config.{field}={value} does not split over {n_dev} devices in {n_proc} processes")
    return config.batch_size // n_proc


def _fetch_metrics(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
    """Device metrics of the last steps -> host floats (one transfer per log interval, not per step)."""
    host = jax.device_get([m for _, m in pending])
    return [(s, {k: float(v) for k, v in m.items()}) for (s, _), m in zip(pending, host)]


def check_config(config: ml_collections.ConfigDict) -> None:
    """Cross-field checks that would otherwise fail deep inside jit, each naming the fields."""
    from yolojax.data import sources

    n_data = sources.num_classes(config.data)
    if config.model.num_classes != n_data:
        raise ValueError(f"config.model.num_classes={config.model.num_classes} but the dataset "
                         f"(config.data.source={config.data.source!r}) has {n_data} classes")
    if config.eval.metric not in ("map_07", "map_area"):
        raise ValueError(f"config.eval.metric={config.eval.metric!r}: expected 'map_07' or 'map_area'")
    if model_family(config.model) == "v2":
        anchors_of(config)
    if config.init.darknet_weights and not os.path.isfile(config.init.darknet_weights):
        raise FileNotFoundError(f"config.init.darknet_weights={config.init.darknet_weights!r} is not a file")


def load_pretrained(state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
    """Copies the variables of ``config.init.darknet_weights`` (read with ``config.init.darknet_cfg``, e.g.
    darknet19_448.cfg + darknet19_448.conv.23) into ``state`` wherever path and shape agree. Raises if nothing
    matches (a cfg/model mismatch would otherwise silently train from scratch)."""
    from yolojax import darknet

    _, variables, report = darknet.load_with_report(config.init.darknet_cfg, config.init.darknet_weights)
    src = flax.traverse_util.flatten_dict({"params": variables["params"],
                                           "batch_stats": variables.get("batch_stats", {})})
    loaded = {tuple(k) if not isinstance(k, str) else tuple(k.split("/")) for k in report.conversion.loaded}
    dst = flax.traverse_util.flatten_dict({"params": flax.core.unfreeze(state.params),
                                           "batch_stats": flax.core.unfreeze(state.batch_stats)})
    copied = 0
    for key, value in src.items():
        if key in dst and dst[key].shape == np.shape(value) and (key in loaded or key[1:] in loaded):
            dst[key] = jax.device_put(jnp.asarray(value, dst[key].dtype), dst[key].sharding)
            copied += 1
    if copied == 0:
        raise ValueError(f"config.init.darknet_weights={config.init.darknet_weights!r}: no variable matches "
                         f"the model {config.model.name!r} by name and shape")
    logging.info("initialized %d variables from %s", copied, config.init.darknet_weights)
    tree = flax.traverse_util.unflatten_dict(dst)
    return state.replace(params=tree["params"], batch_stats=tree.get("batch_stats", {}))


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
    total_steps: int
    class_names: tuple[str, ...]


def build_experiment(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Experiment:
    """Model, schedule, optimizer, initial (replicated) state and jitted steps for ``config``."""
    from yolojax.data import sources
    from yolojax.models import build_model

    check_config(config)
    mesh = make_mesh() if mesh is None else mesh
    check_batch_size(config, mesh)
    num_train = len(sources.make_source(config.data, config.data.train_split))
    steps_in_epoch = schedules_lib.steps_per_epoch(num_train, config.batch_size)
    total_steps = schedules_lib.total_steps_for(config.num_epochs, steps_in_epoch, config.total_steps)
    schedule = schedules_lib.build_schedule(config.schedule, base_lr=config.optim.base_lr,
                                            steps_in_epoch=steps_in_epoch, total_steps=total_steps)
    model = build_model(config.model)
    state = create_train_state(config, model, make_optimizer(config.optim, schedule), mesh, config.data.image_size)
    if config.init.darknet_weights:
        state = load_pretrained(state, config)
    steps = make_steps(config, mesh, state, schedule)
    return Experiment(config=config, mesh=mesh, model=model, schedule=schedule, steps=steps, state=state,
                      steps_in_epoch=steps_in_epoch, total_steps=total_steps,
                      class_names=sources.class_names(config.data))


def eval_batches(config: ml_collections.ConfigDict) -> Iterable[Batch]:
    """This process's evaluation batches of ``config.data.eval_split`` at ``config.data.eval_image_size``."""
    from yolojax.data import pipeline

    per_process = config.eval.batch_size // jax.process_count()
    return pipeline.make_eval_batches(config.data, config.data.eval_split, per_process,
                                      config.data.eval_image_size)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains ``config`` in ``workdir``, evaluating and checkpointing periodically.

    Resumes if ``workdir`` holds a checkpoint (CheckpointMismatchError if of another model). Returns the last
    evaluation (see :func:`evaluate`) plus 'step', 'train_seconds' (wall time of the training loop without
    evaluation and checkpoint writes, compilation included) and 'experiment', 'state'.
    """
    from tqdm import tqdm

    from yolojax.data import pipeline

    workdir = os.path.abspath(workdir)
    exp = build_experiment(config)
    mesh, steps, state, total_steps = exp.mesh, exp.steps, exp.state, exp.total_steps
    mngr = make_checkpoint_manager(workdir, config.checkpoint)
    data_state = {"step": 0}
    restored = restore_checkpoint(mngr, state, config, workdir)
    if restored is not None:
        state, data_state = restored
        if jax.process_index() == 0:
            print(f"resuming {workdir} from its checkpoint at step {int(jax.device_get(state.step))}", flush=True)
    save_config(config, workdir)
    train_iter = pipeline.make_train_iterator(config.data, seed=config.seed, global_batch_size=config.batch_size,
                                              start_step=int(data_state["step"]))
    batches = pipeline.prefetch_to_device(train_iter, batch_sharding(mesh))

    writer = _Writer(workdir)
    is_main = jax.process_index() == 0
    step = int(jax.device_get(state.step))
    pending: list[tuple[int, dict]] = []
    result: dict[str, Any] = {}
    excluded = 0.0  # seconds spent evaluating / checkpointing inside the loop
    bar = tqdm(total=total_steps, initial=step, disable=not (is_main and config.progress_bar), dynamic_ncols=True,
               desc="train", unit="step")

    def flush_metrics() -> None:
        if not pending:
            return
        host = _fetch_metrics(pending)
        pending.clear()
        for s, m in host:
            check_finite(s, m)
        now = time.perf_counter()
        busy = now - last["time"] - (excluded - last["excluded"])
        mean = {k: float(np.mean([m[k] for _, m in host])) for k in host[-1][1]}
        mean["images_per_sec"] = (step - last["step"]) * config.batch_size / max(busy, 1e-9)
        last.update(step=step, time=now, excluded=excluded)
        writer.scalars(step, mean, "train")
        if is_main:
            bar.write(format_metrics(step, total_steps, mean))

    loop_start = time.perf_counter()
    last = {"step": step, "time": loop_start, "excluded": 0.0}
    try:
        while step < total_steps:
            state, metrics = steps.train(state, next(batches))
            step += 1
            pending.append((step, metrics))
            bar.update(1)
            if step % config.log_every_steps == 0 or step == total_steps:
                flush_metrics()
            do_eval = config.eval.every_steps > 0 and step % config.eval.every_steps == 0
            if do_eval or step % config.checkpoint.every_steps == 0 or step == total_steps:
                flush_metrics()  # never checkpoint a state that went non-finite
                t0 = time.perf_counter()
                if do_eval:
                    result = _log_eval(exp, state, config, step, writer, bar)
                metric = {"map": float(result[config.eval.metric])} if do_eval else None
                save_checkpoint(mngr, state, config, batches.get_state(), metric)
                excluded += time.perf_counter() - t0
        train_seconds = time.perf_counter() - loop_start - excluded
        bar.close()
        if result.get("step") != step:
            result = _log_eval(exp, state, config, step, writer, None)
    finally:
        bar.close()
        mngr.wait_until_finished()
        writer.close()
    result.update(train_seconds=train_seconds, experiment=exp, state=state)
    return result


def _log_eval(exp: Experiment, state: TrainState, config: ml_collections.ConfigDict, step: int, writer: _Writer,
              bar) -> dict[str, Any]:
    res = evaluate(exp.steps, state, eval_batches(config), exp.class_names, config.eval.match_iou_threshold)
    res["step"] = step
    writer.scalars(step, {k: res[k] for k in ("map_07", "map_area", "images_per_sec")}, "eval")
    if jax.process_index() == 0:
        line = (f"eval step {step}: mAP@0.5 VOC07={res['map_07']:.4f} area={res['map_area']:.4f} "
                f"({res['num_images']} images, {res['images_per_sec']:.1f} img/s)")
        (bar.write if bar is not None else print)(line)
    return res
