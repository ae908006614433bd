"""VOC sources: the real TFDS `voc` builder fed with local files gives the same examples as the tree itself."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from yolojax.data import pipeline, sources, synthetic

RECORD_KEYS = ("boxes", "classes", "difficult", "truncated", "image_id", "image_bytes")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """A synthetic VOCdevkit (2007: 8 trainval + 5 test; 2012: 6 trainval), its tarballs, and TFDS prepared
    from them through the real builder: 2007 from the tarballs, 2012 from the extracted tree."""
    root = tmp_path_factory.mktemp("voc")
    cfg = synthetic.default_synthetic_config()
    cfg.image_width, cfg.image_height = 80, 60
    cfg.update(min_objects=2, max_objects=5, max_overlap_iou=0.8)  # some difficult (occluded) objects
    synthetic.write_voc_devkit(str(root / "tree"), cfg, year="2007", num_train=8, num_eval=5)
    synthetic.write_voc_devkit(str(root / "tree"), dict(cfg, seed=7), year="2012", num_train=6, num_eval=0)
    os.remove(root / "tree" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "test.txt")  # as in real 2012
    devkit = str(root / "tree" / "VOCdevkit")
    tars = str(root / "tars")
    sources.make_voc_tarballs(devkit, "2007", tars)
    tfds_dir = str(root / "tfds")
    sources.prepare_tfds_voc("2007", tfds_dir, tarball_dir=tars)
    sources.prepare_tfds_voc("2012", tfds_dir, devkit_dir=devkit)
    return {"root": root, "devkit": devkit, "tars": tars, "tfds": tfds_dir}


def _by_id(src):
    return {src.image_id(i): src[i] for i in range(len(src))}


def _assert_same_records(a, b):
    assert sorted(a) == sorted(b)
    for image_id in a:
        for k in RECORD_KEYS:
            x, y = a[image_id][k], b[image_id][k]
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype, (image_id, k)
                np.testing.assert_array_equal(x, y, err_msg=f"{image_id} {k}")
            else:
                assert x == y, (image_id, k)


@pytest.mark.parametrize("split", ["2007_trainval", "2007_train", "2007_val", "2007_test", "2012_trainval", "07+12"])
def test_tfds_equals_devkit_tree(voc, split):
    tfds_src = sources.make_source(dict(pipeline.default_data_config(), source="tfds", tfds_data_dir=voc["tfds"]),
                                   split)
    dir_src = sources.make_source(dict(pipeline.default_data_config(), source="voc_dir", voc_dir=voc["devkit"]),
                                  split)
    expected = {"2007_trainval": 8, "2007_train": 4, "2007_val": 4, "2007_test": 5, "2012_trainval": 6,
                "07+12": 14}[split]
    assert len(tfds_src) == len(dir_src) == expected
    a, b = _by_id(tfds_src), _by_id(dir_src)
    _assert_same_records(a, b)
    for image_id in list(a)[:2]:  # decoded pixels too
        np.testing.assert_array_equal(sources.decode_record(a[image_id])["image"],
                                      sources.decode_record(b[image_id])["image"])
    if split == "07+12":
        assert sum(r["difficult"].sum() for r in a.values()) > 0  # difficult objects kept, flagged


def test_tarball_source_equals_tree(voc, tmp_path):
    cfg = dict(pipeline.default_data_config(), source="voc_tarballs", voc_tarballs=voc["tars"],
               extract_dir=str(tmp_path / "x"))
    for split in ("2007_trainval", "2007_test"):
        dir_src = sources.make_source(dict(cfg, source="voc_dir", voc_dir=voc["devkit"]), split)
        _assert_same_records(_by_id(sources.make_source(cfg, split)), _by_id(dir_src))


def test_tfds_stores_x_over_width_and_we_use_the_contract_convention(voc):
    # The TFDS builder normalizes as x_px / width (no 1-based offset); the Example uses (x_px - 1) / width.
    import tensorflow_datasets as tfds
    raw = tfds.data_source("voc/2007", split="test", data_dir=voc["tfds"], download=False,
                           decoders={"image": tfds.decode.SkipDecoding()})[0]
    image_id = raw["image/filename"].decode()[:-4]
    from yolojax.data import voc as voc_files
    ann = voc_files.parse_annotation(os.path.join(voc["devkit"], "VOC2007", "Annotations", f"{image_id}.xml"))
    w, h = ann["width"], ann["height"]
    b = ann["boxes_px"].astype(np.float64)
    np.testing.assert_allclose(raw["objects"]["bbox"], np.stack([b[:, 1] / h, b[:, 0] / w, b[:, 3] / h,
                                                                 b[:, 2] / w], 1), rtol=1e-6)
    rec = _by_id(sources.TfdsVocSource(voc["tfds"], "2007", "test"))[image_id]
    np.testing.assert_array_equal(rec["boxes"], ((b - 1) / [w, h, w, h]).astype(np.float32))


def test_tfds_source_reads_without_tensorflow(voc):
    """Training reads array_record through tfds.data_source: TensorFlow must not be needed (blocked here)."""
    code = textwrap.dedent(f"""
        import importlib.abc, importlib.util, sys
        _find = importlib.util.find_spec
        importlib.util.find_spec = lambda n, p=None: None if n.split('.')[0] == 'tensorflow' else _find(n, p)
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split('.')[0] == 'tensorflow':
                    raise ModuleNotFoundError('No module named ' + repr(name))
        sys.meta_path.insert(0, Block())
        from yolojax.data import sources
        src = sources.TfdsVocSource({voc['tfds']!r}, '2007', 'trainval')
        ex = sources.decode_record(src[0])
        assert 'tensorflow' not in sys.modules
        print(len(src), ex['image'].shape, len(ex['boxes']))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "8"


