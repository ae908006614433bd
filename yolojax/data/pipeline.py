"""Input pipeline: source records -> augmented, resized, padded training / evaluation batches (grain).

Determinism and resumption come from one design choice: **every batch is a pure function of
(seed, step)**. The training stream is an endless sequence of global positions ``step * global_batch + j``;
position ``p`` reads record ``perm_e[p mod n]`` of epoch ``e = p // n`` (a fresh seeded permutation per
epoch), is augmented with an RNG keyed by ``(seed, p)``, and is resized to the step's input size, drawn from
``(seed, step // multiscale_every_steps)``. Process ``k`` of ``P`` builds only positions
``[k * B/P, (k + 1) * B/P)`` of each global batch. So the batches do not depend on the number of grain
workers or threads, and the whole iterator state is ``{"step": int}`` (json-serializable; store it in the
training checkpoint, or just recreate the iterator with ``start_step``).

Batches carry uint8 images: the host decodes and does the one geometric warp; float conversion runs on the
device in the jitted step. The photometric (HSV) jitter is drawn with the geometry, from the same generator, and
applied where ``data.photometric_on`` says: on the device (the batch then carries each row's parameters under
"photometric", ``photometric.py``), or by OpenCV in the batch threads when the device is the host's own CPU
(docs/input_pipeline.md). A
training image that the warp shrinks by 2x or more is decoded at 1/2, 1/4 or 1/8 size by the JPEG decoder
itself (DCT scaling, ``decode_reduced``), and with ``data.fast_decode`` by libjpeg-turbo's fast IDCT and plain
chroma upsampling; evaluation always decodes in full with the exact decoder (``sources.decode_image``).

Bad input (never a crash inside a worker, never a NaN downstream):
  * corrupt or truncated JPEG: skipped with a counted warning; the position takes the next record instead
    (deterministically) in training; in evaluation the slot becomes a padding example (index -1);
  * image with no objects: a normal example with an all-False mask;
  * box outside the image: clipped (sources.py), boxes left empty dropped; augmentation drops boxes below
    ``min_box_size_px`` or less than ``min_visible_fraction`` visible;
  * more objects than ``max_boxes`` in training: the first ``max_boxes`` are kept, with a counted warning (the
    data check lists each such file); evaluation batches hold every object (see ``EvalData``).
Warnings are counted in ``sources.DATA_WARNINGS`` of the process that saw them (a worker's own log).

Public API:
  default_data_config() -> ConfigDict                 (documented fields below)
  make_train_iterator(data_cfg, *, seed, global_batch_size, start_step=0) -> TrainIterator
  make_eval_batches(data_cfg, split, batch_size, image_size) -> iterator of eval batches
  EvalData(data_cfg, split): .image_id(i), .example(i) (original, un-resized Example), len()
  prefetch_to_device(iterator, sharding, size=2)
"""
from __future__ import annotations

import collections
import functools
import io
import sys
import threading
from typing import Any, Iterator, Mapping, Sequence

import grain
import jax
import numpy as np
from absl import flags

# The config defaults live in a module that imports only ml_collections (configs/ import it); re-exported here.
from yolojax.config.data import augment_preset, darknet_multiscale_sizes, default_data_config  # noqa: F401
from yolojax.data import augment, sources

Batch = dict[str, np.ndarray]
_MAX_SKIP = 16  # consecutive undecodable records tolerated before giving up with an error


# ------------------------------------------------------------------------------------- building blocks
def pad_objects(example: Mapping[str, Any], max_boxes: int, *, with_difficult: bool = False) -> dict:
    """Pads (or truncates, with a counted warning) an example's objects to ``max_boxes``.

    Returns:
      dict(boxes float32 [M, 4] normalized xyxy (0 where padded), classes int32 [M] (-1 where padded),
      mask bool [M], and difficult bool [M] if ``with_difficult``).
    """
    out = {"boxes": np.zeros((max_boxes, 4), np.float32), "classes": np.full((max_boxes,), -1, np.int32),
           "mask": np.zeros((max_boxes,), bool)}
    if with_difficult:
        out["difficult"] = np.zeros((max_boxes,), bool)
    _write_objects(example, out)
    return out


