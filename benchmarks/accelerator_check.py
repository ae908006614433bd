r"""One command that measures YOLOv2 training on an accelerator and shows what the device waits on.

  python benchmarks/accelerator_check.py            # one GPU or TPU, about 6 minutes (H100/H200 class)
  python benchmarks/accelerator_check.py --smoke    # the same code on the CPU at tiny settings (the tests run it)

On a machine without a package registry, see docs/accelerators.md (``benchmarks/gpu_wheels.py``).

What it runs, in this order (each part prints as it finishes; one table comes last):
  * A synthetic JPEG VOCdevkit written to local disk (``--workdir``): VOC-sized photos (500x375 and 375x500,
    JPEG quality 90) of the synthetic dataset's 20 classes of shapes on cluttered, noisy backgrounds, with VOC
    XML annotations (``yolojax.data.synthetic``), written by one process per core.
  * b. The real training loop, ``train.train_and_evaluate``, with the paper config (``configs/yolov2_voc.py``:
    YOLOv2-416, batch 64, SGD, multi-scale {320..608} every 10 steps; compute ``--dtype``, bf16 by default)
    for ``--steps`` steps (300), fed from that devkit by the real grain pipeline with ``--workers`` processes.
    The burn-in is cut from 1,000 to a third of the steps so that the loss moves; the seed is the one (of the
    first 5,000) whose multi-scale draws visit all 10 sizes soonest (in the first 100 steps), so that the steps
    after that compile nothing. Logged every 25 steps. Measured:
      - images/s and step time from the first log step 25 or more steps after the last size's first step (its
        compile over, and the input buffers that filled while it compiled drained) to the end; worker start-up
        and compiles are left out;
      - the device idle fraction: 1 - (device time of those steps) / (their wall time), the device time per
        step measured afterwards with the same compiled step on a batch already on the device, one per size.
        It is the time the device waits for input (and for the host: dispatch, the log-step fetch);
      - every multi-scale switch: a switch to a new size compiles once (trace + lower + XLA compile, or a
        load from the persistent compilation cache), a switch back to a size seen before compiles nothing;
        "each size compiled once" compares the step's compiles with the sizes drawn and jit's cache;
      - MFU of the real step (YOLO loss, photometric jitter and multi-scale included) against the chip's peak,
        from the device time and throughput.py's analytic model FLOPs (3x forward per training image).
  * c. The loss of the first and the last log interval, and one evaluation at the end (VOC and COCO-style).
  * d. Peak device memory (``memory_stats()``; not reported by the CPU).
  * a. ``benchmarks/throughput.py``'s rows: yolov2 (416, batch 64) and tiny_yolov2, bfloat16 and float32:
    training and inference images/s with MFU against the chip's peak (``throughput.PEAK_FLOPS``).
  * The host pipeline (``benchmarks/input_pipeline.py``): images per CPU-second of one core at 416, the cores
    needed to feed the device rate measured in b, and the rate of ``--workers`` grain workers.

A part that fails is reported in the table and the command exits with status 1. Parts and throughput rows not
started within ``--budget_s`` (420 s) are reported as skipped, so the table comes within about 8 minutes even
when compiling takes longer than expected. ``--smoke``: 64/96 px, width 1/8, batch 4, 10 steps, 2-step log
intervals, training rows only in a (yolov2 bfloat16 and tiny_yolov2 float32), one grain worker, no budget.
"""
from __future__ import annotations

import argparse
import glob
import math
import multiprocessing
import os
import struct
import sys
import tempfile
import time
import traceback
from typing import Any

import cv2
import jax
import numpy as np
from tensorboardX.proto import event_pb2

import input_pipeline
import throughput
from yolojax.config import files
from yolojax.data import pipeline, sources, synthetic
from yolojax.models import build_model
from yolojax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The full check (one accelerator) and the smoke run (the CPU, seconds per part): the same code.
FULL = dict(image_wh=(500, 375), num_train=2048, num_eval=512, batch=64, size=416, sizes=tuple(range(320, 609, 32)),
            every=10, steps=300, log_every=25, settle=25, eval_batch=64, width=1.0, bench_batch=64, infer_batch=64,
            bench_iters=5, host_batches=4,
            variants=(("yolov2", "bfloat16"), ("yolov2", "float32"), ("tiny_yolov2", "bfloat16"),
                      ("tiny_yolov2", "float32")))
