"""yolojax.inference.video: a video that the test writes with cv2.VideoWriter gives one JSON line per frame, whose
detections equal Detector.predict on the same (decoded) frames, and an annotated video of as many frames."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

import yolojax  # noqa: E402
from yolojax import darknet as dk  # noqa: E402
from yolojax.darknet import mapping  # noqa: E402
from yolojax.inference import video  # noqa: E402
from yolojax.models import build_model, default_model_config  # noqa: E402

NUM_FRAMES = 6


def write_clip(path: str, n: int = NUM_FRAMES, size: int = 80) -> None:
    """A moving red square and blue disc on a gradient, ``n`` frames of size x size."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    assert writer.isOpened()
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        frame = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)  # BGR gradient
        cv2.rectangle(frame, (5 + 6 * i, 10), (35 + 6 * i, 40), (0, 0, 230), -1)
        cv2.circle(frame, (60 - 4 * i, 55), 14, (220, 60, 0), -1)
        writer.write(frame)
    writer.release()


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    sections = mapping.module_sections(build_model(default_model_config(dict(name="tiny_yolov2", width=0.125))), 64, 64)
    cfg, weights = str(d / "tiny.cfg"), str(d / "tiny.weights")
    with open(cfg, "w") as f:
        f.write(dk.format_cfg(sections))
    dk.write_weights(weights, sections, dk.random_blobs(sections, seed=3))
    return yolojax.load(cfg, weights)


def test_video_json_lines_equal_predict_on_the_frames(detector, tmp_path):
    clip = str(tmp_path / "clip.avi")
    write_clip(clip)
    out, lines = str(tmp_path / "out" / "boxes.avi"), str(tmp_path / "out" / "clip.jsonl")
    stats = video.detect_video(detector, clip, out_path=out, json_path=lines, score_threshold=0.0,
                               max_detections=5, batch_size=4)
    assert stats["frames"] == NUM_FRAMES and stats["fps"] > 0 and stats["source_fps"] == pytest.approx(10.0)
    records = [json.loads(line) for line in open(lines)]
    assert [r["frame"] for r in records] == list(range(NUM_FRAMES))
    frames = video.read_frames(clip)
    assert len(frames) == NUM_FRAMES and frames[0].std() > 10
    want = detector.predict(frames, score_threshold=0.0, max_detections=5, batch_size=4)
    for record, found in zip(records, want):
        expected = yolojax.detections_to_json(found)
        assert len(record["detections"]) == len(expected) == 5
        for got, exp in zip(record["detections"], expected):
            assert got["class"] == exp["class"] and got["box"] == exp["box"]
            assert got["score"] == pytest.approx(exp["score"], rel=1e-6)
    annotated = video.read_frames(out)
    assert len(annotated) == NUM_FRAMES and annotated[0].shape == frames[0].shape
    assert not any(".partial" in f for f in os.listdir(tmp_path / "out"))


def test_bad_sources_give_one_line_errors(detector, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        video.detect_video(detector, str(tmp_path / "missing.mp4"))
    bogus = tmp_path / "bogus.avi"
    bogus.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bogus.avi"):
        video.detect_video(detector, str(bogus), json_path=str(tmp_path / "x.jsonl"))
    assert not os.path.exists(tmp_path / "x.jsonl")
    clip = str(tmp_path / "clip.avi")
    write_clip(clip, n=2)
    with pytest.raises(ValueError, match="output video must end"):
        video.detect_video(detector, clip, out_path=str(tmp_path / "out.gif"))
    assert video.is_video_source("a.MP4") and video.is_video_source(0) and not video.is_video_source("a.jpg")
