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

from absl import app, flags
from ml_collections import config_flags

from yolojax import cli

plots = cli.lazy_import("yolojax.evaluation.plots")
api = cli.lazy_import("yolojax.inference.api")
export = cli.lazy_import("yolojax.inference.export")
video = cli.lazy_import("yolojax.inference.video")

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
            iou_threshold=args.nms_iou, max_detections=args.max_detections, batch_size=args.batch_size,
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
                                       iou_threshold=args.nms_iou, max_detections=args.max_detections,
                                       batch_size=args.batch_size)
    written = 0
    for i, found in enumerate(found_iter):
        path, name = readable[i]
        ext = os.path.splitext(path)[1].lower()
        out_image = os.path.join(args.out_dir, name + (ext if ext in (".jpg", ".jpeg", ".png") else ".png"))
        api.save_image(plots.draw_detections(originals[i], found), out_image)
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


FLAGS = flags.FlagValues()
flags.DEFINE_string("out_dir", None, "Where drawn images and JSON files go.", required=True, flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint).", flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "One checkpoint: <workdir>/checkpoints/<step>.", flag_values=FLAGS)
config_flags.DEFINE_config_file("config", None, "Config replacing <workdir>/config.json (configs/x.py[:variant] or "
                                ".json); --config.a.b=v overrides apply to the workdir's config.json without it.",
                                flag_values=FLAGS, lock_config=True)
flags.DEFINE_enum("weights", "auto", ["auto", "ema", "raw"], "Which weights of a checkpoint (auto = EMA when it "
                  "holds them).", flag_values=FLAGS)
flags.DEFINE_string("darknet_cfg", None, "Darknet .cfg (with --darknet_weights).", flag_values=FLAGS)
flags.DEFINE_string("darknet_weights", None, "Darknet .weights.", flag_values=FLAGS)
flags.DEFINE_string("names", None, "Darknet .names file (default: VOC names for 20 classes).", flag_values=FLAGS)
flags.DEFINE_integer("image_size", None, "Network input size (default: the model's).", flag_values=FLAGS)
flags.DEFINE_float("score_threshold", 0.3, "Draw / keep scores above this.", flag_values=FLAGS)
flags.DEFINE_float("nms_iou", None, "NMS IoU (default: v2 0.45, v1 0.5).", flag_values=FLAGS)
flags.DEFINE_integer("max_detections", 100, "Detections kept per image.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 8, "Images per device call.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("backend", "jax", ["jax", "onnx"], "Run the model with JAX or with onnxruntime on an ONNX export "
                  "of it.", flag_values=FLAGS)
flags.DEFINE_string("exported", None, "An export of experiments/export.py (.onnx or .jaxexport) as the model.",
                    flag_values=FLAGS)
flags.DEFINE_integer("max_frames", None, "Videos/cameras: stop after this many frames.", flag_values=FLAGS)
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.", flag_values=FLAGS)


def _detect(argv: list[str]) -> int:
    if len(argv) < 2:
        raise app.UsageError("give at least one input: image files, folders, glob patterns, videos or cameras")
    args = argparse.Namespace(**{name: FLAGS[name].value for name in FLAGS}, inputs=argv[1:])
    _, skipped = run(args)
    if skipped:
        return cli.fail("detect", f"{len(skipped)} image(s) could not be read and were skipped (the others were "
                                  "written): " + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``detect.py`` with ``argv`` (the flags and inputs, without the program name; default ``sys.argv``)."""
    return cli.invoke(_detect, prog="detect", flag_values=FLAGS, workdir_config=True,
                      argv=None if argv is None else ["detect.py", *argv])


if __name__ == "__main__":
    sys.exit(main())
