"""Data sources: PASCAL VOC through TFDS or from local files, the synthetic dataset, and your own dataset of
files (VOC XML, YOLO txt, COCO JSON: ``yolojax.data.formats``), behind one interface.

A *source* is a random-access sequence of *records*: ``len(src)``, ``src[i]`` -> dict with
  "image_bytes": bytes (encoded JPEG/PNG) or "image": uint8 [H, W, 3] RGB (already decoded),
  "boxes": float32 [N, 4] normalized xyxy (``boxes.voc_px_to_normalized`` of the XML's 1-based pixels),
  "classes": int32 [N], "difficult": bool [N], "truncated": bool [N], "image_id": str.
``decode_record`` turns a record into an Example (docs/conventions.md). Decoding is left to the pipeline's workers so
the main process never decodes JPEGs. Sources are picklable (grain ships them to worker processes).

Named splits: "07+12" = VOC2007 trainval + VOC2012 trainval (16,551 images), "2007_test"
(4,952), and "{2007,2012}_{trainval,train,val}", "2007_test"; the synthetic source has "train" and "eval".

Where the VOC data can come from (``data_cfg.source``):
  * "tfds": a prepared TFDS ``voc/2007`` / ``voc/2012`` in ``array_record`` format, read with
    ``tfds.data_source`` (no TensorFlow needed to read). Prepare once with ``prepare_tfds_voc`` (needs
    ``tensorflow-cpu``), either from the internet or from tarballs / an extracted VOCdevkit you already have.
  * "voc_dir": an extracted ``VOCdevkit`` folder (holding ``VOC2007``/``VOC2012``), read directly.
  * "voc_tarballs": a folder with the original tarballs (VOCtrainval_06-Nov-2007.tar, ...); extracted once
    into ``data_cfg.extract_dir`` (default: ``<folder>/extracted``) and read as "voc_dir".
  * "synthetic": drawn on the fly (``yolojax.data.synthetic``).
  * "files": your own dataset under ``data_cfg.root`` in ``data_cfg.format`` "voc" (any class names), "yolo"
    or "coco"; ``train_split`` / ``eval_split`` name its splits (see ``yolojax.data.formats`` and
    docs/data_formats.md). ``data_cfg.format`` must be empty for the other sources.
The three VOC sources give the same records for the same images (tests/test_data_sources.py checks it through
the real TFDS builder).

Bad annotations: boxes reaching outside the image are clipped to it, boxes left empty are dropped, each with
a counted warning (``DATA_WARNINGS``). Note the TFDS builder itself refuses boxes outside the image at prepare
time (its BBoxFeature checks the range), so such a file has to be fixed or read with "voc_dir".
"""
from __future__ import annotations

import bisect
import contextlib
import io
import os
import shutil
import tarfile
from typing import Any, Mapping, Sequence
from unittest import mock

import numpy as np

from yolojax.config.classes import VOC_CLASSES
from yolojax.data import formats, synthetic, voc
from yolojax.data.formats import (  # noqa: F401
    DATA_WARNINGS,
    DatasetError,
    clean_boxes,
    save_class_names,
    voc_boxes_to_normalized,
    warn_count,
)

Record = dict[str, Any]

# The original tarball names (the ones TFDS's voc builder downloads), per year and part.
VOC_TARBALLS = {
    "2007": {"trainval": "VOCtrainval_06-Nov-2007.tar", "test": "VOCtest_06-Nov-2007.tar"},
    "2012": {"trainval": "VOCtrainval_11-May-2012.tar", "test": "VOC2012test.tar"},
}
# Named splits -> list of (year, VOC image set).
VOC_SPLITS: dict[str, tuple[tuple[str, str], ...]] = {
    "07+12": (("2007", "trainval"), ("2012", "trainval")),
    "2007_test": (("2007", "test"),),
    **{f"{y}_{s}": ((y, s),) for y in ("2007", "2012") for s in ("trainval", "train", "val")},
}
# VOC image set -> TFDS split of the voc builder (TFDS: "train" = train.txt, "validation" = val.txt).
_TFDS_SPLIT = {"trainval": "train+validation", "train": "train", "val": "validation", "test": "test"}

class CorruptImageError(ValueError):
    """An image that cannot be decoded (or is truncated); the pipeline skips it with a counted warning."""