def test_hand_written_annotation_and_box_outside_image(tmp_path):
    voc_dir = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc_dir / sub).mkdir(parents=True)
    import cv2
    cv2.imwrite(str(voc_dir / "JPEGImages" / "a.jpg"), np.zeros((8, 10, 3), np.uint8))
    (voc_dir / "ImageSets/Main/test.txt").write_text("a\n")
    obj = ("<object><name>{}</name><pose>Left</pose><truncated>0</truncated><difficult>{}</difficult>"
           "<bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>")
    (voc_dir / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>10</width><height>8</height><depth>3</depth></size>"
        + obj.format("dog", 1, 1, 1, 10, 8) + obj.format("cat", 0, 6, 3, 15, 9) + "</annotation>")
    before = sources.DATA_WARNINGS.get("box_outside_image", 0)
    rec = sources.VocDevkitSource(str(tmp_path), "2007", "test")[0]
    # (x - 1) / width: [1, 1, 10, 8] -> [0, 0, .9, .875]; [6, 3, 15, 9] -> [.5, .25, 1.4, 1.0] -> clipped.
    np.testing.assert_array_equal(rec["boxes"], np.array([[0, 0, 0.9, 0.875], [0.5, 0.25, 1.0, 1.0]], np.float32))
    np.testing.assert_array_equal(rec["classes"], [11, 7])  # dog, cat in VOC order
    np.testing.assert_array_equal(rec["difficult"], [True, False])
    assert sources.DATA_WARNINGS["box_outside_image"] == before + 1


def test_decode_image_rejects_corrupt_and_truncated():
    import cv2
    ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    data = jpg.tobytes()
    assert sources.decode_image(data).shape == (16, 16, 3)
    for bad in (b"", b"not a jpeg at all", data[: len(data) // 2], b"\xff\xd8" + b"\x00" * 50 + b"\xff\xd9"):
        with pytest.raises(sources.CorruptImageError):
            sources.decode_image(bad, "x")
    ok, png = cv2.imencode(".png", np.full((4, 5, 3), 7, np.uint8))
    assert sources.decode_image(png.tobytes()).shape == (4, 5, 3)


def test_named_splits_follow_the_papers():
    assert sources.VOC_SPLITS["07+12"] == (("2007", "trainval"), ("2012", "trainval"))
    assert sources.VOC_SPLITS["2007_test"] == (("2007", "test"),)
    with pytest.raises(ValueError, match="07\\+12"):
        sources.make_source(dict(pipeline.default_data_config(), source="voc_dir", voc_dir="/nonexistent"), "07+13")


@pytest.mark.parametrize("split", ["2007_trainval", "2007_test", "2012_trainval", "2007_train+2007_val"])
def test_files_voc_format_equals_voc_dir(voc, split):
    # The own-dataset VOC reader (any class names, here VOC's) gives the legacy reader's records bit for bit.
    # ("+" joins splits; the synthetic 2007 and 2012 trees reuse image ids, which one split may not.)
    from yolojax.config.classes import VOC_CLASSES
    legacy = sources.make_source(dict(pipeline.default_data_config(), source="voc_dir", voc_dir=voc["devkit"]),
                                 "2007_trainval" if "+" in split else split)
    files = sources.make_source(dict(pipeline.default_data_config(), source="files", format="voc",
                                     root=voc["devkit"], class_names=VOC_CLASSES), split)
    _assert_same_records(_by_id(legacy), _by_id(files))


def test_jpeg_with_trailing_bytes_is_accepted():
    import cv2
    ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    data = jpg.tobytes()
    np.testing.assert_array_equal(sources.decode_image(data + b"\x00" * 1000), sources.decode_image(data))
