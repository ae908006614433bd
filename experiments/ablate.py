"""Runs the YOLO9000 Table 2 ladder (configs/yolov2_ablation.py) rung after rung and tabulates it.

  python experiments/ablate.py --root runs/ablation                                   # all 9 rungs, VOC
  python experiments/ablate.py --root runs/ablation --rungs=passthrough,multi_scale  # some rungs
  python experiments/ablate.py --root runs/ablation --print_commands                 # for a cluster
  python experiments/ablate.py --root runs/ablation --darknet19_classifier=darknet19_448.conv.23 \
      --override=--config.data.voc_dir=/data/VOCdevkit --override=--config.data.source=voc_dir

Each rung trains in its own workdir ``<root>/<rung>`` with
``experiments/train.py --config configs/yolov2_ablation.py:<rung> --workdir <root>/<rung> <overrides>``
(overrides: the --override values, in order, then the classifier file of the rung if it needs one, and its cfg
when --*_classifier_cfg names one, e.g. for a reduced-width trunk). Its output
goes to ``<root>/<rung>/train.log``. A rung is finished when its workdir holds ``final_metrics.json`` (written
by the training loop at the end of a run: step, map_07, map_area, train_images_per_sec, num_images); finished
rungs are skipped, so re-running the same command continues an interrupted sweep (an unfinished rung resumes
from its last checkpoint). A finished rung whose recorded command differs from this one is an error: use
another --root. A rung that fails is reported and the sweep goes on; the exit status is 1 then.

The table (``<root>/ablation.md`` and ``<root>/ablation.csv``, rungs in ladder order, one row per requested
rung) is rebuilt from the workdirs after every rung: rung, what changed, paper mAP, this run's mAP (VOC07
11-point and area, in %), training images/s, steps, and a note (not run / failed / the trunk file and how many
layers and floats train.py copied from it / trained from random init where the rung asks for a pretrained trunk
but got no file).

--base_px N runs the reduced-resolution ladder ``<rung>@N`` (configs/yolov2_ablation.py) for quick sweeps.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys

from absl import app, flags

from yolojax import cli
from yolojax.config import ablation as ladder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_ROOT = flags.DEFINE_string("root", None, "Directory holding one workdir per rung and the table.")
_RUNGS = flags.DEFINE_list("rungs", list(ladder.RUNGS), f"Rungs to run, any of {ladder.RUNGS}.")
_OVERRIDES = flags.DEFINE_multi_string("override", [], "A flag passed to every train.py run, e.g. "
                                       "--override=--config.total_steps=100 (repeatable).")
_PRINT = flags.DEFINE_bool("print_commands", False, "Print one train.py command per rung and exit.")
_BASE_PX = flags.DEFINE_integer("base_px", ladder.DETECTOR_PX, "Detector input size of the ladder (416 = the "
                                "paper's); smaller values run the reduced-resolution ladder <rung>@px.")
_YOLOV1_CLASSIFIER = flags.DEFINE_string("yolov1_classifier", "", "Darknet weights of the YOLOv1 trunk's "
                                         "classifier fine-tuned at 448 (rungs hires_classifier, anchor_boxes).")
_DARKNET19_CLASSIFIER = flags.DEFINE_string("darknet19_classifier", "", "Darknet weights of Darknet-19 "
                                            "fine-tuned at 448, e.g. darknet19_448.conv.23 (new_network on).")
_YOLOV1_CLASSIFIER_CFG = flags.DEFINE_string("yolov1_classifier_cfg", "", "The cfg --yolov1_classifier was "
                                             "written for, if not the shipped extraction.cfg.")
_DARKNET19_CLASSIFIER_CFG = flags.DEFINE_string("darknet19_classifier_cfg", "", "The cfg --darknet19_classifier "
                                                "was written for, if not the shipped darknet19_448.cfg.")
flags.mark_flags_as_required(["root"])

FINAL_METRICS = "final_metrics.json"
INIT_REPORT = "init_report.json"  # written by train.py when it initializes from a file
COMMAND_FILE = "ablate_command.json"
COLUMNS = ("rung", "change", "paper_map_07", "map_07", "map_area", "train_images_per_sec", "steps", "note")
# The trunk a model name starts from (which 448-px classifier an init.hires_classifier rung loads).
TRUNK_OF_MODEL = {"yolov1": "yolov1", "yolov1_conv_anchors": "yolov1", "yolov2": "darknet19"}


def rung_arg(rung: str, base_px: int) -> str:
    """The config argument of a rung: 'rung', or 'rung@px' for a reduced-resolution ladder."""
    return rung if base_px == ladder.DETECTOR_PX else f"{rung}@{base_px}"


def classifier_file(rung: str, base_px: int, classifiers: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """(weights, cfg) of the pretrained trunk the rung should start from: ('', '') when it needs none or none
    was given; cfg '' = the shipped one. ``classifiers``: trunk ('yolov1' | 'darknet19') -> (weights, cfg)."""
    config = ladder.get_config(rung_arg(rung, base_px))
    if not config.init.hires_classifier:
        return "", ""
    return classifiers.get(TRUNK_OF_MODEL[config.model.name], ("", ""))


def train_args(rung: str, root: str, base_px: int, overrides: list[str],
               classifiers: dict[str, tuple[str, str]]) -> list[str]:
    """The arguments of experiments/train.py for ``rung`` (paths as given; the caller picks the interpreter)."""
    args = [f"--config={os.path.join('configs', 'yolov2_ablation.py')}:{rung_arg(rung, base_px)}",
            f"--workdir={os.path.join(root, rung)}", *overrides]
    weights, cfg = classifier_file(rung, base_px, classifiers)
    if weights:
        args.append(f"--config.init.darknet_weights={weights}")
        if cfg:
            args.append(f"--config.init.darknet_cfg={cfg}")
    return args


def init_note(workdir: str) -> str:
    """What train.py copied into the rung's model ('' without an init report): 'trunk from FILE (L layers,
    F floats)'."""
    path = os.path.join(workdir, INIT_REPORT)
    if not os.path.isfile(path):
        return ""
    try:
        with open(path) as f:
            report = json.load(f)["darknet_weights"]
        return (f"trunk from {os.path.basename(report['source'])} ({len(report['layers'])} layers, "
                f"{report['floats_copied']:,} floats)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a readable initialization report ({e})") from None