# ------------------------------------------------------------------------------------------ records
_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))  # markers without a length field (TEM, RST0-7)


def _jpeg_ok(data: bytes) -> bool:
    """True for a PNG, or a JPEG whose marker structure runs from SOI to an EOI (bytes after EOI allowed).

    Walks the segments by their lengths (so an EOI inside an EXIF thumbnail does not count) and the
    entropy-coded data of each scan up to the next marker (in it, 0xFF is followed by 0x00 or RSTn). A file
    that ends before the EOI of its last scan is truncated.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return True
    if data[:2] != b"\xff\xd8":
        return False
    n, pos = len(data), 2
    while True:
        if pos + 1 >= n or data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return True
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 3 >= n:
            return False
        pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
        if marker != 0xDA:  # not a scan: the next marker follows the segment
            continue
        while True:  # entropy-coded data up to the next real marker
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= n:
                return False
            nxt = data[pos + 1]
            if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                pos += 2
            elif nxt == 0xFF:
                pos += 1
            else:
                break


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, or another format OpenCV reads: BMP, WebP, TIFF) -> uint8 [H, W, 3] RGB;
    raises CorruptImageError if corrupt or truncated.

    The one image decoder of training, evaluation, detection and the notebook API (``Detector.predict`` of a path
    or of bytes). Grayscale, palette, 16-bit (``v >> 8``) and alpha (dropped) PNGs and CMYK / grayscale JPEGs
    come out as 8-bit RGB; a JPEG's EXIF orientation is applied (OpenCV's ``imdecode`` does both;
    tests/test_formats.py checks against PIL). :func:`rgb8` applies the same rules to arrays. libjpeg decodes a
    truncated JPEG into a partly gray image with only a warning, so truncation is detected from the JPEG's marker
    structure instead (``_jpeg_ok``); bytes after the end-of-image marker are fine.
    """
    import cv2  # local: keeps `import yolojax.data.sources` light

    if not data or (data[:2] == b"\xff\xd8" and not _jpeg_ok(data)):
        raise CorruptImageError(f"{where}: not a complete JPEG/PNG ({len(data)} bytes)")
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB: one pass less
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if rgb is None else rgb)
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise CorruptImageError(f"{where}: cannot be decoded as an image ({len(data)} bytes)")
    return img if rgb is not None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_FLOAT_SLACK = 0.5 / 255  # a float image may overshoot [0, 1] by less than half a level (rounding)


def rgb8(image: Any, where: str = "image") -> np.ndarray:
    """A decoded image array -> uint8 [H, W, 3] RGB by :func:`decode_image`'s rules: [H, W] and [H, W, 1] gray
    repeated, [H, W, 4] RGBA without its alpha, uint16 as ``v >> 8`` (how a 16-bit PNG decodes), other integers
    when in [0, 255], float in [0, 1] as ``round(v * 255)``. ValueError naming ``where`` for another shape or
    dtype, an empty image, a float image outside [0, 1] (e.g. one in [0, 255]: divide it by 255) or non-finite
    values."""
    arr = np.asarray(image)
    shape = arr.shape
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{where}: expected an image [H, W] (gray), [H, W, 3] (RGB) or [H, W, 4] (RGBA), got an "
                         f"array of shape {shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{where}: empty image (shape {shape})")
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating) or (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.uint8):
        is_float = np.issubdtype(arr.dtype, np.floating)
        if is_float and not np.isfinite(arr).all():
            raise ValueError(f"{where}: the float image holds NaN or inf")
        lo, hi = float(arr.min()), float(arr.max())
        top = 1.0 if is_float else 255.0
        slack = _FLOAT_SLACK if is_float else 0.0
        if lo < -slack or hi > top + slack:
            hint = " (an image in [0, 255]: divide it by 255, or pass uint8)" if is_float and hi <= 255.0 else ""
            raise ValueError(f"{where}: {'a float' if is_float else f'an {arr.dtype}'} image must be in [0, {top:g}], "
                             f"got values in [{lo:g}, {hi:g}]{hint}")
        arr = np.clip(np.round(arr * 255.0), 0, 255) if is_float else arr
        arr = arr.astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"{where}: expected a uint8, uint16, integer or float image, got dtype {arr.dtype}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def decode_record(record: Record) -> dict[str, Any]:
    """Record -> Example (docs/conventions.md); decodes "image_bytes" if the record has no "image"."""
    ex = {k: v for k, v in record.items() if k != "image_bytes"}
    if "image" not in ex:
        ex["image"] = decode_image(record["image_bytes"], f"image {record.get('image_id', '?')}")
    return ex


