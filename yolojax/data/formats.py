"""Your own dataset on disk: PASCAL VOC XML (any class names), YOLO txt (darknet / ultralytics), COCO JSON.

Each reader gives the records of ``yolojax.data.sources`` (see its module docstring): "image_bytes" (the file,
still encoded), "boxes" float32 [N, 4] normalized xyxy, "classes" int32 [N], "difficult" bool [N],
"truncated" bool [N], "image_id" str. The data pipeline, the evaluation and the anchors use them unchanged.

Coordinates (docs/data_formats.md has the worked example). Normalized xyxy is *continuous* image coordinates
divided by the image size: the left edge of the image is x = 0, its right edge x = width.
  * VOC XML stores 1-based pixel indices, inclusive: ``x_norm = (x_xml - 1) / width`` for all four
    coordinates (darknet's ``voc_label.py``; ``yolojax.ops.boxes.voc_px_to_normalized``).
  * YOLO txt stores ``class cx cy w h`` already normalized: ``x_min = cx - w / 2``, ``x_max = cx + w / 2``.
  * COCO stores ``bbox [x, y, w, h]`` in continuous pixels: ``x_min = x / width``, ``x_max = (x + w) / width``.
So a VOC box (xmin, ymin, xmax, ymax) is the COCO box [xmin - 1, ymin - 1, xmax - xmin, ymax - ymin] and the
YOLO line ``c (xmin + xmax - 2) / 2W (ymin + ymax - 2) / 2H (xmax - xmin) / W (ymax - ymin) / H``: the three
files written by ``yolojax.data.synthetic`` from one dataset give the same examples.

Bad input: boxes reaching outside the image are clipped to it and boxes left with no area dropped, with a
count per file (``DATA_WARNINGS``); an image without a YOLO label file is an image without objects (one
warning with the count). A class index out of range, a malformed label line, a listed image that does not
exist, an unknown class name, an image listed twice (or two COCO images with one id), or a text file that is not
UTF-8 is a ``DatasetError`` (a ValueError) whose one-line message names the file and line (or the JSON entry).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml
from absl import logging

from yolojax.config import files as config_files
from yolojax.data import voc
from yolojax.ops import boxes as box_lib

Record = dict[str, Any]
FORMATS = ("voc", "yolo", "coco")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # matched case-insensitively

DATA_WARNINGS: dict[str, int] = {}  # counts per warning kind, in this process


class DatasetError(ValueError):
    """A problem in a dataset's files; the message is one line naming the file and line (or field)."""


_WARNED: set[str] = set()  # the messages already shown in this process (by warn_count or the data check)


def mark_warned(messages) -> None:
    """Records ``messages`` as shown (the data check prints its own lines), so :func:`warn_count` stays quiet
    about them: one warning per file, however many readers (check, source, ``sources.box_shapes``) meet it."""
    _WARNED.update(messages)


def warn_count(key: str, message: str, *, every: int = 100, count: int = 1) -> None:
    """Adds ``count`` to ``DATA_WARNINGS[key]`` and logs the message the first 10 times, then every ``every``-th;
    a message already shown in this process (the same file met again) is counted but not shown again."""
    before = DATA_WARNINGS.get(key, 0)
    DATA_WARNINGS[key] = n = before + count
    if message in _WARNED:
        return
    _WARNED.add(message)
    if before < 10 or n // every > before // every:
        logging.warning("%s [%s: %d so far in this process]", message, key, n)


def voc_boxes_to_normalized(boxes_px: np.ndarray, width: float, height: float) -> np.ndarray:
    """VOC 1-based pixel xyxy [N, 4] -> float32 normalized xyxy, the one conversion all VOC sources share.

    Computed in float64 and rounded once to float32, so every source gives bit-identical boxes.
    """
    return box_lib.voc_px_to_normalized(np.asarray(boxes_px, np.float64).reshape(-1, 4), float(width),
                                        float(height)).astype(np.float32)


