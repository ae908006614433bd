"""Forward-pass time of every full-size model (inference mode, jit-compiled), printed as a table.

    .venv/bin/python benchmarks/forward.py                      # all models, batch 1 and 8
    .venv/bin/python benchmarks/forward.py --models yolov2 --batch_sizes 1,8,32 --dtype bfloat16

Times are the median of --repeats runs after one warm-up run (compilation excluded). GFLOPs are XLA's own
count for the compiled program (2 x multiply-adds), per image; XLA skips the multiply-adds on zero padding, so
its figure is below darknet's (e.g. Tiny YOLOv2 at 416: 6.45 vs darknet's 6.97 BFLOPs). Variables are random
(speed does not depend on the values); parameters float32, compute in --dtype.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from yolojax.models import Darknet19, TinyYOLOv2, YOLOv1, YOLOv2

# name -> (module factory taking dtype, input size in pixels)
MODELS = {
    "yolov1": (lambda dt: YOLOv1(architecture="yolov1", dtype=dt), 448),
    "fast_yolo": (lambda dt: YOLOv1(architecture="fast_yolo", dtype=dt), 448),
    "darknet19_cls": (lambda dt: Darknet19(num_classes=1000, dtype=dt), 224),
    "yolov2": (lambda dt: YOLOv2(passthrough="conv64_reorg", dtype=dt), 416),
    "yolov2_paper": (lambda dt: YOLOv2(passthrough="reorg", dtype=dt), 416),
    "tiny_yolov2": (lambda dt: TinyYOLOv2(dtype=dt), 416),
}


def random_variables(model, size: int, seed: int = 0):
    """Variables of the right shapes filled on the host (cheaper than model.init for 270M parameters)."""
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            std = np.float32(np.sqrt(2 / np.prod(leaf.shape[:-1])))
            value = rng.standard_normal(leaf.shape, dtype=np.float32) * std
        elif name in ("scale", "var"):
            value = np.ones(leaf.shape, np.float32)
        else:
            value = np.zeros(leaf.shape, np.float32)
        return jnp.asarray(value)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def time_forward(model, variables, size: int, batch: int, repeats: int) -> tuple[float, float]:
    """(median seconds per forward call, XLA GFLOPs per image)."""
    images = jnp.asarray(np.random.default_rng(1).uniform(size=(batch, size, size, 3)).astype(np.float32))
    compiled = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, images).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    gflops = float(cost.get("flops", float("nan"))) / 1e9 / batch if cost else float("nan")
    jax.block_until_ready(compiled(variables, images))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(variables, images))
        times.append(time.perf_counter() - start)
    return statistics.median(times), gflops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {list(MODELS)}")
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]
    device = jax.devices()[0]
    print(f"# jax {jax.__version__}, backend {jax.default_backend()}, device {device.device_kind}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {os.getloadavg()[0]:.1f}, dtype {args.dtype}, median of {args.repeats}")
    print(f"{'model':<14} {'input':>5} {'batch':>5} {'GFLOPs/img':>10} {'ms/batch':>10} {'ms/img':>9} {'img/s':>8}")
    for name in names:
        factory, size = MODELS[name]
        model = factory(dtype)
        variables = random_variables(model, size)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            seconds, gflops = time_forward(model, variables, size, batch, args.repeats)
            print(f"{name:<14} {size:>5} {batch:>5} {gflops:>10.2f} {seconds * 1e3:>10.1f} "
                  f"{seconds * 1e3 / batch:>9.1f} {batch / seconds:>8.2f}", flush=True)
        del variables


if __name__ == "__main__":
    main()