def _check_split(split: str) -> tuple[tuple[str, str], ...]:
    if split not in VOC_SPLITS:
        raise ValueError(f"data split: expected one of {sorted(VOC_SPLITS)}, got {split!r}")
    return VOC_SPLITS[split]


# ----------------------------------------------------------------------------------- VOCdevkit
class VocDevkitSource:
    """One VOC image set read from an extracted tree (``devkit_dir``: the VOCdevkit folder, its parent, or
    ``VOC{year}`` itself; see ``voc.voc_year_dir``).

    Uses ``yolojax.data.voc.parse_annotation`` / ``read_image_set``; boxes normalized by the XML's
    ``<size>`` exactly as the TFDS builder does.
    """
    def __init__(self, devkit_dir: str, year: str, image_set: str):
        self.devkit_dir, self.year, self.image_set = str(devkit_dir), str(year), image_set
        self.voc_dir = voc.voc_year_dir(self.devkit_dir, self.year)
        self.ids = list(voc.read_image_set(self.devkit_dir, self.year, image_set))
        # Parsed annotations by index: the XML is tiny but parsing it costs a third of a JPEG decode, every
        # epoch. A few hundred bytes per image (16,551 images: a few MB).
        self._annotations: dict[int, Record] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def image_id(self, index: int) -> str:
        return self.ids[index]

    def _annotation(self, index: int) -> Record:
        rec = self._annotations.get(index)
        if rec is None:
            xml = os.path.join(self.voc_dir, "Annotations", f"{self.ids[index]}.xml")
            ann = voc.parse_annotation(xml)
            rec = clean_boxes({"boxes": voc_boxes_to_normalized(ann["boxes_px"], ann["width"], ann["height"]),
                                "classes": np.asarray(ann["classes"], np.int32).reshape(-1),
                                "difficult": np.asarray(ann["difficult"], bool).reshape(-1),
                                "truncated": np.asarray(ann["truncated"], bool).reshape(-1),
                                "image_id": self.ids[index]}, xml)
            self._annotations[index] = rec  # one dict store: safe with grain's threads
        return rec

    def __getitem__(self, index: int) -> Record:
        rec = self._annotation(index)
        with open(os.path.join(self.voc_dir, "JPEGImages", f"{self.ids[index]}.jpg"), "rb") as f:
            data = f.read()
        # Copies: callers may modify their record's arrays without touching the cache.
        return {"image_bytes": data, **{k: v.copy() if isinstance(v, np.ndarray) else v for k, v in rec.items()}}


def extract_tarballs(tarball_dir: str, extract_dir: str | None = None, years: Sequence[str] = ("2007", "2012")
                     ) -> str:
    """Extracts whichever original VOC tarballs are in ``tarball_dir`` (once); returns the VOCdevkit folder."""
    extract_dir = extract_dir or os.path.join(tarball_dir, "extracted")
    found = False
    for year in years:
        for part, name in VOC_TARBALLS[year].items():
            path = os.path.join(tarball_dir, name)
            done = os.path.join(extract_dir, f".{name}.done")
            if not os.path.exists(path):
                continue
            found = True
            if not os.path.exists(done):
                os.makedirs(extract_dir, exist_ok=True)
                with tarfile.open(path) as tar:
                    tar.extractall(extract_dir, filter="data")
                open(done, "w").close()
    if not found:
        raise FileNotFoundError(f"data.voc_tarballs: no VOC tarball ({VOC_TARBALLS}) in {tarball_dir}")
    return os.path.join(extract_dir, "VOCdevkit")


