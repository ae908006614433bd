r"""VOC detection evaluation (devkit-exact AP, both metrics).

Results-file mode: scores devkit result files ``<prefix>_det_<image_set>_<class>.txt`` (from darknet, another
detector, or yolojax) against the annotations of ``ROOT/VOCdevkit/VOC<year>``:

  python experiments/evaluate.py --results_dir DIR --voc_root ROOT --year 2007 --image_set test \
      [--prefix comp4] [--iou 0.5] [--use_07_metric both] [--json OUT]

Prints a per-class table (with the breakdown of each class's false positives: localization, class confusion,
duplicate, background; ``yolojax.evaluation.analysis``) and the mAPs; ``--json`` writes ``{"ap_07": {class: ap},
"ap_area": {...}, "map_07": x, "map_area": y, "confusion_matrix": {...}, "error_breakdown": {...}, ...}`` (a class
without non-difficult ground truth is null and left out of the means). This mode imports neither JAX nor
TensorFlow, so it starts fast.

Model mode: runs a yolojax checkpoint or darknet files over the image set (or a prepared TFDS split), writes
the devkit result files, the precision-recall curves (``pr_curves.png``) and the confusion matrix
(``confusion_matrix.png``) to ``--out_dir``, and reports as above plus images/s; a yolojax workdir's evaluation
also goes to TensorBoard (``<workdir>/tensorboard/evaluate_<split>``, the tags training's evaluations write).
Thresholds default to the published ones (v2: score 0.005, NMS 0.45; v1: 0.001, 0.5); the mAP equals what
results-file mode gives on the files it wrote:

  python experiments/evaluate.py --workdir runs/yolov2 --voc_root ROOT --year 2007 --image_set test \
      --out_dir runs/yolov2/eval [--checkpoint DIR] [--image_size 544] [--weights raw] [--json OUT]
  python experiments/evaluate.py --darknet_cfg yolov2-voc.cfg --darknet_weights yolov2-voc.weights \
      --tfds_split 2007_test --out_dir eval_darknet

A checkpoint is scored with its EMA weights when it holds them (``--weights auto``), as training-time evaluation
does; ``--weights raw`` scores the raw ones. The first line printed says which ("(ema weights)").
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging

from yolojax import cli
from yolojax.config.classes import VOC_CLASSES
from yolojax.data import voc
from yolojax.evaluation import analysis, plots
from yolojax.evaluation import coco as coco_metrics
from yolojax.evaluation import evaluators as evaluators_lib
from yolojax.evaluation import voc as evaluation

# Model mode's modules (JAX, grain, OpenCV, TensorBoard) load on first use: results-file mode starts without them.
pipeline = cli.lazy_import("yolojax.data.pipeline")
sources = cli.lazy_import("yolojax.data.sources")
api = cli.lazy_import("yolojax.inference.api")
writers = cli.lazy_import("yolojax.training.writers")

flags.DEFINE_string("results_dir", None, "Folder with devkit result files (results-file mode).")
flags.DEFINE_string("prefix", "comp4", "Result file prefix: <prefix>_det_<image_set>_<class>.txt.")
flags.DEFINE_string("voc_root", None, "Folder holding VOCdevkit/ (or VOCdevkit/ or VOC<year>/ itself).")
flags.DEFINE_string("year", "2007", "VOC year of the annotations.")
flags.DEFINE_string("image_set", "test", "Image set: ImageSets/Main/<image_set>.txt.")
flags.DEFINE_float("iou", 0.5, "IoU threshold for a true positive (devkit: >= 0.5).")
flags.DEFINE_enum("use_07_metric", "both", ["both", "true", "false"],
                  "Which AP to print: 'true' = VOC2007 11-point, 'false' = area (VOC2010+), 'both'. The JSON "
                  "always holds both.")
flags.DEFINE_string("json", None, "Optional path of a JSON file for the results.")
flags.DEFINE_bool("allow_missing", False, "Treat a missing class result file as no detections.")
# Model mode (yolojax.inference.api): a model instead of result files.
flags.DEFINE_string("workdir", None, "Model mode: training workdir (its latest checkpoint).")
flags.DEFINE_string("checkpoint", None, "Model mode: one checkpoint, <workdir>/checkpoints/<step>.")
flags.DEFINE_string("config", None, "Model mode: config overriding <workdir>/config.json (x.py[:variant]/.json).")
flags.DEFINE_enum("weights", "auto", ["auto", "ema", "raw"], "Model mode: which weights of a checkpoint (auto = "
                  "EMA when it holds them, else raw).")
flags.DEFINE_string("darknet_cfg", None, "Model mode: darknet .cfg (with --darknet_weights).")
flags.DEFINE_string("darknet_weights", None, "Model mode: darknet .weights.")
flags.DEFINE_string("names", None, "Model mode: darknet .names file (default: VOC names).")
flags.DEFINE_integer("image_size", None, "Model mode: network input size (default: the model's).")
flags.DEFINE_string("tfds_split", None, "Model mode: a prepared TFDS VOC split (e.g. 2007_test) instead of "
                    "--voc_root.")
flags.DEFINE_string("tfds_data_dir", None, "Model mode: TFDS data_dir.")
flags.DEFINE_string("split", None, "Model mode: split to score (default: with --voc_root <year>_<image_set>; with "
                    "--workdir alone, the training config's eval split).")
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")
flags.DEFINE_float("score_threshold", None, "Model mode: keep scores above (default: the training config's "
                   "eval.score_threshold; darknet files: v2 0.005, v1 0.001).")
flags.DEFINE_float("nms_iou", None, "Model mode: NMS IoU (default: the training config's eval.nms_iou_threshold; "
                   "darknet files: v2 0.45, v1 0.5).")
flags.DEFINE_integer("max_detections", None, "Model mode: detections kept per image (default: the training "
                     "config's, or 200).", lower_bound=1)
flags.DEFINE_integer("batch_size", 8, "Model mode: images per device call.", lower_bound=1)
flags.DEFINE_string("out_dir", None, "Model mode: where result files, pr_curves.png and confusion_matrix.png are "
                    "written.")

FLAGS = flags.FLAGS

_METRICS = {"both": "both", "true": "07", "false": "area"}


def evaluate_result_files() -> dict:
    """Results-file mode: annotations + devkit result files (each file read once) -> the evaluators' metrics
    (``evaluators.compute``)."""

    evaluators = evaluators_lib.make_evaluators(VOC_CLASSES, FLAGS.iou)
    # The result files are read in a second process while this one parses the annotations.
    results = cli.in_background(evaluation.read_results, FLAGS.results_dir, prefix=FLAGS.prefix,
                                image_set=FLAGS.image_set, class_names=evaluators[0].class_names,
                                image_ids=set(voc.read_image_set(FLAGS.voc_root, FLAGS.year, FLAGS.image_set)),
                                allow_missing=FLAGS.allow_missing)
    annotations = list(voc.iter_annotations(FLAGS.voc_root, FLAGS.year, FLAGS.image_set))
    image_ids = [image_id for image_id, _ in annotations]
    gt = {"gt_image": np.repeat(np.arange(len(annotations)), [len(a["classes"]) for _, a in annotations]),
          "gt_boxes": np.concatenate([a["boxes_px"] for _, a in annotations] + [np.zeros((0, 4), np.float32)]),
          "gt_classes": np.concatenate([a["classes"] for _, a in annotations] + [np.zeros(0, np.int32)]),
          "gt_difficult": np.concatenate([a["difficult"] for _, a in annotations] + [np.zeros(0, bool)])}
    results = results()
    for ev in evaluators:
        ev.add_images(image_ids, **gt)
        ev.add_results(results)
    coco = cli.in_background(evaluators[1].compute)  # the COCO-style metrics in a second process, beside VOC's
    return evaluators_lib.compute(evaluators, pending={1: coco})


def _first(*values):
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)


def model_dataset(detector_config) -> tuple:
    """(data config, split) that model mode scores: --voc_root/--year/--image_set, --tfds_split, or (with
    --workdir) the training config's own dataset and --split (default: its eval split)."""

    if FLAGS.voc_root is not None and FLAGS.tfds_split is not None:
        raise app.UsageError("give at most one of --voc_root / --tfds_split")
    if FLAGS.voc_root is not None or FLAGS.tfds_split is not None:
        data_cfg = pipeline.default_data_config()
        if FLAGS.voc_root is not None:
            data_cfg.source, data_cfg.voc_dir = "voc_dir", FLAGS.voc_root
            return data_cfg, FLAGS.split or f"{FLAGS.year}_{FLAGS.image_set}"
        data_cfg.source, data_cfg.tfds_data_dir = "tfds", FLAGS.tfds_data_dir or ""
        return data_cfg, FLAGS.tfds_split
    if detector_config is None:
        raise app.UsageError("darknet files need a dataset: --voc_root or --tfds_split")
    return detector_config.data, FLAGS.split or detector_config.data.eval_split


