"""Input pipeline throughput per core: JPEG decode alone vs the full YOLOv2 training pipeline at 416.

Writes a few hundred VOC-sized (500x375) JPEGs with annotations to a temporary VOCdevkit (the synthetic
dataset), then times, in this one process and thread (so the figures are per core):
  decode:   read the JPEG file and decode it (what any pipeline must pay);
  pipeline: the whole training path of ``pipeline.make_train_iterator``'s batcher: read + parse XML, decode,
            drop difficult, darknet jitter crop + resize to 416 + flip + HSV, pad boxes, float batch.
Last line: ``ratio=R pipeline=X img/s/core decode=Y img/s/core`` (R = X / Y; the goal is R >= 0.7).

Usage: python benchmarks/input_pipeline.py [--num_images 300] [--image_size 416] [--batch_size 16]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2

from yolojax.data import pipeline, sources, synthetic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_images", type=int, default=300)
    p.add_argument("--image_size", type=int, default=416)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="timed passes; the best one is reported")
    args = p.parse_args()
    cv2.setNumThreads(1)  # one core

    with tempfile.TemporaryDirectory() as tmp:
        sc = synthetic.default_synthetic_config()
        sc.update(image_width=500, image_height=375, num_classes=20, min_objects=1, max_objects=6, clutter=1.0)
        t0 = time.perf_counter()
        synthetic.write_voc_devkit(tmp, sc, num_train=args.num_images, num_eval=1, jpeg_quality=90)
        print(f"wrote {args.num_images} 500x375 JPEGs + XML in {time.perf_counter() - t0:.1f}s")

        cfg = pipeline.default_data_config()
        cfg.update(source="voc_dir", voc_dir=os.path.join(tmp, "VOCdevkit"), train_split="2007_trainval",
                   image_size=args.image_size)
        src = sources.make_source(cfg, cfg.train_split)
        n = len(src)
        paths = [os.path.join(tmp, "VOCdevkit", "VOC2007", "JPEGImages", f"{src.image_id(i)}.jpg") for i in range(n)]

        def decode_pass() -> float:
            t = time.perf_counter()
            for path in paths:
                with open(path, "rb") as f:
                    sources.decode_image(f.read())
            return n / (time.perf_counter() - t)

        batcher = pipeline._TrainBatcher(cfg, src, seed=0, global_batch_size=args.batch_size, process_index=0,
                                         process_count=1)
        steps = n // args.batch_size

        def pipeline_pass(r: int) -> float:
            t = time.perf_counter()
            for s in range(steps):
                batcher(r * steps + s)
            return steps * args.batch_size / (time.perf_counter() - t)

        decode_pass()  # warm the page cache
        decode = max(decode_pass() for _ in range(args.rounds))
        full = max(pipeline_pass(r) for r in range(args.rounds))
        # Informational: the same without the HSV jitter (the costliest op), to show where the time goes.
        batcher.aug.update(hue=0.0, saturation=1.0, exposure=1.0)
        no_hsv = max(pipeline_pass(r) for r in range(args.rounds))
        print(f"without hsv: ratio={no_hsv / decode:.2f} pipeline={no_hsv:.0f} img/s/core")
        print(f"image_size={args.image_size} batch_size={args.batch_size} augment=v2 "
              f"(jitter .3, flip, hue .1, sat 1.5, exp 1.5) images={n}")
        print(f"ratio={full / decode:.2f} pipeline={full:.0f} img/s/core decode={decode:.0f} img/s/core")


if __name__ == "__main__":
    main()
