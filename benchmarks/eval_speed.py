"""Times ``experiments/evaluate.py`` (results-file mode, VOC + COCO-style metrics) end to end on a
VOC2007-test-sized synthetic set, beside a plain-numpy reference that computes the VOC metric alone.

Writes, in a temporary folder, a devkit tree with ``--num_images`` annotation XMLs (1-6 objects each, 20%
difficult, like VOC2007 test's ~15k objects in 4,952 images) and its ``ImageSets/Main/test.txt``, plus
``--num_detections`` detections as devkit result files (jittered ground truth, duplicates, wrong classes,
background boxes). Then, alternating in one run (so a busy machine slows both alike), it times two whole
processes (interpreter start, imports, XML parsing, result reading, matching, AP, printing):

  * ``experiments/evaluate.py --results_dir``: the devkit VOC metric and the COCO-style metrics;
  * the reference: py-faster-rcnn's ``voc_eval.py`` / ``pascal_voc._do_python_eval`` transcribed below (VOC07
    11-point AP only, one class at a time, a Python loop over the detections; its annotation cache is cold at the
    start of every run, as on a first evaluation: it parses the XMLs once, pickles them, and reloads the pickle
    for every class as the original does).

It prints both mAPs (they agree to the devkit's rounding unless a recall lands on 0.6 or 0.7; see
``yolojax.evaluation.voc.VOC07_RECALL_THRESHOLDS``), both times and the ratio reference / evaluate.py.

  python benchmarks/eval_speed.py [--num_images 4952] [--num_detections 110000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

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


# ----------------------------------------------------------------------------------------------------------
# The reference: py-faster-rcnn lib/datasets/voc_eval.py and pascal_voc._do_python_eval, transcribed to Python 3
# (cPickle -> pickle, print statements dropped), otherwise line for line.


def _ref_parse_rec(filename):
    """Parse a PASCAL VOC xml file."""
    tree = ET.parse(filename)
    objects = []
    for obj in tree.findall("object"):
        obj_struct = {}
        obj_struct["name"] = obj.find("name").text
        obj_struct["pose"] = obj.find("pose").text
        obj_struct["truncated"] = int(obj.find("truncated").text)
        obj_struct["difficult"] = int(obj.find("difficult").text)
        bbox = obj.find("bndbox")
        obj_struct["bbox"] = [int(bbox.find("xmin").text), int(bbox.find("ymin").text),
                              int(bbox.find("xmax").text), int(bbox.find("ymax").text)]
        objects.append(obj_struct)
    return objects


def _ref_voc_ap(rec, prec, use_07_metric=False):
    if use_07_metric:
        # 11 point metric
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.
    else:
        mrec = np.concatenate(([0.], rec, [1.]))
        mpre = np.concatenate(([0.], prec, [0.]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def _ref_voc_eval(detpath, annopath, imagesetfile, classname, cachedir, ovthresh=0.5, use_07_metric=False):
    if not os.path.isdir(cachedir):
        os.mkdir(cachedir)
    cachefile = os.path.join(cachedir, "annots.pkl")
    with open(imagesetfile) as f:
        lines = f.readlines()
    imagenames = [x.strip() for x in lines]
    if not os.path.isfile(cachefile):
        recs = {}
        for imagename in imagenames:
            recs[imagename] = _ref_parse_rec(annopath.format(imagename))
        with open(cachefile, "wb") as f:
            pickle.dump(recs, f)
    else:
        with open(cachefile, "rb") as f:
            recs = pickle.load(f)

    class_recs = {}
    npos = 0
    for imagename in imagenames:
        R = [obj for obj in recs[imagename] if obj["name"] == classname]
        bbox = np.array([x["bbox"] for x in R])
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[imagename] = {"bbox": bbox, "difficult": difficult, "det": det}

    detfile = detpath.format(classname)
    with open(detfile) as f:
        lines = f.readlines()
    splitlines = [x.strip().split(" ") for x in lines]
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines])
    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]

    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1., 0.)
            ih = np.maximum(iymax - iymin + 1., 0.)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                   (BBGT[:, 2] - BBGT[:, 0] + 1.) * (BBGT[:, 3] - BBGT[:, 1] + 1.) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.
        else:
            fp[d] = 1.

    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = _ref_voc_ap(rec, prec, use_07_metric)
    return rec, prec, ap


def reference_main(root: str) -> None:
    """pascal_voc._do_python_eval for VOC2007 test (11-point metric), with a fresh annotation cache."""
    devkit = os.path.join(root, "VOCdevkit", "VOC2007")
    annopath = os.path.join(devkit, "Annotations", "{:s}.xml")
    imagesetfile = os.path.join(devkit, "ImageSets", "Main", "test.txt")
    cachedir = tempfile.mkdtemp(dir=root)
    aps = []
    for cls in VOC_CLASSES:
        filename = os.path.join(root, "results", "comp4_det_test_{:s}.txt")
        _, _, ap = _ref_voc_eval(filename, annopath, imagesetfile, cls, cachedir, ovthresh=0.5, use_07_metric=True)
        aps += [ap]
        print(f"AP for {cls} = {ap:.4f}")
    print(f"Mean AP = {np.mean(aps):.4f}")


# ----------------------------------------------------------------------------------------------------------


def _time(cmd: list[str]) -> tuple[float, float, str]:
    """Runs ``cmd``; returns (wall s, CPU s of the child, stdout)."""
    # Both processes may write the bytecode of what they import (the first run of each does, where the environment
    # says PYTHONDONTWRITEBYTECODE and the install did not compile): the best run times the work, not Python
    # compiling its sources.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:2])} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=4952)
    parser.add_argument("--num_detections", type=int, default=110_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", metavar="ROOT", help=argparse.SUPPRESS)  # the reference's own process
    args = parser.parse_args()
    if args.reference:
        reference_main(args.reference)
        return
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        results_dir = make_synthetic_voc(root, num_images=args.num_images, num_detections=args.num_detections)
        print(f"wrote {args.num_images} annotations + {args.num_detections} detections in "
              f"{time.perf_counter() - t0:.1f} s")
        ours = [sys.executable, os.path.join(REPO, "experiments", "evaluate.py"), "--results_dir", results_dir,
                "--voc_root", root, "--year", "2007", "--image_set", "test", "--json", os.path.join(root, "out.json")]
        ref = [sys.executable, os.path.abspath(__file__), "--reference", root]
        runs = {"evaluate.py": [], "reference": []}
        for _ in range(args.repeats):  # alternating, so machine load hits both alike
            for name, cmd in (("reference", ref), ("evaluate.py", ours)):
                runs[name].append(_time(cmd))
        with open(os.path.join(root, "out.json")) as f:
            out = json.load(f)
        print(f"evaluate.py: VOC07 mAP {out['map_07']:.4f}, area mAP {out['map_area']:.4f}, COCO AP "
              f"{out['coco']['AP']:.4f}; reference: " + runs["reference"][-1][2].splitlines()[-1])
        # CPU time (user + sys) is printed too: on a shared machine it is steadier than wall time.
        for name, what in (("evaluate.py", "experiments/evaluate.py (VOC + COCO)"),
                           ("reference", "numpy reference voc_eval (VOC07 only)")):
            walls, cpus = [r[0] for r in runs[name]], [r[1] for r in runs[name]]
            print(f"{what:40s} whole process: wall best {min(walls):.2f} s (runs "
                  + ", ".join(f"{t:.2f}" for t in walls) + f"), CPU best {min(cpus):.2f} s")
        best = {name: min(r[0] for r in rs) for name, rs in runs.items()}
        best_cpu = {name: min(r[1] for r in rs) for name, rs in runs.items()}
        print(f"{args.num_images} images / {args.num_detections} detections: ratio reference / evaluate.py = "
              f"{best['reference'] / best['evaluate.py']:.2f} (wall), "
              f"{best_cpu['reference'] / best_cpu['evaluate.py']:.2f} (CPU); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
