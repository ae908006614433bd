"""Detection on videos and cameras: an annotated video out, one JSON line per frame, frames/s.

    from yolojax.inference import video
    stats = video.detect_video(det, "clip.mp4", out_path="clip_boxes.mp4", json_path="clip.jsonl")
    stats = video.detect_video(det, 0, json_path="camera.jsonl", max_frames=300)   # camera index 0

Frames are decoded with OpenCV (BGR, converted to RGB) and run through ``Detector.predict_iter`` in fixed-size
batches (``fixed_batch``: one compilation), so a frame's detections are exactly ``predict`` on that frame.
Each JSON line is ``{"frame": i, "time_s": i / fps, "width": W, "height": H, "detections": [...]}`` with the
detections of ``api.detections_to_json`` (pixel xyxy of the frame). Outputs are written under temporary names
and renamed when the stream ends, so a failure leaves no partial file behind; Ctrl-C ends a camera stream
normally.
"""
from __future__ import annotations

import json
import os
import time
from typing import Iterator

import numpy as np

from yolojax.inference import api

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v"}


def is_video_source(spec: str | int) -> bool:
    """True for a camera index (int or digits) or a path with a video extension."""
    return isinstance(spec, int) or str(spec).isdigit() or str(spec).lower().endswith(VIDEO_EXTENSIONS)


def open_video(source: str | int | os.PathLike):
    """An opened ``cv2.VideoCapture`` for a file or a camera index; FileNotFoundError / ValueError naming the
    source otherwise."""
    import cv2

    if isinstance(source, int) or str(source).isdigit():
        cap = cv2.VideoCapture(int(source))
        if not cap.isOpened():
            raise ValueError(f"cannot open camera {int(source)}")
        return cap
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video not found: {path}")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"not a readable video: {path}")
    return cap


def iter_frames(cap, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """uint8 [H, W, 3] RGB frames until the stream ends (or ``max_frames``)."""
    import cv2

    count = 0
    while max_frames is None or count < max_frames:
        ok, frame = cap.read()
        if not ok:
            return
        count += 1
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def read_frames(source: str | int | os.PathLike, max_frames: int | None = None) -> list[np.ndarray]:
    """All frames of a video as uint8 RGB arrays (for short clips and tests)."""
    cap = open_video(source)
    try:
        return list(iter_frames(cap, max_frames))
    finally:
        cap.release()


def _partial(path: str) -> str:
    stem, ext = os.path.splitext(path)
    return f"{stem}.partial{ext}"  # same extension: OpenCV picks the container from it


def detect_video(detector, source: str | int | os.PathLike, *, out_path: str | os.PathLike | None = None,
                 json_path: str | os.PathLike | None = None, score_threshold: float | None = None,
                 iou_threshold: float | None = None, max_detections: int = 100, batch_size: int = 8,
                 max_frames: int | None = None, fps: float | None = None) -> dict:
    """Detects on every frame of ``source`` (a video file or a camera index).

    Args:
      detector: a ``yolojax.inference.api.Detector`` (or an export-backed one,
        ``yolojax.inference.export.load_exported``).
      out_path: annotated video to write (codec from the extension: .avi MJPG, .mp4/.mov mp4v); None: none.
      json_path: JSON Lines file, one line per frame (module docstring); None: none.
      score_threshold, iou_threshold, max_detections, batch_size: as ``Detector.predict``.
      max_frames: stop after this many frames (cameras never end on their own).
      fps: frame rate for ``time_s`` and the output video; default the source's (25 if it reports none).
    Returns:
      {"frames": n, "seconds": wall time of the loop, "fps": n / seconds, "steady_fps": frames/s after the
       first batch (compilation excluded; = fps if there is only one batch), "source_fps": fps used}.
    """
    import cv2


    cap = open_video(source)
    source_fps = float(fps or cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    outputs = {k: os.fspath(p) for k, p in (("video", out_path), ("json", json_path)) if p is not None}
    for p in outputs.values():
        if os.path.dirname(p):
            os.makedirs(os.path.dirname(p), exist_ok=True)
    if "video" in outputs and os.path.splitext(outputs["video"])[1].lower() not in _FOURCC:
        cap.release()
        raise ValueError(f"{outputs['video']}: output video must end in one of {sorted(_FOURCC)}")
    writer, lines = None, None
    frames_seen: list[np.ndarray] = []  # frames whose detections have not come back yet (at most a batch)

    def frames():
        for frame in iter_frames(cap, max_frames):
            frames_seen.append(frame)
            yield frame

    start, first_batch_done, count = time.perf_counter(), None, 0
    try:
        if "json" in outputs:
            lines = open(_partial(outputs["json"]), "w")
        found_iter = detector.predict_iter(frames(), score_threshold=score_threshold, iou_threshold=iou_threshold,
                                           max_detections=max_detections, batch_size=batch_size, fixed_batch=True)
        try:
            for found in found_iter:
                frame = frames_seen.pop(0)
                height, width = frame.shape[:2]
                if "video" in outputs:
                    if writer is None:
                        fourcc = cv2.VideoWriter_fourcc(*_FOURCC[os.path.splitext(outputs["video"])[1].lower()])
                        writer = cv2.VideoWriter(_partial(outputs["video"]), fourcc, source_fps, (width, height))
                        if not writer.isOpened():
                            raise ValueError(f"{outputs['video']}: OpenCV cannot write this video format")
                    writer.write(cv2.cvtColor(api.draw(frame, found), cv2.COLOR_RGB2BGR))
                if lines is not None:
                    lines.write(json.dumps({"frame": count, "time_s": round(count / source_fps, 4), "width": width,
                                            "height": height, "detections": api.detections_to_json(found)}) + "\n")
                count += 1
                if count == batch_size:
                    first_batch_done = time.perf_counter()
        except KeyboardInterrupt:  # ends a camera stream; what was detected so far is kept
            pass
    except BaseException:
        for handle in (writer, lines):
            if handle is not None:
                handle.release() if hasattr(handle, "release") else handle.close()
        for p in outputs.values():
            if os.path.exists(_partial(p)):
                os.remove(_partial(p))
        cap.release()
        raise
    end = time.perf_counter()
    cap.release()
    if writer is not None:
        writer.release()
    if lines is not None:
        lines.close()
    if count == 0:
        for p in outputs.values():
            if os.path.exists(_partial(p)):
                os.remove(_partial(p))
        raise ValueError(f"{source}: no frame could be read")
    for p in outputs.values():
        os.replace(_partial(p), p)
    seconds = end - start
    steady = ((count - batch_size) / max(end - first_batch_done, 1e-9)
              if first_batch_done is not None and count > batch_size else count / max(seconds, 1e-9))
    return {"frames": count, "seconds": seconds, "fps": count / max(seconds, 1e-9), "steady_fps": steady,
            "source_fps": source_fps}
