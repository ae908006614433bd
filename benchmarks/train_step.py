"""Images/s of one jitted YOLOv2 train step (forward, darknet region loss, backward, SGD update).

  python benchmarks/train_step.py [--image_size 416] [--batch 8] [--steps 5] [--dtype float32|bfloat16]
      [--config configs/yolov2_voc.py] [--images uint8|float32]

Feeds one fixed synthetic batch (random images, 3 random boxes per image) so only the step is timed; the
first (compiling) step is reported separately. uint8 images (the default, as the training pipeline ships them)
include the config's device photometric jitter and float conversion in the step; float32 images skip both,
so the difference of the two is the jitter's cost. Also prints model FLOP utilization when --peak_tflops is given,
from the 29.36 GFLOPs forward per 416 image of YOLOv2 (darknet's figure) x 3 for forward + backward.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FORWARD_GFLOPS_416 = {"yolov2": 29.36}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/yolov2_voc.py")
    parser.add_argument("--image_size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--images", default="uint8", choices=("uint8", "float32"),
                        help="batch dtype: uint8 = with the device photometric jitter (as in training)")
    parser.add_argument("--peak_tflops", type=float, default=0.0, help="device peak, for model FLOP utilization")
    args = parser.parse_args()

    import importlib.util

    import jax
    import numpy as np

    from yolojax.training import train

    spec = importlib.util.spec_from_file_location("bench_config", args.config)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.batch_size = args.batch
    config.model.dtype = args.dtype
    config.data.image_size = args.image_size
    config.schedule.burn_in_steps = 0

    mesh = train.make_mesh()
    schedule = lambda step: config.optim.base_lr  # noqa: E731  (the schedule does not change the cost)
    from yolojax.models import build_model

    state = train.create_train_state(config, build_model(config.model), train.make_optimizer(config.optim, schedule),
                                     mesh, args.image_size)
    steps = train.make_steps(config, mesh, state, schedule)
    rng = np.random.default_rng(0)
    b, m = args.batch, config.data.max_boxes
    shape = (b, args.image_size, args.image_size, 3)
    images = (rng.integers(0, 256, shape, dtype=np.uint8) if args.images == "uint8"
              else rng.uniform(0, 1, shape).astype(np.float32))
    xy = rng.uniform(0.0, 0.6, (b, m, 2))
    wh = rng.uniform(0.05, 0.4, (b, m, 2))
    batch = train.shard_batch({
        "image": images,
        "boxes": np.concatenate([xy, xy + wh], -1).astype(np.float32),
        "classes": rng.integers(0, config.model.num_classes, (b, m)).astype(np.int32),
        "mask": np.arange(m)[None].repeat(b, 0) < 3}, mesh)

    start = time.perf_counter()
    state, metrics = steps.train(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = steps.train(state, batch)
    jax.block_until_ready(metrics)
    per_step = (time.perf_counter() - start) / args.steps
    ips = args.batch / per_step
    line = (f"{config.model.name} {args.image_size}px batch {args.batch} {args.dtype} {args.images} images on "
            f"{jax.device_count()}x "
            f"{jax.devices()[0].device_kind}: first step {compile_s:.1f} s, {per_step * 1e3:.0f} ms/step, "
            f"{ips:.2f} images/s")
    gflops = FORWARD_GFLOPS_416.get(config.model.name)
    if gflops and args.peak_tflops > 0 and config.model.v2.passthrough == "conv64_reorg":
        achieved = 3 * gflops * (args.image_size / 416) ** 2 * ips / 1e3
        line += f", {achieved:.1f} TFLOP/s = MFU {100 * achieved / args.peak_tflops:.1f}%"
    print(line)


if __name__ == "__main__":
    main()
