"""PASCAL VOC devkit files: annotation XML and image-set lists (no TensorFlow, no JAX).

Layout: ``<root>/VOCdevkit/VOC<year>/{Annotations/<id>.xml, ImageSets/Main/<set>.txt, JPEGImages/<id>.jpg}``
(datasets with their own class names and a plain ``ROOT/{Annotations,...}`` layout: ``yolojax.data.formats``).
Boxes stay exactly as written in the XML: VOC 1-based pixel ``xyxy``, inclusive of the last pixel (``voc_px``;
convert with ``yolojax.ops.boxes.voc_px_to_normalized``). Every error names the file and the field.
"""
from __future__ import annotations

import functools
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from yolojax.config import files as config_files
from yolojax.config.classes import VOC_CLASSES


def voc_year_dir(voc_root: str | os.PathLike, year: str | int) -> str:
    """Resolves the ``VOC<year>`` directory from ``voc_root``, which may be the folder holding ``VOCdevkit``,
    the ``VOCdevkit`` folder itself, or ``VOC<year>`` itself."""
    root = os.fspath(voc_root)
    candidates = [os.path.join(root, "VOCdevkit", f"VOC{year}"), os.path.join(root, f"VOC{year}"), root]
    for path in candidates:
        if os.path.isdir(os.path.join(path, "Annotations")) or os.path.isdir(os.path.join(path, "ImageSets")):
            return path
    raise FileNotFoundError(f"no VOC{year} devkit tree under {root!r}: looked for Annotations/ or ImageSets/ in "
                            + ", ".join(candidates))


def annotation_path(voc_root: str | os.PathLike, year: str | int, image_id: str) -> str:
    """``.../VOC<year>/Annotations/<image_id>.xml``."""
    return os.path.join(voc_year_dir(voc_root, year), "Annotations", f"{image_id}.xml")


def read_image_set(voc_root: str | os.PathLike, year: str | int, image_set: str) -> list[str]:
    """Image ids listed in ``VOC<year>/ImageSets/Main/<image_set>.txt`` (first token of each non-blank
    line, so class-specific lists such as ``car_test.txt`` work too), in file order. Duplicate ids are an
    error naming the file and line."""
    path = os.path.join(voc_year_dir(voc_root, year), "ImageSets", "Main", f"{image_set}.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"image set {image_set!r} not found: {path}")
    ids: list[str] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(config_files.read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] in seen:
            raise ValueError(f"{path}:{line_no}: image id {fields[0]!r} repeated (first on line "
                             f"{seen[fields[0]]})")
        seen[fields[0]] = line_no
        ids.append(fields[0])
    return ids


def _text(node: ET.Element, field: str, where: str, path: str, default: str | None = None) -> str:
    """Text of the child ``field`` of ``node``; missing/empty is an error unless a default is given."""
    text = node.findtext(field)
    text = text.strip() if text is not None else ""
    if not text:
        if default is not None:
            return default
        raise ValueError(f"{path}: {where}: missing field <{field}>")
    return text


def _number(node: ET.Element, field: str, where: str, path: str, default: str | None = None) -> float:
    text = _text(node, field, where, path, default)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: {where}: field <{field}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: {where}: field <{field}> is not finite: {text!r}")
    return value


def _flag(node: ET.Element, field: str, where: str, path: str) -> bool:
    """0/1 flag; absent means 0 (some VOC2012 objects have no <difficult>; TFDS reads them the same way)."""
    value = _number(node, field, where, path, default="0")
    if value not in (0.0, 1.0):
        raise ValueError(f"{path}: {where}: field <{field}> must be 0 or 1, got {value:g}")
    return bool(value)


@functools.lru_cache(maxsize=16)
def _class_index(class_names: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(class_names)}


_BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
_PLAIN_FLAGS = {"0": False, "1": True}


def _plain_object(obj: ET.Element, class_index: dict[str, int] | None) -> tuple | None:
    """(name, box, class, difficult, truncated) of an ``<object>`` as VOC writes them (every field present, flags
    0 or 1, finite numbers, a known name, a box not inverted) in few steps; None for anything else, which
    :func:`_checked_object` then reads or reports."""
    try:
        name = obj.findtext("name").strip()
        bndbox = obj.find("bndbox")
        box = [float(bndbox.findtext(f)) for f in _BOX_FIELDS]
        difficult = _PLAIN_FLAGS[(obj.findtext("difficult") or "0").strip()]
        truncated = _PLAIN_FLAGS[(obj.findtext("truncated") or "0").strip()]
        c = -1 if class_index is None else class_index[name]
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    if not name or not (box[0] <= box[2] and box[1] <= box[3] and all(map(math.isfinite, box))):
        return None
    return name, box, c, difficult, truncated


def _checked_object(obj: ET.Element, k: int, path: str, class_names: Sequence[str] | None,
                    class_index: dict[str, int] | None) -> tuple:
    """:func:`_plain_object` field by field: every problem raises ValueError naming the file, object and field."""
    where = f"object {k}"
    name = _text(obj, "name", where, path)
    if class_index is not None and name not in class_index:
        raise ValueError(f"{path}: {where}: <name> {name!r} is not a known class (expected one of "
                         f"{', '.join(class_names)})")
    where = f"object {k} ({name})"
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise ValueError(f"{path}: {where}: missing field <bndbox>")
    box = [_number(bndbox, f, f"{where} <bndbox>", path) for f in _BOX_FIELDS]
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"{path}: {where} <bndbox>: xmax < xmin or ymax < ymin: "
                         f"xmin={box[0]:g} ymin={box[1]:g} xmax={box[2]:g} ymax={box[3]:g}")
    return (name, box, -1 if class_index is None else class_index[name], _flag(obj, "difficult", where, path),
            _flag(obj, "truncated", where, path))


