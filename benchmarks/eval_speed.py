"""Times ``experiments/evaluate.py`` (results-file mode) end to end on a VOC2007-test-sized synthetic set.

Writes, in a temporary folder, a devkit tree with ``--num_images`` annotation XMLs (1-6 objects each, 20%
difficult, like VOC2007 test's ~15k objects in 4,952 images) and its ``ImageSets/Main/test.txt``, plus
``--num_detections`` detections as devkit result files (jittered ground truth, duplicates, wrong classes,
background boxes), then runs the evaluator as a subprocess and prints its wall time (whole process:
interpreter start, imports, XML parsing, result reading, matching, AP, printing).

  python benchmarks/eval_speed.py [--num_images 4952] [--num_detections 100000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from yolojax.config.classes import VOC_CLASSES
from yolojax.evaluation import voc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _xml(image_id: str, width: int, height: int, objects: list[tuple[str, list[int], int]]) -> str:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                     f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
    parts.append("</annotation>\n")
    return "".join(parts)


def make_synthetic_voc(root: str, *, num_images: int, num_detections: int, seed: int = 0) -> str:
    """Writes ``root/VOCdevkit/VOC2007/{Annotations,ImageSets/Main}`` and ``root/results``; returns the
    results folder."""
    rng = np.random.default_rng(seed)
    year_dir = os.path.join(root, "VOCdevkit", "VOC2007")
    os.makedirs(os.path.join(year_dir, "Annotations"))
    os.makedirs(os.path.join(year_dir, "ImageSets", "Main"))
    ids = [f"{i:06d}" for i in range(1, num_images + 1)]
    all_gt = []  # (image index, box, class)
    for i, image_id in enumerate(ids):
        width, height = int(rng.integers(300, 501)), int(rng.integers(300, 501))
        objects = []
        for _ in range(rng.integers(1, 7)):
            x0, y0 = int(rng.integers(1, width - 20)), int(rng.integers(1, height - 20))
            box = [x0, y0, int(rng.integers(x0 + 10, width + 1)), int(rng.integers(y0 + 10, height + 1))]
            c = int(rng.integers(0, len(VOC_CLASSES)))
            objects.append((VOC_CLASSES[c], box, int(rng.random() < 0.2)))
            all_gt.append((i, box, c))
        with open(os.path.join(year_dir, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(_xml(image_id, width, height, objects))
    with open(os.path.join(year_dir, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")

    # Half the detections near a ground truth (jitter; some with the wrong class), half anywhere.
    n_near = num_detections // 2
    pick = rng.integers(0, len(all_gt), size=n_near)
    near_img = np.array([all_gt[k][0] for k in pick])
    near_box = np.array([all_gt[k][1] for k in pick], float) + rng.normal(0, 8, size=(n_near, 4))
    near_cls = np.array([all_gt[k][2] for k in pick])
    wrong = rng.random(n_near) < 0.1
    near_cls[wrong] = rng.integers(0, len(VOC_CLASSES), size=int(wrong.sum()))
    n_far = num_detections - n_near
    far_img = rng.integers(0, num_images, size=n_far)
    xy = rng.uniform(1, 400, size=(n_far, 2))
    far_box = np.concatenate([xy, xy + rng.uniform(5, 200, size=(n_far, 2))], axis=1)
    far_cls = rng.integers(0, len(VOC_CLASSES), size=n_far)
    image_idx = np.concatenate([near_img, far_img])
    results_dir = os.path.join(root, "results")
    voc.write_results(
        results_dir, image_ids=[ids[i] for i in image_idx], boxes=np.concatenate([near_box, far_box]),
        scores=rng.random(num_detections).round(6), classes=np.concatenate([near_cls, far_cls]),
        prefix="comp4", image_set="test")
    return results_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=4952)
    parser.add_argument("--num_detections", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        results_dir = make_synthetic_voc(root, num_images=args.num_images, num_detections=args.num_detections)
        print(f"wrote {args.num_images} annotations + {args.num_detections} detections in "
              f"{time.perf_counter() - t0:.1f} s")
        cmd = [sys.executable, os.path.join(REPO, "experiments", "evaluate.py"), "--results_dir", results_dir,
               "--voc_root", root, "--year", "2007", "--image_set", "test",
               "--json", os.path.join(root, "out.json")]
        times, cpu = [], []
        for _ in range(args.repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if proc.returncode != 0:
                sys.exit(f"evaluate.py failed ({proc.returncode}):\n{proc.stderr}")
        print(proc.stdout.splitlines()[-2])  # the mAP line
        # CPU time (user + sys) is printed too: on a shared machine it is steadier than wall time.
        print(f"experiments/evaluate.py whole process, {args.num_images} images / {args.num_detections} "
              f"detections: wall best {min(times):.2f} s (runs " + ", ".join(f"{t:.2f}" for t in times)
              + f"), CPU best {min(cpu):.2f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
