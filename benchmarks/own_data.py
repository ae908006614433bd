"""Runs the README's own-data commands on a dataset folder and prints what a user would get: wall time, mAP@0.5
(VOC07 11-point and area), COCO-style AP and the per-class APs on the dataset's test split.

  python benchmarks/own_data.py DATASET [--workdir runs/own_data] [--config configs/custom.py] \
      [--config.a.b=value ...] [--json summary.json] [--no_detect]

DATASET: a folder (or its ultralytics ``data.yaml`` / darknet ``.data`` file) in one of the formats
``configs/custom.py`` reads: YOLO txt, VOC XML or COCO JSON (docs/data_formats.md). Its format, class count and
splits are found here and given to the commands as the only overrides (``data.format``, ``data.root``,
``model.num_classes``, ``data.train_split``, ``data.eval_split``): training evaluates on the validation split, the
test split is scored at the end (the validation split when there is no test split). Any ``--config.a.b=value``
after DATASET is added to the training commands (an ablation: one switch against the recipe).

The commands, timed one by one and together (each a fresh process, as a user runs them):

  python experiments/check_data.py --config CONFIG OVERRIDES
  python experiments/train.py --config CONFIG --workdir WORKDIR OVERRIDES
  python experiments/evaluate.py --workdir WORKDIR --split TEST --out_dir WORKDIR/eval_TEST --json ...
  python experiments/detect.py --workdir WORKDIR --out_dir WORKDIR/detections TEST_IMAGES     (unless --no_detect)

Ablation (``--ablation``): the recipe and, in WORKDIR/<name>, one run per switch of ``ABLATIONS`` (each the
recipe with that one switch changed, same seed), plus the recipe with ``--seeds`` other seeds; each is trained and
scored on the test split (the NMS variants only re-score the recipe's checkpoint), then one markdown table
(docs/own_data.md's) is printed. About 18 minutes a run on a 2-core CPU.

WORKDIR must not hold a run (it is the benchmark's own; an existing one would only be resumed). Today's
defaults, for a before/after comparison: ``git show <commit>:configs/custom.py > /tmp/custom_before.py`` and
``--config /tmp/custom_before.py``. A dataset that cannot be read ends in one line and exit status 1.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from yolojax.config.data import default_data_config
from yolojax.data import formats, sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def _fail(message: str) -> None:
    print(f"own_data: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


# name -> (what the switch changes, overrides). The VOC anchors of yolov2-voc.cfg are scaled to 320 px (their unit
# is cells of 32 px at the training input size): the right unit, another dataset's shapes.
_VOC_ANCHORS_320 = "((1.0170,1.3319),(2.4560,3.0842),(3.8891,6.2299),(7.2855,3.7235),(8.6434,7.6978))"
ABLATIONS = {
    "anchors_voc": ("anchors: VOC's (yolov2-voc.cfg, scaled to 320 px) instead of k-means",
                    [f"--config.model.anchors={_VOC_ANCHORS_320}"]),
    "no_mosaic": ("augment.mosaic 0 (no mosaics)", ["--config.data.augment.mosaic=0.0"]),
    "all_mosaic": ("augment.mosaic 1 (every image a mosaic)", ["--config.data.augment.mosaic=1.0"]),
    "no_ema": ("optim.ema.decay 0 (raw weights evaluated)", ["--config.optim.ema.decay=0.0"]),
    "constant_lr": ("schedule.name constant (no decay)", ["--config.schedule.name=constant"]),
    "no_warmup": ("schedule.warmup none", ["--config.schedule.warmup=none"]),
    "no_jitter": ("augment.jitter 0 (no crop/scale/aspect jitter)", ["--config.data.augment.jitter=0.0"]),
    "jitter_0.2": ("augment.jitter 0.2", ["--config.data.augment.jitter=0.2"]),
    "size_256": ("256 px input", ["--config.data.image_size=256", "--config.data.eval_image_size=256"]),
    "size_384": ("384 px input", ["--config.data.image_size=384", "--config.data.eval_image_size=384"]),
    "multiscale": ("multi-scale 256..384 every 10 steps",
                   ["--config.data.multiscale_sizes=(256,288,320,352,384)"]),
    "loss_keras": ("loss.variant keras (terms normalized by their counts over the batch)",
                   ["--config.loss.variant=keras"]),
    "width_0.75": ("model.width 0.75", ["--config.model.width=0.75"]),
    "width_0.25": ("model.width 0.25", ["--config.model.width=0.25"]),
    "batch_16": ("batch_size 16 (half the steps)", ["--config.batch_size=16"]),
    "zoom_2": ("augment.zoom 2 (320 px windows of images fitted to 640), evaluated at 640, no mosaics",
               ["--config.data.augment.zoom=2.0", "--config.data.eval_image_size=640",
                "--config.data.augment.mosaic=0.0"]),
}
# Evaluation-only switches: the recipe's checkpoint re-scored (evaluate.py flags).
EVAL_ABLATIONS = {"nms_0.3": ("eval NMS IoU 0.3", ["--nms_iou", "0.3"]),
                  "nms_0.6": ("eval NMS IoU 0.6", ["--nms_iou", "0.6"])}


def find_dataset(path: str) -> dict:
    """{"format", "root", "splits": {"train", "val", "test"}, "class_names"} of the dataset at ``path``;
    ValueError (one line) when it is not one."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist")
    candidates = []
    if os.path.isfile(path):
        candidates.append(("yolo", path))
    else:
        for name in ("data.yaml", "data.yml"):
            if os.path.isfile(os.path.join(path, name)):
                candidates.append(("yolo", os.path.join(path, name)))
        candidates += [(fmt, path) for fmt in ("voc", "coco", "yolo")]
    for fmt, root in candidates:
        found = {}
        for role, names in SPLIT_NAMES.items():
            for name in names:
                cfg = dict(default_data_config(), source="files", format=fmt, root=root, train_split=name,
                           eval_split="")
                try:
                    if len(sources.make_source(cfg, name)):
                        found[role] = name
                        break
                except (ValueError, OSError):
                    continue
        if "train" in found and ("val" in found or "test" in found):
            found.setdefault("val", found.get("test"))
            found.setdefault("test", found["val"])
            cfg = dict(default_data_config(), source="files", format=fmt, root=root, train_split=found["train"],
                       eval_split=found["val"])
            return {"format": fmt, "root": root, "splits": found,
                    "class_names": list(formats.dataset_class_names(cfg))}
    raise ValueError(f"{path}: not a dataset of YOLO txt, VOC XML or COCO JSON files with a train split and a "
                     "val or test split (docs/data_formats.md)")