def evaluate_model() -> dict:
    """Model mode: model -> detections on the split (the same eval batches and evaluation path as training) ->
    result files, pr_curves.png and confusion_matrix.png in --out_dir, scored in memory; a yolojax workdir also
    gets the evaluation in TensorBoard (``<workdir>/tensorboard/evaluate_<split>``, at the checkpoint's step)."""

    if FLAGS.out_dir is None:
        raise app.UsageError("model mode needs --out_dir")
    config = None
    if FLAGS.darknet_cfg or FLAGS.darknet_weights:
        if not (FLAGS.darknet_cfg and FLAGS.darknet_weights):
            raise app.UsageError("give both --darknet_cfg and --darknet_weights")
        names = api.read_names(FLAGS.names) if FLAGS.names else None
        detector = api.load_darknet(FLAGS.darknet_cfg, FLAGS.darknet_weights, class_names=names,
                                    image_size=FLAGS.image_size)
    else:
        path = FLAGS.checkpoint or FLAGS.workdir
        config = api.load_config(FLAGS.config or api.workdir_config_path(path))
        detector = api.load_checkpoint(path, config=config, image_size=FLAGS.image_size, weights=FLAGS.weights)
    data_cfg, split = model_dataset(config)
    print(f"evaluate: {detector.description}, input {detector.input_hw[1]}x{detector.input_hw[0]}, split {split!r}",
          flush=True)
    evaluators = evaluators_lib.make_evaluators(detector.class_names, FLAGS.iou)
    unreadable_before = sources.DATA_WARNINGS.get("corrupt_image", 0)
    # A workdir is scored with its own config's thresholds (what training-time evaluation used).
    own = config.eval if config is not None else {}
    score_threshold, nms_iou = detector.thresholds("eval", _first(FLAGS.score_threshold, own.get("score_threshold")),
                                                   _first(FLAGS.nms_iou, own.get("nms_iou_threshold")))
    logdir = tensorboard_dir(config, split)
    kept = plots.EvalImages(plots.GRID_IMAGES) if logdir else None
    stats = api.evaluate(detector, data_cfg, split, evaluators, score_threshold=score_threshold,
                         iou_threshold=nms_iou,
                         max_detections=_first(FLAGS.max_detections, own.get("max_detections"), 200),
                         batch_size=FLAGS.batch_size, on_batch=kept)
    unreadable = sources.DATA_WARNINGS.get("corrupt_image", 0) - unreadable_before
    voc_evaluator = evaluators[0]
    voc_evaluator.write_results(FLAGS.out_dir, prefix=FLAGS.prefix, image_set=FLAGS.image_set)
    result = evaluators_lib.compute(evaluators)
    start = time.perf_counter()
    pictures = plots.evaluation_images(result, kept, score_threshold=score_threshold,
                                       draw_score_threshold=detector.default_thresholds("draw")["score_threshold"],
                                       title=f"{config.model.name} step {detector.step}" if config else "darknet")
    api.save_image(pictures["precision_recall"], os.path.join(FLAGS.out_dir, "pr_curves.png"))
    api.save_image(pictures["confusion_matrix"], os.path.join(FLAGS.out_dir, "confusion_matrix.png"))
    if logdir:
        writer = writers.TensorBoardWriter(logdir)
        writers.write_evaluation(writer, detector.step or 0, {**result, **stats}, images=pictures)
        writer.close()
    print(f"evaluate: scored {stats['num_images']} images in {stats['seconds']:.1f} s, "
          f"{stats['images_per_sec']:.1f} images/s after the first batch (which includes compilation); result files, "
          f"pr_curves.png and confusion_matrix.png in {FLAGS.out_dir}"
          + (f"; TensorBoard in {logdir}" if logdir else "")
          + f" (pictures drawn in {time.perf_counter() - start:.2f} s)")
    result["unreadable_images"] = unreadable
    return result


