"""A dataset check before step 1: every annotation parsed, every listed image found and its header read, all
problems reported at once (docs/data_check.md).

``check_dataset(data_cfg, split)`` -> ``DataReport``: one line per file and kind of problem,
``"<file>[:line]: <problem>"``, grouped by kind. Fatal kinds (``FATAL_KINDS``) stop training; fixable ones
(``FIXABLE_KINDS``) are what the readers already repair (clip, drop, keep as an image without objects) and are
only counted. The readers' own functions parse each file (``voc.parse_annotation``,
``formats.parse_yolo_label``, the ``formats.coco_*`` entry checks, ``formats.box_fixes``,
``pipeline.encoded_image_size``); their DatasetError / ValueError is caught per file instead of stopping at the
first. A split whose layout cannot be resolved at all (no such split, a list file that is not there) still
raises the readers' one-line DatasetError.

Cache: a report is stored in ``cache_dir`` under a hash of (source, format, root, split, class names); it is
reused only while every file it depends on (list files, annotations, images, the folders listed) has the same
size and ``mtime_ns``, so a rerun on unchanged files costs one ``stat()`` per file.

``require_clean(data_cfg, splits)`` prints the reports and raises a one-line ``DataCheckError`` if any is fatal.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from absl import logging

from yolojax.config.classes import VOC_CLASSES
from yolojax.data import formats, pipeline, sources, voc
from yolojax.data.formats import DatasetError

FATAL_KINDS = ("malformed annotation", "unknown class", "inverted box", "missing size", "missing annotation",
               "missing image", "unreadable image", "size mismatch", "duplicate image", "no images",
               "no usable boxes")
FIXABLE_KINDS = ("box clipped", "zero-area box dropped", "no objects", "duplicate box", "too many objects")
KINDS = FATAL_KINDS + FIXABLE_KINDS
CACHE_VERSION = 2
HEADER_BYTES = 1 << 18  # read at most this much of an image for its header (EXIF may take 64 KiB)


class DataCheckError(ValueError):
    """A dataset with fatal problems; the message is one line naming the first bad file."""


@dataclasses.dataclass
class DataReport:
    """The problems of one split.

    Attributes:
      split: the split name.
      source: what was checked, e.g. "voc /data/mine" or "tfds (nothing on disk to check)".
      num_images: images listed in the split (0 when nothing was checked).
      num_boxes: the usable boxes of the split (after clipping and dropping those without area).
      problems: kind -> ["<file>[:line]: <problem>", ...], one line per file, in list order.
      files: kind -> the file each line names (same order), to count the bad files.
      note: set when there is nothing on disk to check (tfds, synthetic).
      cached: True when the report came from the cache.
    """

    split: str
    source: str
    num_images: int = 0
    num_boxes: int = 0
    problems: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    files: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    note: str = ""
    cached: bool = False

    def add(self, kind: str, file: str, line: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.problems.setdefault(kind, []).append(line)
        self.files.setdefault(kind, []).append(file)

    @property
    def counts(self) -> dict[str, int]:
        """Number of lines (files) per kind, for the kinds that occur, in ``KINDS`` order."""
        return {k: len(self.problems[k]) for k in KINDS if self.problems.get(k)}

    @property
    def fatal(self) -> bool:
        return any(self.problems.get(k) for k in FATAL_KINDS)

    def fatal_lines(self) -> list[str]:
        return [line for k in FATAL_KINDS for line in self.problems.get(k, ())]

    def summary(self, max_lines: int | None = 5, *, all_fatal: bool = False) -> str:
        """A few lines: the split, the counts per kind and the first ``max_lines`` lines of each kind (None: all;
        ``all_fatal``: every line of the fatal kinds)."""
        head = f"data check: split {self.split!r} ({self.source})"
        if self.note:
            return f"{head}: {self.note}"
        counts = self.counts
        fatal = sum(n for k, n in counts.items() if k in FATAL_KINDS)
        state = f"{fatal} fatal problem(s)" if fatal else "no fatal problem"
        out = [f"{head}: {self.num_images} images, {state}"
               + (", " + ", ".join(f"{n} {k}" for k, n in counts.items()) if counts else "")
               + (" [cached]" if self.cached else "")]
        for kind, n in counts.items():
            out.append(f"  {kind} ({'fatal' if kind in FATAL_KINDS else 'fixable'}): {n} file(s)")
            every = max_lines is None or (all_fatal and kind in FATAL_KINDS)
            lines = self.problems[kind] if every else self.problems[kind][:max_lines]
            out += [f"    {line}" for line in lines]
            if len(lines) < n:
                out.append(f"    ... {n - len(lines)} more (experiments/check_data.py lists them all)")
        return "\n".join(out)

    def full_report(self) -> str:
        """Every line of every kind."""
        return self.summary(max_lines=None)

    def error_message(self) -> str:
        """One line: the number of fatal problems and bad files, and the first bad file's line."""
        lines = self.fatal_lines()
        if not lines:
            return f"data check: split {self.split!r}: no fatal problem"
        files = {f for k in FATAL_KINDS for f in self.files.get(k, ())}
        return (f"data check: {len(lines)} problem(s) in {len(files)} file(s) of split {self.split!r}, first: "
                f"{' '.join(lines[0].split())}; run experiments/check_data.py for the full report")

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "cached"}

    @classmethod
    def from_json(cls, d: Mapping) -> "DataReport":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