def parse_annotation(xml_path: str | os.PathLike,
                     class_names: Sequence[str] | None = VOC_CLASSES) -> dict[str, Any]:
    """Parses one VOC annotation XML.

    Returns dict: "filename" str, "width" int, "height" int, "boxes_px" float32 ``[N, 4]`` xyxy exactly as in
    the XML (1-based, inclusive), "names" list[str] ``[N]``, "classes" int32 ``[N]`` (index into
    ``class_names``; -1 when ``class_names`` is None, which accepts any name: for discovering the names),
    "difficult" bool ``[N]``, "truncated" bool ``[N]``. Objects are in file order (which breaks IoU ties in
    the devkit).

    Raises ValueError naming the file and field for malformed XML, a missing or non-numeric field, a box with
    x_max < x_min or y_max < y_min, or a class name not in ``class_names``.
    """
    path = os.fspath(xml_path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path}: malformed XML: {e}") from None
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path}: missing field <size>")
    width, height = _number(size, "width", "<size>", path), _number(size, "height", "<size>", path)
    if width <= 0 or height <= 0:
        raise ValueError(f"{path}: <size>: width and height must be positive, got {width:g} x {height:g}")
    class_index = None if class_names is None else _class_index(tuple(class_names))
    boxes, names, classes, difficult, truncated = [], [], [], [], []
    for k, obj in enumerate(root.findall("object")):  # direct children only: skips person-layout <part>s
        name, box, c, d, t = (_plain_object(obj, class_index)
                              or _checked_object(obj, k, path, class_names, class_index))
        boxes.append(box)
        names.append(name)
        classes.append(c)
        difficult.append(d)
        truncated.append(t)
    return {
        "filename": _text(root, "filename", "annotation", path, default=os.path.basename(path)[:-4] + ".jpg"),
        "width": int(width), "height": int(height),
        "boxes_px": np.asarray(boxes, np.float32).reshape(-1, 4),
        "names": names,
        "classes": np.asarray(classes, np.int32),
        "difficult": np.asarray(difficult, bool),
        "truncated": np.asarray(truncated, bool),
    }


def iter_annotations(voc_root: str | os.PathLike, year: str | int, image_set: str,
                     class_names: Sequence[str] = VOC_CLASSES) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields ``(image_id, parse_annotation(...))`` for every image of an image set, in list order."""
    year_dir = voc_year_dir(voc_root, year)
    for image_id in read_image_set(voc_root, year, image_set):
        yield image_id, parse_annotation(os.path.join(year_dir, "Annotations", f"{image_id}.xml"), class_names)