def overrides(dataset: dict) -> list[str]:
    """The only config overrides the benchmark gives: format, root, classes and splits."""
    return [f"--config.data.format={dataset['format']}", f"--config.data.root={dataset['root']}",
            f"--config.model.num_classes={len(dataset['class_names'])}",
            f"--config.data.train_split={dataset['splits']['train']}",
            f"--config.data.eval_split={dataset['splits']['val']}"]


def test_images(dataset: dict) -> list[str]:
    """The image files of the test split (for detect.py)."""
    cfg = dict(default_data_config(), source="files", format=dataset["format"], root=dataset["root"],
               train_split=dataset["splits"]["test"], eval_split="")
    source = sources.make_source(cfg, dataset["splits"]["test"])
    return list(source.image_paths)


def run(command: list[str], log_path: str) -> float:
    """Runs ``command`` in the repository root, its output to ``log_path`` (and the terminal); returns seconds."""
    print(f"$ {' '.join(shlex.quote(c) for c in command)}", flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if not line.startswith("step ") or "eval" in line:
                sys.stdout.write("    " + line)
        proc.wait()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        _fail(f"{command[1]} exited with status {proc.returncode} after {seconds:.0f} s (log: {log_path})")
    return seconds


def summarize(workdir: str, dataset: dict, test: str, seconds: dict[str, float], extra: dict) -> dict:
    """The summary of one run: metrics of WORKDIR/eval_TEST.json, the timings and the time budget's plan."""
    with open(os.path.join(workdir, f"eval_{test}.json")) as f:
        result = json.load(f)
    coco = result.get("coco", {})
    summary = {"dataset": dataset["root"], "split": test, "wall_seconds": sum(seconds.values()), "seconds": seconds,
               "map_07": result["map_07"], "map_area": result["map_area"], "coco_ap": coco.get("AP"),
               "coco_ap50": coco.get("AP50"), "ap_07": result["ap_07"], "ap_area": result["ap_area"],
               "coco_ap_per_class": coco.get("ap_per_class", {}), **extra}
    budget = os.path.join(workdir, "time_budget.json")
    if os.path.isfile(budget):
        with open(budget) as f:
            summary["time_budget"] = json.load(f)
    final = os.path.join(workdir, "final_metrics.json")
    if os.path.isfile(final):
        with open(final) as f:
            summary["final_step"] = json.load(f).get("step")
    return summary


def print_summary(summary: dict, class_names: list[str]) -> None:
    seconds = summary["seconds"]
    print(f"wall time {summary['wall_seconds'] / 60:.1f} min ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")
    coco_ap = summary["coco_ap"] if summary["coco_ap"] is not None else float("nan")
    print(f"{summary['split']} split: mAP@0.5 VOC07 {summary['map_07']:.4f}  area {summary['map_area']:.4f}  "
          f"COCO AP {coco_ap:.4f}")
    width = max(len(n) for n in class_names)
    print(f"{'class':<{width}}  {'AP07':>6}  {'AParea':>6}  {'COCO AP':>7}")
    for name in class_names:
        cells = [summary["ap_07"].get(name), summary["ap_area"].get(name), summary["coco_ap_per_class"].get(name)]
        print(f"{name:<{width}}  " + "  ".join("   n/a" if v is None else f"{100 * v:6.1f}" for v in cells))


def ablation_table(rows: list[tuple[str, str, dict]], class_names: list[str]) -> str:
    """A markdown table: one row per run (name, what changed, VOC07 / area mAP, COCO AP, steps, per-class AP07)."""
    head = ["run", "what changed", "mAP07", "mAP area", "COCO AP", "steps"] + class_names
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, what, s in rows:
        cells = [name, what, f"{100 * s['map_07']:.1f}", f"{100 * s['map_area']:.1f}",
                 "n/a" if s["coco_ap"] is None else f"{100 * s['coco_ap']:.1f}", str(s.get("final_step", ""))]
        cells += ["n/a" if s["ap_07"].get(n) is None else f"{100 * s['ap_07'][n]:.1f}" for n in class_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset folder, data.yaml or .data file")
    parser.add_argument("--workdir", default=os.path.join("runs", "own_data"), help="the benchmark's workdir")
    parser.add_argument("--config", default=os.path.join("configs", "custom.py"), help="the config file")
    parser.add_argument("--json", default=None, help="also write the summary here")
    parser.add_argument("--no_detect", action="store_true", help="leave detect.py out")
    parser.add_argument("--ablation", action="store_true", help="the recipe, each switch of ABLATIONS, a table")
    parser.add_argument("--only", default="", help="with --ablation: comma-separated names of ABLATIONS to run")
    parser.add_argument("--seeds", type=int, default=2, help="with --ablation: the recipe with this many more seeds")
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        _fail(f"unexpected arguments {bad}: only --config.a.b=value overrides may follow DATASET")
    try:
        dataset = find_dataset(args.dataset)
    except (ValueError, OSError) as e:
        _fail(" ".join(str(e).split()))
    unknown = [n for n in args.only.split(",") if n and n not in ABLATIONS and n not in EVAL_ABLATIONS]
    if unknown:
        _fail(f"--only: unknown {unknown}; expected names of {sorted(ABLATIONS) + sorted(EVAL_ABLATIONS)}")
    root = os.path.abspath(args.workdir)
    config = os.path.abspath(args.config)
    given = overrides(dataset) + extra
    test = dataset["splits"]["test"]
    py = sys.executable
    print(f"dataset {dataset['root']} ({dataset['format']}, {len(dataset['class_names'])} classes, splits "
          f"{dataset['splits']}); config {config}; overrides {given}", flush=True)

    def train_and_score(workdir: str, switches: list[str], detect: bool) -> dict:
        if os.path.exists(os.path.join(workdir, "checkpoints")):
            _fail(f"--workdir {workdir} already holds a run: give a new one")
        os.makedirs(workdir, exist_ok=True)
        commands = [
            ("check_data", [py, "experiments/check_data.py", "--config", config, *given, *switches]),
            ("train", [py, "experiments/train.py", "--config", config, "--workdir", workdir, *given, *switches]),
            ("evaluate", [py, "experiments/evaluate.py", "--workdir", workdir, "--split", test, "--out_dir",
                          os.path.join(workdir, f"eval_{test}"), "--json",
                          os.path.join(workdir, f"eval_{test}.json")]),
        ]
        if detect:
            commands.append(("detect", [py, "experiments/detect.py", "--workdir", workdir, "--out_dir",
                                        os.path.join(workdir, "detections"), *test_images(dataset)]))
        seconds = {name: run(command, os.path.join(workdir, f"{name}.log")) for name, command in commands}
        return summarize(workdir, dataset, test, seconds, {"config": config, "overrides": given + switches})

    if not args.ablation:
        summary = train_and_score(root, [], not args.no_detect)
        print()
        print_summary(summary, dataset["class_names"])
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)
        return 0

    names = [n for n in args.only.split(",") if n] or [*ABLATIONS, *EVAL_ABLATIONS]
    rows = []
    recipe_dir = os.path.join(root, "recipe")
    rows.append(("recipe", "configs/custom.py as it is", train_and_score(recipe_dir, [], False)))
    for seed in range(1, args.seeds + 1):
        rows.append((f"recipe seed {seed}", f"seed {seed}",
                     train_and_score(os.path.join(root, f"seed_{seed}"), [f"--config.seed={seed}"], False)))
    for name in names:
        if name in EVAL_ABLATIONS:
            what, flags = EVAL_ABLATIONS[name]
            out = os.path.join(recipe_dir, f"eval_{test}_{name}")
            seconds = {"evaluate": run([py, "experiments/evaluate.py", "--workdir", recipe_dir, "--split", test,
                                        "--out_dir", out, "--json", out + ".json", *flags], out + ".log")}
            os.replace(out + ".json", os.path.join(out, f"eval_{test}.json"))
            rows.append((name, what, summarize(out, dataset, test, seconds, {"overrides": flags})))
        else:
            what, switches = ABLATIONS[name]
            rows.append((name, what, train_and_score(os.path.join(root, name), switches, False)))
        print(ablation_table(rows, dataset["class_names"]), flush=True)
    table = ablation_table(rows, dataset["class_names"])
    print()
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": [{"name": n, "what": w, **s} for n, w, s in rows], "table": table}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
