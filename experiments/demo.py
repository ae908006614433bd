"""`make demo`: train the quickstart config, evaluate it on the held-out synthetic split, draw detections.

  python experiments/demo.py [--workdir runs/quickstart_demo]

Re-running resumes from (or reuses) the workdir's checkpoint; delete the folder to train from scratch. The last
line reports the held-out score, e.g. `quickstart mAP@0.5 (VOC07 11-point): 0.908`.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart_demo", "Where checkpoints, logs and the image go.")
_DRAW_SCORE = flags.DEFINE_float("draw_score", 0.3, "Draw detections scoring above this.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 8, "Held-out images in the detections picture.")


def draw_detections(images, dets, class_names, path, score_threshold=0.3, columns=4):
    """Saves a grid of images (float [N, H, W, 3] in [0, 1]) with detections (normalized xyxy) drawn as PNG."""
    import numpy as np
    from PIL import Image, ImageDraw

    palette = [(255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 220, 0), (255, 64, 255), (0, 230, 230),
               (255, 140, 0), (160, 90, 255), (255, 255, 255), (128, 128, 128)]
    n, h, w, _ = images.shape
    scale = max(1, 256 // max(h, w))  # enlarge small inputs so the labels stay readable
    tiles = []
    for i in range(n):
        tile = Image.fromarray((np.clip(images[i], 0, 1) * 255).astype(np.uint8)).resize((w * scale, h * scale))
        draw = ImageDraw.Draw(tile)
        for box, score, cls in zip(dets["boxes"][i], dets["scores"][i], dets["classes"][i]):
            if cls < 0 or score <= score_threshold:
                continue
            x0, y0, x1, y1 = (float(v) for v in box * np.array([w, h, w, h]) * scale)
            colour = palette[int(cls) % len(palette)]
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=2)
            draw.text((x0 + 2, max(0.0, y0 - 11)), f"{class_names[int(cls)]} {score:.2f}", fill=colour)
        tiles.append(tile)
    rows = -(-n // columns)
    sheet = Image.new("RGB", (columns * w * scale, rows * h * scale))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * w * scale, (i // columns) * h * scale))
    sheet.save(path)


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; our own lines go to stdout
    del argv
    start = time.perf_counter()
    import jax
    import numpy as np

    from configs import quickstart
    from yolojax import train

    config = quickstart.get_config()
    workdir = os.path.abspath(_WORKDIR.value)
    print(f"training configs/quickstart.py in {workdir} ({jax.device_count()} {jax.default_backend()} device(s))",
          flush=True)
    result = train.train_and_evaluate(config, workdir)
    exp, state = result["experiment"], result["state"]

    batch = next(iter(train.eval_batches(config)))
    images = batch["image"][: _NUM_IMAGES.value]
    n = images.shape[0]
    padded = np.concatenate([batch["image"], batch["image"][: (-len(batch["image"])) % exp.mesh.size]])
    dets = exp.steps.eval(state, train.shard_batch({"image": padded}, exp.mesh)["image"])
    dets = {k: np.asarray(jax.device_get(v))[:n] for k, v in dets.items()}
    picture = os.path.join(workdir, "detections.png")
    draw_detections(images, dets, exp.class_names, picture, _DRAW_SCORE.value)

    print(f"held-out split: {result['num_images']} images (synthetic 'eval' split, its own seed stream)")
    print(f"training time: {result['train_seconds']:.1f} s for {result['step']} steps "
          f"(batch {config.batch_size}; excludes evaluation and checkpoint writes)")
    print(f"mAP@0.5 area metric: {result['map_area']:.3f}; whole demo script: {time.perf_counter() - start:.1f} s")
    print(f"detections drawn in {picture}")
    print(f"quickstart mAP@0.5 (VOC07 11-point): {result['map_07']:.3f}")


if __name__ == "__main__":
    app.run(main)