# ------------------------------------------------------------------------------------------ per file
def _voc_kind(message: str) -> str:
    """The kind of a ``voc.parse_annotation`` error, from its message."""
    if "missing field <size>" in message or ": <size>:" in message:
        return "missing size"
    if "is not a known class" in message:
        return "unknown class"
    if "xmax < xmin" in message:
        return "inverted box"
    return "malformed annotation"


def _yolo_kind(message: str) -> str:
    return "unknown class" if "out of range" in message else "malformed annotation"


@dataclasses.dataclass(frozen=True)
class _Limits:
    """What training does with the objects of the split being checked: keeps the first ``max_boxes`` of an
    image (None: not the training split, nothing dropped), after dropping difficult ones (``drop_difficult``)."""

    max_boxes: int | None = None
    drop_difficult: bool = True


def _check_boxes(report: DataReport, where: str, boxes: Any, classes: Any, limits: _Limits,
                 difficult: Any = None) -> None:
    """The fixable problems of one image's normalized xyxy boxes [N, 4] / classes [N] (``formats.box_fixes``),
    and the objects beyond ``max_boxes`` that training drops."""
    clipped, n_clipped, keep = formats.box_fixes(boxes)
    classes = np.asarray(classes).reshape(-1)
    if n_clipped:
        report.add("box clipped", where, f"{where}: {n_clipped} box(es) outside the image, clipped to it")
    if not keep.all():
        report.add("zero-area box dropped", where, f"{where}: {int((~keep).sum())} box(es) without area "
                   "(after clipping), dropped")
    kept = np.concatenate([classes[keep, None].astype(np.float64), clipped[keep].astype(np.float64)], 1)
    report.num_boxes += len(kept)
    if not len(kept):
        report.add("no objects", where, f"{where}: no objects")
        return
    n_dup = len(kept) - len(np.unique(kept, axis=0))
    if n_dup:
        report.add("duplicate box", where, f"{where}: {n_dup} duplicate box(es) (same class and coordinates)")
    hard = np.zeros(len(keep), bool) if difficult is None else np.asarray(difficult, bool).reshape(-1)
    trained = int((keep & ~hard).sum()) if limits.drop_difficult else len(kept)
    if limits.max_boxes is not None and trained > limits.max_boxes:
        report.add("too many objects", where, f"{where}: {trained} objects, training keeps the first "
                   f"data.max_boxes={limits.max_boxes} and drops {trained - limits.max_boxes} (evaluation counts "
                   "them all)")