def read_final_metrics(workdir: str) -> dict | None:
    """``workdir/final_metrics.json`` as a dict, None if absent; ValueError naming the file if unreadable."""
    path = os.path.join(workdir, FINAL_METRICS)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            metrics = json.load(f)
        missing = {"step", "map_07", "map_area", "train_images_per_sec"} - set(metrics)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable final-metrics JSON file ({e})") from None
    if missing:
        raise ValueError(f"{path}: missing keys {sorted(missing)}")
    return metrics


def table_rows(root: str, rungs: list[str], base_px: int, classifiers: dict[str, tuple[str, str]],
               status: dict[str, str]) -> list[dict]:
    """One row per rung in ladder order, from the workdirs' final metrics (empty cells where not run)."""
    rows = []
    for rung in [r for r in ladder.RUNGS if r in rungs]:
        metrics = read_final_metrics(os.path.join(root, rung))
        notes = [status[rung]] if rung in status else []
        if metrics is None and not notes:
            notes.append("not run")
        if ladder.get_config(rung_arg(rung, base_px)).init.hires_classifier:
            if not classifier_file(rung, base_px, classifiers)[0]:
                notes.append("random init (no 448-px classifier file given)")
            elif metrics is not None:
                notes.append(init_note(os.path.join(root, rung)))
        row = {"rung": rung, "change": ladder.CHANGES[rung], "paper_map_07": f"{ladder.PAPER_MAP_07[rung]:.1f}",
               "map_07": "", "map_area": "", "train_images_per_sec": "", "steps": "", "note": "; ".join(notes)}
        if metrics is not None:
            row.update(map_07=f"{100 * metrics['map_07']:.1f}", map_area=f"{100 * metrics['map_area']:.1f}",
                       train_images_per_sec=f"{metrics['train_images_per_sec']:.1f}", steps=str(metrics["step"]))
        rows.append(row)
    return rows