def _write_objects(example: Mapping[str, Any], out: Mapping[str, np.ndarray]) -> None:
    """Writes an example's first M objects into the padding arrays ``out`` ("boxes" [M, 4], "classes" [M],
    "mask" [M], optionally "difficult" [M]; set to 0 / -1 / False beforehand), in place: a batch row itself
    (no per-example arrays to copy). More than M objects: the first M, with a counted warning."""
    max_boxes = len(out["mask"])
    boxes = example["boxes"]
    n = len(boxes)
    if n > max_boxes:
        sources.warn_count("too_many_objects", f"image {example.get('image_id', '?')}: {n} objects, keeping the "
                           f"first max_boxes={max_boxes}")
        n = max_boxes
    out["boxes"][:n] = np.asarray(boxes, np.float32).reshape(-1, 4)[:n]
    out["classes"][:n] = np.asarray(example["classes"])[:n]
    out["mask"][:n] = True
    if "difficult" in out:
        out["difficult"][:n] = np.asarray(example["difficult"], bool)[:n]


def stack_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [H, W, 3] images -> uint8 [B, H, W, 3] (the device converts to float: ``yolojax.ops.images.to_float``)."""
    return np.stack(images)


# ----------------------------------------------------------------------------- reduced-size decoding
_REDUCED_FLAG = {2: 16, 4: 32, 8: 64}  # OpenCV's IMREAD_REDUCED_* bit for a scale of 1/2, 1/4, 1/8


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame (not DHT, JPG, DAC)


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, or None if it has EXIF (which may turn the image)
    or the markers before the frame cannot be walked. A few microseconds: no image library involved."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF_MARKERS:
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        elif marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            return None
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # segments without a length
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def encoded_image_size(data: bytes, where: str = "image") -> tuple[int, int]:
    """(width, height) of encoded JPEG/PNG bytes as decoded (EXIF orientation applied), from the header only.

    Raises CorruptImageError if the header cannot be read.
    """
    size = _jpeg_frame_size(data)
    if size is not None and size[0] > 0 and size[1] > 0:
        return size

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1) if im.format == "JPEG" else 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise sources.CorruptImageError(f"{where}: unreadable header ({e})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # 5-8 turn the image by 90 degrees


def decode_reduction(matrix: np.ndarray, max_reduction: int = 8) -> int:
    """Largest JPEG DCT scale 1, 2, 4 or 8 (<= ``max_reduction``) that a ``[3, 3]`` map shrinking the image by
    ``1 / |scale|`` allows: 2 once the output has at most half the source resolution on both axes."""
    scale = max(abs(matrix[0, 0]), abs(matrix[1, 1]))
    r = 1
    while r < max_reduction and 2 * r * scale <= 1.0:
        r *= 2
    return r


def _fast_decode(data: bytes, reduction: int) -> np.ndarray | None:
    """libjpeg-turbo (``simplejpeg``) with the fast integer IDCT and plain (box) chroma upsampling, at
    1/``reduction`` size; None where it does not apply (EXIF, which may turn the image; CMYK / YCCK / RGB
    JPEGs; anything TurboJPEG will not take), so the caller decodes exactly instead."""
    if _jpeg_frame_size(data) is None:  # not a walkable JPEG, or EXIF orientation that TurboJPEG ignores
        return None
    import simplejpeg

    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("YCbCr", "Gray"):
            return None
        # The smallest of libjpeg's n/8 scales that keeps ceil(side / reduction) pixels: exactly 1/reduction.
        return simplejpeg.decode_jpeg(data, "RGB", fastdct=True, fastupsample=True, strict=True,
                                      min_height=-(-h // reduction), min_width=-(-w // reduction))
    except ValueError:  # truncated (strict: libjpeg's warnings are errors), or not for TurboJPEG
        return None  # the exact decoder decides: CorruptImageError, or a full decode


def decode_reduced(data: bytes, reduction: int, where: str = "image", *, fast: bool = False) -> np.ndarray:
    """JPEG bytes -> uint8 [~H/r, ~W/r, 3] RGB, decoded at 1/``reduction`` size by the JPEG decoder itself.

    libjpeg's DCT scaling (OpenCV ``IMREAD_REDUCED_*``, as PIL's ``Image.draft``) decodes only the low
    frequencies: several times faster than a full decode, and a proper low-pass instead of aliasing bilinear
    shrinking. The same decoder as ``sources.decode_image`` (OpenCV, EXIF orientation applied, RGB), so only
    the resolution differs. ``reduction`` 1 or a non-JPEG is the full ``sources.decode_image``.

    ``fast`` (training only, ``data.fast_decode``): libjpeg-turbo's fast integer IDCT and plain chroma
    upsampling instead (``simplejpeg``), about 0.1 ms (15%) less per VOC-size photo; its pixels differ from
    the exact decode by about 1.4 levels on average (up to ~60 at sharp colour edges, from the chroma
    upsampling; docs/input_pipeline.md). JPEGs with EXIF, CMYK / YCCK / RGB JPEGs and PNGs are still decoded
    exactly. Evaluation never comes here (``sources.decode_image``).
    Raises CorruptImageError if corrupt or truncated.
    """
    if reduction not in (1, *_REDUCED_FLAG):
        raise ValueError(f"decode_reduced: reduction must be 1, 2, 4 or 8, got {reduction}")
    if fast and data[:2] == b"\xff\xd8":
        image = _fast_decode(data, reduction)
        if image is not None:
            return image
    if reduction == 1 or data[:2] != b"\xff\xd8":
        return sources.decode_image(data, where)
    import cv2

    if not sources._jpeg_ok(data):  # truncated: libjpeg would only warn and fill gray
        raise sources.CorruptImageError(f"{where}: not a complete JPEG/PNG ({len(data)} bytes)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | _REDUCED_FLAG[reduction])
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise sources.CorruptImageError(f"{where}: cannot be decoded")
    return img


def multiscale_size(data_cfg: Mapping[str, Any], seed: int, step: int) -> int:
    """Input size (px) of training step ``step``: fixed, or drawn per block of ``multiscale_every_steps``."""
    sizes = tuple(data_cfg["multiscale_sizes"])
    if not sizes:
        return int(data_cfg["image_size"])
    block = step // int(data_cfg["multiscale_every_steps"])
    return int(sizes[np.random.default_rng([int(seed), 0x5CA1E, block]).integers(len(sizes))])


def photometric_placement(data_cfg: Mapping[str, Any], backend: str | None = None) -> str:
    """Where the training HSV jitter runs: "device" or "host", from ``data.photometric_on``.

    "auto" (the default) is "host" when the JAX backend is the CPU: the "device" is then the same cores, and
    OpenCV's SIMD lookup tables in the batch threads cost less than the jitter compiled into the step.
    ``backend``: default ``jax.default_backend()``.
    """
    on = data_cfg.get("photometric_on", "auto")  # configs saved before the field existed: "auto"
    if on == "auto":
        return "host" if (backend or jax.default_backend()) == "cpu" else "device"
    if on not in ("host", "device"):
        raise ValueError(f"config.data.photometric_on={on!r}: expected 'auto', 'host' or 'device'")
    return on


class _TrainBatcher:
    """Builds the local training batch of a step; a picklable pure function of the step."""

    def __init__(self, data_cfg: Mapping[str, Any], source, *, seed: int, global_batch_size: int,
                 process_index: int, process_count: int, photometric_on: str = "device"):
        if global_batch_size % process_count:
            raise ValueError(f"batch_size {global_batch_size} is not divisible by the {process_count} processes")
        self.cfg = data_cfg
        self.aug = dict(data_cfg["augment"])
        self.source = source
        self.n = len(source)
        if self.n == 0:
            raise ValueError(f"data.train_split {data_cfg['train_split']!r}: the source has no examples")
        self.seed, self.global_batch = int(seed), int(global_batch_size)
        self.local_batch = self.global_batch // process_count
        self.offset = process_index * self.local_batch
        self._perm_cache: tuple[int, np.ndarray] | None = None
        self.fast_decode = bool(data_cfg.get("fast_decode", False))
        # None: no HSV jitter configured; "host" / "device": where it is applied (photometric_placement).
        self.photometric = photometric_on if augment.photometric_enabled(self.aug) else None
        self._threads = threading.local()  # per-thread state: the position generator (_position_rng)

    def __getstate__(self) -> dict:  # the per-thread generators stay behind (grain pickles the batcher)
        return {k: v for k, v in self.__dict__.items() if k != "_threads"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._threads = threading.local()

    def _position_rng(self, position: int) -> np.random.Generator:
        """The geometric-augmentation generator of ``position``: Philox keyed by (seed, position), the same
        stream as ``np.random.Generator(np.random.Philox(key=[seed, position]))`` (no SeedSequence hashing).
        One generator per thread is re-keyed by setting its state: a quarter of the cost of a new one (whose
        constructor draws OS entropy first). A negative seed wraps modulo 2**64, as Philox's own key does."""
        gen = getattr(self._threads, "rng", None)
        if gen is None:
            gen = self._threads.rng = np.random.Generator(np.random.Philox(key=[0, 0]))
        gen.bit_generator.state = {"bit_generator": "Philox", "buffer": np.zeros(4, np.uint64), "buffer_pos": 4,
                                   "has_uint32": 0, "uinteger": 0,
                                   "state": {"counter": np.zeros(4, np.uint64),
                                             "key": np.array([self.seed % 2**64, position], np.uint64)}}
        return gen

    def _record_index(self, position: int) -> int:
        epoch, i = divmod(position, self.n)
        if not self.cfg["shuffle"]:
            return i
        cache = self._perm_cache  # one read: grain threads may replace it concurrently
        if cache is None or cache[0] != epoch:
            cache = (epoch, np.random.default_rng([self.seed, 0xE90C, epoch]).permutation(self.n))
            self._perm_cache = cache
        return int(cache[1][i])

    def _decode(self, record: Mapping[str, Any], position: int, out_size: tuple[int, int]
                ) -> tuple[dict, np.ndarray, tuple[float, float, float]]:
        """Record -> (Example, [3, 3] training map of its decoded image, HSV jitter parameters). The map is
        drawn from the encoded size (so it is the same whatever resolution the decoder then delivers) and
        rescaled to the decoded one; the jitter is drawn after it from the same generator."""
        where = f"image {record.get('image_id', '?')}"
        if "image" in record:  # already decoded (synthetic)
            example = sources.decode_record(record)
            full = example["image"].shape[1::-1]  # (width, height)
        else:
            full = encoded_image_size(record["image_bytes"], where)
        rng = self._position_rng(position)
        matrix = augment.train_matrix(rng, full, out_size, self.aug)
        hsv = (augment.draw_hsv(rng, self.aug["hue"], self.aug["saturation"], self.aug["exposure"])
               if self.photometric else augment.IDENTITY_HSV)
        if "image" not in record:
            example = {k: v for k, v in record.items() if k != "image_bytes"}
            example["image"] = decode_reduced(record["image_bytes"], decode_reduction(matrix), where,
                                              fast=self.fast_decode)
        got = example["image"].shape[1::-1]
        if got != full:  # reduced decode (or a decoder that disagrees with the header): same map, new units
            matrix = matrix @ np.diag([full[0] / got[0], full[1] / got[1], 1.0])
        return example, matrix, hsv

    def _mosaic_rng(self, position: int) -> np.random.Generator | None:
        """The generator of ``position``'s mosaic when this position is one (``augment.mosaic`` > 0), else None.
        Its own stream (seed, 0x305A1C, position): with mosaics off no draw changes."""
        chance = float(self.aug.get("mosaic", 0.0))
        if chance <= 0:
            return None
        rng = np.random.default_rng([self.seed % 2**63, 0x305A1C, position])
        return rng if rng.uniform() < chance else None

    def _record_at(self, index: int, where: str) -> tuple[dict, tuple[int, int]]:
        """(record ``index`` or, when undecodable, the next decodable one, its encoded (width, height))."""
        for attempt in range(_MAX_SKIP):
            record = self.source[(index + attempt) % self.n]
            try:
                if "image" in record:
                    return record, record["image"].shape[1::-1]
                return record, encoded_image_size(record["image_bytes"], f"image {record.get('image_id', '?')}")
            except sources.CorruptImageError as e:
                sources.warn_count("corrupt_image", f"{e}; skipped")
        raise RuntimeError(f"{_MAX_SKIP} consecutive undecodable images near record {index} ({where})")

    def _mosaic(self, position: int, size: int, out: np.ndarray, rng: np.random.Generator
                ) -> tuple[dict, tuple[float, float, float]]:
        """A mosaic (``augment.mosaic_layout``) of the record at ``position`` and three records drawn from
        ``rng``, warped region by region straight into ``out``; (its Example, its HSV jitter parameters)."""
        indices = [self._record_index(position), *rng.integers(self.n, size=3).tolist()]
        records = [self._record_at(i, f"mosaic at training position {position}") for i in indices]
        layout = augment.mosaic_layout(rng, size, [r[1] for r in records], tuple(self.aug["mosaic_scale"]),
                                       bool(self.aug["flip"]))
        hsv = (augment.draw_hsv(rng, self.aug["hue"], self.aug["saturation"], self.aug["exposure"])
               if self.photometric else augment.IDENTITY_HSV)
        parts = []
        for (record, full), (matrix, (x0, y0, x1, y1)) in zip(records, layout):
            where = f"image {record.get('image_id', '?')}"
            if "image" in record:
                example = sources.decode_record(record)
            else:
                example = {k: v for k, v in record.items() if k != "image_bytes"}
                try:
                    example["image"] = decode_reduced(record["image_bytes"], decode_reduction(matrix), where,
                                                      fast=self.fast_decode)
                except sources.CorruptImageError as e:  # a header that reads but a body that does not
                    sources.warn_count("corrupt_image", f"{e}; a gray region of a mosaic instead")
                    out[y0:y1, x0:x1] = augment.GRAY
                    continue
            got = example["image"].shape[1::-1]
            if got != full:
                matrix = matrix @ np.diag([full[0] / got[0], full[1] / got[1], 1.0])
            if self.cfg["drop_difficult"]:
                example = augment.drop_difficult(example)
            example = augment.warp_affine(example, matrix, (x1 - x0, y1 - y0), border="gray",
                                          min_size_px=self.aug["min_box_size_px"],
                                          min_visible_fraction=self.aug["min_visible_fraction"],
                                          out=out[y0:y1, x0:x1])
            parts.append(dict(example, boxes=augment.paste_boxes(example["boxes"], (x0, y0, x1, y1), size)))
        merged = {"image": out, "image_id": f"mosaic@{position}"}
        merged["boxes"] = np.concatenate([p["boxes"] for p in parts]) if parts else np.zeros((0, 4), np.float32)
        merged["classes"] = np.concatenate([p["classes"] for p in parts]) if parts else np.zeros((0,), np.int32)
        if self.photometric == "host" and hsv != augment.IDENTITY_HSV:
            augment.hsv_adjust(out, *hsv, out=out)
        return merged, hsv

    def _example(self, position: int, size: int, out: np.ndarray) -> tuple[dict, tuple[float, float, float]]:
        """(the training Example at ``position``, its image warped straight into ``out`` (uint8 [size, size, 3])
        and jittered there with placement "host"; its HSV jitter parameters). With ``augment.mosaic`` the
        position may be a mosaic of four (``_mosaic``)."""
        mosaic = self._mosaic_rng(position)
        if mosaic is not None:
            return self._mosaic(position, size, out, mosaic)
        for attempt in range(_MAX_SKIP):
            # A corrupt record is replaced by the next position's record: deterministic for any worker count.
            record = self.source[self._record_index(position + attempt)]
            try:
                example, matrix, hsv = self._decode(record, position, (size, size))
                break
            except sources.CorruptImageError as e:
                sources.warn_count("corrupt_image", f"{e}; skipped")
        else:
            raise RuntimeError(f"{_MAX_SKIP} consecutive undecodable images near training position {position}")
        if self.cfg["drop_difficult"]:
            example = augment.drop_difficult(example)
        example = augment.train_warp(example, matrix, (size, size), self.aug, out=out)
        if self.photometric == "host" and hsv != augment.IDENTITY_HSV:
            augment.hsv_adjust(out, *hsv, out=out)
        return example, hsv

    def __call__(self, step: int) -> Batch:
        size = multiscale_size(self.cfg, self.seed, step)
        start = step * self.global_batch + self.offset
        b, m = self.local_batch, int(self.cfg["max_boxes"])
        batch = {"image": np.empty((b, size, size, 3), np.uint8), "boxes": np.zeros((b, m, 4), np.float32),
                 "classes": np.full((b, m), -1, np.int32), "mask": np.zeros((b, m), bool)}
        if self.photometric == "device":
            batch["photometric"] = np.empty((b, 3), np.float32)
        objects = ("boxes", "classes", "mask")
        for j in range(b):  # each example goes straight into its batch slot: no per-example copies to stack
            example, hsv = self._example(start + j, size, batch["image"][j])
            _write_objects(example, {k: batch[k][j] for k in objects})
            if self.photometric == "device":
                batch["photometric"][j] = hsv
        return batch