def box_fixes(boxes: Any) -> tuple[np.ndarray, int, np.ndarray]:
    """What ``clean_boxes`` does to normalized xyxy boxes [N, 4], without warning: (boxes clipped to [0, 1]
    float32 [N, 4] (non-finite ones zeroed), number of finite boxes the clipping changed, keep bool [N]: the
    boxes left with area). ``yolojax.data.check`` counts the same fixes."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    finite = np.isfinite(b).all(1)
    clipped = np.clip(np.where(finite[:, None], b, 0.0), 0.0, 1.0).astype(np.float32)
    n_clipped = int((finite & (clipped != b).any(1)).sum())
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]) & finite
    return clipped, n_clipped, keep


def clean_boxes(record: Record, where: str) -> Record:
    """Clips normalized boxes to [0, 1] and drops the ones left without area (or not finite).

    One warning per record that needed it, with the counts, naming ``where`` (the annotation file).
    """
    clipped, n_clipped, keep = box_fixes(record["boxes"])
    if n_clipped:
        warn_count("box_outside_image", f"{where}: {n_clipped} box(es) outside the image, clipped to it",
                   count=n_clipped)
    out = dict(record, boxes=clipped)
    if not keep.all():
        n = int((~keep).sum())
        warn_count("empty_box", f"{where}: {n} box(es) without area (after clipping), dropped", count=n)
        for k in ("boxes", "classes", "difficult", "truncated"):
            out[k] = np.asarray(out[k])[keep]
    return out


# ------------------------------------------------------------------------------------------- helpers
def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def read_names_file(path: str) -> tuple[str, ...]:
    """A darknet ``.names`` file: one class name per line (surrounding blanks stripped, blank lines skipped)."""
    if not os.path.isfile(path):
        raise DatasetError(f"class names file not found: {path}")
    names = tuple(line.strip() for line in _read_text(path).splitlines() if line.strip())
    if not names:
        raise DatasetError(f"{path}: no class names in the file")
    return _check_unique(names, path)


def _read_text(path: str) -> str:
    """A text file of the dataset (``config_files.read_text``): a DatasetError naming the file if not UTF-8."""
    return config_files.read_text(path, DatasetError)


def _check_unique(names: Sequence[str], where: str) -> tuple[str, ...]:
    seen = set()
    for n in names:
        if n in seen:
            raise DatasetError(f"{where}: class name {n!r} given twice")
        seen.add(n)
    return tuple(names)


def save_class_names(workdir: str, names: Sequence[str]) -> str:
    """Writes ``names`` as ``<workdir>/class_names.names`` (darknet .names: one per line); returns the path.

    Set ``config.data.names_file`` to that file to keep the same class order on another machine or dataset.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "class_names.names")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(f"{n}\n" for n in names))
    os.replace(tmp, path)  # never a half-written file
    logging.info("data: %d class names saved to %s", len(names), path)
    return path


def _read_list_file(path: str) -> list[tuple[str, str]]:
    """Image list file (one path per line, darknet ``train.txt``) -> [(resolved path, "file:line")].

    Relative paths are taken from the list file's folder when they exist there, else from the current
    directory (darknet resolves them from where it runs).
    """
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        resolved = entry if os.path.isabs(entry) else os.path.normpath(os.path.join(base, entry))
        if not os.path.isabs(entry) and not os.path.exists(resolved) and os.path.exists(entry):
            resolved = os.path.abspath(entry)
        out.append((resolved, f"{path}:{line_no}"))
    return out


def _images_in_dir(path: str) -> list[tuple[str, str]]:
    """Every JPEG/PNG under ``path`` (recursively), sorted."""
    found = sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                   if os.path.isfile(p) and _is_image(p))
    return [(p, p) for p in found]


