"""`make demo`: train the quickstart config, evaluate it on the held-out synthetic split, draw detections.

  python experiments/demo.py [--workdir runs/quickstart_demo]

Re-running resumes from (or reuses) the workdir's checkpoint; delete the folder to train from scratch. The last
line reports the held-out score, e.g. `quickstart mAP@0.5 (VOC07 11-point): 0.908`.
"""

import os
import time

from absl import flags
from ml_collections import config_flags

from yolojax import cli

jax = cli.lazy_import("jax")
plots = cli.lazy_import("yolojax.evaluation.plots")
api = cli.lazy_import("yolojax.inference.api")
train = cli.lazy_import("yolojax.training.train")

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart_demo", "Where checkpoints, logs and the image go.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.py"),
    "The config (default configs/quickstart.py); overrides such as --config.total_steps=100 work as usual.")
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")
_DRAW_SCORE = flags.DEFINE_float("draw_score", 0.3, "Draw detections scoring above this.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Held-out images in the detections picture.")


def main(argv):
    del argv
    start = time.perf_counter()


    config = _CONFIG.value
    workdir = os.path.abspath(_WORKDIR.value)
    print(f"training configs/quickstart.py in {workdir} ({jax.device_count()} {jax.default_backend()} device(s))",
          flush=True)
    result = train.train_and_evaluate(config, workdir)
    exp, state = result["experiment"], result["state"]

    # The first held-out images, their detections drawn with the one drawer (yolojax.evaluation.plots): those the
    # final evaluation kept, or (a finished workdir, more images asked) the first images evaluated again.
    kept = result.get("images")
    if kept is None or len(kept) < _NUM_IMAGES.value:
        kept = train.evaluate(exp.steps, train.evaluated_state(state)[0], config, exp.class_names,
                              keep_images=_NUM_IMAGES.value)["images"]  # the weights the printed mAP is of
    if len(kept) > _NUM_IMAGES.value:
        first = plots.EvalImages(_NUM_IMAGES.value)
        first.images, first.detections, first.truth = (rows[:_NUM_IMAGES.value] for rows in
                                                       (kept.images, kept.detections, kept.truth))
        kept = first
    picture = os.path.join(workdir, "detections.png")
    api.save_image(plots.detection_grid(kept, exp.class_names, score_threshold=_DRAW_SCORE.value, truth=False),
                   picture)

    print(f"held-out split: {result['num_images']} images (synthetic 'eval' split, its own seed stream)")
    print(f"training time: {result['train_seconds']:.1f} s for {result['step']} steps "
          f"(batch {config.batch_size}; excludes evaluation and checkpoint writes)")
    print(f"mAP@0.5 area metric: {result['map_area']:.3f}; whole demo script: {time.perf_counter() - start:.1f} s")
    print(f"detections drawn in {picture}")
    print(f"quickstart mAP@0.5 (VOC07 11-point): {result['map_07']:.3f}")


if __name__ == "__main__":
    cli.run(main, prog="demo")