# The smoke run times one variant per model and per dtype: the same code, half the compilations.
SMOKE = dict(image_wh=(100, 75), num_train=24, num_eval=8, batch=4, size=64, sizes=(64, 96), every=2, steps=10,
             log_every=2, settle=2, eval_batch=4, width=0.125, bench_batch=2, infer_batch=0, bench_iters=1,
             host_batches=2, variants=(("yolov2", "bfloat16"), ("tiny_yolov2", "float32")))


# ------------------------------------------------------------------------------------------------- devkit
def _scene_config(width: int, height: int) -> dict:
    cfg = dict(synthetic.default_synthetic_config())
    cfg.update(num_classes=20, image_width=width, image_height=height, min_objects=1, max_objects=6,
               min_object_size=0.1, max_object_size=0.6, clutter=0.8, noise_std=6.0, seed=0)
    return cfg


def _write_examples(args: tuple) -> list[str]:
    """Writes examples ``indices`` (JPEG + XML) of the devkit at ``voc``; every 4th is portrait."""
    voc, split, indices, (w, h), quality = args
    cv2.setNumThreads(1)
    cfg = _scene_config(w, h)
    ids = []
    for i in indices:
        scene = synthetic.draw_scene(np.random.default_rng([0, synthetic.SPLITS[split], i]), cfg)
        image, boxes = scene["image"], scene["boxes_px"]
        if i % 4 == 3:  # portrait: the transposed scene, its boxes with x and y swapped
            image, boxes = np.ascontiguousarray(image.transpose(1, 0, 2)), boxes[:, [1, 0, 3, 2]]
        image_id = f"{split[0]}{i:06d}"
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        with open(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), "wb") as f:
            f.write(jpg.tobytes())
        with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(synthetic.annotation_xml(image_id, image.shape[1], image.shape[0], boxes, scene["classes"],
                                             scene["difficult"], scene["truncated"]))
        ids.append(image_id)
    return ids


def write_devkit(root: str, num_train: int, num_eval: int, image_wh: tuple[int, int], *, quality: int = 90,
                 processes: int = 1) -> tuple[str, float]:
    """``root/VOCdevkit/VOC2007`` with ``num_train`` trainval and ``num_eval`` test images; (VOCdevkit path,
    mean JPEG kilobytes). Forks its writers: call it before JAX starts its backend."""
    voc = os.path.join(root, "VOCdevkit", "VOC2007")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    jobs = [(voc, split, range(k, n, processes), image_wh, quality)
            for split, n in (("train", num_train), ("eval", num_eval)) for k in range(processes)]
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            done = pool.map(_write_examples, jobs)
    else:
        done = [_write_examples(job) for job in jobs]
    ids = {"train": sorted(i for ids in done[:processes] for i in ids),
           "eval": sorted(i for ids in done[processes:] for i in ids)}
    for name, split in (("trainval", "train"), ("test", "eval")):
        with open(os.path.join(voc, "ImageSets", "Main", f"{name}.txt"), "w") as f:
            f.write("".join(f"{x}\n" for x in ids[split]))
    sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(voc, "JPEGImages", "*.jpg"))]
    return os.path.join(root, "VOCdevkit"), float(np.mean(sizes)) / 1024