def _check_exists(images: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    images = list(images)
    for path, where in images:
        if not os.path.isfile(path):
            raise DatasetError(f"{where}: listed image not found: {path}")
    return images


def _unique_ids(paths: Sequence[str]) -> list[str]:
    """Image ids: the file names without extension, or the paths below the common folder where they repeat."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    common = os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else ""
    return [os.path.splitext(os.path.relpath(os.path.abspath(p), common))[0].replace(os.sep, "/") for p in paths]


def repeated_ids(image_ids: Sequence[str], image_paths: Sequence[str]) -> list[tuple[str, str, str]]:
    """(id, first image, repeated image) for each image id of a split that an earlier image already has: a split
    lists one image twice (training would weigh it double and evaluation would merge the two)."""
    first: dict[str, str] = {}
    out = []
    for i, p in zip(image_ids, image_paths):
        if i in first:
            out.append((i, first[i], p))
        else:
            first[i] = p
    return out


class FileSource:
    """Random-access records of a dataset on disk: annotations parsed up front, images read per access.

    Args:
      image_paths: [N] image files.
      annotations: [N] dicts of "boxes" float32 [M, 4] normalized xyxy, "classes" int32 [M], "difficult",
        "truncated" bool [M] (already cleaned with ``clean_boxes``).
      image_ids: [N] unique ids.
    """

    def __init__(self, image_paths: Sequence[str], annotations: Sequence[Record], image_ids: Sequence[str]):
        for i, first, again in repeated_ids(image_ids, image_paths)[:1]:
            raise DatasetError(f"image id {i!r} appears twice in the split: {first} and {again}")
        self.image_paths, self.annotations, self.ids = list(image_paths), list(annotations), list(image_ids)

    def __len__(self) -> int:
        return len(self.ids)

    def image_id(self, index: int) -> str:
        return self.ids[index]

    def annotation(self, index: int) -> Record:
        """Record ``index`` without "image_bytes" (no file read): for statistics over the boxes."""
        return {**{k: v.copy() for k, v in self.annotations[index].items()}, "image_id": self.ids[index]}

    def __getitem__(self, index: int) -> Record:
        with open(self.image_paths[index], "rb") as f:
            data = f.read()
        ann = self.annotations[index]
        # Copies: callers may modify their record's arrays without touching the parsed annotations.
        return {"image_bytes": data, **{k: v.copy() for k, v in ann.items()}, "image_id": self.ids[index]}


def _annotation(boxes: Any, classes: Any, difficult: Any = None, truncated: Any = None) -> Record:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4).astype(np.float32)
    n = len(boxes)
    return {"boxes": boxes, "classes": np.asarray(classes, np.int32).reshape(n),
            "difficult": np.zeros(n, bool) if difficult is None else np.asarray(difficult, bool).reshape(n),
            "truncated": np.zeros(n, bool) if truncated is None else np.asarray(truncated, bool).reshape(n)}


# ------------------------------------------------------------------------------------------------ VOC
def voc_split_dirs(root: str, split: str) -> list[tuple[str, str]]:
    """A VOC split -> [(VOC folder holding Annotations/JPEGImages/ImageSets, image set name)].

    ``split`` is ``<set>`` (``root`` holds ``ImageSets/Main/<set>.txt``, or a ``VOCdevkit/VOC<year>`` tree
    with one year), or ``<year>_<set>`` (``root`` holds ``VOCdevkit/VOC<year>`` or ``VOC<year>``), several
    joined with ``+`` ("2007_trainval+2012_trainval").
    """
    out = []
    for part in split.split("+"):
        part = part.strip()
        if os.path.isfile(os.path.join(root, "ImageSets", "Main", f"{part}.txt")):
            out.append((root, part))
            continue
        year, _, image_set = part.partition("_")
        if image_set and year.isdigit():
            try:
                out.append((voc.voc_year_dir(root, year), image_set))
                continue
            except FileNotFoundError:
                pass
        years = sorted(glob.glob(os.path.join(root, "VOCdevkit", "VOC*"))) or sorted(
            glob.glob(os.path.join(root, "VOC[0-9]*")))
        if len(years) == 1 and os.path.isfile(os.path.join(years[0], "ImageSets", "Main", f"{part}.txt")):
            out.append((years[0], part))
            continue
        raise DatasetError(f"data.root={root!r}: VOC split {part!r} not found: expected "
                           f"{os.path.join(root, 'ImageSets', 'Main', part + '.txt')} or a <year>_<set> split of "
                           f"{os.path.join(root, 'VOCdevkit', 'VOC<year>')}")
    return out


def _voc_items(root: str, split: str) -> list[tuple[str, str, str]]:
    """[(xml path, image id, "list file:line")] of a VOC split, in list order."""
    items = []
    for voc_dir, image_set in voc_split_dirs(root, split):
        list_path = os.path.join(voc_dir, "ImageSets", "Main", f"{image_set}.txt")
        for line_no, line in enumerate(_read_text(list_path).splitlines(), start=1):
            fields = line.split()
            if fields:
                items.append((os.path.join(voc_dir, "Annotations", f"{fields[0]}.xml"), fields[0],
                              f"{list_path}:{line_no}"))
    return items


def _parse_voc(xml: str, class_names: Sequence[str] | None) -> dict:
    try:
        return voc.parse_annotation(xml, class_names)
    except ValueError as e:  # one line naming the file and field: same message, the dataset error type
        raise DatasetError(str(e)) from None


def voc_discover_names(root: str, splits: Sequence[str]) -> tuple[str, ...]:
    """Sorted set of the object names in the annotations of ``splits``."""
    names = set()
    for split in splits:
        for xml, _, where in _voc_items(root, split):
            if not os.path.isfile(xml):
                raise DatasetError(f"{where}: annotation not found: {xml}")
            names.update(_parse_voc(xml, None)["names"])
    return tuple(sorted(names))


def voc_image_candidates(xml: str, image_id: str, filename: str) -> list[str]:
    """Where the image of a VOC annotation may be, in order: ``JPEGImages/<filename of the XML>``, then
    ``JPEGImages/<id>.{jpg,jpeg,png,JPG,PNG}`` (the folder beside ``Annotations``)."""
    images = os.path.join(os.path.dirname(os.path.dirname(xml)), "JPEGImages")
    return [os.path.join(images, filename)] + [os.path.join(images, image_id + e)
                                               for e in (".jpg", ".jpeg", ".png", ".JPG", ".PNG")]


def voc_source(root: str, split: str, class_names: Sequence[str]) -> FileSource:
    """A VOC split with any class names (``voc_split_dirs``); ``difficult`` and ``truncated`` as in the XML.

    The image is ``JPEGImages/<filename of the XML>`` if it exists, else ``JPEGImages/<id>.{jpg,jpeg,png}``.
    """
    paths, anns, ids = [], [], []
    for xml, image_id, where in _voc_items(root, split):
        if not os.path.isfile(xml):
            raise DatasetError(f"{where}: annotation not found: {xml}")
        ann = _parse_voc(xml, class_names)
        candidates = voc_image_candidates(xml, image_id, ann["filename"])
        image = next((c for c in candidates if os.path.isfile(c)), None)
        if image is None:
            raise DatasetError(f"{where}: listed image not found: {candidates[1]} (nor {ann['filename']!r})")
        rec = _annotation(voc_boxes_to_normalized(ann["boxes_px"], ann["width"], ann["height"]), ann["classes"],
                          ann["difficult"], ann["truncated"])
        paths.append(image)
        anns.append(clean_boxes(rec, xml))
        ids.append(image_id)
    return FileSource(paths, anns, ids)


# ----------------------------------------------------------------------------------------------- YOLO
_SPLIT_ALIASES = {"val": ("val", "valid", "validation"), "valid": ("valid", "val", "validation"),
                  "eval": ("val", "valid", "validation", "eval"), "test": ("test",), "train": ("train",)}


def _load_yaml(path: str) -> dict:
    try:
        out = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as e:
        raise DatasetError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(out, dict):
        raise DatasetError(f"{path}: expected a mapping with train/val/names")
    return out


def read_darknet_data(path: str) -> dict[str, str]:
    """A darknet ``.data`` file (``key = value`` lines: classes, train, valid, names, backup)."""
    out = {}
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise DatasetError(f"{path}:{line_no}: expected 'key = value', got {line!r}")
        out[key.strip()] = value.strip()
    return out


def _resolve(base: str, p: str) -> str:
    """``p`` relative to ``base`` if it exists there (or ``p`` is absolute), else relative to the cwd."""
    if os.path.isabs(p):
        return p
    here = os.path.normpath(os.path.join(base, p))
    return here if os.path.exists(here) or not os.path.exists(p) else os.path.abspath(p)


def _yolo_entries(spec: str | Sequence[str], base: str, where: str) -> list[tuple[str, str]]:
    """Images of a split entry: a folder (searched recursively), an image list file, or a list of those."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for s in specs:
        p = _resolve(base, str(s))
        if os.path.isdir(p):
            out += _images_in_dir(p)
        elif os.path.isfile(p):
            out += _read_list_file(p)
        else:
            raise DatasetError(f"{where}: split path not found: {p}")
    return out


def _yolo_split_spec(root: str, split: str) -> tuple[list[tuple[str, str]], dict]:
    """(images [(path, where)], {"names": ..., "nc": ...} from the dataset file) of a YOLO split."""
    meta: dict = {"names": None, "nc": None, "file": root}
    if root.endswith((".yaml", ".yml")):
        cfg = _load_yaml(root)
        base = os.path.dirname(os.path.abspath(root))
        if cfg.get("path"):
            base = _resolve(base, str(cfg["path"]))
        key = next((k for k in _SPLIT_ALIASES.get(split, (split,)) if cfg.get(k)), None)
        if key is None:
            raise DatasetError(f"{root}: no split {split!r} (keys: {', '.join(sorted(cfg))})")
        names = cfg.get("names")
        if isinstance(names, dict):
            try:
                idx = sorted(int(k) for k in names)
            except ValueError:
                raise DatasetError(f"{root}: names: keys must be class indices 0..n-1") from None
            if idx != list(range(len(idx))):
                raise DatasetError(f"{root}: names: keys must be class indices 0..{len(idx) - 1}, got {idx}")
            names = [names[k] if k in names else names[str(k)] for k in idx]
        meta = {"names": tuple(str(n) for n in names) if names else None, "nc": cfg.get("nc"), "file": root}
        return _yolo_entries(cfg[key], base, f"{root}: {key}"), meta
    if root.endswith(".data"):
        cfg = read_darknet_data(root)
        base = os.path.dirname(os.path.abspath(root))
        key = next((k for k in _SPLIT_ALIASES.get(split, (split,)) if cfg.get(k)), None)
        if key is None:
            raise DatasetError(f"{root}: no split {split!r} (keys: {', '.join(sorted(cfg))})")
        names = read_names_file(_resolve(base, cfg["names"])) if cfg.get("names") else None
        try:
            nc = int(cfg["classes"]) if cfg.get("classes") else None
        except ValueError:
            raise DatasetError(f"{root}: classes = {cfg['classes']!r} is not an integer") from None
        meta = {"names": names, "nc": nc, "file": root}
        return _yolo_entries(cfg[key], base, f"{root}: {key}"), meta
    inner = os.path.join(root, "data.yaml")
    if os.path.isfile(inner) and any(_load_yaml(inner).get(k) for k in _SPLIT_ALIASES.get(split, (split,))):
        return _yolo_split_spec(inner, split)  # a folder holding its data.yaml
    explicit = os.path.isabs(split) or os.sep in split or split.endswith(".txt")  # a path, not a split name
    for cand in ([split] if explicit else []) + [
            os.path.join(root, f"{split}.txt"), os.path.join(root, "images", split),
            os.path.join(root, split, "images"), os.path.join(root, split)]:
        if os.path.exists(cand) and (os.path.isdir(cand) or cand.endswith(".txt")):
            return _yolo_entries(cand, root, f"data.root={root!r}"), meta
    raise DatasetError(f"data.root={root!r}: YOLO split {split!r} not found: expected a data.yaml / .data file as "
                       f"data.root, {split}.txt, images/{split}/ or {split}/images/ under it")


def yolo_label_path(image_path: str) -> str | None:
    """The label file of an image: ``.../labels/.../<stem>.txt`` beside ``.../images/...`` (ultralytics), else
    ``<stem>.txt`` beside the image (darknet); None if neither exists."""
    stem = os.path.splitext(image_path)[0]
    parts = stem.split(os.sep)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parallel = os.sep.join(parts[:i] + ["labels"] + parts[i + 1:]) + ".txt"
        if os.path.isfile(parallel):
            return parallel
    return stem + ".txt" if os.path.isfile(stem + ".txt") else None


def parse_yolo_label(path: str, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO label file -> (boxes float64 [N, 4] normalized xyxy (not clipped), classes int32 [N]).

    Each non-blank line is ``class cx cy w h`` (normalized). A line with another number of fields, a
    non-integer class, a number that does not parse or is not finite, a negative size, or a class index
    >= ``num_classes`` is a DatasetError naming the file and line.
    """
    boxes, classes = [], []
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{line_no}"
        if len(fields) != 5:
            raise DatasetError(f"{where}: malformed label line (expected 'class cx cy w h', got "
                               f"{len(fields)} fields): {line.strip()!r}")
        try:
            c = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DatasetError(f"{where}: malformed label line (expected an integer class and 4 numbers): "
                               f"{line.strip()!r}") from None
        if not np.isfinite([cx, cy, w, h]).all() or w < 0 or h < 0:
            raise DatasetError(f"{where}: malformed label line (sizes must be finite and >= 0): "
                               f"{line.strip()!r}")
        if c < 0 or (num_classes is not None and c >= num_classes):
            raise DatasetError(f"{where}: class index {c} out of range: the dataset has {num_classes} "
                               f"classes (0..{(num_classes or 0) - 1})")
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        classes.append(c)
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes, np.int32)


def yolo_meta(root: str, split: str) -> dict:
    """{"names": tuple | None, "nc": int | None, "file": dataset file} of a YOLO dataset (data.yaml/.data)."""
    return _yolo_split_spec(root, split)[1]


def yolo_discover_num_classes(root: str, splits: Sequence[str]) -> int:
    """1 + the largest class index in the label files of ``splits``."""
    top = -1
    for split in splits:
        for image, _ in _check_exists(_yolo_split_spec(root, split)[0]):
            label = yolo_label_path(image)
            if label is not None:
                classes = parse_yolo_label(label, None)[1]
                top = max(top, int(classes.max(initial=-1)))
    if top < 0:
        raise DatasetError(f"data.root={root!r}: no labelled object in {', '.join(splits)}; give the class names "
                           "(data.class_names or data.names_file)")
    return top + 1


def yolo_source(root: str, split: str, class_names: Sequence[str]) -> FileSource:
    """A YOLO split (see ``_yolo_split_spec``): labels from ``yolo_label_path``; missing label = no objects."""
    images = _check_exists(_yolo_split_spec(root, split)[0])
    paths, anns, missing = [], [], 0
    for image, _ in images:
        label = yolo_label_path(image)
        if label is None:
            missing += 1
            boxes, classes = np.zeros((0, 4)), np.zeros(0, np.int32)
        else:
            boxes, classes = parse_yolo_label(label, len(class_names))
        paths.append(image)
        anns.append(clean_boxes(_annotation(boxes, classes), label or image))
    if missing:
        warn_count("missing_label_file", f"data.root={root!r} split {split!r}: {missing} of {len(images)} images "
                   "have no label file; they count as images without objects", count=missing)
    return FileSource(paths, anns, _unique_ids(paths))


# ----------------------------------------------------------------------------------------------- COCO
def coco_paths(root: str, split: str) -> tuple[str, list[str]]:
    """(annotation JSON, candidate image folders) of a COCO split.

    JSON: ``split`` itself if it is a .json file, else ``root/annotations/instances_<split>.json``,
    ``root/annotations/<split>.json`` or ``root/<split>.json``. Images: the first of ``root/<split>``,
    ``root/images/<split>``, ``root/images``, ``root`` that holds the JSON's first image.
    """
    cands = [split] if split.endswith(".json") else [
        os.path.join(root, "annotations", f"instances_{split}.json"), os.path.join(root, "annotations",
                                                                                  f"{split}.json"),
        os.path.join(root, f"{split}.json")]
    ann = next((c for c in cands if os.path.isfile(c)), None)
    if ann is None:
        raise DatasetError(f"data.root={root!r}: COCO split {split!r} not found: expected {' or '.join(cands)}")
    stem = os.path.splitext(os.path.basename(ann))[0].removeprefix("instances_")
    folders = [os.path.join(root, stem), os.path.join(root, "images", stem), os.path.join(root, "images"), root,
               os.path.dirname(ann)]
    return ann, folders


_COCO_FIELDS = {"images": "id, file_name, width, height", "annotations": "image_id, category_id, bbox",
                "categories": "id, name"}


def _load_coco(path: str) -> dict:
    """A COCO JSON: an object with the lists "images", "annotations" and "categories" of objects; DatasetError
    naming the file (and the first entry that is not an object) otherwise."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with the lists images, annotations and categories")
    for key, fields in _COCO_FIELDS.items():
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing list {key!r}")
        bad = next((k for k, entry in enumerate(data[key]) if not isinstance(entry, dict)), None)
        if bad is not None:
            raise DatasetError(f"{path}: {key}[{bad}] is {data[key][bad]!r}: expected an object with {fields}")
    return data


def _coco_id(entry: Mapping) -> Any:
    """The "id" of a COCO entry if it is a usable key (a number or a string), else None."""
    value = entry.get("id")
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None


Problem = tuple[str, str, DatasetError]  # (check kind, entry, error): yolojax.data.check reports them


def coco_category_names(root: str, split: str) -> tuple[str, ...]:
    """Category names of a COCO split's JSON, in category-id order."""
    path = coco_paths(root, split)[0]
    categories, problems = coco_categories(path, _load_coco(path), None)
    for _, _, error in problems[:1]:
        raise error
    cats = sorted(categories.values(), key=lambda c: c[0])
    return _check_unique([name for _, name in cats], f"{path}: categories")


def coco_categories(path: str, data: Mapping, class_names: Sequence[str] | None
                    ) -> tuple[dict[Any, tuple[Any, str]], list[Problem]]:
    """({category id: (id, name)} of the JSON ``path``'s categories, [problems]): a category without an id or a
    name, an id given twice ("malformed annotation"), a name not in ``class_names`` ("unknown class"; None: any
    name)."""
    out: dict[Any, tuple[Any, str]] = {}
    first: dict[Any, int] = {}
    problems: list[Problem] = []
    for k, category in enumerate(data["categories"]):
        entry = f"{path}: categories[{k}]"
        cid, name = _coco_id(category), category.get("name")
        if cid is None or name is None:
            problems.append(("malformed annotation", entry, DatasetError(
                f"{entry}: needs an id (a number) and a name, got {category!r}")))
        elif cid in first:
            problems.append(("malformed annotation", entry, DatasetError(
                f"{entry}: id {cid!r} is already the id of categories[{first[cid]}]")))
        elif class_names is not None and str(name) not in class_names:
            problems.append(("unknown class", entry, DatasetError(
                f"{entry} (id {cid}): class name {name!r} is not one of the given class names "
                f"({', '.join(class_names)})")))
            first[cid] = k
        else:
            first[cid] = k
            out[cid] = (cid, str(name))
    return out, problems


def coco_images(path: str, data: Mapping) -> tuple[dict[Any, tuple[str, float, float]], list[Problem]]:
    """({image id: (file_name, width, height)} of the JSON ``path``'s images, [problems]): a missing field, a
    width or height that is not a positive number ("malformed annotation"), an id another image already has
    ("duplicate image": its boxes would land on the other image)."""
    out: dict[Any, tuple[str, float, float]] = {}
    first: dict[Any, int] = {}
    problems: list[Problem] = []
    for k, image in enumerate(data["images"]):
        entry = f"{path}: images[{k}]"
        iid = _coco_id(image)
        try:
            file_name, width, height = str(image["file_name"]), float(image["width"]), float(image["height"])
            if iid is None:
                raise KeyError("id")
        except (KeyError, TypeError, ValueError):
            problems.append(("malformed annotation", entry, DatasetError(
                f"{entry}: needs id, file_name, width and height, got {image!r}")))
            continue
        if not (np.isfinite([width, height]).all() and width > 0 and height > 0):
            problems.append(("malformed annotation", entry, DatasetError(
                f"{entry} (id {iid!r}, {file_name}): width and height must be positive, got {image['width']!r} x "
                f"{image['height']!r}")))
        elif iid in first:
            problems.append(("duplicate image", entry, DatasetError(
                f"{entry} ({file_name}): id {iid!r} is already the id of images[{first[iid]}] "
                f"({data['images'][first[iid]].get('file_name')}); each image needs its own id")))
        else:
            first[iid] = k
            out[iid] = (file_name, width, height)
    return out, problems


def coco_object(path: str, k: int, ann: Mapping, images: Mapping, cat_class: Mapping) -> list:
    """The ``bbox`` [x, y, w, h] of ``annotations[k]`` of the JSON ``path``, checked: DatasetError for an
    unknown image or category id or a bbox that is not 4 finite numbers with w, h >= 0."""
    where = f"{path}: annotations[{k}] (id {ann.get('id')})"
    if ann.get("image_id") not in images:
        raise DatasetError(f"{where}: image_id {ann.get('image_id')!r} is not in images")
    if ann.get("category_id") not in cat_class:
        raise DatasetError(f"{where}: category_id {ann.get('category_id')!r} is not in categories")
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox) \
            or not np.isfinite(bbox).all() or bbox[2] < 0 or bbox[3] < 0:
        raise DatasetError(f"{where}: bbox must be [x, y, w, h] with w, h >= 0, got {bbox!r}")
    return bbox


