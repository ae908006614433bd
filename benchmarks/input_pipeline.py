"""Input pipeline throughput per core on real photos: JPEG decode alone vs the YOLOv2 training pipeline.

Real-photo statistics: the colour photographs bundled with scikit-image (astronaut, coffee, rocket, the
Middlebury motorcycle pair, Hubble deep field, retina, immunohistochemistry; ``pip install -e .[bench]``) are
cut into random VOC-sized crops (500x375 or 375x500, only ever shrunk, INTER_AREA), JPEG-encoded (quality 90)
and written with random VOC annotations to a temporary VOCdevkit. Then, in this one process and thread:

  decode (exact):   ``sources.decode_image`` (OpenCV) of each file's bytes at full resolution: the decoder of
                    evaluation and detection;
  decode (training): ``pipeline.decode_reduced(data, 1, fast=data.fast_decode)`` at full resolution: the
                    training decoder (libjpeg-turbo's fast IDCT and plain chroma upsampling via simplejpeg);
  decode (PIL):     plain PIL ``Image.open(...).convert("RGB")`` + ``np.asarray``: what any pipeline must pay;
  pipeline:         the whole training path of ``pipeline.make_train_iterator``'s batcher: read the record
                    (annotation XML parsed once, then cached), header, decode (training decoder; reduced-size
                    when the warp shrinks >= 2x), drop difficult, the one geometric warp (jitter crop + resize
                    + flip), pad boxes, the HSV jitter's draws, uint8 batch: what a host feeding an
                    accelerator does (``data.photometric_on="device"``);
  pipeline + HSV:   the same with the HSV jitter applied by OpenCV in the batcher, as on a CPU-only run
                    (``photometric_on="host"``, what "auto" picks when the JAX backend is the CPU);
  device:           the photometric jitter + float conversion of one batch (``photometric.train_inputs``,
                    jitted, on jax's default device), wall time per batch after compilation.

"Per core" honestly: host figures are images per CPU-second of this process (``time.process_time``: user +
system time of *all* its threads), with OpenCV held to one thread and the batcher called directly (no grain
threads). The four host measurements alternate in rounds and the ratios are taken per round (median, min,
max reported), so a loaded machine slows all of them alike.

``--workers 0 1 2`` adds a scaling run through grain (``num_workers`` processes, one thread each): images/s
(wall clock), images per CPU-second of the batch-building processes (read from /proc), and the cores needed
to feed ``--device_rate`` images/s at that rate.

It also prints how far the training decoder's pixels are from the exact decoder's on these photos.

Last line: ``ratio_pil=R pipeline=X img/s/core pil=Y img/s/core project=Z img/s/core train_decode=T img/s/core``
(medians; project = the exact decoder; the goal is R >= 0.9 at 416 with the v2 augmentation).

Usage: python benchmarks/input_pipeline.py [--num_images 300] [--image_size 416] [--batch_size 16] [--rounds 7]
         [--workers 0 1 2] [--device_rate 2000]
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import cv2
import numpy as np

from yolojax.data import pipeline, sources, synthetic


def _photos() -> list[np.ndarray]:
    """The colour photographs bundled with scikit-image, uint8 [H, W, 3] RGB, each at least 500x375 in one
    orientation (so crops are only ever shrunk)."""
    try:
        from skimage import data
    except ImportError as e:
        raise SystemExit("benchmarks/input_pipeline.py needs scikit-image: pip install -e '.[bench]'") from e
    photos = [data.astronaut(), data.coffee(), data.rocket(), *data.stereo_motorcycle()[:2],
              data.hubble_deep_field(), data.retina(), data.immunohistochemistry()]
    return [np.ascontiguousarray(p[..., :3]) for p in photos]


def write_photo_devkit(root: str, num_images: int, *, quality: int = 90, seed: int = 0) -> tuple[str, list[str]]:
    """Writes ``num_images`` VOC-sized photo crops + random VOC annotations as ``root/VOCdevkit/VOC2007``.

    Returns (VOCdevkit path, the JPEG paths in trainval order).
    """
    rng = np.random.default_rng(seed)
    voc = os.path.join(root, "VOCdevkit", "VOC2007")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    photos, ids, paths = _photos(), [], []
    for i in range(num_images):
        p = photos[i % len(photos)]
        ph, pw = p.shape[:2]
        sizes = [s for s in ((500, 375), (375, 500)) if pw >= s[0] and ph >= s[1]]
        ow, oh = sizes[rng.integers(len(sizes))]
        s = rng.uniform(1.0, min(pw / ow, ph / oh))  # source pixels per output pixel: never upsampled
        cw, ch = int(ow * s), int(oh * s)
        x0, y0 = rng.integers(0, pw - cw + 1), rng.integers(0, ph - ch + 1)
        crop = cv2.resize(p[y0:y0 + ch, x0:x0 + cw], (ow, oh), interpolation=cv2.INTER_AREA)
        if rng.uniform() < 0.5:
            crop = crop[:, ::-1]
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        image_id = f"{i:06d}"
        paths.append(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"))
        with open(paths[-1], "wb") as f:
            f.write(jpg.tobytes())
        n = int(rng.integers(1, 7))
        xy0 = rng.uniform(0, 0.7, (n, 2)) * [ow, oh]
        wh = rng.uniform(0.1, 0.3, (n, 2)) * [ow, oh]
        boxes = np.concatenate([xy0 + 1, np.minimum(xy0 + wh, [ow, oh])], axis=1)
        xml = synthetic.annotation_xml(image_id, ow, oh, boxes, rng.integers(0, 20, n), rng.uniform(size=n) < 0.1,
                                       np.zeros(n, bool))
        with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(xml)
        ids.append(image_id)
    with open(os.path.join(voc, "ImageSets", "Main", "trainval.txt"), "w") as f:
        f.write("".join(f"{x}\n" for x in ids))
    return os.path.join(root, "VOCdevkit"), paths


def _cpu_rate(fn, count: int) -> float:
    """count / process CPU seconds of ``fn()``."""
    t0 = time.process_time()
    fn()
    return count / max(time.process_time() - t0, 1e-9)


def _device_ms_per_batch(batch: dict, repeats: int = 20) -> tuple[float, str]:
    """Wall ms per batch of the jitted photometric jitter + float conversion on jax's default device, with the
    batch's own per-row parameters."""
    import jax

    from yolojax.data import photometric

    fn = jax.jit(photometric.train_inputs)
    images, params = jax.device_put((batch["image"], batch["photometric"]))
    fn(images, params).block_until_ready()  # compile
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn(images, params)
    out.block_until_ready()
    return 1e3 * (time.perf_counter() - t0) / repeats, jax.devices()[0].platform