def single_threaded_cv2() -> None:
    """One OpenCV thread per pipeline thread: cv2's own pool would oversubscribe the cores the pipeline's
    threads and workers already use. Called where a pipeline starts (not at import)."""
    import cv2

    cv2.setNumThreads(1)


class TrainIterator:
    """Endless iterator of local training batches (numpy Batch dicts, see make_train_iterator) with a tiny state.

    ``get_state()`` -> ``{"step": s}``: the step of the next batch ``next()`` returns. ``set_state`` jumps
    to any step; the batches that follow are exactly those an uninterrupted run would have produced.
    """

    def __init__(self, data_cfg: Mapping[str, Any], *, seed: int, global_batch_size: int, start_step: int = 0,
                 process_index: int | None = None, process_count: int | None = None):
        self.cfg = data_cfg
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        source = sources.make_source(data_cfg, data_cfg["train_split"])
        self.batcher = _TrainBatcher(data_cfg, source, seed=seed, global_batch_size=global_batch_size,
                                     process_index=self.process_index, process_count=self.process_count,
                                     photometric_on=photometric_placement(data_cfg))
        self.seed = int(seed)
        self._step = int(start_step)
        self._it = None

    def image_size(self, step: int) -> int:
        """Input size (px) of the batch of ``step``."""
        return multiscale_size(self.cfg, self.seed, step)

    def _make(self) -> Iterator[Batch]:
        ds = grain.MapDataset.range(self._step, sys.maxsize).map(self.batcher)
        read = grain.ReadOptions(num_threads=max(int(self.cfg["num_threads"]), 1),
                                 prefetch_buffer_size=max(int(self.cfg["prefetch_batches"]), 1))
        it_ds = ds.to_iter_dataset(read)
        single_threaded_cv2()
        if int(self.cfg["num_workers"]) > 0:
            if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; notebooks and tests never parse
                flags.FLAGS.mark_as_parsed()
            it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(self.cfg["num_workers"])))
        return iter(it_ds)

    def __iter__(self) -> "TrainIterator":
        return self

    def __next__(self) -> Batch:
        if self._it is None:
            self._it = self._make()
        batch = next(self._it)
        self._step += 1
        return batch

    def get_state(self) -> dict[str, int]:
        """{"step": index of the next batch}: json-serializable, stored in the training checkpoint."""
        return {"step": self._step}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continues from ``state["step"]`` (drops whatever grain had prefetched)."""
        self._step = int(state["step"])
        self._it = None


def make_train_iterator(data_cfg: Mapping[str, Any], *, seed: int, global_batch_size: int, start_step: int = 0,
                        process_index: int | None = None, process_count: int | None = None) -> TrainIterator:
    """Training batches for this process.

    Args:
      data_cfg: ``config.data`` (see ``default_data_config``).
      seed: data seed (shuffling, augmentation, multi-scale sizes).
      global_batch_size: images per step over all processes; each process gets ``global / process_count``.
      start_step: step of the first batch (resume).
      process_index, process_count: default ``jax.process_index()`` / ``jax.process_count()``.
    Returns:
      TrainIterator yielding {"image": uint8 [b, S, S, 3] RGB (geometric augmentation done; the float
      conversion runs on the device), "boxes": float32 [b, M, 4] normalized xyxy, "classes": int32 [b, M]
      (-1 pad), "mask": bool [b, M]} with b = local batch, S = step's size; with the HSV jitter configured
      and placed on the device (``photometric_placement``), also "photometric": float32 [b, 3], each row's
      (dhue, sat, exposure) for ``photometric.train_inputs``; placed on the host, the images are jittered.
    """
    return TrainIterator(data_cfg, seed=seed, global_batch_size=global_batch_size, start_step=start_step,
                         process_index=process_index, process_count=process_count)


# ------------------------------------------------------------------------------------------- eval
class EvalData:
    """An evaluation split: original examples by index, and fixed-size batches.

    Args:
      data_cfg: ``config.data``.
      split: split name (e.g. "2007_test", or "eval" for synthetic).
    """

    def __init__(self, data_cfg: Mapping[str, Any], split: str):
        self.cfg = data_cfg
        self.split = split
        self.source = sources.make_source(data_cfg, split)

    def __len__(self) -> int:
        return len(self.source)

    def image_id(self, index: int) -> str:
        """The VOC image id of example ``index``."""
        return self.source.image_id(index)

    def example(self, index: int) -> dict:
        """The original Example ``index`` (difficult objects kept); raises CorruptImageError if undecodable."""
        return sources.decode_record(self.source[index])

    def _batch(self, b: int, *, batch_size: int, image_size: int, process_index: int, process_count: int) -> Batch:
        """Eval batch ``b`` of this process; indices past the end (or undecodable) are padding (index -1). Its
        ground truth holds every object of its images: M = the larger of ``data.max_boxes`` and the most objects
        of one image of the batch (no object is dropped from evaluation)."""
        per_process = -(-len(self) // process_count)
        begin = process_index * per_process
        end = min(begin + per_process, len(self))
        images, examples, sizes, idx = [], [], [], []
        for j in range(batch_size):
            i = begin + b * batch_size + j
            ex = None
            if i < end:
                try:
                    ex = self.example(i)
                except sources.CorruptImageError as e:
                    sources.warn_count("corrupt_image", f"{e}; evaluated as padding")
            if ex is None:
                images.append(np.full((image_size, image_size, 3), augment.GRAY, np.uint8))
                examples.append({"boxes": np.zeros((0, 4)), "classes": np.zeros(0), "difficult": np.zeros(0, bool)})
                sizes.append((0, 0))
                idx.append(-1)
                continue
            sizes.append(ex["image"].shape[:2])
            ex = augment.eval_preprocess(ex, (image_size, image_size), letterbox_eval=bool(self.cfg["eval_letterbox"]))
            images.append(ex["image"])
            examples.append(ex)
            idx.append(i)
        capacity = max([int(self.cfg["max_boxes"])] + [len(ex["boxes"]) for ex in examples])
        padded = [pad_objects(ex, capacity, with_difficult=True) for ex in examples]
        batch = {k: np.stack([p[k] for p in padded]) for k in ("boxes", "classes", "mask", "difficult")}
        batch["image"] = stack_images(images)
        batch["orig_size"] = np.asarray(sizes, np.int32).reshape(batch_size, 2)
        batch["index"] = np.asarray(idx, np.int32)
        return batch

    def num_batches(self, batch_size: int, process_count: int = 1) -> int:
        """Batches per process (equal on every process; the last ones padded)."""
        return -(-(-(-len(self) // process_count)) // batch_size)

    def batches(self, batch_size: int, image_size: int, *, process_index: int | None = None,
                process_count: int | None = None) -> Iterator[Batch]:
        """Eval batches of this process, in index order (see ``make_eval_batches``)."""
        pi = jax.process_index() if process_index is None else process_index
        pc = jax.process_count() if process_count is None else process_count
        fn = functools.partial(self._batch, batch_size=batch_size, image_size=image_size, process_index=pi,
                               process_count=pc)
        single_threaded_cv2()
        ds = grain.MapDataset.range(self.num_batches(batch_size, pc)).map(fn)
        read = grain.ReadOptions(num_threads=max(int(self.cfg["num_threads"]), 1),
                                 prefetch_buffer_size=max(int(self.cfg["prefetch_batches"]), 1))
        return iter(ds.to_iter_dataset(read))


def make_eval_batches(data_cfg: Mapping[str, Any], split: str, batch_size: int, image_size: int, *,
                      process_index: int | None = None, process_count: int | None = None) -> Iterator[Batch]:
    """Evaluation batches of ``split`` for this process (deterministic, no augmentation).

    Yields:
      {"image": uint8 [B, S, S, 3] RGB (``yolojax.ops.images.to_float`` on the device), "boxes": float32 [B, M, 4]
      normalized xyxy of the network
      input (= of the original image unless eval_letterbox; see augment.input_boxes_to_original),
      "classes": int32 [B, M] (-1 pad), "mask": bool [B, M], "difficult": bool [B, M],
      "orig_size": int32 [B, 2] (height, width), "index": int32 [B] (-1 for padding)}; M is ``data.max_boxes``, or
      more in a batch holding an image with more objects (evaluation counts every ground-truth box).
    Each process gets a contiguous share of the split; all processes yield the same number of batches.
    Use ``EvalData(data_cfg, split).image_id(index)`` / ``.example(index)`` for ids and original examples.
    """
    return EvalData(data_cfg, split).batches(batch_size, image_size, process_index=process_index,
                                             process_count=process_count)


# ----------------------------------------------------------------------------------- to the device
class prefetch_to_device:
    """Puts host batches on the device ``size`` steps ahead (``device_put`` is asynchronous: the copy overlaps
    the running step).

    ``sharding`` (e.g. ``NamedSharding(mesh, P("data"))``) makes each leaf a global array from the process-
    local batches (``jax.make_array_from_process_local_data``). ``get_state`` reports the step of the next
    batch *returned to the caller*, so prefetching never breaks resumption.
    """

    def __init__(self, iterator: TrainIterator, sharding=None, size: int = 2):
        self._iterator = iterator
        self._sharding = sharding
        self._next_step = iterator.get_state()["step"] if hasattr(iterator, "get_state") else 0
        self._queue: collections.deque = collections.deque()
        self._size = size
        self._lock = threading.Lock()

    def _put(self, batch: Batch):
        if self._sharding is None:
            return jax.device_put(batch)
        return jax.tree.map(lambda x: jax.make_array_from_process_local_data(self._sharding, x), batch)

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            while len(self._queue) < self._size:
                self._queue.append(self._put(next(self._iterator)))  # device_put is asynchronous
            self._next_step += 1
            return self._queue.popleft()

    def get_state(self) -> dict[str, int]:
        return {"step": self._next_step}
