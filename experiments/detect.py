r"""Runs a detector on images and writes each image with its boxes drawn plus one JSON file of detections.

  python experiments/detect.py --workdir runs/quickstart --out_dir out/ photo.jpg
  python experiments/detect.py --checkpoint runs/quickstart/checkpoints/2000 --out_dir out/ 'images/*.jpg'
  python experiments/detect.py --darknet_cfg yolov2-voc.cfg --darknet_weights yolov2-voc.weights \
      --out_dir out/ VOCdevkit/VOC2007/JPEGImages/

Inputs: image files, folders (their .jpg/.jpeg/.png/.bmp/.webp files, sorted) or glob patterns. For each
``NAME.ext`` it writes ``OUT/NAME.ext`` (boxes, class names and scores drawn) and ``OUT/NAME.json``:
``{"image": path, "width": W, "height": H, "detections": [{"box": [x1, y1, x2, y2], "class": name,
"class_id": c, "score": s}, ...]}`` with boxes in pixel xyxy of the original image (x_px = x_norm * W).
Images run in fixed-size jitted batches (the last one padded), so a folder compiles once. A checkpoint's EMA
weights are used when it holds them (training with ``config.optim.ema.decay > 0``); ``--weights raw`` picks the
raw ones, ``--weights ema`` insists on the EMA.
Bad input (a missing path, a checkpoint of another model, darknet files that do not fit) ends with one line
``detect: error: ...`` and exit status 1 (``--debug`` shows the traceback). An image that cannot be read is
named, skipped, and the others are still written; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

from yolojax import cli
from yolojax.inference import api, drawing, export, video

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def expand_inputs(specs: list[str]) -> list[str]:
    """Image files, folders and glob patterns -> the list of image paths (folders and globs sorted).

    Raises FileNotFoundError naming a path that does not exist or a pattern/folder that matches no image.
    """
    paths = []
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                           if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(spec, f)))
            if not found:
                raise FileNotFoundError(f"folder has no images ({', '.join(IMAGE_EXTENSIONS)}): {spec}")
            paths += found
        elif os.path.isfile(spec):
            paths.append(spec)
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f"no file matches: {spec}")
            paths += found
        else:
            raise FileNotFoundError(f"image not found: {spec}")
    return paths


def output_names(paths: list[str]) -> list[str]:
    """Output file stems: the input's base name, with ``_2``, ``_3``... where two inputs share one."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def load_detector(args: argparse.Namespace):
    """The detector named by the flags (exactly one of workdir / checkpoint / darknet files / export), run
    by JAX or, with --backend onnx, by onnxruntime on an ONNX export of it."""
    if args.exported:

        return export.load_exported(args.exported)
    detector = _load_model(args)
    if args.backend == "onnx":


        path = os.path.join(tempfile.mkdtemp(prefix="yolojax_detect_"), "model.onnx")
        export.export_onnx(detector, path)  # checked against JAX before it is written
        detector = export.load_exported(path)
    return detector


def _load_model(args: argparse.Namespace):

    given = [n for n in ("workdir", "checkpoint", "darknet_cfg") if getattr(args, n)]
    if len(given) != 1 or bool(args.darknet_cfg) != bool(args.darknet_weights):
        raise ValueError("give exactly one model: --workdir, --checkpoint, or --darknet_cfg with --darknet_weights")
    if args.darknet_cfg:
        names = api.read_names(args.names) if args.names else None
        return api.load_darknet(args.darknet_cfg, args.darknet_weights, class_names=names,
                                image_size=args.image_size)
    return api.load_checkpoint(args.workdir or args.checkpoint, config=args.config, image_size=args.image_size,
                               weights=args.weights)


