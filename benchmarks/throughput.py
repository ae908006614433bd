r"""Training and inference throughput of every model, in float32 and bfloat16, with model FLOP utilization.

  python benchmarks/throughput.py                                   # all models, paper sizes, GPU defaults
  python benchmarks/throughput.py --models tiny_yolov2,yolov2 --train_batch 2 --infer_batch 4   # a CPU run

Per model and compute dtype it measures
  * training images/s: one jitted SGD-momentum step (forward in train mode with batch-norm statistics and
    dropout, backward, update) at ``--train_batch``;
  * inference images/s: jitted forward (eval mode) at ``--infer_batch`` (64 by default);
  * latency: one image (batch 1), forward only, milliseconds.
The training step uses a proxy loss (mean square of the raw outputs) instead of the YOLO loss: the loss
costs a negligible fraction of the network's FLOPs and this keeps the benchmark about the models only.
Parameters stay float32 (mixed precision: bf16 compute, f32 parameters), as in training.

Model FLOPs are counted analytically from the traced model (2 per multiply-add of every convolution and dense
layer, padded taps included: darknet's convention, which gives darknet's published 29.36 GFLOPs for YOLOv2-416), and a
training step counts 3x forward. MFU = model FLOP/s / device peak (XLA's own cost-analysis counts, which skip
padded taps and include elementwise work, are kept in the ``--json`` rows for reference);
the peak comes from a table of known accelerators (bf16 and TF32 tensor-core peaks for GPUs, since XLA runs
float32 convolutions in TF32 by default there), or for a CPU from cores x clock x 32 FLOP/cycle (two 256-bit
FMA pipes, float32) — an estimate, flagged in the table; ``--peak_tflops`` overrides it.

Prints one Markdown table; ``--json`` writes the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from yolojax.models import build_model, default_model_config

# name -> (model_cfg overrides, paper input size). 'yolov2_paper' is the paper-era yolo-voc.2.0.cfg head.
MODELS: dict[str, tuple[dict, int]] = {
    "yolov1": ({"name": "yolov1"}, 448),
    "fast_yolo": ({"name": "fast_yolo"}, 448),
    "yolov2": ({"name": "yolov2", "v2": {"passthrough": "conv64_reorg"}}, 416),
    "yolov2_paper": ({"name": "yolov2", "v2": {"passthrough": "reorg"}}, 416),
    "tiny_yolov2": ({"name": "tiny_yolov2"}, 416),
}

# Dense peak FLOP/s by device-kind substring (first match wins): (bfloat16, float32 as XLA runs it).
# GPU float32 convolutions/matmuls use TF32 tensor cores under JAX's default precision.
PEAK_FLOPS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756e12, 378e12),
    ("H100", 989e12, 495e12),  # SXM
    ("H200", 989e12, 495e12),
    ("A100", 312e12, 156e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("V100", 125e12, 15.7e12),  # fp16 tensor cores; no bf16 there
    ("TPU v6", 918e12, 918e12),
    ("TPU v5p", 459e12, 459e12),
    ("TPU v5", 197e12, 197e12),  # v5e / v5 lite
    ("TPU v4", 275e12, 275e12),
    ("TPU v3", 123e12, 123e12),
)


def model_config(name: str, dtype: str, width: float = 1.0) -> ml_collections.ConfigDict:
    """config.model for benchmark model ``name`` (a key of MODELS) with compute ``dtype``."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose from {', '.join(MODELS)}")
    return default_model_config({"num_classes": 20, "width": width, "dtype": dtype, **MODELS[name][0]})


def cpu_peak_flops(num_cores: int | None = None, ghz: float | None = None) -> float:
    """Estimated float32 FMA peak of this CPU: cores x GHz x 32 FLOP/cycle (2 x 256-bit FMA pipes)."""
    num_cores = num_cores or os.cpu_count() or 1
    if ghz is None:
        ghz = 2.0
        try:
            with open("/proc/cpuinfo") as f:
                mhz = re.findall(r"cpu MHz\s*:\s*([0-9.]+)", f.read())
            if mhz:
                ghz = float(mhz[0]) / 1000.0
        except OSError:
            pass
    return num_cores * ghz * 1e9 * 32.0