def _check_size(report: DataReport, where: str, annotated: tuple[float, float],
                actual: tuple[int, int] | None) -> None:
    """A "size mismatch" when the annotation's image size (which normalizes its boxes) is not the image's."""
    if actual is not None and (float(annotated[0]), float(annotated[1])) != (float(actual[0]), float(actual[1])):
        report.add("size mismatch", where, f"{where}: annotated size {annotated[0]:g}x{annotated[1]:g} (width x "
                   f"height) but the image is {actual[0]}x{actual[1]}: the boxes would land in the wrong place")


def _check_ids(report: DataReport, image_ids: Sequence[str], image_paths: Sequence[str], where: str) -> None:
    """A "duplicate image" for each image id the split lists again (``formats.repeated_ids``)."""
    for image_id, first, again in formats.repeated_ids(image_ids, image_paths):
        report.add("duplicate image", again, f"{where}: image id {image_id!r} listed twice ({first} and {again})")


def _check_image(report: DataReport, path: str, where: str, deps: "_Deps") -> tuple[int, int] | None:
    """Fatal problems of one listed image: missing, or a header that does not decode (no full decode). Returns
    its (width, height) as decoded, or None."""

    if not deps.isfile(path):
        report.add("missing image", path, f"{path}: listed image not found ({where})")
        return None
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        try:
            return pipeline.encoded_image_size(head, path)
        except sources.CorruptImageError as e:
            rest = f.read()  # a header longer than HEADER_BYTES (large EXIF / ICC): try the whole file
            if not rest:
                report.add("unreadable image", path, str(e))
                return None
            try:
                return pipeline.encoded_image_size(head + rest, path)
            except sources.CorruptImageError as e2:
                report.add("unreadable image", path, str(e2))
                return None


class _Deps:
    """The files and folders a report depends on, with their (size, mtime_ns), or None when absent."""

    def __init__(self):
        self.stats: dict[str, list[int] | None] = {}

    def stat(self, path: str) -> list[int] | None:
        try:
            st = os.stat(path)
            out = [st.st_size, st.st_mtime_ns]
        except OSError:
            out = None
        self.stats[os.path.abspath(path)] = out
        return out

    def isfile(self, path: str) -> bool:
        return self.stat(path) is not None and os.path.isfile(path)

    def tree(self, folder: str) -> None:
        """Every folder under ``folder`` (an added or removed file changes its folder's mtime)."""
        for d, _, _ in os.walk(folder):
            if os.path.basename(d) != ".yolojax_check":
                self.stat(d)


# ------------------------------------------------------------------------------------------ formats
def _check_voc_items(report: DataReport, items: Iterable[tuple[str, str, str]], class_names, deps: _Deps,
                     legacy: bool, limits: _Limits) -> None:
    """VOC annotations [(xml, image id, where listed)]: parsed with ``voc.parse_annotation``."""
    items = list(items)
    _check_ids(report, [image_id for _, image_id, _ in items], [where for _, _, where in items], "VOC image set")
    for xml, image_id, where in items:
        report.num_images += 1
        if not deps.isfile(xml):
            report.add("missing annotation", xml, f"{xml}: annotation not found ({where})")
            continue
        try:
            ann = voc.parse_annotation(xml, class_names)
        except ValueError as e:
            report.add(_voc_kind(str(e)), xml, str(e))
            continue
        if legacy:  # VocDevkitSource reads JPEGImages/<id>.jpg
            image = os.path.join(os.path.dirname(os.path.dirname(xml)), "JPEGImages", f"{image_id}.jpg")
        else:
            candidates = formats.voc_image_candidates(xml, image_id, ann["filename"])
            image = next((c for c in candidates if deps.isfile(c)), candidates[1])
        size = _check_image(report, image, xml, deps)
        _check_size(report, xml, (ann["width"], ann["height"]), size)
        _check_boxes(report, xml, formats.voc_boxes_to_normalized(ann["boxes_px"], ann["width"], ann["height"]),
                     ann["classes"], limits, ann["difficult"])