def make_voc_tarballs(devkit_dir: str, year: str, out_dir: str) -> dict[str, str]:
    """Packs an extracted ``devkit_dir/VOC{year}`` tree into the original tarball layout and names.

    The trainval tarball holds the train/val/trainval image sets and their files; the test one test.txt and
    its files (as the real ones do). Returns {"trainval": path, "test": path} (a part is skipped if its
    image set is missing).
    """
    os.makedirs(out_dir, exist_ok=True)
    root = os.path.dirname(os.path.abspath(devkit_dir))
    rel = os.path.join(os.path.basename(os.path.abspath(devkit_dir)), f"VOC{year}")
    parts = {"trainval": ("train", "val", "trainval"), "test": ("test",)}
    out = {}
    for part, sets in parts.items():
        main = os.path.join(root, rel, "ImageSets", "Main")
        if not all(os.path.exists(os.path.join(main, f"{s}.txt")) for s in sets):
            continue
        ids = sorted({i for s in sets for i in voc.read_image_set(devkit_dir, year, s)})
        out[part] = os.path.join(out_dir, VOC_TARBALLS[year][part])
        with tarfile.open(out[part], "w") as tar:
            for s in sets:
                tar.add(os.path.join(root, rel, "ImageSets", "Main", f"{s}.txt"),
                        arcname=os.path.join("VOCdevkit", f"VOC{year}", "ImageSets", "Main", f"{s}.txt"))
            for i in ids:
                for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "xml")):
                    tar.add(os.path.join(root, rel, sub, f"{i}.{ext}"),
                            arcname=os.path.join("VOCdevkit", f"VOC{year}", sub, f"{i}.{ext}"))
    return out


# ----------------------------------------------------------------------------------------- TFDS
def _stub_voc2012_test(trainval_root: str, work_dir: str) -> str:
    """A one-image VOC2012 "test" part for users without VOC2012test.tar (TFDS refuses empty splits).

    VOC2012 test has no annotations anyway; the stub holds the first trainval image, unannotated. Nothing in
    yolojax reads voc/2012 test.
    """


    first = voc.read_image_set(trainval_root, "2012", "train")[0]
    stub = os.path.join(work_dir, "voc2012_test_stub")
    main = os.path.join(stub, "VOCdevkit", "VOC2012", "ImageSets", "Main")
    images = os.path.join(stub, "VOCdevkit", "VOC2012", "JPEGImages")
    os.makedirs(main, exist_ok=True)
    os.makedirs(images, exist_ok=True)
    with open(os.path.join(main, "test.txt"), "w") as f:
        f.write(f"{first}\n")
    shutil.copy(os.path.join(voc.voc_year_dir(trainval_root, "2012"), "JPEGImages", f"{first}.jpg"), images)
    return stub


@contextlib.contextmanager
def _local_voc_downloads(year: str, tarball_dir: str | None, devkit_dir: str | None):
    """Points the TFDS voc builder's download step at local files for the duration of the context.

    With tarballs, TFDS's own ``extract`` unpacks them; with an extracted tree, the folder holding
    ``VOCdevkit`` is returned as the "extracted" path. A missing 2012 test part (its tarball is rarely kept:
    it has no annotations) becomes a one-image unannotated stub (``_stub_voc2012_test``).
    """
    import tensorflow_datasets as tfds

    def download_and_extract(self, url_or_urls):
        paths = {}
        for key, url in url_or_urls.items():
            name = os.path.basename(url)
            if tarball_dir is not None and os.path.exists(os.path.join(tarball_dir, name)):
                paths[key] = self.extract(os.path.join(tarball_dir, name))
            elif devkit_dir is not None and os.path.exists(os.path.join(
                    devkit_dir, f"VOC{year}", "ImageSets", "Main", f"{'test' if key == 'test' else 'train'}.txt")):
                paths[key] = os.path.dirname(os.path.abspath(devkit_dir))
            elif key == "test" and year == "2012" and "trainval" in paths:
                paths[key] = _stub_voc2012_test(paths["trainval"], str(self._download_dir))
            else:
                raise FileNotFoundError(f"prepare_tfds_voc: no local file for {name} (voc/{year} {key}) in "
                                        f"tarball_dir={tarball_dir!r} or devkit_dir={devkit_dir!r}")
        return paths

    # Resolve trainval before test so the 2012 stub can borrow from it.
    orig = download_and_extract

    def ordered(self, url_or_urls):
        keys = sorted(url_or_urls, key=lambda k: k != "trainval")
        return orig(self, {k: url_or_urls[k] for k in keys})

    download_and_extract = ordered
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract", download_and_extract):
        yield


