"""Synthetic dataset: determinism, tight boxes, splits, and the VOCdevkit round trip."""
import os

import numpy as np
import pytest

from yolojax.data import sources, synthetic


@pytest.fixture(scope="module")
def cfg():
    c = synthetic.default_synthetic_config()
    c.image_width, c.image_height = 96, 72
    c.num_train, c.num_eval = 12, 6
    return c


def test_deterministic_by_seed_and_split(cfg):
    a, b = synthetic.SyntheticSource(cfg, "train"), synthetic.SyntheticSource(cfg, "train")
    for i in (0, 5, 11):
        x, y = a[i], b[i]
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["boxes"], y["boxes"])
    ev = synthetic.SyntheticSource(cfg, "eval")
    assert not np.array_equal(ev[0]["image"], a[0]["image"])
    assert ev.image_id(0) not in {a.image_id(i) for i in range(len(a))}
    other = dict(cfg, seed=1)
    assert not np.array_equal(synthetic.SyntheticSource(other, "train")[0]["image"], a[0]["image"])
    with pytest.raises(IndexError):
        a[12]


def test_example_format_and_any_size(cfg):
    c = dict(cfg, image_width=200, image_height=50, num_classes=20, max_objects=8)
    for i in range(5):
        ex = synthetic.SyntheticSource(c, "train")[i]
        assert ex["image"].shape == (50, 200, 3) and ex["image"].dtype == np.uint8
        n = len(ex["boxes"])
        assert ex["boxes"].shape == (n, 4) and ex["boxes"].dtype == np.float32
        assert ex["classes"].dtype == np.int32 and ((ex["classes"] >= 0) & (ex["classes"] < 20)).all()
        assert ex["difficult"].dtype == bool and ex["truncated"].dtype == bool
        assert (ex["boxes"] >= 0).all() and (ex["boxes"] <= 1).all()
        assert (ex["boxes"][:, 2] > ex["boxes"][:, 0]).all() and (ex["boxes"][:, 3] > ex["boxes"][:, 1]).all()


def test_boxes_are_tight_around_the_drawn_shape():
    # One red rectangle, no clutter or noise: the red pixels fill exactly the annotated box.
    c = synthetic.default_synthetic_config()
    c.update(num_classes=1, min_objects=1, max_objects=1, clutter=0.0, noise_std=0.0, truncation_prob=0.0,
             image_width=80, image_height=60)
    for i in range(4):
        scene = synthetic.SyntheticSource(c, "train").scene(i)
        red = (scene["image"][..., 0] > 150) & (scene["image"][..., 1] < 100)
        ys, xs = np.nonzero(red)
        # VOC 1-based inclusive: first pixel index + 1 .. last pixel index + 1.
        np.testing.assert_array_equal(scene["boxes_px"][0], [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1])
        assert red.sum() == (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)


@pytest.mark.parametrize("shape", synthetic.SHAPES)
def test_every_shape_touches_its_patch_edges(shape):
    for w, h in ((9, 7), (30, 18), (17, 40)):
        m = synthetic._shape_mask(shape, w, h)
        ys, xs = np.nonzero(m)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (0, 0, w - 1, h - 1), (shape, w, h)


def test_classes_differ_in_shape_and_colour():
    names = synthetic.class_names(10)
    shapes = [n.split()[1] for n in names]
    colours = [n.split()[0] for n in names]
    assert len(set(shapes)) == 10 and len(set(colours)) == 10
    assert len(set(synthetic.class_names(20))) == 20
    with pytest.raises(ValueError, match="num_classes"):
        synthetic.SyntheticSource(dict(synthetic.default_synthetic_config(), num_classes=21), "train")[0]


def test_difficult_flags_heavily_occluded_objects():
    c = synthetic.default_synthetic_config()
    c.update(min_objects=6, max_objects=6, max_overlap_iou=1.0, num_train=30)
    src = synthetic.SyntheticSource(c, "train")
    flags = np.concatenate([src[i]["difficult"] for i in range(30)])
    assert 0 < flags.sum() < len(flags)


def test_write_voc_devkit_round_trip(tmp_path, cfg):
    voc_dir = synthetic.write_voc_devkit(str(tmp_path), cfg)
    assert sorted(os.listdir(os.path.join(voc_dir, "ImageSets", "Main"))) == [
        "test.txt", "train.txt", "trainval.txt", "val.txt"]
    for split, image_set in (("train", "trainval"), ("eval", "test")):
        mem = synthetic.SyntheticSource(cfg, split)
        disk = sources.VocDevkitSource(str(tmp_path / "VOCdevkit"), "2007", image_set)
        assert len(disk) == len(mem)
        for i in range(len(mem)):
            a, b = mem[i], sources.decode_record(disk[i])
            assert a["image_id"] == b["image_id"]
            for k in ("boxes", "classes", "difficult", "truncated"):
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            # JPEG (quality 95, chroma subsampled, pixel noise): close to the drawn image.
            assert np.abs(a["image"].astype(int) - b["image"]).mean() < 8.0