def _legacy_voc_items(devkit: str, split: str, deps: _Deps) -> list[tuple[str, str, str]]:
    items = []
    for year, image_set in sources._check_split(split):
        voc_dir = voc.voc_year_dir(devkit, year)
        list_path = os.path.join(voc_dir, "ImageSets", "Main", f"{image_set}.txt")
        deps.stat(list_path)
        deps.tree(voc_dir)
        ids = voc.read_image_set(devkit, year, image_set)
        items += [(os.path.join(voc_dir, "Annotations", f"{i}.xml"), i, list_path) for i in ids]
    return items


def _voc_format_items(root: str, split: str, deps: _Deps) -> list[tuple[str, str, str]]:
    for voc_dir, image_set in formats.voc_split_dirs(root, split):
        deps.stat(os.path.join(voc_dir, "ImageSets", "Main", f"{image_set}.txt"))
        deps.tree(voc_dir)
    return formats._voc_items(root, split)


def _check_yolo(report: DataReport, root: str, split: str, num_classes: int | None, deps: _Deps,
                limits: _Limits) -> None:
    entries, _ = formats._yolo_split_spec(root, split)
    for path, where in entries:
        if ":" in where and os.path.isfile(where.rsplit(":", 1)[0]):
            deps.stat(where.rsplit(":", 1)[0])  # the image list file
    paths = [image for image, _ in entries]
    _check_ids(report, formats._unique_ids(paths), paths, f"YOLO split {split!r}")
    for image, where in entries:
        report.num_images += 1
        _check_image(report, image, where, deps)
        label = formats.yolo_label_path(image)
        if label is None:
            report.add("no objects", image, f"{image}: no label file (an image without objects)")
            continue
        deps.stat(label)
        try:
            boxes, classes = formats.parse_yolo_label(label, num_classes)
        except (DatasetError, ValueError) as e:
            report.add(_yolo_kind(str(e)), label, str(e))
            continue
        _check_boxes(report, label, boxes, classes, limits)


def _check_coco(report: DataReport, root: str, split: str, class_names: Sequence[str], deps: _Deps,
                limits: _Limits) -> None:
    path, folders = formats.coco_paths(root, split)
    deps.stat(path)
    for d in folders:
        deps.stat(d)
    try:
        data = formats._load_coco(path)
    except DatasetError as e:
        report.add("malformed annotation", path, str(e))
        return
    categories, problems = formats.coco_categories(path, data, None if class_names is None else
                                                   {n: i for i, n in enumerate(class_names)})
    images, image_problems = formats.coco_images(path, data)
    for kind, entry, error in problems + image_problems:
        report.add(kind, entry, str(error))
    # Categories that failed above count once there, not again for each of their objects.
    cat_ids = {c.get("id") for c in data["categories"]}
    cat_class = {cid: i for i, cid in enumerate(categories)}
    objects: dict = {iid: [] for iid in images}
    for k, a in enumerate(data["annotations"]):
        entry = f"{path}: annotations[{k}]"
        try:
            bbox = formats.coco_object(path, k, a, images, {i: None for i in cat_ids})
        except DatasetError as e:
            if a.get("image_id") not in images and any(a.get("image_id") == formats._coco_id(im)
                                                       for im in data["images"]):
                continue  # an image already reported above (a bad entry): not again for each of its objects
            report.add("unknown class" if "category_id" in str(e) else "malformed annotation", entry, str(e))
            continue
        if a["category_id"] in cat_class:
            objects[a["image_id"]].append((bbox, cat_class[a["category_id"]], bool(a.get("iscrowd", 0))))
    folder = formats.coco_image_folder(images, folders)
    for k, (iid, (file_name, w, h)) in enumerate(images.items()):
        report.num_images += 1
        image = os.path.join(folder, file_name)
        size = _check_image(report, image, f"{path}: images[{k}]", deps)
        _check_size(report, f"{path}: {file_name}", (w, h), size)
        objs = objects[iid]
        _check_boxes(report, f"{path}: {file_name}", formats.coco_xyxy([o[0] for o in objs], w, h),
                     [o[1] for o in objs], limits, [o[2] for o in objs])
    _check_ids(report, list(images), [os.path.join(folder, f) for f, _, _ in images.values()], path)


