"""The YOLO9000 Table 2 ladder: consecutive rungs differ by exactly the paper's change, and
experiments/ablate.py trains every rung (two steps, tiny width, synthetic data) and tabulates them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from helpers import ROOT
from trunk_files import write_trunk_file
from yolojax.config import ablation as ladder
from yolojax.config import base

# The v1 -> v2 recipe fields that the anchor_boxes rung switches together with the loss (yolojax/config/base.py's
# use_yolov1 vs the YOLOv2 defaults): augmentation, schedule, thresholds, loss options.
RECIPE = {"num_epochs", "optim.base_lr", "schedule.boundaries_epochs", "schedule.warmup", "schedule.warmup_epochs",
          "schedule.warmup_init_lr", "schedule.darknet_numbering", "eval.score_threshold", "eval.nms_iou_threshold",
          "data.augment.jitter", "data.augment.scale", "data.augment.translate", "data.augment.flip",
          "data.augment.hue", "loss.coord_scale", "loss.object_scale", "loss.noobject_scale", "loss.ignore_thresh",
          "loss.prior_scale", "loss.prior_warmup_images", "loss.variant", "loss.sqrt", "loss.objectness"}
# Exactly the flattened fields each rung changes relative to the rung before it (at the paper's 416 px).
EXPECTED_CHANGES = {
    "batch_norm": {"model.v1.batch_norm", "model.v1.dropout_rate"},
    "hires_classifier": {"init.hires_classifier"},
    "anchor_boxes": {"model.name", "model.anchors", "model.v2.num_anchors", "model.v2.location",
                     "data.image_size", "data.eval_image_size"} | RECIPE,
    "new_network": {"model.name"},
    "dimension_priors": {"model.anchors", "model.v2.num_anchors", "model.v2.location"},
    "passthrough": {"model.v2.passthrough"},
    "multi_scale": {"data.multiscale_sizes"},
    "hires_detector": {"data.eval_image_size"},
}


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def rung_diffs(suffix: str = "") -> dict[str, dict]:
    flat = {r: flatten(ladder.get_config(r + suffix).to_dict()) for r in ladder.RUNGS}
    out = {}
    for before, rung in zip(ladder.RUNGS, ladder.RUNGS[1:]):
        a, b = flat[before], flat[rung]
        out[rung] = {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in set(a) | set(b)
                     if a.get(k, "<absent>") != b.get(k, "<absent>")}
    return out


def test_consecutive_rungs_differ_by_exactly_the_papers_change():
    diffs = rung_diffs()
    for rung, expected in EXPECTED_CHANGES.items():
        assert set(diffs[rung]) == expected, (rung, sorted(set(diffs[rung]) ^ expected))
    d = diffs
    assert d["batch_norm"] == {"model.v1.batch_norm": (False, True), "model.v1.dropout_rate": (0.5, 0.0)}
    assert d["hires_classifier"] == {"init.hires_classifier": (False, True)}
    assert d["anchor_boxes"]["model.name"] == ("yolov1", "yolov1_conv_anchors")
    assert d["anchor_boxes"]["model.v2.location"] == ("direct", "offset")
    assert d["anchor_boxes"]["model.anchors"][1] == ladder.hand_picked_anchors()
    assert d["anchor_boxes"]["model.v2.num_anchors"] == (5, 9)
    assert d["anchor_boxes"]["data.image_size"] == (448, 416)
    assert d["new_network"] == {"model.name": ("yolov1_conv_anchors", "yolov2")}
    assert d["dimension_priors"] == {"model.anchors": (ladder.hand_picked_anchors(), base.VOC_ANCHORS),
                                     "model.v2.num_anchors": (9, 5), "model.v2.location": ("offset", "direct")}
    assert d["passthrough"] == {"model.v2.passthrough": ("none", "conv64_reorg")}
    assert d["multi_scale"] == {"data.multiscale_sizes": ((), tuple(range(320, 609, 32)))}
    assert d["hires_detector"] == {"data.eval_image_size": (416, 544)}
    baseline = ladder.get_config("baseline")
    assert (baseline.model.name, baseline.data.image_size, baseline.loss.coord_scale) == ("yolov1", 448, 5.0)
    assert not baseline.model.v1.batch_norm and not baseline.init.hires_classifier
    final = ladder.get_config("hires_detector")  # the last rung is YOLOv2-544 of the paper
    assert (final.model.name, final.model.v2.passthrough, final.model.v2.location) == ("yolov2", "conv64_reorg",
                                                                                      "direct")


def test_reduced_resolution_ladder_has_the_same_changes():
    diffs = rung_diffs("@64")
    for rung, expected in EXPECTED_CHANGES.items():
        if rung == "anchor_boxes":  # at 64 px the YOLOv1 rungs also run at 64 (a multiple of 64)
            expected = expected - {"data.image_size", "data.eval_image_size"}
        assert set(diffs[rung]) == expected, (rung, sorted(set(diffs[rung]) ^ expected))
    assert diffs["multi_scale"]["data.multiscale_sizes"] == ((), (64, 96))
    assert diffs["hires_detector"]["data.eval_image_size"] == (64, 96)  # 544 / 416 * 64 = 83.7 -> 96
    c = ladder.get_config("anchor_boxes@128")
    assert c.data.image_size == 128 and c.model.anchors[1] == pytest.approx((4.0 * 128 / 416,) * 2, abs=1e-5)
    assert ladder.get_config("baseline@128").data.image_size == 128  # 448 / 416 * 128 = 137.8 -> 128
    with pytest.raises(ValueError, match="multiple of 32"):
        ladder.get_config("passthrough@100")
    with pytest.raises(ValueError, match="unknown rung 'dropout'"):
        ladder.get_config("dropout")


def test_paper_numbers_and_hand_picked_anchors():
    assert [ladder.PAPER_MAP_07[r] for r in ladder.RUNGS] == [63.4, 65.8, 69.5, 69.2, 69.6, 74.4, 75.4, 76.8,
                                                               78.6]
    assert set(ladder.CHANGES) == set(ladder.RUNGS)
    anchors = ladder.hand_picked_anchors()  # 128, 256, 512 px squares and their 1:2 / 2:1 versions, 32-px cells
    assert anchors[1] == (4.0, 4.0) and anchors[4] == (8.0, 8.0) and anchors[7] == (16.0, 16.0)
    assert anchors[0] == pytest.approx((128 * 2 ** 0.5 / 32, 64 * 2 ** 0.5 / 32), abs=1e-5)


def run_ablate(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "ablate.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
                          timeout=900)


def test_print_commands_one_per_rung_with_the_right_classifier(tmp_path):
    res = run_ablate(f"--root={tmp_path}", "--print_commands", "--override=--config.total_steps=5",
                     "--yolov1_classifier=/w/yolov1_448.weights", "--darknet19_classifier=/w/darknet19_448.conv.23")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(ladder.RUNGS)
    for rung, line in zip(ladder.RUNGS, lines):
        assert line.startswith(f"python experiments/train.py --config=configs/yolov2_ablation.py:{rung} "
                               f"--workdir={tmp_path}/{rung} --config.total_steps=5")
        expected = {"baseline": "", "batch_norm": "", "hires_classifier": "/w/yolov1_448.weights",
                    "anchor_boxes": "/w/yolov1_448.weights"}.get(rung, "/w/darknet19_448.conv.23")
        assert ("--config.init.darknet_weights=" in line) == bool(expected), line
        assert line.endswith(f"--config.init.darknet_weights={expected}") or not expected
    assert not os.listdir(tmp_path)  # printing runs nothing
    res = run_ablate(f"--root={tmp_path}", "--print_commands", "--rungs=passthrough,baseline", "--base_px=128")
    assert [line.split()[2] for line in res.stdout.split("\n") if line] == [
        "--config=configs/yolov2_ablation.py:baseline@128", "--config=configs/yolov2_ablation.py:passthrough@128"]
    res = run_ablate(f"--root={tmp_path}", "--print_commands", "--rungs=dropout")
    assert res.returncode != 0 and "unknown rung(s) ['dropout']" in res.stderr


def test_bad_size_and_unreadable_metrics_are_one_line_errors(tmp_path):
    res = run_ablate(f"--root={tmp_path}", "--print_commands", "--base_px=100")
    assert res.returncode != 0 and "--base_px=100" in res.stderr and "multiple of 32" in res.stderr
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "final_metrics.json").write_text('{"step": 2, "map_07": 0.5')  # truncated
    res = run_ablate(f"--root={tmp_path}", "--rungs=baseline")
    assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
    assert f"{tmp_path}/baseline/final_metrics.json: not a readable final-metrics JSON file" in res.stderr


# The smallest sweep: 64 px (YOLOv1 rungs too), width 1/8, batch 2, 4 train / 2 eval synthetic images.
SMOKE = ["--base_px=64"] + [f"--override=--config.{k}={v}" for k, v in (
    ("data.source", "synthetic"), ("model.num_classes", 5), ("data.train_split", "train"),
    ("data.eval_split", "eval"), ("data.synthetic.num_train", 4), ("data.synthetic.num_eval", 2),
    ("data.synthetic.image_width", 64), ("data.synthetic.image_height", 64), ("data.max_boxes", 8),
    ("batch_size", 2), ("eval.batch_size", 2), ("total_steps", 2), ("model.width", 0.125),
    ("progress_bar", False), ("log_every_steps", 1), ("checkpoint.async_save", False), ("data.num_threads", 1))]


def write_classifiers(d) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """448-px classifier files of the sweep's width-1/8 trunks with their cfgs (trunk_files.py). Returns the
    ablate.py flags and, per trunk, (layers, floats) that a rung starting from it must copy."""
    flags, expected = [], {}
    for trunk in ("yolov1", "darknet19"):
        weights, cfg, layers, floats = write_trunk_file(str(d), trunk, f"{trunk}_448.weights")
        flags += [f"--{trunk}_classifier={weights}", f"--{trunk}_classifier_cfg={cfg}"]
        expected[trunk] = (layers, floats)
    return flags, expected


# One rung of each kind, in ladder order: YOLOv1 from random weights, YOLOv1's trunk file into the
# convolutional-anchors model, Darknet-19's trunk file into YOLOv2 evaluated at another size (the README's own
# ablate command runs the passthrough rung: test_readme.py).
SWEPT = ("baseline", "anchor_boxes", "hires_detector")


@pytest.mark.slow
def test_sweep_writes_the_table_and_skips_finished_rungs(tmp_path):
    """A sweep over one rung of each kind (each rung is a train.py process; what every rung's config holds is
    checked above without training, and each rung's batches and loss in test_paper_recipes.py): YOLOv1 from
    random weights, YOLOv1's trunk file into the convolutional-anchors model, and Darknet-19's trunk file into
    YOLOv2 in the rung that evaluates at another size."""
    root = tmp_path / "ablation"
    classifiers, expected_init = write_classifiers(tmp_path)
    # Compilation dominates a 2-step run: one XLA cache for the sweep (rungs whose step programs are equal,
    # e.g. batch_norm / hires_classifier, compile once), the cheaper-to-compile rbg PRNG for the random init
    # and the suite's cheap-to-compile XLA flags (inherited: tests/conftest.py). None of this changes what is
    # being checked.
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_DEFAULT_PRNG_IMPL": "rbg"}
    res = run_ablate(f"--root={root}", *SMOKE, *classifiers, f"--rungs={','.join(SWEPT)}", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(root / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["rung"] for row in rows] == list(SWEPT)  # one row per rung, in ladder order
    for row in rows:
        metrics = json.loads((root / row["rung"] / "final_metrics.json").read_text())
        assert metrics["step"] == 2 and metrics["num_images"] == 2, row
        assert row["steps"] == "2" and float(row["paper_map_07"]) == ladder.PAPER_MAP_07[row["rung"]]
        assert 0.0 <= float(row["map_07"]) <= 100.0 and 0.0 <= float(row["map_area"]) <= 100.0
        assert row["map_07"] == f"{100 * metrics['map_07']:.1f}" and float(row["train_images_per_sec"]) > 0
        assert row["change"] == ladder.CHANGES[row["rung"]]
        trunk = {"baseline": None, "batch_norm": None, "hires_classifier": "yolov1",
                 "anchor_boxes": "yolov1"}.get(row["rung"], "darknet19")  # the 448-px classifier the rung needs
        if trunk is None:
            assert row["note"] == "" and not (root / row["rung"] / "init_report.json").exists(), row
            continue
        layers, floats = expected_init[trunk]
        assert row["note"] == f"trunk from {trunk}_448.weights ({layers} layers, {floats:,} floats)", row
        report = json.loads((root / row["rung"] / "init_report.json").read_text())["darknet_weights"]
        assert [entry["module"] for entry in report["layers"]] == [f"conv{k}" for k in range(layers)]
    # anchor_boxes drops YOLOv1's last maxpool: conv16..19 run at twice the classifier's resolution.
    report = json.loads((root / "anchor_boxes" / "init_report.json").read_text())["darknet_weights"]
    assert any("conv16 26x26 (cfg 13x13)" in n for n in report["notes"]), report["notes"]  # at its natural 416
    # each rung trained the model its config names (the resolved config saved by train.py)
    saved = {r: json.loads((root / r / "config.json").read_text()) for r in SWEPT}
    assert saved["anchor_boxes"]["model"]["name"] == "yolov1_conv_anchors"
    assert saved["anchor_boxes"]["model"]["v2"]["location"] == "offset"
    assert saved["hires_detector"]["data"]["eval_image_size"] == 96
    md = (root / "ablation.md").read_text()
    assert sum(line.startswith(f"| {r} |") for r in ladder.RUNGS for line in md.splitlines()) == len(SWEPT)

    start = time.perf_counter()  # re-running: everything is finished, nothing trains
    res = run_ablate(f"--root={root}", *SMOKE, *classifiers, f"--rungs={','.join(SWEPT)}", env=env)
    assert res.returncode == 0 and res.stdout.count("finished, skipped") == len(SWEPT), res.stdout + res.stderr
    assert time.perf_counter() - start < 60
    res = run_ablate(f"--root={root}", *SMOKE, *classifiers, "--override=--config.seed=1", "--rungs=hires_detector",
                     env=env)
    assert res.returncode != 0 and "hires_detector: finished with other arguments" in res.stderr