def coco_image_folder(images: Mapping[Any, tuple[str, float, float]], folders: Sequence[str]) -> str:
    """The first of ``folders`` (``coco_paths``) holding the first image of ``images`` (``coco_images``), else the
    first folder."""
    first = next(iter(images.values()), None)
    return next((d for d in folders if first is not None and os.path.isfile(os.path.join(d, first[0]))), folders[0])


def coco_xyxy(objects: Sequence[Sequence[float]], width: float, height: float) -> np.ndarray:
    """COCO ``bbox`` [x, y, w, h] in continuous pixels -> normalized xyxy float64 [N, 4]."""
    b = np.asarray(objects, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], -1) / [width, height, width, height]


def coco_source(root: str, split: str, class_names: Sequence[str]) -> FileSource:
    """A COCO split: ``bbox [x, y, w, h]`` continuous pixels -> ``[x/W, y/H, (x+w)/W, (y+h)/H]``; ``iscrowd``
    -> difficult; categories -> ``class_names`` by name (category-id order when the names came from the JSON)."""
    path, folders = coco_paths(root, split)
    data = _load_coco(path)
    index = {n: i for i, n in enumerate(class_names)}
    categories, problems = coco_categories(path, data, index)
    images, image_problems = coco_images(path, data)
    for _, _, error in (problems + image_problems)[:1]:
        raise error
    cat_class = {cid: index[name] for cid, (_, name) in categories.items()}
    objects: dict[Any, list] = {iid: [] for iid in images}
    for k, a in enumerate(data["annotations"]):
        bbox = coco_object(path, k, a, images, cat_class)
        objects[a["image_id"]].append((bbox, cat_class[a["category_id"]], bool(a.get("iscrowd", 0))))
    folder = coco_image_folder(images, folders)
    paths, anns = [], []
    for k, (iid, (file_name, w, h)) in enumerate(images.items()):
        image = os.path.join(folder, file_name)
        if not os.path.isfile(image):
            raise DatasetError(f"{path}: images[{k}]: listed image not found: {image}")
        objs = objects[iid]
        rec = _annotation(coco_xyxy([o[0] for o in objs], w, h), [o[1] for o in objs], [o[2] for o in objs])
        paths.append(image)
        anns.append(clean_boxes(rec, f"{path}: {file_name}"))
    return FileSource(paths, anns, _unique_ids(paths))


