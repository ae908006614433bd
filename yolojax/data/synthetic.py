"""A procedurally drawn detection dataset: coloured shapes on cluttered backgrounds.

Each class is one (shape, colour) pair; the first ``min(len(SHAPES), len(COLOURS))`` classes differ in both
shape and colour so a tiny model can separate them even under hue jitter. Scenes have a random gradient
background, clutter (thin lines, gray blobs and outlines that belong to no class), several objects of varied
size and aspect ratio that may overlap (later ones occlude earlier ones) or be cut by the border, and pixel
noise. Everything is a pure function of ``(seed, split, index)``: any example can be drawn on its own, in any
order, by any worker.

Boxes are the tight box of each shape's drawn pixels (before occlusion), stored like a VOC annotation
(1-based inclusive pixel indices, converted with ``boxes.voc_px_to_normalized``), so an example drawn in
memory and the same example written to a VOCdevkit tree and read back carry identical boxes.
Objects less than ``difficult_visible_fraction`` visible are flagged difficult; objects cut by the border are
flagged truncated. Class ``c`` is written to XML as ``VOC_CLASSES[c]`` so the TFDS ``voc`` builder accepts
the tree; ``class_names(num_classes)`` gives the descriptive names ("red rectangle", ...).
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping
from xml.sax.saxutils import escape

import cv2
import numpy as np
import yaml

from yolojax.config.classes import VOC_CLASSES
from yolojax.config.data import default_synthetic_config  # noqa: F401  (re-exported)
from yolojax.ops import boxes as box_lib

SHAPES = ("rectangle", "ellipse", "triangle", "cross", "diamond", "ring", "star", "hexagon", "frame", "arrow")
COLOURS = {  # saturated, far apart in hue or value; clutter uses only low-saturation colours
    "red": (220, 30, 30), "blue": (30, 70, 230), "green": (30, 170, 40), "yellow": (240, 215, 20),
    "magenta": (210, 40, 210), "cyan": (20, 200, 220), "orange": (250, 130, 10), "purple": (110, 30, 150),
    "white": (250, 250, 250), "black": (15, 15, 15),
}
_COLOUR_NAMES = tuple(COLOURS)
SPLITS = {"train": 0, "eval": 1}  # the split is mixed into the seed: held-out scenes never repeat train ones


def class_names(num_classes: int) -> tuple[str, ...]:
    """Descriptive names of the synthetic classes, e.g. ("red rectangle", "blue ellipse", ...)."""
    return tuple(f"{_COLOUR_NAMES[_colour_index(c)]} {SHAPES[c % len(SHAPES)]}" for c in range(num_classes))


_descriptive_names = class_names  # for write_dataset, whose class_names argument hides the function


def _colour_index(c: int) -> int:
    # Classes 10..19 reuse the shapes with a shifted palette, so every (shape, colour) pair stays unique.
    return (c + 3 * (c // len(SHAPES))) % len(COLOURS)


# --------------------------------------------------------------------------------------- drawing
def _shape_mask(shape: str, w: int, h: int) -> np.ndarray:
    """uint8 [h, w] mask (1 inside) of ``shape`` filling a w x h patch."""
    m = np.zeros((h, w), np.uint8)
    x1, y1 = w - 1, h - 1

    def poly(points):
        cv2.fillPoly(m, [np.round(np.array(points, np.float64)).astype(np.int32)], 1, lineType=cv2.LINE_8)

    if shape == "rectangle":
        m[:] = 1
    elif shape in ("ellipse", "ring"):
        cv2.ellipse(m, (x1 // 2, y1 // 2), (max(x1 - x1 // 2, 1), max(y1 - y1 // 2, 1)), 0, 0, 360, 1, -1)
        if shape == "ring":
            cv2.ellipse(m, (x1 // 2, y1 // 2), (max(w // 4, 1), max(h // 4, 1)), 0, 0, 360, 0, -1)
    elif shape == "triangle":
        poly([(0, y1), (x1 / 2, 0), (x1, y1)])
    elif shape == "cross":
        m[int(h * 0.33):int(np.ceil(h * 0.67)), :] = 1
        m[:, int(w * 0.33):int(np.ceil(w * 0.67))] = 1
    elif shape == "diamond":
        poly([(x1 / 2, 0), (x1, y1 / 2), (x1 / 2, y1), (0, y1 / 2)])
    elif shape == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        px, py = r * np.cos(a), -r * np.sin(a)
        px = (px - px.min()) / (px.max() - px.min()) * x1
        py = (py - py.min()) / (py.max() - py.min()) * y1
        poly(list(zip(px, py)))
    elif shape == "hexagon":
        poly([(x1 / 4, 0), (3 * x1 / 4, 0), (x1, y1 / 2), (3 * x1 / 4, y1), (x1 / 4, y1), (0, y1 / 2)])
    elif shape == "frame":
        m[:] = 1
        tw, th = max(w // 4, 1), max(h // 4, 1)
        m[th:h - th, tw:w - tw] = 0
    elif shape == "arrow":
        poly([(0, y1 * 0.3), (x1 * 0.55, y1 * 0.3), (x1 * 0.55, 0), (x1, y1 / 2), (x1 * 0.55, y1),
              (x1 * 0.55, y1 * 0.7), (0, y1 * 0.7)])
    else:
        raise ValueError(f"synthetic shape: unknown {shape!r}")
    return m


def _background(rng: np.random.Generator, w: int, h: int, clutter: float) -> np.ndarray:
    """uint8 [h, w, 3]: a low-saturation gradient plus ``clutter`` x 30 distractors of no class."""
    c0, c1 = rng.uniform(60, 200, (2, 1)) + rng.uniform(-20, 20, (2, 3))
    t = np.linspace(0.0, 1.0, h if rng.uniform() < 0.5 else w, dtype=np.float32)
    grad = c0[None] + (c1 - c0)[None] * t[:, None]  # [L, 3]
    img = (np.broadcast_to(grad[:, None], (h, w, 3)) if grad.shape[0] == h
           else np.broadcast_to(grad[None], (h, w, 3)))
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    s = min(w, h)
    for _ in range(int(round(clutter * 30))):
        g = rng.uniform(40, 220)
        colour = tuple(float(v) for v in np.clip(g + rng.uniform(-20, 20, 3), 0, 255))
        kind = rng.integers(3)
        x, y = int(rng.integers(w)), int(rng.integers(h))
        if kind == 0:  # thin line
            cv2.line(img, (x, y), (int(rng.integers(w)), int(rng.integers(h))), colour, int(rng.integers(1, 3)))
        elif kind == 1:  # small blob
            cv2.circle(img, (x, y), max(1, int(rng.uniform(0.01, 0.04) * s)), colour, -1)
        else:  # outline
            d = int(rng.uniform(0.05, 0.2) * s)
            cv2.rectangle(img, (x, y), (x + d, y + int(d * rng.uniform(0.5, 2))), colour, 1)
    return img


def _place(rng: np.random.Generator, w: int, h: int, cfg: Mapping[str, Any], placed: list) -> tuple:
    """Draws (x0, y0, bw, bh) of a patch (0-based, may exceed the image if truncation is allowed)."""
    s = min(w, h)
    best = None
    for _ in range(20):
        side = rng.uniform(cfg["min_object_size"], cfg["max_object_size"]) * s
        aspect = np.exp(rng.uniform(-1, 1) * np.log(cfg["max_aspect_ratio"]))
        bw = int(np.clip(round(side * np.sqrt(aspect)), 4, w))
        bh = int(np.clip(round(side / np.sqrt(aspect)), 4, h))
        if rng.uniform() < cfg["truncation_prob"]:
            x0 = int(rng.integers(-bw // 2, w - bw // 2))
            y0 = int(rng.integers(-bh // 2, h - bh // 2))
        else:
            x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        box = np.array([x0, y0, x0 + bw, y0 + bh], np.float64)
        overlap = max((float(box_lib.iou(box, p)) for p in placed), default=0.0)
        if best is None or overlap < best[0]:
            best = (overlap, (x0, y0, bw, bh))
        if overlap <= cfg["max_overlap_iou"]:
            break
    return best[1]


def draw_scene(rng: np.random.Generator, cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Draws one scene.

    Returns:
      dict(image uint8 [H, W, 3] RGB, boxes_px float64 [N, 4] VOC 1-based inclusive xyxy, classes int32 [N],
      difficult bool [N], truncated bool [N]).
    """
    w, h = int(cfg["image_width"]), int(cfg["image_height"])
    if not 1 <= cfg["num_classes"] <= len(VOC_CLASSES):
        raise ValueError(f"data.synthetic.num_classes: expected 1..20, got {cfg['num_classes']}")
    img = _background(rng, w, h, cfg["clutter"])
    owner = np.full((h, w), -1, np.int32)  # which object each pixel shows, for occlusion
    n = int(rng.integers(cfg["min_objects"], cfg["max_objects"] + 1))
    placed, classes, areas, cut = [], [], [], []
    for i in range(n):
        x0, y0, bw, bh = _place(rng, w, h, cfg, placed)
        c = int(rng.integers(cfg["num_classes"]))
        mask = _shape_mask(SHAPES[c % len(SHAPES)], bw, bh).astype(bool)
        # Clip the patch to the image.
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + bw, w), min(y0 + bh, h)
        sub = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        ys, xs = np.nonzero(sub)
        if len(xs) == 0:
            continue
        colour = np.clip(np.array(COLOURS[_COLOUR_NAMES[_colour_index(c)]], np.float32)
                         + rng.uniform(-15, 15, 3), 0, 255)
        region = img[cy0:cy1, cx0:cx1]
        region[sub] = colour.astype(np.uint8)
        owner[cy0:cy1, cx0:cx1][sub] = len(classes)
        # Tight box of the drawn pixels (0-based inclusive), before any later occlusion.
        placed.append(np.array([cx0 + xs.min(), cy0 + ys.min(), cx0 + xs.max() + 1, cy0 + ys.max() + 1],
                               np.float64))
        classes.append(c)
        areas.append(len(xs))
        cut.append(bool(mask.sum() > len(xs)))  # some of the shape fell outside the image
    if cfg["noise_std"] > 0:
        img = np.clip(img + rng.normal(0, cfg["noise_std"], img.shape), 0, 255).astype(np.uint8)
    visible = np.bincount(owner.ravel() + 1, minlength=len(classes) + 1)[1:]
    boxes_px = np.array(placed, np.float64).reshape(-1, 4)
    # VOC stores 1-based inclusive indices: first pixel x0 -> x0 + 1, last pixel x1 - 1 -> x1.
    boxes_px = boxes_px + np.array([1, 1, 0, 0], np.float64)
    return dict(image=img, boxes_px=boxes_px, classes=np.array(classes, np.int32),
                difficult=visible < cfg["difficult_visible_fraction"] * np.array(areas, np.float64),
                truncated=np.array(cut, bool))