def _check_split(report: DataReport, root: str) -> None:
    """What makes a whole split useless: it lists no image, or none of its images has a usable box (YOLO labels
    written in pixels, a missing labels/ folder, empty label files): training would learn nothing and
    evaluation would score NaN."""
    what = f"split {report.split!r} ({report.source})"
    if not report.num_images:
        report.add("no images", root, f"{what}: lists no images")
    elif not report.num_boxes and not report.fatal:
        hint = ", ".join(f"{n} {k}" for k, n in report.counts.items()) or "no annotations"
        report.add("no usable boxes", root, f"{what}: none of its {report.num_images} images has a usable box "
                   f"({hint}); YOLO labels must be normalized to [0, 1]")


# ------------------------------------------------------------------------------------------ entry points
def _identity(data_cfg: Mapping[str, Any], split: str) -> tuple[str, str, tuple[str, ...] | None]:
    """(kind, root folder, names) of the configured dataset: kind "files:<fmt>", "voc_dir", "voc_tarballs",
    "tfds" or "synthetic"; names None where any name is accepted (discovered from the annotations)."""
    kind = data_cfg["source"]
    if sources._check_format(data_cfg):
        fmt, root = data_cfg["format"], data_cfg["root"]
        given = bool(data_cfg.get("class_names")) or bool(data_cfg.get("names_file"))
        if fmt == "voc" and not given:
            names = None  # discovered from the annotations: every name is a class
        elif fmt == "yolo" and not given and not _yolo_has_names(root, split):
            names = None  # class_0..class_{max index}: every index is a class
        else:
            names = tuple(formats.dataset_class_names(data_cfg))
        return f"files:{fmt}", root, names
    if kind == "voc_dir":
        return kind, data_cfg["voc_dir"], VOC_CLASSES
    if kind == "voc_tarballs":
        return kind, data_cfg["voc_tarballs"], VOC_CLASSES
    if kind in ("tfds", "synthetic"):
        return kind, "", None
    raise ValueError(f"data.source: expected 'tfds', 'voc_dir', 'voc_tarballs', 'synthetic' or 'files', got "
                     f"{kind!r}")


def _yolo_has_names(root: str, split: str) -> bool:
    meta = formats.yolo_meta(root, split)
    return meta["names"] is not None or meta["nc"] is not None


def _default_cache_dir(root: str) -> str:
    folder = root if os.path.isdir(root) else os.path.dirname(os.path.abspath(root))
    mine = os.path.join(folder, ".yolojax_check")
    try:
        os.makedirs(mine, exist_ok=True)
        if os.access(mine, os.W_OK):
            return mine
    except OSError:
        pass
    return os.path.join(os.path.expanduser("~"), ".cache", "yolojax", "check")


def _cache_valid(entry: Mapping) -> bool:
    for path, stat in entry["deps"].items():
        try:
            st = os.stat(path)
            now = [st.st_size, st.st_mtime_ns]
        except OSError:
            now = None
        if now != stat:
            return False
    return True