def run(args: argparse.Namespace) -> tuple[int, list[str]]:
    """Detects on every input; returns (images written, paths that could not be read and were skipped)."""

    videos = [s for s in args.inputs if video.is_video_source(s)]
    # fail on a bad path before spending time on the model
    paths = expand_inputs([s for s in args.inputs if s not in videos]) if len(videos) < len(args.inputs) else []
    detector = load_detector(args)
    os.makedirs(args.out_dir, exist_ok=True)
    print(f"detect: {detector.description}, input {detector.input_hw[1]}x{detector.input_hw[0]}, "
          f"{len(paths)} image(s), {len(videos)} video(s)", flush=True)
    for spec in videos:
        stem = f"camera{spec}" if str(spec).isdigit() else os.path.splitext(os.path.basename(spec))[0]
        stats = video.detect_video(
            detector, int(spec) if str(spec).isdigit() else spec, out_path=os.path.join(args.out_dir, stem + ".mp4"),
            json_path=os.path.join(args.out_dir, stem + ".jsonl"), score_threshold=args.score_threshold,
            iou_threshold=args.iou_threshold, max_detections=args.max_detections, batch_size=args.batch_size,
            max_frames=args.max_frames)
        print(f"  {spec}: {stats['frames']} frames -> {stem}.mp4 + {stem}.jsonl, {stats['fps']:.1f} frames/s "
              f"({stats['steady_fps']:.1f} after compilation)", flush=True)
    skipped: list[str] = []
    readable: list[tuple[str, str]] = []

    def images():  # reads lazily; an unreadable image is named, counted and skipped
        for path, name in zip(paths, output_names(paths)):
            try:
                image = api.load_image(path)
            except (ValueError, OSError) as e:
                print(f"  {path}: skipped, {cli.one_line(e)}", flush=True)
                skipped.append(f"{path} ({cli.one_line(e)})")
                continue
            readable.append((path, name))
            yield image

    start = time.perf_counter()
    originals: list = []

    def keep(it):
        for image in it:
            originals.append(image)
            yield image

    found_iter = detector.predict_iter(keep(images()), score_threshold=args.score_threshold,
                                       iou_threshold=args.iou_threshold, max_detections=args.max_detections,
                                       batch_size=args.batch_size)
    written = 0
    for i, found in enumerate(found_iter):
        path, name = readable[i]
        ext = os.path.splitext(path)[1].lower()
        out_image = os.path.join(args.out_dir, name + (ext if ext in (".jpg", ".jpeg", ".png") else ".png"))
        api.save_image(drawing.draw_detections(originals[i], found), out_image)
        originals[i] = None  # drawn: free it
        height, width = found["image_size"]
        with open(os.path.join(args.out_dir, name + ".json"), "w") as f:
            json.dump({"image": path, "width": width, "height": height,
                       "detections": api.detections_to_json(found)}, f, indent=1)
        written += 1
        print(f"  {path}: {len(found['scores'])} detection(s)"
              + "".join(f"; {n} {s:.2f}" for n, s in list(zip(found["class_names"], found["scores"]))[:5]))
    seconds = time.perf_counter() - start
    print(f"detect: wrote {written} image(s) and JSON to {args.out_dir} in {seconds:.1f} s "
          f"({written / max(seconds, 1e-9):.1f} images/s including the first compilation)")
    return written, skipped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", help="image files, folders, glob patterns, videos or camera indices")
    p.add_argument("--out_dir", required=True, help="where drawn images and JSON files go")
    p.add_argument("--workdir", help="training workdir (its latest checkpoint)")
    p.add_argument("--checkpoint", help="one checkpoint: <workdir>/checkpoints/<step>")
    p.add_argument("--config", help="config overriding <workdir>/config.json (configs/x.py[:variant] or .json)")
    p.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto",
                   help="which weights of a checkpoint: auto = EMA when it holds them, else raw")
    p.add_argument("--darknet_cfg", help="darknet .cfg (with --darknet_weights)")
    p.add_argument("--darknet_weights", help="darknet .weights")
    p.add_argument("--names", help="darknet .names file (default: VOC names for 20 classes)")
    p.add_argument("--image_size", type=int, default=None,
                   help="network input size (default: the model's; YOLOv2: any multiple of 32)")
    p.add_argument("--score_threshold", type=float, default=0.3, help="draw/keep scores above this")
    p.add_argument("--iou_threshold", type=float, default=None, help="NMS IoU (default: v2 0.45, v1 0.5)")
    p.add_argument("--max_detections", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--backend", choices=("jax", "onnx"), default="jax",
                   help="jax: XLA; onnx: export to ONNX and run it with onnxruntime (faster on CPUs, docs/export.md)")
    p.add_argument("--exported", help="an export of experiments/export.py (.onnx or .jaxexport) as the model")
    p.add_argument("--max_frames", type=int, default=None, help="videos/cameras: stop after this many frames")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:

    args = parse_args(argv)
    try:
        _, skipped = run(args)
    except cli.USER_ERRORS as e:  # bad input: one line naming the problem, no traceback
        if args.debug:
            raise
        return cli.fail("detect", e)
    if skipped:
        return cli.fail("detect", f"{len(skipped)} image(s) could not be read and were skipped (the others were "
                                  "written): " + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