# ----------------------------------------------------------------------------------------- source
class SyntheticSource:
    """Random-access synthetic split: ``len(src)`` examples, ``src[i]`` -> Example (docs/conventions.md).

    Args:
      cfg: ``data_cfg.synthetic`` (see ``default_synthetic_config``).
      split: "train" or "eval"; each has its own seed stream.
    """
    def __init__(self, cfg: Mapping[str, Any], split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"synthetic split: expected one of {tuple(SPLITS)}, got {split!r}")
        self.cfg = dict(cfg)
        self.split = split
        self.num_examples = int(self.cfg["num_train"] if split == "train" else self.cfg["num_eval"])

    def __len__(self) -> int:
        return self.num_examples

    def image_id(self, index: int) -> str:
        """VOC-style id; train and eval ids never collide."""
        offset = 0 if self.split == "train" else int(self.cfg["num_train"])
        return f"{offset + index + 1:06d}"

    def scene(self, index: int) -> dict[str, np.ndarray]:
        """The drawn scene of example ``index`` (see ``draw_scene``), a pure function of seed, split, index."""
        if not 0 <= index < self.num_examples:
            raise IndexError(f"synthetic {self.split}: index {index} outside [0, {self.num_examples})")
        rng = np.random.default_rng([int(self.cfg["seed"]), SPLITS[self.split], int(index)])
        return draw_scene(rng, self.cfg)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Example ``index`` (the Example format of docs/conventions.md)."""
        scene = self.scene(index)
        h, w = scene["image"].shape[:2]
        boxes = box_lib.voc_px_to_normalized(scene["boxes_px"], w, h).astype(np.float32)
        return {"image": scene["image"], "boxes": boxes, "classes": scene["classes"],
                "difficult": scene["difficult"], "truncated": scene["truncated"],
                "image_id": self.image_id(index)}


# ------------------------------------------------------------------------------- VOCdevkit writer
def annotation_xml(image_id: str, width: int, height: int, boxes_px: np.ndarray, classes: np.ndarray,
                   difficult: np.ndarray, truncated: np.ndarray, *, folder: str = "VOC2007",
                   class_names: tuple[str, ...] = VOC_CLASSES, filename: str | None = None) -> str:
    """A VOC annotation XML string (boxes_px: [N, 4] 1-based inclusive xyxy, classes index ``class_names``)."""
    objs = []
    for b, c, d, t in zip(np.asarray(boxes_px).reshape(-1, 4), classes, difficult, truncated):
        coords = "".join(f"<{k}>{int(round(v))}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), b))
        objs.append(f"  <object><name>{escape(class_names[int(c)])}</name><pose>Unspecified</pose>"
                    f"<truncated>{int(bool(t))}</truncated><difficult>{int(bool(d))}</difficult>"
                    f"<bndbox>{coords}</bndbox></object>\n")
    name = escape(filename or image_id + ".jpg")
    return (f"<annotation>\n  <folder>{folder}</folder>\n  <filename>{name}</filename>\n"
            f"  <source><database>yolojax synthetic</database></source>\n"
            f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
            f"  <segmented>0</segmented>\n{''.join(objs)}</annotation>\n")


def write_voc_devkit(root: str, cfg: Mapping[str, Any], *, year: str = "2007", jpeg_quality: int = 95,
                     num_train: int | None = None, num_eval: int | None = None) -> str:
    """Writes the synthetic dataset as ``root/VOCdevkit/VOC{year}/{JPEGImages,Annotations,ImageSets/Main}``.

    The "train" split becomes trainval (its first half ``train.txt``, the rest ``val.txt``) and the "eval"
    split becomes ``test.txt``, as the TFDS ``voc`` builder expects.

    Args:
      root: output folder (created).
      cfg: ``data_cfg.synthetic``; num_train / num_eval override its sizes.
    Returns:
      The path of ``VOC{year}``.
    """
    cfg = dict(cfg)
    cfg["num_train"] = cfg["num_train"] if num_train is None else num_train
    cfg["num_eval"] = cfg["num_eval"] if num_eval is None else num_eval
    voc = os.path.join(root, "VOCdevkit", f"VOC{year}")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    ids = {}
    for split in ("train", "eval"):
        src = SyntheticSource(cfg, split)
        ids[split] = []
        for i in range(len(src)):
            ex = src.scene(i)
            h, w = ex["image"].shape[:2]
            image_id = src.image_id(i)
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(ex["image"], cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            assert ok
            with open(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), "wb") as f:
                f.write(jpg.tobytes())
            with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as f:
                f.write(annotation_xml(image_id, w, h, ex["boxes_px"], ex["classes"], ex["difficult"],
                                       ex["truncated"], folder=f"VOC{year}"))
            ids[split].append(image_id)
    half = (len(ids["train"]) + 1) // 2
    sets = {"train": ids["train"][:half], "val": ids["train"][half:], "trainval": ids["train"],
            "test": ids["eval"]}
    for name, lines in sets.items():
        with open(os.path.join(voc, "ImageSets", "Main", f"{name}.txt"), "w") as f:
            f.write("".join(f"{x}\n" for x in lines))
    return voc


# --------------------------------------------------------------------------- VOC / YOLO / COCO writer
def _encode(image: np.ndarray, ext: str, jpeg_quality: int) -> bytes:
    """RGB [H, W, 3] or gray [H, W] uint8 -> JPEG / PNG bytes."""
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext == ".jpg" else [])
    if not ok:
        raise RuntimeError(f"cv2.imencode({ext}) failed")
    return buf.tobytes()


def write_dataset(root: str, fmt: str, cfg: Mapping[str, Any], *, class_names: tuple[str, ...] | None = None,
                  num_train: int | None = None, num_eval: int | None = None, png_every: int = 0,
                  gray_every: int = 0, empty_every: int = 0, jpeg_quality: int = 95) -> str:
    """Writes the synthetic dataset as your own dataset would be on disk: "voc", "yolo" or "coco".

    Splits "train" (the synthetic train split) and "val" (its eval split). Layouts:
      * voc: ``root/{Annotations/<id>.xml, JPEGImages/<id>.{jpg,png}, ImageSets/Main/{train,val}.txt}``,
        objects named ``class_names[c]``.
      * yolo: ``root/images/{train,val}/<id>.{jpg,png}``, ``root/labels/{train,val}/<id>.txt`` and
        ``root/data.yaml`` (ultralytics: path, train, val, names); labels written with 17 significant digits.
      * coco: ``root/annotations/instances_{train,val}.json`` and ``root/{train,val}/<id>.{jpg,png}``;
        category ids 1, 3, 5, ... (not contiguous, in class order); ``iscrowd`` = the object's difficult flag.
    Boxes follow the mapping of ``yolojax.data.formats`` so the three read back as the same examples.

    Args:
      root: output folder (created).
      fmt: "voc" | "yolo" | "coco".
      cfg: ``data_cfg.synthetic``; num_train / num_eval override its sizes.
      class_names: names of the classes (default ``class_names(cfg["num_classes"])``).
      png_every, gray_every, empty_every: every k-th image (by index in its split, k > 0; 0 = none) is a PNG,
        is gray (one channel), or keeps its pixels but has no objects (YOLO: even such indices get an empty
        label file, odd ones no label file).
    Returns:
      The ``data.root`` to read it with: ``root`` (voc, coco) or ``root/data.yaml`` (yolo).
    """
    if fmt not in ("voc", "yolo", "coco"):
        raise ValueError(f"write_dataset: format must be 'voc', 'yolo' or 'coco', got {fmt!r}")
    cfg = dict(cfg)
    cfg["num_train"] = cfg["num_train"] if num_train is None else num_train
    cfg["num_eval"] = cfg["num_eval"] if num_eval is None else num_eval
    names = tuple(class_names or _descriptive_names(cfg["num_classes"]))
    if len(names) != cfg["num_classes"]:
        raise ValueError(f"write_dataset: {len(names)} class names for {cfg['num_classes']} classes")

    def every(k: int, i: int) -> bool:
        return k > 0 and i % k == k - 1

    for split, synth_split in (("train", "train"), ("val", "eval")):
        src = SyntheticSource(cfg, synth_split)
        ids, coco_images, coco_anns = [], [], []
        image_dir = {"voc": os.path.join(root, "JPEGImages"), "yolo": os.path.join(root, "images", split),
                     "coco": os.path.join(root, split)}[fmt]
        os.makedirs(image_dir, exist_ok=True)
        for i in range(len(src)):
            scene = src.scene(i)
            image, (h, w) = scene["image"], scene["image"].shape[:2]
            if every(gray_every, i):
                image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            b, c = scene["boxes_px"], scene["classes"]
            d, t = scene["difficult"], scene["truncated"]
            if every(empty_every, i):
                b, c, d, t = b[:0], c[:0], d[:0], t[:0]
            image_id, ext = src.image_id(i), ".png" if every(png_every, i) else ".jpg"
            with open(os.path.join(image_dir, image_id + ext), "wb") as f:
                f.write(_encode(image, ext, jpeg_quality))
            ids.append(image_id)
            if fmt == "voc":
                os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
                xml = annotation_xml(image_id, w, h, b, c, d, t, folder=os.path.basename(root), class_names=names,
                                     filename=image_id + ext)
                with open(os.path.join(root, "Annotations", f"{image_id}.xml"), "w") as f:
                    f.write(xml)
            elif fmt == "yolo":
                labels = os.path.join(root, "labels", split)
                os.makedirs(labels, exist_ok=True)
                if len(c) or not every(empty_every, i) or (i // max(empty_every, 1)) % 2 == 0:
                    x0, y0, x1, y1 = (b - np.array([1, 1, 1, 1])).T  # continuous pixels
                    rows = zip(c, (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h)
                    with open(os.path.join(labels, f"{image_id}.txt"), "w") as f:
                        f.write("".join(f"{int(k)} {float(cx)!r} {float(cy)!r} {float(bw)!r} {float(bh)!r}\n"
                                        for k, cx, cy, bw, bh in rows))
            else:
                coco_images.append({"id": i + 1, "file_name": image_id + ext, "width": w, "height": h})
                for box, k, crowd in zip(b, c, d):
                    x0, y0, x1, y1 = (int(round(v)) for v in box)
                    coco_anns.append({"id": len(coco_anns) + 1, "image_id": i + 1, "category_id": 2 * int(k) + 1,
                                      "bbox": [x0 - 1, y0 - 1, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                      "iscrowd": int(bool(crowd))})
        if fmt == "voc":
            main = os.path.join(root, "ImageSets", "Main")
            os.makedirs(main, exist_ok=True)
            with open(os.path.join(main, f"{split}.txt"), "w") as f:
                f.write("".join(f"{x}\n" for x in ids))
        elif fmt == "coco":
            os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
            cats = [{"id": 2 * k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(names)]
            with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
                json.dump({"images": coco_images, "annotations": coco_anns, "categories": cats}, f)
    if fmt == "yolo":
        with open(os.path.join(root, "data.yaml"), "w") as f:
            yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                            "names": {k: n for k, n in enumerate(names)}}, f, sort_keys=False)
        return os.path.join(root, "data.yaml")
    return root