def _children_cpu_seconds() -> float | None:
    """User + system CPU seconds of this process's live child processes (Linux /proc), None elsewhere."""
    if not os.path.isdir("/proc/self"):
        return None
    total, me, tick = 0.0, str(os.getpid()), os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # fields[1] is the parent pid; utime, stime are fields 11, 12 after the name
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _worker_scaling(cfg, batch_size: int, workers: list[int], device_rate: float, steps: int) -> list[dict]:
    """Images/s of the grain iterator with ``w`` worker processes (one thread each): wall clock, and per
    CPU-second of the processes building batches (this one for w = 0, the workers otherwise). Prints a line per
    worker count and returns them as {"workers", "img_s", "img_s_per_core", "cores_needed"}."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"worker scaling (grain, 1 thread per process, {steps} batches of {batch_size}, {cores} cores visible):")
    out = []
    for w in workers:
        c = cfg.copy_and_resolve_references()
        c.num_workers, c.num_threads, c.prefetch_batches = w, 1, 2
        it = pipeline.make_train_iterator(c, seed=1, global_batch_size=batch_size, process_index=0, process_count=1)
        next(it)  # start-up (worker processes, first batch) not timed
        cpu0, kids0, t0 = time.process_time(), _children_cpu_seconds(), time.perf_counter()
        for _ in range(steps):
            next(it)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0 if w == 0 or kids0 is None else _children_cpu_seconds() - kids0
        rate, per_core = steps * batch_size / wall, steps * batch_size / max(cpu, 1e-9)
        print(f"  workers={w}: {rate:.0f} img/s wall, {per_core:.0f} img/s per CPU-second of the batch-building "
              f"processes; cores needed to feed {device_rate:.0f} img/s: {device_rate / per_core:.1f}")
        out.append({"workers": w, "img_s": rate, "img_s_per_core": per_core, "cores_needed": device_rate / per_core})
        del it
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_images", type=int, default=300)
    p.add_argument("--image_size", type=int, default=416)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=7, help="alternating decode / pipeline rounds")
    p.add_argument("--workers", type=int, nargs="*", default=[], help="grain worker counts to time (wall clock)")
    p.add_argument("--worker_steps", type=int, default=20, help="batches per worker-scaling run")
    p.add_argument("--device_rate", type=float, default=2000.0,
                   help="images/s of the accelerator to feed (for the cores-needed figure)")
    args = p.parse_args()
    cv2.setNumThreads(1)
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        devkit, paths = write_photo_devkit(tmp, args.num_images)
        blobs = [open(q, "rb").read() for q in paths]
        print(f"wrote {len(paths)} photo JPEGs (500x375 / 375x500, quality 90, mean "
              f"{np.mean([len(b) for b in blobs]) / 1024:.1f} KB) + XML in {time.perf_counter() - t0:.1f}s")

        cfg = pipeline.default_data_config()
        cfg.update(source="voc_dir", voc_dir=devkit, train_split="2007_trainval", image_size=args.image_size,
                   photometric_on="device")  # the host's share when it feeds an accelerator
        src = sources.make_source(cfg, cfg.train_split)
        n = len(src)

        def decode_project() -> None:
            for path in paths:
                with open(path, "rb") as f:
                    sources.decode_image(f.read())

        fast = bool(cfg.fast_decode)

        def decode_train() -> None:
            for path in paths:
                with open(path, "rb") as f:
                    pipeline.decode_reduced(f.read(), 1, fast=fast)

        def decode_pil() -> None:
            for path in paths:
                with open(path, "rb") as f:
                    np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"))

        batcher, host_batcher = (
            pipeline._TrainBatcher(cfg, src, seed=0, global_batch_size=args.batch_size, process_index=0,
                                   process_count=1, photometric_on=on) for on in ("device", "host"))
        steps = max(n // args.batch_size, 1)
        passes = iter(range(10**9))
        last = {}

        def pipeline_pass(b=batcher) -> None:
            r = next(passes)  # every pass draws new positions: fresh record order and augmentation draws
            for s in range(steps):
                last[b.photometric] = b(r * steps + s)

        decode_project()  # warms the page cache
        first = _cpu_rate(pipeline_pass, steps * args.batch_size)
        print(f"first epoch (annotation XML parsed): pipeline={first:.0f} img/s/core")

        rows = {"project": [], "train": [], "pil": [], "pipeline": [], "host_hsv": []}
        for _ in range(args.rounds):
            rows["project"].append(_cpu_rate(decode_project, n))
            rows["train"].append(_cpu_rate(decode_train, n))
            rows["pil"].append(_cpu_rate(decode_pil, n))
            rows["host_hsv"].append(_cpu_rate(lambda: pipeline_pass(host_batcher), steps * args.batch_size))
            rows["pipeline"].append(_cpu_rate(pipeline_pass, steps * args.batch_size))
        med = {k: float(np.median(v)) for k, v in rows.items()}
        r_pil = np.array(rows["pipeline"]) / np.array(rows["pil"])
        r_proj = np.array(rows["pipeline"]) / np.array(rows["project"])
        r_train = np.array(rows["pipeline"]) / np.array(rows["train"])
        print(f"decode only, exact decoder (eval; OpenCV): {med['project']:.0f} img/s/core "
              f"({1e3 / med['project']:.2f} CPU ms/image)")
        print(f"decode only, training decoder ({'fast IDCT + plain upsampling, simplejpeg' if fast else 'exact'}): "
              f"{med['train']:.0f} img/s/core ({1e3 / med['train']:.2f} CPU ms/image)")
        print(f"decode only, plain PIL: {med['pil']:.0f} img/s/core "
              f"({1e3 / med['pil']:.2f} CPU ms/image)")
        print(f"pipeline (decode + warp + boxes + HSV draws, uint8; HSV on the device): {med['pipeline']:.0f} "
              f"img/s/core ({1e3 / med['pipeline']:.2f} CPU ms/image)")
        print(f"pipeline with the HSV jitter on the host (CPU-only runs): {med['host_hsv']:.0f} img/s/core "
              f"({1e3 / med['host_hsv']:.2f} CPU ms/image)")
        print(f"ratio pipeline / PIL decode:      median {np.median(r_pil):.3f} (min {r_pil.min():.3f}, max "
              f"{r_pil.max():.3f}) over {args.rounds} rounds")
        print(f"ratio pipeline / exact decode:    median {np.median(r_proj):.3f} (min {r_proj.min():.3f}, max "
              f"{r_proj.max():.3f})")
        print(f"ratio pipeline / training decode: median {np.median(r_train):.3f} (min {r_train.min():.3f}, max "
              f"{r_train.max():.3f})")
        best = {k: max(v) for k, v in rows.items()}  # the least-disturbed round of each (a loaded machine)
        print(f"best round of each: pipeline {best['pipeline']:.0f}, PIL {best['pil']:.0f}, exact "
              f"{best['project']:.0f}, training decode {best['train']:.0f} img/s/core; ratio to PIL "
              f"{best['pipeline'] / best['pil']:.3f}")
        hist = np.zeros(256, np.int64)  # |training - exact| over all pixels and channels
        for b in blobs:
            d = np.abs(pipeline.decode_reduced(b, 1, fast=fast).astype(np.int16) - sources.decode_image(b))
            hist += np.bincount(d.ravel(), minlength=256)
        cum = np.cumsum(hist) / hist.sum()
        print(f"training decoder vs exact decoder, same photos: mean abs diff "
              f"{(hist * np.arange(256)).sum() / hist.sum():.2f} levels (of 255), 99th / 99.9th percentile "
              f"{np.searchsorted(cum, 0.99)} / {np.searchsorted(cum, 0.999)}, max {np.nonzero(hist)[0].max()}")
        ms, platform = _device_ms_per_batch(last["device"])
        print(f"device photometric jitter + float conversion: {ms:.2f} ms per batch of {args.batch_size} at "
              f"{args.image_size} px on {platform} (wall, jitted)")
        if args.workers:
            _worker_scaling(cfg, args.batch_size, args.workers, args.device_rate, args.worker_steps)
        print(f"image_size={args.image_size} batch_size={args.batch_size} augment=v2 (jitter .3, flip on the "
              f"host; hue .1, sat 1.5, exp 1.5 on the device) images={n}")
        print(f"ratio_pil={np.median(r_pil):.2f} pipeline={med['pipeline']:.0f} img/s/core pil={med['pil']:.0f} "
              f"img/s/core project={med['project']:.0f} img/s/core train_decode={med['train']:.0f} img/s/core")


if __name__ == "__main__":
    main()
