"""Own datasets: VOC XML with any classes, YOLO txt, COCO JSON give the same examples; bad input is one line."""
import io
import json
import os

import cv2
import numpy as np
import pytest

from yolojax.data import formats, pipeline, sources, synthetic

NAMES = ("zebra crossing", "cone", "bollard")  # not VOC names, not sorted
SPLITS = ("train", "val")


def _cfg(fmt, root, **kw):
    c = dict(pipeline.default_data_config(), source="files", format=fmt, root=root, train_split="train",
             eval_split="val")
    c.update(kw)
    return c


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The same synthetic dataset written as VOC, YOLO (ultralytics data.yaml) and COCO: PNG, gray and empty
    images among them."""
    root = tmp_path_factory.mktemp("formats")
    cfg = synthetic.default_synthetic_config()
    cfg.update(image_width=72, image_height=56, num_classes=3, min_objects=1, max_objects=4,
               difficult_visible_fraction=0.0)  # YOLO has no difficult flag: keep the three comparable
    return {fmt: synthetic.write_dataset(str(root / fmt), fmt, cfg, class_names=NAMES, num_train=12, num_eval=6,
                                         png_every=3, gray_every=4, empty_every=5)
            for fmt in formats.FORMATS}


def test_three_formats_give_identical_examples(datasets):
    cfgs = {"voc": _cfg("voc", datasets["voc"], class_names=NAMES), "yolo": _cfg("yolo", datasets["yolo"]),
            "coco": _cfg("coco", datasets["coco"])}
    for fmt, c in cfgs.items():
        assert sources.class_names(c) == NAMES, fmt
        assert sources.num_classes(c) == 3
    seen = {"png": 0, "gray": 0, "empty": 0, "boxes": 0}
    for split in SPLITS:
        srcs = {fmt: sources.make_source(c, split) for fmt, c in cfgs.items()}
        assert len(srcs["voc"]) == len(srcs["yolo"]) == len(srcs["coco"]) == (12 if split == "train" else 6)
        for i in range(len(srcs["voc"])):
            recs = {fmt: s[i] for fmt, s in srcs.items()}
            exs = {fmt: sources.decode_record(r) for fmt, r in recs.items()}
            ref = exs["voc"]
            for fmt in ("yolo", "coco"):
                assert recs[fmt]["image_bytes"] == recs["voc"]["image_bytes"], (split, i, fmt)
                assert exs[fmt]["image_id"] == ref["image_id"]
                for k in ("boxes", "classes", "difficult", "image"):
                    assert exs[fmt][k].dtype == ref[k].dtype, (fmt, k)
                    np.testing.assert_array_equal(exs[fmt][k], ref[k], err_msg=f"{split} {i} {fmt} {k}")
            assert ref["image"].shape == (56, 72, 3) and ref["boxes"].dtype == np.float32
            seen["png"] += recs["voc"]["image_bytes"][:4] == b"\x89PNG"
            b = recs["voc"]["image_bytes"]
            gray = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2
            seen["gray"] += gray
            if gray:  # gray files come out as RGB with three equal channels
                assert (ref["image"][..., 0] == ref["image"][..., 2]).all()
            seen["empty"] += len(ref["classes"]) == 0
            seen["boxes"] += len(ref["classes"])
    assert seen["png"] >= 4 and seen["gray"] >= 3 and seen["empty"] >= 3 and seen["boxes"] >= 20, seen


def test_boxes_follow_the_documented_mapping(datasets):
    # Image 0 of the train split: the XML's 1-based pixels (x - 1) / W equal the YOLO line and the COCO bbox.
    import xml.etree.ElementTree as ET
    obj = ET.parse(os.path.join(datasets["voc"], "Annotations", "000001.xml")).getroot().find("object/bndbox")
    x0, y0, x1, y1 = (float(obj.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
    expected = np.float32([(x0 - 1) / 72, (y0 - 1) / 56, (x1 - 1) / 72, (y1 - 1) / 56])
    coco = json.load(open(os.path.join(datasets["coco"], "annotations", "instances_train.json")))
    assert coco["annotations"][0]["bbox"] == [x0 - 1, y0 - 1, x1 - x0, y1 - y0]
    for fmt in formats.FORMATS:
        rec = sources.make_source(_cfg(fmt, datasets[fmt], class_names=NAMES), "train")[0]
        np.testing.assert_array_equal(rec["boxes"][0], expected)


def test_discovered_names_sorted_and_saved(datasets, tmp_path):
    c = _cfg("voc", datasets["voc"])
    assert sources.class_names(c) == tuple(sorted(NAMES))
    path = sources.save_class_names(str(tmp_path), sources.class_names(c))
    assert formats.read_names_file(path) == tuple(sorted(NAMES))
    assert sources.class_names(_cfg("voc", datasets["voc"], names_file=path)) == tuple(sorted(NAMES))
    # COCO: category-id order even though written as ids 1, 3, 5.
    assert sources.class_names(_cfg("coco", datasets["coco"])) == NAMES


def test_darknet_data_file_and_list_files(datasets, tmp_path):
    # darknet layout: images with labels beside them, train.txt / valid.txt lists, obj.data + obj.names.
    yolo = os.path.dirname(datasets["yolo"])
    d = tmp_path / "darknet"
    d.mkdir()
    lists = {}
    for split in SPLITS:
        lines = []
        for name in sorted(os.listdir(os.path.join(yolo, "images", split))):
            stem = os.path.splitext(name)[0]
            os.link(os.path.join(yolo, "images", split, name), d / name)
            label = os.path.join(yolo, "labels", split, stem + ".txt")
            if os.path.exists(label):
                os.link(label, d / (stem + ".txt"))
            lines.append(name)  # relative to the list file's folder
        lists[split] = d / f"{split}.txt"
        lists[split].write_text("\n".join(lines) + "\n")
    (d / "obj.names").write_text("\n".join(NAMES) + "\n")
    (d / "obj.data").write_text("classes = 3\ntrain = train.txt\nvalid = val.txt\nnames = obj.names\n")
    c = _cfg("yolo", str(d / "obj.data"), eval_split="valid")
    assert sources.class_names(c) == NAMES
    ref = sources.make_source(_cfg("yolo", datasets["yolo"]), "val")
    got = sources.make_source(c, "valid")
    assert len(got) == len(ref)
    for i in range(len(ref)):
        np.testing.assert_array_equal(got[i]["boxes"], ref[i]["boxes"])
        assert got[i]["image_bytes"] == ref[i]["image_bytes"]


def test_vocdevkit_layout_with_own_classes(tmp_path):
    cfg = synthetic.default_synthetic_config()
    cfg.update(image_width=40, image_height=32, num_classes=3)
    synthetic.write_voc_devkit(str(tmp_path), cfg, year="2007", num_train=4, num_eval=2)
    # write_voc_devkit names classes by VOC names; any class list that holds them works, e.g. 3 of them.
    c = _cfg("voc", str(tmp_path), train_split="2007_trainval", eval_split="2007_test")
    assert sources.class_names(c) == ("aeroplane", "bicycle", "bird")
    assert len(sources.make_source(c, "2007_trainval")) == 4
    assert len(sources.make_source(dict(c, train_split="trainval"), "trainval")) == 4  # one year: plain name


# ------------------------------------------------------------------------------------------ bad input
def _yolo_root(tmp_path, label_text, names=("a", "b")):
    img_dir, lab_dir = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    cv2.imwrite(str(img_dir / "x.jpg"), np.zeros((10, 20, 3), np.uint8))
    (lab_dir / "x.txt").write_text(label_text)
    (tmp_path / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/train\nnames: {list(names)}\n")
    return str(tmp_path / "data.yaml"), str(lab_dir / "x.txt")


@pytest.mark.parametrize("text,message", [
    ("0 .5 .5 .2 .2\n1 .5 .5 .2 .2\n2 .5 .5 .1 .1\n", r":3: class index 2 out of range: the dataset has 2 classes"),
    ("0 .5 .5 .2\n", r":1: malformed label line \(expected 'class cx cy w h', got 4 fields\)"),
    ("\n0 .5 .5 .2 x\n", r":2: malformed label line \(expected an integer class"),
    ("0 .5 .5 -.2 .1\n", r":1: malformed label line \(sizes must be finite"),
])
def test_yolo_label_errors_name_file_and_line(tmp_path, text, message):
    root, label = _yolo_root(tmp_path, text)
    with pytest.raises(formats.DatasetError, match=f"^{label}{message}") as e:
        sources.make_source(_cfg("yolo", root), "train")
    assert "\n" not in str(e.value)


def test_missing_listed_image_names_list_file_and_line(tmp_path):
    root, _ = _yolo_root(tmp_path, "")
    (tmp_path / "list.txt").write_text("images/train/x.jpg\nimages/train/gone.jpg\n")
    with pytest.raises(formats.DatasetError, match=r"list.txt:2: listed image not found: .*gone.jpg$"):
        sources.make_source(_cfg("yolo", str(tmp_path), class_names=("a", "b")), "list")


def test_voc_unknown_class_and_missing_image(tmp_path):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "ImageSets/Main/train.txt").write_text("a\nb\n")
    xml = ("<annotation><filename>{}.jpg</filename><size><width>20</width><height>10</height></size><object>"
           "<name>{}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
           "</annotation>")
    (tmp_path / "Annotations/a.xml").write_text(xml.format("a", "cone"))
    (tmp_path / "Annotations/b.xml").write_text(xml.format("b", "kite"))
    cv2.imwrite(str(tmp_path / "JPEGImages/a.jpg"), np.zeros((10, 20, 3), np.uint8))
    c = _cfg("voc", str(tmp_path), class_names=("cone",), eval_split="")
    with pytest.raises(formats.DatasetError, match=r"b.xml: object 0: <name> 'kite' is not a known class"):
        sources.make_source(c, "train")
    (tmp_path / "Annotations/b.xml").write_text(xml.format("b", "cone"))
    with pytest.raises(formats.DatasetError, match=r"train.txt:2: listed image not found: .*b.jpg"):
        sources.make_source(c, "train")


def test_coco_unknown_name_and_bad_entries(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "train").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "a.png"), np.zeros((10, 20, 3), np.uint8))
    data = {"images": [{"id": 7, "file_name": "a.png", "width": 20, "height": 10}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 4, "bbox": [0, 0, 5, 5]},
                            {"id": 2, "image_id": 7, "category_id": 9, "bbox": [0, 0, 5, 5]}],
            "categories": [{"id": 4, "name": "cone"}]}
    path = tmp_path / "annotations" / "instances_train.json"
    path.write_text(json.dumps(data))
    c = _cfg("coco", str(tmp_path), eval_split="")
    with pytest.raises(formats.DatasetError, match=r"instances_train.json: annotations\[1\] \(id 2\): category_id 9"):
        sources.make_source(c, "train")
    with pytest.raises(formats.DatasetError, match=r"categories\[0\] \(id 4\): class name 'cone' is not one of"):
        sources.make_source(dict(c, class_names=("kite",)), "train")
    data["annotations"] = [{"id": 1, "image_id": 7, "category_id": 4, "bbox": [-5, 2, 10, 3], "iscrowd": 1},
                           {"id": 2, "image_id": 7, "category_id": 4, "bbox": [3, 3, 0, 4]}]
    path.write_text(json.dumps(data))
    before = dict(formats.DATA_WARNINGS)
    rec = sources.make_source(c, "train")[0]
    # [-5, 2, 10, 3] -> [-.25, .2, .25, .5] clipped to [0, .2, .25, .5]; the zero-width box is dropped.
    np.testing.assert_array_equal(rec["boxes"], np.float32([[0, 0.2, 0.25, 0.5]]))
    np.testing.assert_array_equal(rec["difficult"], [True])  # iscrowd -> difficult
    assert formats.DATA_WARNINGS["box_outside_image"] == before.get("box_outside_image", 0) + 1
    assert formats.DATA_WARNINGS["empty_box"] == before.get("empty_box", 0) + 1


def test_format_and_source_must_agree():
    with pytest.raises(formats.DatasetError, match="set data.source='files'"):
        sources.make_source(dict(pipeline.default_data_config(), format="yolo", root="/x"), "train")
    with pytest.raises(formats.DatasetError, match="needs data.format"):
        sources.class_names(dict(pipeline.default_data_config(), source="files"))
    # Today's configs are unchanged: default format "" keeps the VOC source.
    assert sources.class_names(pipeline.default_data_config())[0] == "aeroplane"


# -------------------------------------------------------------------------------------------- images
def _pil_reference(data):
    from PIL import Image, ImageOps
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def test_exif_orientation_applied():
    from PIL import Image
    img = np.zeros((20, 30, 3), np.uint8)
    img[:4, :6] = (255, 0, 0)  # a red corner to follow
    for orientation in (3, 6, 8):
        exif = Image.Image().getexif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=95, exif=exif.tobytes())
        out = sources.decode_image(buf.getvalue())
        ref = _pil_reference(buf.getvalue())
        assert out.shape == ref.shape == ((20, 30, 3) if orientation == 3 else (30, 20, 3))
        assert np.abs(out.astype(int) - ref).max() <= 1


def test_cmyk_and_gray_jpeg_to_rgb():
    from PIL import Image
    rgb = np.random.default_rng(0).integers(0, 255, (16, 24, 3)).astype(np.uint8)
    for mode in ("CMYK", "L"):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, "JPEG", quality=95)
        out = sources.decode_image(buf.getvalue())
        assert out.shape == (16, 24, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - _pil_reference(buf.getvalue())).max() <= 1


def test_jpeg_trailing_bytes_accepted_truncation_rejected():
    from PIL import Image
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (40, 40, 3)).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", img)
    data = jpg.tobytes()
    padded = data + b"\x00" * 300 + b"trailing junk after EOI" * 10
    np.testing.assert_array_equal(sources.decode_image(padded), sources.decode_image(data))
    for cut in (len(data) - 2, len(data) // 2, 200):
        with pytest.raises(sources.CorruptImageError):
            sources.decode_image(data[:cut], "x")
    # An EXIF thumbnail holds its own EOI: a main image cut short must still be caught.
    thumb = Image.fromarray(img[:8, :8])
    exif = Image.Image().getexif()
    exif[0x0112] = 1
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", exif=exif.tobytes())
    full = buf.getvalue()
    assert sources.decode_image(full).shape == (40, 40, 3)
    with pytest.raises(sources.CorruptImageError):
        sources.decode_image(full[: len(full) - 100], "x")
    # Progressive JPEG: several scans.
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", progressive=True)
    assert sources.decode_image(buf.getvalue() + b"\xff\xd9junk").shape == (40, 40, 3)
    with pytest.raises(sources.CorruptImageError):
        sources.decode_image(buf.getvalue()[:-50], "x")
    del thumb


# ------------------------------------------------------------------------------------------- anchors
def test_compute_anchors_from_config_in_the_config_unit(datasets, tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "compute_anchors", os.path.join(os.path.dirname(__file__), "..", "experiments", "compute_anchors.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "a.json"
    assert script.main(["--format", "coco", "--root", datasets["coco"], "--image_size", "320", "--k", "3",
                        "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["grid"] == 10 and s["image_size"] == 320
    np.testing.assert_allclose(np.array(s["anchors"]) / 10, s["anchors_normalized"], rtol=1e-12)
    assert "config.model.anchors = ((" in capsys.readouterr().out
    # The same boxes training reads, through any format: YOLO gives the same anchors.
    assert script.main(["--format", "yolo", "--root", datasets["yolo"], "--image_size", "320", "--k", "3",
                        "--json", str(tmp_path / "b.json")]) == 0
    np.testing.assert_allclose(json.loads((tmp_path / "b.json").read_text())["anchors"], s["anchors"], rtol=1e-6)
    assert script.main(["--format", "yolo", "--root", datasets["yolo"], "--image_size", "300"]) == 1
    assert "multiple of 32" in capsys.readouterr().err
    # The config path with --config.a.b= overrides (the one override style of every tool) gives the same anchors.
    custom = os.path.join(os.path.dirname(__file__), "..", "configs", "custom.py")
    assert script.main(["--config", custom, "--config.data.format=yolo", f"--config.data.root={datasets['yolo']}",
                        "--config.data.image_size=320", "--config.model.v2.num_anchors=3",
                        "--json", str(tmp_path / "c.json")]) == 0
    np.testing.assert_allclose(json.loads((tmp_path / "c.json").read_text())["anchors"], s["anchors"], rtol=1e-6)
    assert script.main(["--config", custom, "--config.data.rooot=x"]) == 1
    assert 'Did you mean "root" instead of "rooot"?' in capsys.readouterr().err  # the hint survives


def test_anchor_fit_warning():
    from yolojax.ops import anchors as anchor_lib
    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.uniform(0.1, 0.15, (200, 2)), rng.uniform(0.4, 0.5, (200, 2))])
    good, _ = anchor_lib.kmeans_anchors(wh, 2)
    assert anchor_lib.anchor_fit_warning(good * 10, wh, 10) is None
    msg = anchor_lib.anchor_fit_warning(good * 10 * 416 / 320, wh, 10)  # made for 416 px, used at 320 px
    assert msg is not None and "mean best IoU" in msg and "\n" not in msg


def test_yolo_folder_with_its_data_yaml_and_box_shapes(datasets):
    folder = os.path.dirname(datasets["yolo"])
    c = _cfg("yolo", folder)
    assert sources.class_names(c) == NAMES  # names from the folder's data.yaml, not class_0..
    wh = sources.box_shapes(c, "train", include_difficult=True)
    ref = sources.make_source(_cfg("voc", datasets["voc"], class_names=NAMES), "train")
    boxes = np.concatenate([ref[i]["boxes"] for i in range(len(ref))]).astype(np.float64)
    np.testing.assert_array_equal(wh, boxes[:, 2:] - boxes[:, :2])
    with pytest.raises(formats.DatasetError, match="does not exist"):
        sources.class_names(_cfg("yolo", folder + "/nowhere.yaml"))
