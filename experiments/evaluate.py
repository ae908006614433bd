r"""VOC detection evaluation (devkit-exact AP, both metrics).

Results-file mode: scores devkit result files ``<prefix>_det_<image_set>_<class>.txt`` (from darknet, another
detector, or yolojax) against the annotations of ``ROOT/VOCdevkit/VOC<year>``:

  python experiments/evaluate.py --results_dir DIR --voc_root ROOT --year 2007 --image_set test \
      [--prefix comp4] [--iou 0.5] [--use_07_metric both] [--json OUT]

Prints a per-class table and the mAPs; ``--json`` writes ``{"ap_07": {class: ap}, "ap_area": {...},
"map_07": x, "map_area": y, ...}`` (a class without non-difficult ground truth is null and left out of the
means). This mode imports neither JAX nor TensorFlow, so it starts fast.
"""
from __future__ import annotations

import json
import sys
import time

from absl import app, flags, logging

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

FLAGS = flags.FLAGS

_METRICS = {"both": "both", "true": "07", "false": "area"}


def evaluate_result_files() -> dict:
    """Results-file mode: annotations + devkit result files -> ``VOCEvaluator.compute()`` dict."""
    from yolojax import evaluation
    from yolojax.data import voc

    evaluator = evaluation.VOCEvaluator(iou_threshold=FLAGS.iou)
    for image_id, ann in voc.iter_annotations(FLAGS.voc_root, FLAGS.year, FLAGS.image_set):
        evaluator.add_ground_truth(image_id, boxes=ann["boxes_px"], classes=ann["classes"],
                                   difficult=ann["difficult"])
    evaluator.add_result_files(FLAGS.results_dir, prefix=FLAGS.prefix, image_set=FLAGS.image_set,
                               allow_missing=FLAGS.allow_missing)
    return evaluator.compute()


def report(result: dict) -> None:
    """Prints the table and writes the JSON file if asked."""
    from yolojax import evaluation

    print(evaluation.format_table(result, metrics=_METRICS[FLAGS.use_07_metric]))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(evaluation.result_to_json(result), f, indent=2)
        logging.info("wrote %s", FLAGS.json)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    if FLAGS.results_dir is not None:  # a model mode (checkpoint -> detections) slots in beside this one
        if FLAGS.voc_root is None:
            raise app.UsageError("--results_dir needs --voc_root")
        result = evaluate_result_files()
    else:
        raise app.UsageError("give --results_dir (results-file mode)")
    report(result)
    logging.info("evaluated %d images in %.2f s", result["num_images"], time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    logging.use_absl_handler()
    sys.exit(app.run(main))