# ------------------------------------------------------------------------------------- dispatching
_NAMES_CACHE: dict[tuple, tuple[str, ...]] = {}


def dataset_class_names(data_cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """Class names of a dataset on disk (``data_cfg.format`` / ``root``).

    In order of precedence: ``data_cfg.class_names`` (a list), ``data_cfg.names_file`` (darknet .names), the
    dataset's own list (COCO categories in id order, ultralytics ``names``, darknet ``.data`` ``names=``),
    else discovered from the annotations of the train and eval splits: VOC object names sorted, YOLO
    ``class_0..class_{max index}``. Discovered names are logged once; save them with ``save_class_names``.
    """
    fmt, root = data_cfg["format"], data_cfg["root"]
    if fmt not in FORMATS:
        raise DatasetError(f"data.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not root:
        raise DatasetError(f"data.format={fmt!r} needs data.root (the dataset folder, data.yaml or .data file)")
    if not os.path.exists(root):
        raise DatasetError(f"data.root={root!r} does not exist")
    given, names_file = tuple(data_cfg.get("class_names") or ()), data_cfg.get("names_file") or ""
    if given and names_file:
        raise DatasetError("data.class_names and data.names_file are both set: give one")
    if given:
        return _check_unique(given, "data.class_names")
    if names_file:
        return read_names_file(names_file)
    splits = tuple(s for s in (data_cfg["train_split"], data_cfg["eval_split"]) if s)
    if not splits:
        raise DatasetError("data.train_split and data.eval_split are both empty: name the dataset's splits")
    key = (fmt, root, splits)
    if key in _NAMES_CACHE:
        return _NAMES_CACHE[key]
    if fmt == "coco":
        names = coco_category_names(root, splits[0])
    elif fmt == "yolo":
        meta = yolo_meta(root, splits[0])
        names = meta["names"]
        if names is None:
            names = tuple(f"class_{i}" for i in range(meta["nc"] or yolo_discover_num_classes(root, splits)))
            logging.warning("data: no class names given for the YOLO dataset %s: using %s..%s", root, names[0],
                            names[-1])
        if meta["nc"] is not None and int(meta["nc"]) != len(names):
            raise DatasetError(f"{meta['file']}: {meta['nc']} classes but {len(names)} names")
    else:
        names = voc_discover_names(root, splits)
        logging.warning("data: %d class names discovered from the VOC annotations of %s (sorted): %s",
                        len(names), ", ".join(splits), ", ".join(names))
    _NAMES_CACHE[key] = names
    return names


def dataset_source(data_cfg: Mapping[str, Any], split: str) -> FileSource:
    """The source of ``split`` of a dataset on disk (``data_cfg.format``: "voc" | "yolo" | "coco")."""
    names = dataset_class_names(data_cfg)
    reader = {"voc": voc_source, "yolo": yolo_source, "coco": coco_source}[data_cfg["format"]]
    return reader(data_cfg["root"], split, names)