def write_tables(root: str, rows: list[dict]) -> tuple[str, str]:
    """Writes ``root/ablation.csv`` and ``root/ablation.md`` (each via a temporary file); returns their paths."""
    csv_path, md_path = os.path.join(root, "ablation.csv"), os.path.join(root, "ablation.md")
    with open(csv_path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(csv_path + ".tmp", csv_path)
    header = ("rung", "what changed", "paper mAP", "mAP VOC07", "mAP area", "train img/s", "steps", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[c].replace("|", "/") for c in COLUMNS) + " |" for row in rows]
    with open(md_path + ".tmp", "w") as f:
        f.write("mAP in % on the config's evaluation split (VOC2007 test for the paper's numbers).\n\n")
        f.write("\n".join(lines) + "\n")
    os.replace(md_path + ".tmp", md_path)
    return md_path, csv_path


def check_finished_command(workdir: str, command: list[str]) -> None:
    """A finished workdir must have been trained by the same command (else its metrics mean something else)."""
    path = os.path.join(workdir, COMMAND_FILE)
    recorded = None
    if os.path.isfile(path):
        with open(path) as f:
            recorded = json.load(f).get("train_args")
    if recorded is not None and recorded != command:
        raise SystemExit(f"{workdir}: finished with other arguments {shlex.join(recorded)}; use another --root "
                         f"(or delete the workdir) to run {shlex.join(command)}")


def run_rung(rung: str, root: str, args: list[str]) -> int:
    """Runs train.py for one rung (output to <workdir>/train.log); returns its exit status."""
    workdir = os.path.join(root, rung)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, COMMAND_FILE), "w") as f:
        json.dump({"train_args": args}, f, indent=2)
    with open(os.path.join(workdir, "train.log"), "a") as log:
        log.write(f"$ python experiments/train.py {shlex.join(args)}\n")
        log.flush()
        return subprocess.run([sys.executable, os.path.join("experiments", "train.py"), *args], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]} (pass train.py flags with --override=...)")
    unknown = [r for r in _RUNGS.value if r not in ladder.RUNGS]
    if unknown:
        raise app.UsageError(f"--rungs: unknown rung(s) {unknown}; expected any of {ladder.RUNGS}")
    try:
        ladder.parse_arg(rung_arg(ladder.RUNGS[0], _BASE_PX.value))
    except ValueError as e:
        raise app.UsageError(f"--base_px={_BASE_PX.value}: {e}") from None
    root = os.path.abspath(_ROOT.value)
    classifiers = {"yolov1": (_YOLOV1_CLASSIFIER.value, _YOLOV1_CLASSIFIER_CFG.value),
                   "darknet19": (_DARKNET19_CLASSIFIER.value, _DARKNET19_CLASSIFIER_CFG.value)}
    rungs = [r for r in ladder.RUNGS if r in _RUNGS.value]
    commands = {r: train_args(r, root, _BASE_PX.value, list(_OVERRIDES.value), classifiers) for r in rungs}
    if _PRINT.value:
        for rung in rungs:
            print(f"python experiments/train.py {shlex.join(commands[rung])}")
        return 0
    os.makedirs(root, exist_ok=True)
    status: dict[str, str] = {}
    for rung in rungs:
        workdir = os.path.join(root, rung)
        if read_final_metrics(workdir) is not None:
            check_finished_command(workdir, commands[rung])
            print(f"{rung}: finished, skipped ({os.path.join(workdir, FINAL_METRICS)})", flush=True)
            continue
        print(f"{rung}: training in {workdir} (log: {os.path.join(workdir, 'train.log')})", flush=True)
        rc = run_rung(rung, root, commands[rung])
        if rc != 0 or read_final_metrics(workdir) is None:
            status[rung] = f"failed (exit status {rc}; see {os.path.join(workdir, 'train.log')})"
            print(f"{rung}: {status[rung]}", flush=True)
        write_tables(root, table_rows(root, rungs, _BASE_PX.value, classifiers, status))
    md_path, csv_path = write_tables(root, table_rows(root, rungs, _BASE_PX.value, classifiers, status))
    with open(md_path) as f:
        print(f.read(), end="")
    print(f"tables: {md_path} {csv_path}")
    return 1 if status else 0


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except ValueError as e:  # an unreadable final_metrics.json: one line naming the file
        raise SystemExit(f"ablate.py: {e}") from None


if __name__ == "__main__":
    cli.run(_main, prog="ablate")