def prepare_tfds_voc(year: str, data_dir: str, *, tarball_dir: str | None = None, devkit_dir: str | None = None,
                     file_format: str = "array_record") -> None:
    """Prepares TFDS ``voc/{year}`` in ``data_dir`` with the real TFDS builder (needs tensorflow-cpu).

    Args:
      year: "2007" or "2012".
      data_dir: TFDS data_dir to write into.
      tarball_dir: folder with the original tarballs (VOC_TARBALLS names); or
      devkit_dir: an extracted VOCdevkit folder (holding VOC{year}). With neither, TFDS downloads.
      file_format: "array_record" (random access, read by ``tfds.data_source`` without TensorFlow).
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(f"voc/{year}", data_dir=data_dir, file_format=file_format)
    download_dir = os.path.join(data_dir, "downloads")
    if tarball_dir is None and devkit_dir is None:
        builder.download_and_prepare(download_dir=download_dir)
        return
    with _local_voc_downloads(year, tarball_dir, devkit_dir):
        builder.download_and_prepare(download_dir=download_dir)


class TfdsVocSource:
    """One VOC image set from a prepared TFDS ``voc/{year}`` (array_record), via ``tfds.data_source``.

    The image stays encoded (``SkipDecoding``); TFDS's normalized boxes (``x_px / width``: the builder does
    not subtract the 1-based offset) are turned back into XML pixels with the image size from the JPEG
    header and normalized with ``voc_boxes_to_normalized``, so records equal the VOCdevkit ones bit for bit.
    """
    def __init__(self, data_dir: str | None, year: str, image_set: str):
        self.data_dir, self.year, self.image_set = data_dir, str(year), image_set
        self._ds = None
        self._open()

    def _open(self):
        import tensorflow_datasets as tfds

        try:
            self._ds = tfds.data_source(f"voc/{self.year}", split=_TFDS_SPLIT[self.image_set],
                                        data_dir=self.data_dir, download=False,
                                        decoders={"image": tfds.decode.SkipDecoding()})
        except (KeyError, FileNotFoundError, AssertionError) as e:
            raise FileNotFoundError(
                f"TFDS voc/{self.year} ({_TFDS_SPLIT[self.image_set]}) is not prepared in data.tfds_data_dir="
                f"{self.data_dir or '~/tensorflow_datasets'!r}. Prepare it once (needs tensorflow-cpu) with "
                f"yolojax.data.sources.prepare_tfds_voc('{self.year}', DATA_DIR, tarball_dir=... or "
                f"devkit_dir=...), or set data.source='voc_dir' / 'voc_tarballs'. ({e})") from e

    def __getstate__(self):  # the array_record reader holds file handles: reopen in each worker
        return {k: v for k, v in self.__dict__.items() if k != "_ds"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return len(self._ds)

    def image_id(self, index: int) -> str:
        return _str(self._ds[index]["image/filename"]).rsplit(".", 1)[0]

    def __getitem__(self, index: int) -> Record:
        from PIL import Image

        r = self._ds[index]
        data = bytes(r["image"])
        image_id = _str(r["image/filename"]).rsplit(".", 1)[0]
        obj = r["objects"]
        try:
            width, height = Image.open(io.BytesIO(data)).size  # header only
        except Exception:  # corrupt image: keep the boxes as stored; decoding will skip it
            width = height = 1
        # Undo TFDS's normalization exactly: float32(v) * size is within 1e-4 px of the XML value, and VOC
        # coordinates have at most a few decimals, so rounding to 1e-3 px recovers it.
        bbox_px = np.round(np.asarray(obj["bbox"], np.float64).reshape(-1, 4)[:, [1, 0, 3, 2]]
                           * [width, height, width, height], 3)
        rec = {"image_bytes": data, "boxes": voc_boxes_to_normalized(bbox_px, width, height),
               "classes": np.asarray(obj["label"], np.int32).reshape(-1),
               "difficult": np.asarray(obj["is_difficult"], bool).reshape(-1),
               "truncated": np.asarray(obj["is_truncated"], bool).reshape(-1),
               "image_id": image_id}
        return clean_boxes(rec, f"tfds voc/{self.year} {image_id}")


def _str(x) -> str:
    return x.decode() if isinstance(x, (bytes, np.bytes_)) else str(x)


# ------------------------------------------------------------------------------------- combining
class ConcatSource:
    """Random-access concatenation of sources (e.g. VOC2007 trainval + VOC2012 trainval)."""

    def __init__(self, sources: Sequence[Any]):
        self.sources = list(sources)
        self._starts = np.cumsum([0] + [len(s) for s in self.sources]).tolist()

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside [0, {len(self)})")
        k = bisect.bisect_right(self._starts, index) - 1
        return self.sources[k], index - self._starts[k]

    def image_id(self, index: int) -> str:
        src, i = self._locate(index)
        return src.image_id(i)

    def __getitem__(self, index: int) -> Record:
        src, i = self._locate(index)
        return src[i]


def _check_format(data_cfg: Mapping[str, Any]) -> bool:
    """True for a dataset of files (``source="files"``, ``format`` voc/yolo/coco); errors on a mismatch."""
    fmt = data_cfg.get("format", "")
    if data_cfg["source"] == "files":
        if not fmt:
            raise DatasetError("data.source='files' needs data.format: 'voc', 'yolo' or 'coco'")
        return True
    if fmt:
        raise DatasetError(f"data.format={fmt!r} reads the files under data.root: set data.source='files' "
                           f"(got data.source={data_cfg['source']!r})")
    return False


def class_names(data_cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """Class names of the configured dataset, in class-index order: VOC_CLASSES for the VOC sources, the
    synthetic descriptions, or those of a dataset of files (``formats.dataset_class_names``)."""
    if _check_format(data_cfg):
        return formats.dataset_class_names(data_cfg)
    if data_cfg["source"] == "synthetic":
        return synthetic.class_names(data_cfg["synthetic"]["num_classes"])
    return VOC_CLASSES


def num_classes(data_cfg: Mapping[str, Any]) -> int:
    """Number of classes of the configured dataset."""
    return len(class_names(data_cfg))


def box_shapes(data_cfg: Mapping[str, Any], split: str, *, include_difficult: bool = False) -> np.ndarray:
    """Normalized (w, h) float64 ``[N, 2]`` of the objects of ``split``, from the cleaned records training
    reads (for anchors: ``anchors.kmeans_anchors``, ``anchors.anchor_fit_warning``). Difficult objects are left
    out unless ``include_difficult`` (training drops them when ``data.drop_difficult``). Datasets of files are
    read without their images; the VOC sources read each record (images stay encoded)."""
    src = make_source(data_cfg, split)
    get = getattr(src, "annotation", src.__getitem__)
    chunks = [np.zeros((0, 2))]
    for i in range(len(src)):
        r = get(i)
        b = np.asarray(r["boxes"], np.float64).reshape(-1, 4)
        if not include_difficult:
            b = b[~np.asarray(r["difficult"], bool)]
        wh = b[:, 2:] - b[:, :2]
        chunks.append(wh[(wh > 0).all(1)])
    return np.concatenate(chunks)


def make_source(data_cfg: Mapping[str, Any], split: str):
    """The source for ``split`` of the configured dataset (see the module docstring for ``data_cfg.source``)."""
    kind = data_cfg["source"]
    if _check_format(data_cfg):
        return formats.dataset_source(data_cfg, split)
    if kind == "synthetic":
        return synthetic.SyntheticSource(data_cfg["synthetic"], split)
    parts = _check_split(split)
    if kind == "tfds":
        return ConcatSource([TfdsVocSource(data_cfg["tfds_data_dir"] or None, y, s) for y, s in parts])
    if kind == "voc_dir":
        devkit = data_cfg["voc_dir"]
    elif kind == "voc_tarballs":
        devkit = extract_tarballs(data_cfg["voc_tarballs"], data_cfg["extract_dir"] or None)
    else:
        raise ValueError(f"data.source: expected 'tfds', 'voc_dir', 'voc_tarballs', 'synthetic' or 'files', "
                         f"got {kind!r}")
    if not devkit:
        raise ValueError(f"data.source={kind!r} needs data.{kind} to be set")
    return ConcatSource([VocDevkitSource(devkit, y, s) for y, s in parts])
