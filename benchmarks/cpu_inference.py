"""CPU inference: yolojax (XLA jit) vs onnxruntime on the yolojax ONNX export vs OpenCV's darknet importer.

    .venv/bin/python benchmarks/cpu_inference.py                          # yolov2-voc + tiny, batch 1 and 8, 416
    .venv/bin/python benchmarks/cpu_inference.py --models yolov2-tiny-voc --batch_sizes 1 --repeats 10
    .venv/bin/python benchmarks/cpu_inference.py --xla_flags=--xla_cpu_use_onednn=true

All three run the same network: the official cfg (yolojax/darknet/cfgs) with random weights written by the
project's darknet writer (``darknet.write_weights``), loaded by ``yolojax.load`` (JAX), exported with
``yolojax.inference.export.to_onnx`` (onnxruntime) and read by ``cv2.dnn.readNetFromDarknet`` (OpenCV). Each call maps
a batch of the same photo (matplotlib's grace_hopper.jpg, resized to 416) to the raw output of the last conv
(no decode/NMS: OpenCV's region layer is not timed). Before timing, each backend's output is compared with
OpenCV's (relative error printed). Timing: --repeats rounds after one warm-up call per backend; in every
round each backend runs once, in turn, so load changes on a shared machine hit all of them alike; the median
per backend is printed. "vs OpenCV" = OpenCV's time / the backend's time (> 1: faster than OpenCV).
Threads: every backend uses all cores (--threads to change).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="yolov2-voc,yolov2-tiny-voc", help="official cfg names (without .cfg)")
    p.add_argument("--batch_sizes", default="1,8")
    p.add_argument("--image_size", type=int, default=416)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS before JAX starts")
    p.add_argument("--backends", default="yolojax_xla,onnxruntime,onnxruntime_noopt,opencv")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    import cv2
    import jax
    import numpy as np
    import onnxruntime

    import yolojax
    from yolojax import darknet as dk
    from yolojax.inference import export

    cv2.setNumThreads(args.threads)
    backends = args.backends.split(",")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads {args.threads}; "
          f"jax {jax.__version__}, onnxruntime {onnxruntime.__version__}, opencv {cv2.__version__}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'model':<16} {'batch':>5} {'backend':<18} {'ms/batch':>9} {'images/s':>9} {'vs OpenCV':>9} "
          f"{'rel.err':>8}")
    tmp = tempfile.mkdtemp(prefix="cpu_inference_")
    for name in args.models.split(","):
        sections = dk.with_input_size(dk.load_cfg(dk.official_cfg(name + ".cfg")), args.image_size, args.image_size)
        cfg, weights = os.path.join(tmp, name + ".cfg"), os.path.join(tmp, name + ".weights")
        with open(cfg, "w") as f:
            f.write(dk.format_cfg(sections))
        dk.write_weights(weights, sections, dk.random_blobs(sections, seed=0))
        det = yolojax.load(cfg, weights)
        onnx_model = export.to_onnx(det)
        sessions = {"onnxruntime": export.onnx_session(onnx_model, threads=args.threads),
                    "onnxruntime_noopt": export.onnx_session(onnx_model, threads=args.threads, optimize=False)}
        net = cv2.dnn.readNetFromDarknet(cfg, weights)
        last_conv = [n for n in net.getLayerNames() if n.startswith("conv_")][-1]
        forward = jax.jit(lambda v, x: det.model.apply(v, x, train=False))
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            images = export.check_image(det, batch)
            nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))

            def run_opencv():
                net.setInput(nchw)
                return net.forward(last_conv).transpose(0, 2, 3, 1)

            calls = {
                "yolojax_xla": lambda: np.asarray(forward(det.variables, images)),
                "onnxruntime": lambda: sessions["onnxruntime"].run(["outputs"], {"images": images})[0],
                "onnxruntime_noopt": lambda: sessions["onnxruntime_noopt"].run(["outputs"], {"images": images})[0],
                "opencv": run_opencv,
            }
            calls = {k: calls[k] for k in backends}
            reference = run_opencv()
            errors = {k: export.rel_error(np.asarray(fn()).reshape(reference.shape), reference)
                      for k, fn in calls.items()}  # also the warm-up (compilation) call
            times: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(args.repeats):
                for k, fn in calls.items():
                    start = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - start)
            median = {k: statistics.median(v) for k, v in times.items()}
            for k in calls:
                ratio = median["opencv"] / median[k] if "opencv" in median else float("nan")
                print(f"{name:<16} {batch:>5} {k:<18} {1e3 * median[k]:>9.1f} {batch / median[k]:>9.2f} "
                      f"{ratio:>9.2f} {errors[k]:>8.1e}", flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