def peak_flops(device: jax.Device, dtype: str) -> tuple[float | None, str]:
    """(peak FLOP/s for ``dtype`` on ``device`` or None if unknown, short description of its source)."""
    if device.platform == "cpu":
        return cpu_peak_flops(), "CPU estimate"
    for key, bf16, f32 in PEAK_FLOPS:
        if key.lower() in device.device_kind.lower():
            return (bf16 if dtype == "bfloat16" else f32), key
    return None, "unknown device"


def _jaxpr_matmul_flops(jaxpr: jax.extend.core.Jaxpr) -> float:
    """2 x multiply-adds of every convolution and dot_general in ``jaxpr`` (recursing into sub-jaxprs)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            out = eqn.outvars[0].aval.shape
            rhs = eqn.invars[1].aval.shape
            out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            # Every output element costs kh * kw * (cin / groups) multiply-adds, padded taps included (the
            # darknet convention: its "BFLOPs" are 2 * n * size * size * c/groups * out_h * out_w).
            total += 2.0 * np.prod(out) * np.prod(rhs) / out_features
        elif name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in lhs_contract])
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (list, tuple)) else [param]):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    total += _jaxpr_matmul_flops(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    total += _jaxpr_matmul_flops(sub)
    return total


def model_flops(model, size: int, batch: int = 1) -> float:
    """Analytic forward FLOPs of ``model`` on ``batch`` images of ``size`` x ``size``: 2 x multiply-adds of its
    convolutions and dense layers, counted as darknet does (YOLOv2-416: 29.36e9 per image, darknet's figure).

    Traces only (no compilation, no memory for the weights).
    """
    images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                                                    x, train=False), images)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, images)
    return _jaxpr_matmul_flops(jaxpr.jaxpr)


def compiled_flops(compiled: Any) -> float:
    """FLOPs of one call of a compiled jax function from XLA's cost analysis (0 if unavailable)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returns one dict per program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def time_calls(fn: Callable[[], Any], iters: int) -> float:
    """Median seconds of ``iters`` calls of ``fn`` (already compiled and warmed up), each synchronized."""
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _init(model, size: int) -> dict:
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    return jax.jit(lambda k: model.init({"params": k, "dropout": k}, images, train=False))(jax.random.key(0))


def bench_inference(model, variables: dict, size: int, batch: int, iters: int) -> tuple[float, float]:
    """(seconds per forward call at ``batch``, FLOPs per call) for eval-mode forward."""
    fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
    images = jax.random.uniform(jax.random.key(1), (batch, size, size, 3), jnp.float32)
    compiled = fwd.lower(variables, images).compile()
    jax.block_until_ready(compiled(variables, images))  # warm-up run
    return time_calls(lambda: compiled(variables, images), iters), compiled_flops(compiled)


def bench_training(model, variables: dict, size: int, batch: int, iters: int) -> tuple[float, float]:
    """(seconds per training step at ``batch``, FLOPs per step); proxy loss, SGD momentum 0.9."""
    tx = optax.sgd(1e-4, momentum=0.9)
    # Copies: the step donates its state, which must not delete the caller's variables.
    params = jax.tree.map(jnp.copy, variables["params"])
    state = (params, jax.tree.map(jnp.copy, variables.get("batch_stats", {})), tx.init(params))
    has_bn = "batch_stats" in variables

    def step(state, images, rng):
        params, batch_stats, opt_state = state

        def loss_fn(p):
            v = {"params": p, **({"batch_stats": batch_stats} if has_bn else {})}
            out, updates = model.apply(v, images, train=True, mutable=["batch_stats"], rngs={"dropout": rng})
            return jnp.mean(jnp.square(out.astype(jnp.float32))), updates.get("batch_stats", batch_stats)

        (_, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state

    jitted = jax.jit(step, donate_argnums=0)
    images = jax.random.uniform(jax.random.key(1), (batch, size, size, 3), jnp.float32)
    rng = jax.random.key(2)
    compiled = jitted.lower(state, images, rng).compile()
    holder = [compiled(state, images, rng)]  # warm-up; the state is donated, so thread it through

    def call():
        holder[0] = compiled(holder[0], images, rng)
        return holder[0]

    return time_calls(call, iters), compiled_flops(compiled)


def bench_model(name: str, dtype: str, *, size: int, train_batch: int, infer_batch: int, iters: int,
                width: float = 1.0, peak: float | None = None, latency: bool = True) -> dict:
    """One table row: images/s, latency (unless ``latency=False``), FLOPs and MFU of model ``name`` in compute
    ``dtype``."""
    model = build_model(model_config(name, dtype, width))
    variables = _init(model, size)
    device = jax.devices()[0]
    peak_src = "--peak_tflops"
    if peak is None:
        peak, peak_src = peak_flops(device, dtype)
    # Model FLOPs (MFU's numerator): analytic forward count, training = 3 x forward (forward + the two
    # backward products), the usual convention. XLA's own counts go to the JSON only.
    fwd_flops = model_flops(model, size)
    row: dict[str, Any] = {"model": name, "size": size, "dtype": dtype, "device": device.device_kind,
                           "peak_tflops": peak / 1e12 if peak else None, "peak_source": peak_src,
                           "fwd_gflop_img": fwd_flops / 1e9}
    if train_batch > 0:
        sec, xla_flops = bench_training(model, variables, size, train_batch, iters)
        row.update(train_batch=train_batch, train_img_s=train_batch / sec,
                   train_mfu=3 * fwd_flops * train_batch / sec / peak if peak else None,
                   xla_train_gflop_img=xla_flops / train_batch / 1e9)
    if infer_batch > 0:
        sec, xla_flops = bench_inference(model, variables, size, infer_batch, iters)
        row.update(infer_batch=infer_batch, infer_img_s=infer_batch / sec,
                   infer_mfu=fwd_flops * infer_batch / sec / peak if peak else None,
                   xla_fwd_gflop_img=xla_flops / infer_batch / 1e9)
    if latency:
        sec, _ = bench_inference(model, variables, size, 1, iters)
        row["latency_ms"] = sec * 1e3
    return row


_COLUMNS = (("model", "model", "{}"), ("size", "size", "{}"), ("dtype", "dtype", "{}"),
            ("fwd_gflop_img", "GFLOP/img fwd", "{:.3g}"), ("train_batch", "train batch", "{}"),
            ("train_img_s", "train img/s", "{:.2f}"), ("train_mfu", "train MFU", "{:.1%}"),
            ("infer_batch", "infer batch", "{}"), ("infer_img_s", "infer img/s", "{:.2f}"),
            ("infer_mfu", "infer MFU", "{:.1%}"), ("latency_ms", "latency b1 (ms)", "{:.1f}"))


def format_table(rows: list[dict]) -> str:
    """Markdown table of benchmark rows (missing values as '-')."""
    lines = ["| " + " | ".join(title for _, title, _ in _COLUMNS) + " |",
             "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated from {','.join(MODELS)}")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--size", type=int, default=None, help="input size for all models (default: paper size)")
    p.add_argument("--train_batch", type=int, default=64, help="0 skips training")
    p.add_argument("--infer_batch", type=int, default=64, help="0 skips batched inference")
    p.add_argument("--iters", type=int, default=5, help="timed calls per measurement (median)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (tests use a small one)")
    p.add_argument("--peak_tflops", type=float, default=None, help="override the device peak (TFLOP/s)")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad:
        print(f"throughput: error: unknown model(s) {bad}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 1
    device = jax.devices()[0]
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    print(f"device: {device.platform} / {device.device_kind} x{jax.device_count()} (measured on device 0)",
          flush=True)
    rows = []
    for name in names:
        for dtype in [d.strip() for d in args.dtypes.split(",")]:
            size = args.size or MODELS[name][1]
            row = bench_model(name, dtype, size=size, train_batch=args.train_batch, infer_batch=args.infer_batch,
                              iters=args.iters, width=args.width, peak=peak)
            rows.append(row)
            print(f"  done {name} {dtype}: train {row.get('train_img_s', 0):.2f} img/s, "
                  f"infer {row.get('infer_img_s', 0):.2f} img/s, latency {row['latency_ms']:.1f} ms", flush=True)
    peak_note = rows[0]["peak_source"] if rows else ""
    peaks = sorted({f"{r['dtype']}: {r['peak_tflops']:.2f}" for r in rows if r["peak_tflops"]})
    print(f"\npeak TFLOP/s used for MFU ({peak_note}): {', '.join(peaks) or 'unknown (MFU not shown)'}")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