def tensorboard_dir(config, split: str) -> str | None:
    """Where model mode logs a yolojax workdir's evaluation: ``<workdir>/tensorboard/evaluate_<split>`` (a run of
    its own beside training's, with the same "eval/" tags), or None (darknet files, or
    ``config.eval.tensorboard_images`` off)."""
    if config is None or not config.eval.get("tensorboard_images", True):
        return None
    workdir = os.path.dirname(api.workdir_config_path(FLAGS.checkpoint or FLAGS.workdir))
    return os.path.join(workdir, "tensorboard", f"evaluate_{split}")


def report(result: dict) -> None:
    """Prints the table (with the error breakdown of each class's false positives) and writes the JSON file if
    asked (with the confusion matrix and the breakdown)."""

    print(evaluation.format_table(result, metrics=_METRICS[FLAGS.use_07_metric],
                                  extra_columns=analysis.table_columns(result["analysis"])))
    print("FP: false positives at the evaluation's score threshold; their shares: loc% localization (IoU 0.1-"
          f"{result['iou_threshold']:g} with a box of the class), conf% class confusion, dup% duplicate, "
          "bg% background")
    if "coco_full" in result:
        print(coco_metrics.format_summary(result["coco_full"]))
    if FLAGS.json:
        out = evaluation.result_to_json(result)
        out.update(analysis.to_json(result["analysis"]))
        if "coco_full" in result:
            out["coco"] = coco_metrics.result_to_json(result["coco_full"])
        with open(FLAGS.json, "w") as f:
            json.dump(out, f, indent=2)
        logging.info("wrote %s", FLAGS.json)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    if FLAGS.results_dir is not None:  # results-file mode
        if FLAGS.voc_root is None:
            raise app.UsageError("--results_dir needs --voc_root")
        result = evaluate_result_files()
    elif FLAGS.workdir or FLAGS.checkpoint or FLAGS.darknet_cfg or FLAGS.darknet_weights:
        result = evaluate_model()
    else:
        raise app.UsageError("give --results_dir (results-file mode), or --workdir / --checkpoint / "
                             "--darknet_cfg + --darknet_weights (model mode)")
    report(result)
    logging.info("evaluated %d images in %.2f s", result["num_images"], time.perf_counter() - start)
    if result.get("unreadable_images"):

        return cli.fail("evaluate", f"{result['unreadable_images']} image(s) could not be read and were not scored "
                                    "(named in the warnings above)")
    return 0


if __name__ == "__main__":

    cli.run(main, prog="evaluate")