# ------------------------------------------------------------------------------------------- measuring
class CompileLog:
    """Every compile of the jitted function named ``name`` (from ``jax.monitoring`` events): its wall-clock
    start and end (``time.time()``: trace start to the end of the XLA compile or of the persistent-cache load)
    and whether the executable came from the persistent compilation cache."""

    _PHASES = ("/jax/core/compile/jaxpr_to_mlir_module_duration", "/jax/core/compile/backend_compile_duration",
               "/jax/compilation_cache/cache_retrieval_time_sec")

    def __init__(self, name: str):
        self.name, self.records, self._current = name, [], None
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, event: str, secs: float, **kwargs: Any) -> None:
        now, fun = time.time(), str(kwargs.get("fun_name", ""))
        if event == "/jax/core/compile/jaxpr_trace_duration":
            self._current = None
            if fun == self.name:
                self._current = {"start": now - secs, "end": now, "cache_hit": False}
                self.records.append(self._current)
        elif self._current is not None and event in self._PHASES and (not fun or fun == f"jit({self.name})"):
            self._current["end"] = now
            self._current["cache_hit"] |= event == self._PHASES[2]

    def close(self) -> None:
        jax.monitoring.unregister_event_duration_listener(self._on_duration)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float, float]]]:
    """TensorBoard scalars of ``logdir``'s event files: tag -> [(step, wall time, value)] in file order."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):  # TFRecord: length u64, its crc, the record, its crc
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 16 + n
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((int(event.step), float(event.wall_time),
                                                      float(value.simple_value)))
    return out


def device_step_seconds(steps: train.Steps, state: train.TrainState, batch: dict, size: int,
                        iters: int) -> tuple[float, train.TrainState]:
    """Median seconds of one training step at ``size`` on a batch already on the device (the compiled step of
    the run: no compile), and the state it leaves."""
    rng = np.random.default_rng(size)
    host = {**batch, "image": rng.integers(0, 256, (len(batch["image"]), size, size, 3), dtype=np.uint8)}
    device_batch = train.shard_batch(host, steps.mesh)
    holder = [state]

    def call():
        holder[0], metrics = steps.train(holder[0], device_batch)
        return metrics

    for _ in range(2):  # warm-up
        jax.block_until_ready(call())
    return throughput.time_calls(call, iters), holder[0]


def pick_seed(data_cfg, steps: int, tries: int = 5000) -> int:
    """The seed (of the first ``tries``) whose multi-scale draws visit every size soonest within ``steps`` steps:
    every size compiles early, and the steps after it measure the loop without compiles."""
    sizes, every = set(data_cfg.multiscale_sizes), int(data_cfg.multiscale_every_steps)
    best = (steps + 1, 0)
    for seed in range(tries):
        seen = set()
        for block in range(-(-steps // every)):
            seen.add(pipeline.multiscale_size(data_cfg, seed, block * every))
            if len(seen) == len(sizes):
                best = min(best, ((block + 1) * every, seed))
                break
        if best[0] <= len(sizes) * every:  # one block per size: none is sooner
            break
    return best[1]


def training_config(s: dict, devkit: str, args: argparse.Namespace):
    """The paper config (configs/yolov2_voc.py) on the devkit, cut to ``s["steps"]`` steps."""
    c = files.load(os.path.join(ROOT, "configs", "yolov2_voc.py"))
    c.model.dtype, c.model.width = args.dtype, s["width"]
    c.batch_size, c.total_steps, c.log_every_steps, c.progress_bar = s["batch"], s["steps"], s["log_every"], False
    c.schedule.burn_in_steps = max(s["steps"] // 3, 1)  # darknet's 1,000: the loss would barely move in 300
    c.data.source, c.data.voc_dir = "voc_dir", devkit
    c.data.train_split, c.data.eval_split = "2007_trainval", "2007_test"
    c.data.image_size = c.data.eval_image_size = s["size"]
    c.data.multiscale_sizes, c.data.multiscale_every_steps = s["sizes"], s["every"]
    c.data.num_workers, c.data.num_threads = args.workers, 1
    c.eval.every_steps, c.eval.batch_size = 0, s["eval_batch"]
    c.checkpoint.every_steps = s["steps"]
    c.compilation_cache_dir = args.compilation_cache_dir
    c.seed = pick_seed(c.data, s["steps"])
    return c


def _fmt_s(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def run_training(c, workdir: str, s: dict, rows: list, peak: float | None, peak_src: str) -> dict:
    """Sections b and c: the training loop, its compiles and the device time of its steps. Rows are added as
    soon as their figures are known, so a later failure keeps them."""
    log = CompileLog("train_step")
    t0 = time.time()
    try:
        result = train.train_and_evaluate(c, workdir)
    finally:
        log.close()
    print(f"training: {c.total_steps} steps in {time.time() - t0:.1f}s wall (setup, evaluation included)", flush=True)
    exp, state = result["experiment"], result["state"]
    logs = read_scalars(os.path.join(workdir, "tensorboard"))["train/loss"]
    rows += [
        ("c", "loss first -> last", f"{logs[0][2]:.4g} -> {logs[-1][2]:.4g} (mean of the log intervals ending at "
                                    f"steps {logs[0][0]} and {logs[-1][0]})"),
        ("c", "evaluation at the end", f"mAP@0.5 VOC07 {result['map_07']:.4f} area {result['map_area']:.4f}, "
                                       f"COCO AP {result.get('coco', {}).get('AP', float('nan')):.4f} "
                                       f"({result['num_images']} images, {result['images_per_sec']:.0f} img/s)"),
    ]
    sizes = [pipeline.multiscale_size(c.data, c.seed, k) for k in range(c.total_steps)]
    new_sizes = list(dict.fromkeys(sizes))  # in order of first use: the order the step compiles them
    # The measured steps: from a log step s["settle"] steps or more after the last size's first step (its compile
    # over, the input buffers that filled during it drained) to the last one; else from the first log step.
    all_seen = max(sizes.index(size) for size in new_sizes) + 1
    start = next((i for i, (k, _, _) in enumerate(logs[:-1]) if k >= all_seen + s["settle"]), 0)
    (first_step, first_wall, _), (last_step, last_wall, _) = logs[start], logs[-1]
    cache_entries = getattr(exp.steps.train, "_cache_size", lambda: None)()
    switches = [k for k in range(1, len(sizes)) if sizes[k] != sizes[k - 1]]
    to_new = [k for k in switches if sizes[k] not in sizes[:k]]
    per_compile = [r["end"] - r["start"] for r in log.records]
    for r, size in zip(log.records, new_sizes):
        print(f"  compile at size {size}: {r['end'] - r['start']:.2f}s"
              f"{' (persistent cache)' if r['cache_hit'] else ''}", flush=True)
    rows += [
        ("b", "switch to a new size", f"{len(to_new)} switches (+ the first size): compile mean "
                                      f"{np.mean(per_compile):.2f} s, max {np.max(per_compile):.2f} s; "
                                      f"{sum(r['cache_hit'] for r in log.records)} from the persistent cache"
                                      if per_compile else "no compile events seen"),
        ("b", "switch to a seen size", f"{len(switches) - len(to_new)} switches, no compile"),
    ]

    # Device time per step of each size, on batches already on the device (the run's compiled step).
    data = c.data.copy_and_resolve_references()
    data.num_workers = 0
    batch = next(pipeline.make_train_iterator(data, seed=c.seed, global_batch_size=c.batch_size))
    device_s = {size: math.inf for size in sorted(new_sizes)}
    for _ in range(2):  # two rounds, the faster of each size: the first steps after the run can be slower
        for size in device_s:
            t, state = device_step_seconds(exp.steps, state, batch, size, s["bench_iters"])
            device_s[size] = min(device_s[size], t)
    recompiled = getattr(exp.steps.train, "_cache_size", lambda: None)() != cache_entries
    once = len(log.records) == len(new_sizes) and cache_entries in (None, len(new_sizes)) and not recompiled
    again = ", recompiled after the run" if recompiled else ""
    rows.append(("b", "each size compiled once", f"{'yes' if once else 'NO'}: {len(new_sizes)} sizes drawn, "
                                                 f"{len(log.records)} compiles of the step, jit cache "
                                                 f"{cache_entries}{again}"))
    rows.append(("b", "device step time per size", ", ".join(f"{k}: {_fmt_s(v)}" for k, v in device_s.items())))

    compiles_after = sum(r["end"] - r["start"] for r in log.records if first_wall < r["end"] <= last_wall)
    window = last_wall - first_wall - compiles_after
    n = last_step - first_step
    busy = sum(device_s[sizes[k]] for k in range(first_step, last_step))
    device_rate = n * c.batch_size / busy
    span = f"steps {first_step + 1}-{last_step}"
    rows += [
        ("b", "images/s", f"{n * c.batch_size / window:.0f} img/s ({span}, batch {c.batch_size}, {c.model.dtype}, "
                          f"grain workers: {c.data.num_workers})"),
        ("b", "step time", f"{_fmt_s(window / n)} wall, {_fmt_s(busy / n)} on the device (mean over the "
                           f"multi-scale mix {min(sizes)}-{max(sizes)})"),
        ("b", "device idle fraction", f"{max(0.0, 1.0 - busy / window):.1%} (waiting for input or the host; "
                                      f"{span})"),
    ]
    try:  # MFU of the real step: throughput.py's analytic model FLOPs, 3x forward per training image
        fwd = throughput.model_flops(build_model(c.model), c.data.image_size)  # per image at the base size
        flops = sum(3 * fwd * (sizes[k] / c.data.image_size) ** 2 * c.batch_size for k in range(first_step, last_step))
        mfu = f", MFU {flops / busy / peak:.1%} of {peak / 1e12:.3g} TFLOP/s ({peak_src})" if peak else ""
    except Exception as e:  # the figures above stand without it
        mfu = f", MFU not computed ({type(e).__name__}: {e})"
    rows.append(("b", "device rate, real step", f"{device_rate:.0f} img/s{mfu}"))
    del state, result, exp
    return {"device_rate": device_rate}


def peak_memory_row() -> tuple[str, str, str]:
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" not in stats:
        return ("d", "peak device memory", f"not reported by the {jax.devices()[0].platform}")
    limit = stats.get("bytes_limit")
    return ("d", "peak device memory", f"{stats['peak_bytes_in_use'] / 2**30:.2f} GiB"
            + (f" of {limit / 2**30:.1f} GiB" if limit else "") + " (the training run)")


def throughput_rows(s: dict, rows: list, over_budget) -> None:
    size = s["size"]
    for name, dtype in s["variants"]:
        if over_budget():
            rows.append(("a", f"{name} {dtype}", "skipped: the time budget (--budget_s) is spent"))
            continue
        r = throughput.bench_model(name, dtype, size=size, train_batch=s["bench_batch"],
                                   infer_batch=s["infer_batch"], iters=s["bench_iters"], width=s["width"],
                                   latency=False)
        peak = f" of {r['peak_tflops']:.3g} TFLOP/s ({r['peak_source']})" if r["peak_tflops"] else ""
        for kind in ("train", "infer") if s["infer_batch"] else ("train",):
            mfu = f"MFU {r[f'{kind}_mfu']:.1%}" if r.get(f"{kind}_mfu") is not None else "MFU -"
            rows.append(("a", f"{name} {dtype} {kind}", f"{r[f'{kind}_img_s']:.1f} img/s, {mfu}{peak} "
                                                        f"({size} px, batch {r[f'{kind}_batch']})"))
        infer = f", infer {r['infer_img_s']:.1f} img/s" if "infer_img_s" in r else ""
        print(f"  {name} {dtype}: train {r['train_img_s']:.1f} img/s{infer}", flush=True)


def host_rows(c, s: dict, device_rate: float | None, rows: list) -> None:
    """Images per CPU-second of one core building training batches at the base size (no multi-scale), the
    cores needed for ``device_rate``, and the rate of the configured grain workers."""
    cfg = c.data.copy_and_resolve_references()
    cfg.multiscale_sizes = ()
    src = sources.make_source(cfg, cfg.train_split)
    batcher = pipeline._TrainBatcher(cfg, src, seed=0, global_batch_size=s["batch"], process_index=0,
                                     process_count=1, photometric_on=pipeline.photometric_placement(cfg))
    batcher(0)  # annotations parsed, page cache warm
    cv2.setNumThreads(1)
    n = s["host_batches"]
    per_core = input_pipeline._cpu_rate(lambda: [batcher(k) for k in range(1, n + 1)], n * s["batch"])
    rate = device_rate or 0.0
    line = f"{per_core:.0f} img/s per core at {cfg.image_size} px (HSV on the {batcher.photometric or '-'})"
    if rate:
        line += f"; {rate / per_core:.1f} cores needed for the device's {rate:.0f} img/s"
    workers = [c.data.num_workers] if c.data.num_workers > 0 else []
    for r in input_pipeline._worker_scaling(cfg, s["batch"], workers, rate or 1.0, 10 * max(workers + [1])):
        line += f"; {r['workers']} workers: {r['img_s']:.0f} img/s"
    rows.append(("host", "host pipeline", line))


def format_table(rows: list) -> str:
    lines = ["| section | what | figure |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="the same code on the CPU at tiny settings")
    p.add_argument("--workdir", default="", help="where the devkit and the run go (default: a temporary folder)")
    p.add_argument("--steps", type=int, default=0, help="training steps (default 300; smoke 8)")
    p.add_argument("--workers", type=int, default=-1,
                   help=f"grain worker processes (default: cores - 2 = {max(cores - 2, 1)}; smoke 1)")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"), help="training compute dtype")
    p.add_argument("--skip_throughput", action="store_true", help="leave out section a")
    p.add_argument("--budget_s", type=float, default=None,
                   help="parts (and throughput rows) not started by then are skipped (default 420; smoke: none)")
    p.add_argument("--compilation_cache_dir", default=None,
                   help="JAX's persistent compilation cache (default: the config's, config.compilation_cache_dir)")
    args = p.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 0.0 if args.smoke else 420.0
    if args.workers < 0:
        args.workers = 1 if args.smoke else max(cores - 2, 1)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = dict(SMOKE if args.smoke else FULL)
    s["steps"] = args.steps or s["steps"]
    if args.compilation_cache_dir is None:
        args.compilation_cache_dir = files.load(os.path.join(ROOT, "configs", "yolov2_voc.py")).compilation_cache_dir
    workdir = args.workdir or tempfile.mkdtemp(prefix="yolojax-accelerator-check-")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    rows: list = []
    failed = []
    t0 = time.time()

    devkit, kb = write_devkit(workdir, s["num_train"], s["num_eval"], s["image_wh"], processes=cores)
    print(f"devkit: {s['num_train']} + {s['num_eval']} JPEGs of {s['image_wh'][0]}x{s['image_wh'][1]} (mean "
          f"{kb:.0f} KB) in {devkit}, {time.time() - t0:.1f}s", flush=True)
    try:
        cache = train.enable_compilation_cache(args.compilation_cache_dir)  # before anything compiles
    except OSError as e:  # an unwritable home: measure without the cache rather than not at all
        print(f"compilation cache off: {e}", flush=True)
        cache = args.compilation_cache_dir = ""
    device = jax.devices()[0]
    peak, peak_src = throughput.peak_flops(device, args.dtype)
    print(f"device: {device.platform} / {device.device_kind} x{jax.device_count()}, {cores} host cores; "
          f"compilation cache: {cache or 'off'}", flush=True)
    c = training_config(s, devkit, args)
    info: dict = {}

    def part(name: str, fn) -> None:
        start = time.time()
        print(f"== {name}", flush=True)
        try:
            fn()
        except Exception as e:  # one part failing leaves the others' figures
            traceback.print_exc()
            failed.append(name)
            first_line = (str(e).splitlines() or [""])[0][:200]
            rows.append((name.split()[0], f"{name}: FAILED", f"{type(e).__name__}: {first_line}"))
        print(f"== {name}: {time.time() - start:.1f}s", flush=True)

    part("b training loop", lambda: info.update(run_training(c, os.path.join(workdir, "run"), s, rows, peak,
                                                              peak_src)))
    part("d memory", lambda: rows.append(peak_memory_row()))

    def over_budget() -> bool:
        return bool(args.budget_s) and time.time() - t0 > args.budget_s

    if not args.skip_throughput:
        part("a throughput", lambda: throughput_rows(s, rows, over_budget))
    if over_budget():
        rows.append(("host", "host pipeline", "skipped: the time budget (--budget_s) is spent"))
    else:
        part("host pipeline", lambda: host_rows(c, s, info.get("device_rate"), rows))
    entries = len(os.listdir(cache)) if cache and os.path.isdir(cache) else 0
    rows.append(("-", "compilation cache", f"{cache or 'off'} ({entries} entries)"))
    rows.append(("-", "device", f"{device.device_kind} x{jax.device_count()} ({device.platform}), {cores} host "
                                f"cores; whole check {time.time() - t0:.0f} s"))
    print()
    print(format_table(rows), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
