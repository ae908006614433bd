"""Draws one augmented training batch with its boxes and class names: the first check on new data or augmentation.

Usage:
  python experiments/show_batch.py --config configs/CONFIG.py --out batch.png [--step 0] [--num 16]
  python experiments/show_batch.py --out batch.png   # default data config with the synthetic dataset
Config overrides work as usual: --config.data.augment.jitter=0.
"""
from __future__ import annotations

import numpy as np
from absl import flags
from ml_collections import config_flags

from yolojax import cli

photometric = cli.lazy_import("yolojax.data.photometric")
pipeline = cli.lazy_import("yolojax.data.pipeline")
sources = cli.lazy_import("yolojax.data.sources")
plots = cli.lazy_import("yolojax.evaluation.plots")
api = cli.lazy_import("yolojax.inference.api")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file with a .data section (default: synthetic).")
_OUT = flags.DEFINE_string("out", "batch.png", "Output PNG.")
_STEP = flags.DEFINE_integer("step", 0, "Training step whose batch is drawn.")
_NUM = flags.DEFINE_integer("num", 16, "Images to draw (at most the batch size).")
_SEED = flags.DEFINE_integer("seed", None, "Data seed (default: config.seed or 0).")


def draw_batch(batch: dict, names: tuple[str, ...], num: int) -> np.ndarray:
    """Training batch -> uint8 grid (``yolojax.evaluation.plots``) with each image's boxes and class names."""

    images = plots.to_uint8(batch["image"][:num])
    tiles = []
    for i, img in enumerate(images):
        mask = np.asarray(batch["mask"][i], bool)
        classes = np.asarray(batch["classes"][i])[mask]
        tiles.append(plots.draw_boxes(img, np.asarray(batch["boxes"][i])[mask], classes,
                                        [names[c] if c < len(names) else str(c) for c in classes], line_width=1))
    return plots.tile(tiles)


def main(argv) -> int:
    del argv
    config = _CONFIG.value
    if config is None:
        data_cfg = pipeline.default_data_config()
        data_cfg.update(source="synthetic", train_split="train", eval_split="eval", image_size=160)
        batch_size, seed = _NUM.value, 0
    else:
        data_cfg = config.data
        batch_size = int(config.batch_size)
        seed = int(config.get("seed", 0))
    seed = seed if _SEED.value is None else _SEED.value
    it = pipeline.make_train_iterator(data_cfg, seed=seed, global_batch_size=batch_size, start_step=_STEP.value,
                                      process_index=0, process_count=1)
    batch = next(it)
    # What the network sees: with the colour jitter placed on the device, apply it here as the train step does.
    batch["image"] = np.asarray(photometric.train_inputs(batch["image"], batch.get("photometric")))
    grid = draw_batch(batch, sources.class_names(data_cfg), min(_NUM.value, len(batch["image"])))
    api.save_image(grid, _OUT.value)
    print(f"wrote {_OUT.value}: {min(_NUM.value, len(batch['image']))} images at {batch['image'].shape[1]} px, "
          f"{int(batch['mask'].sum())} boxes")
    return 0


if __name__ == "__main__":
    cli.run(main, prog="show_batch")