def check_dataset(data_cfg: Mapping[str, Any], split: str, *, cache_dir: str | None = None,
                  use_cache: bool = True) -> DataReport:
    """Checks every annotation and listed image of ``split`` of the configured dataset (module docstring).

    Args:
      data_cfg: ``config.data``.
      split: a split name of that dataset.
      cache_dir: where reports are cached (default ``<root>/.yolojax_check/``, or ``~/.cache/yolojax/check/``
        when the root is not writable).
      use_cache: False checks again and does not read the cache (the new report is still stored).
    Returns:
      The DataReport (``cached`` True when reused).
    """
    kind, root, names = _identity(data_cfg, split)
    if kind in ("tfds", "synthetic"):
        what = "prepared by the TFDS builder" if kind == "tfds" else "generated on the fly"
        return DataReport(split, kind, note=f"nothing on disk to check ({what})")
    if not root:
        raise DatasetError(f"data.{'root' if kind.startswith('files') else kind} is empty: nothing to check")
    training = split == data_cfg.get("train_split")
    limits = _Limits(int(data_cfg.get("max_boxes", 64)) if training else None,
                     bool(data_cfg.get("drop_difficult", True)))
    key = hashlib.sha256(json.dumps([CACHE_VERSION, kind, os.path.abspath(root), os.getcwd(), split,
                                     None if names is None else list(names), dataclasses.astuple(limits)]
                                    ).encode()).hexdigest()[:32]
    cache_dir = cache_dir or _default_cache_dir(root)
    cache_file = os.path.join(cache_dir, f"{key}.json")
    if use_cache and os.path.isfile(cache_file):
        try:
            with open(cache_file, encoding="utf-8") as f:
                entry = json.load(f)
            if _cache_valid(entry):
                return dataclasses.replace(DataReport.from_json(entry["report"]), cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable cache: check again
    deps = _Deps()
    report = DataReport(split, f"{kind.removeprefix('files:')} {root}")
    if kind == "files:voc":
        _check_voc_items(report, _voc_format_items(root, split, deps), names, deps, legacy=False, limits=limits)
    elif kind == "files:yolo":
        deps.stat(root)
        deps.tree(root if os.path.isdir(root) else os.path.dirname(os.path.abspath(root)))
        _check_yolo(report, root, split, None if names is None else len(names), deps, limits)
    elif kind == "files:coco":
        deps.tree(root)
        _check_coco(report, root, split, names, deps, limits)
    else:
        devkit = root if kind == "voc_dir" else sources.extract_tarballs(root, data_cfg["extract_dir"] or None)
        _check_voc_items(report, _legacy_voc_items(devkit, split, deps), names, deps, legacy=True, limits=limits)
    _check_split(report, root)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"deps": deps.stats, "report": report.to_json()}, f)
        os.replace(tmp, cache_file)  # never a half-written cache file
    except OSError:
        pass  # a cache we cannot write only costs the next run its time
    return report


def require_clean(data_cfg: Mapping[str, Any], splits: Sequence[str], *, cache_dir: str | None = None
                  ) -> list[DataReport]:
    """Checks ``splits`` (empty names and repeats skipped); logs each report's summary (absl, INFO), all the
    fatal lines included, and raises DataCheckError (one line: the first bad file) if any is fatal.

    Does nothing (returns []) when ``data_cfg.check`` is False.
    """
    if not data_cfg.get("check", True):
        return []
    reports = [check_dataset(data_cfg, s, cache_dir=cache_dir) for s in dict.fromkeys(s for s in splits if s)]
    for r in reports:
        logging.info("%s", r.summary(max_lines=3, all_fatal=True))
        # the sources and sources.box_shapes meet the same files again: their warnings are these lines
        formats.mark_warned(line for k in FIXABLE_KINDS for line in r.problems.get(k, ()))
    bad = [r for r in reports if r.fatal]
    if bad:
        raise DataCheckError(bad[0].error_message() if len(bad) == 1 else
                             f"{bad[0].error_message()} (and fatal problems in split(s) "
                             f"{', '.join(repr(r.split) for r in bad[1:])})")
    return reports
