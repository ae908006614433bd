"""Augmentations: hand-computed geometry, and a drawn rectangle that must follow its box through every op."""
import numpy as np
import pytest

from yolojax.data import augment, pipeline, synthetic
from yolojax.ops import boxes as box_lib


def _rect_example(w=120, h=90, box_px=(30, 20, 80, 60)):
    """A black image with one white filled rectangle covering pixels [x0, x1) x [y0, y1)."""
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box_px
    img[y0:y1, x0:x1] = 255
    boxes = np.array([[x0 / w, y0 / h, x1 / w, y1 / h]], np.float32)
    return {"image": img, "boxes": boxes, "classes": np.array([3], np.int32), "difficult": np.array([False]),
            "truncated": np.array([False]), "image_id": "r"}


def _drawn_box_px(image):
    """Continuous pixel xyxy of the pixels brighter than half: [min, max + 1)."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def test_matrices_hand_computed():
    np.testing.assert_allclose(augment.resize_matrix((200, 100), (100, 50))[:2], [[0.5, 0, 0], [0, 0.5, 0]])
    # 200x100 into 100x100: scale 0.5, image 100x50 centered -> 25 px bands above and below.
    np.testing.assert_allclose(augment.letterbox_matrix((200, 100), (100, 100))[:2], [[0.5, 0, 0], [0, 0.5, 25]])
    np.testing.assert_array_equal(augment.hflip_matrix(10) @ augment.hflip_matrix(10), np.eye(3))


def test_transform_boxes_letterbox_and_back():
    m = augment.letterbox_matrix((200, 100), (100, 100))
    out = augment.transform_boxes(np.array([[0, 0, 1, 1], [0.5, 0.5, 1, 1]]), m, (200, 100), (100, 100))
    np.testing.assert_allclose(out, [[0, 0.25, 1, 0.75], [0.5, 0.5, 1, 0.75]], atol=1e-7)
    back = augment.input_boxes_to_original(out, (100, 200), (100, 100), letterbox_eval=True)
    np.testing.assert_allclose(back, [[0, 0, 1, 1], [0.5, 0.5, 1, 1]], atol=1e-6)


def test_clip_and_filter_hand_computed():
    ex = _rect_example(100, 100)
    ex = dict(ex, boxes=np.array([[-0.5, 0.2, 0.5, 0.6],    # half visible: kept, clipped to x 0..0.5
                                  [-0.9, 0.2, 0.1, 0.6],    # 10% visible: dropped
                                  [0.3, 0.3, 0.305, 0.6],   # 0.5 px wide: dropped
                                  [0.2, 0.2, 0.4, 1.1]], np.float32),  # 0.8/0.9 visible: kept
              classes=np.arange(4, dtype=np.int32), difficult=np.zeros(4, bool), truncated=np.zeros(4, bool))
    out = augment.clip_and_filter_boxes(ex, min_size_px=1.0, min_visible_fraction=0.25)
    np.testing.assert_array_equal(out["classes"], [0, 3])
    np.testing.assert_allclose(out["boxes"], [[0, 0.2, 0.5, 0.6], [0.2, 0.2, 0.4, 1.0]], atol=1e-7)
    assert len(out["difficult"]) == len(out["truncated"]) == 2


def test_flip_twice_is_identity():
    ex = synthetic.SyntheticSource(synthetic.default_synthetic_config(), "train")[3]
    once = augment.hflip(ex)
    twice = augment.hflip(once)
    np.testing.assert_array_equal(twice["image"], ex["image"])
    np.testing.assert_allclose(twice["boxes"], ex["boxes"], atol=1e-6)
    assert not np.array_equal(once["image"], ex["image"])
    # The flipped rectangle: x -> 1 - x, hand-computed.
    r = augment.hflip(_rect_example(100, 100, (10, 20, 30, 60)))
    np.testing.assert_allclose(r["boxes"], [[0.7, 0.2, 0.9, 0.6]], atol=1e-7)
    np.testing.assert_array_equal(_drawn_box_px(r["image"]), [70, 20, 90, 60])


def _ops():
    """(name, fn(example, rng)) for every geometric op, each on its own and composed."""
    v2 = pipeline.augment_preset("v2")
    v1 = pipeline.augment_preset("v1")
    lb = pipeline.augment_preset("v2")
    lb.letterbox = True
    lb.exposure = 1.0  # keeps the gray (127) padding below the detection threshold of the white rectangle
    return [
        ("resize", lambda e, r: augment.resize(e, (128, 192))),
        ("letterbox", lambda e, r: augment.letterbox(e, (192, 192))),
        ("flip", lambda e, r: augment.random_hflip(e, r, p=1.0)),
        ("jitter", lambda e, r: augment.random_crop_jitter(e, r, 0.3, (192, 192))),
        ("scale_translate", lambda e, r: augment.random_scale_translate(e, r, 0.2, 0.2)),
        ("hsv", lambda e, r: augment.random_hsv(e, r, 0.1, 1.5, 1.5)),
        ("train_v2", lambda e, r: augment.train_augment(e, r, (192, 192), v2)),
        ("train_v1", lambda e, r: augment.train_augment(e, r, (224, 224), v1)),
        ("train_v2_letterbox", lambda e, r: augment.train_augment(e, r, (192, 192), lb)),
    ]


@pytest.mark.parametrize("name,op", _ops(), ids=[n for n, _ in _ops()])
def test_drawn_rectangle_follows_its_box(name, op):
    checked = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        x0, y0 = rng.integers(30, 100), rng.integers(30, 70)
        ex = _rect_example(240, 180, (x0, y0, x0 + rng.integers(40, 100), y0 + rng.integers(30, 80)))
        out = op(ex, np.random.default_rng(seed))
        h, w = out["image"].shape[:2]
        drawn = _drawn_box_px(out["image"])
        if len(out["boxes"]) == 0:  # cut away (clip_and_filter's rule is tested by hand above)
            continue
        box_px = out["boxes"][0] * np.array([w, h, w, h])
        assert drawn is not None
        assert box_lib.iou(box_px, drawn) >= 0.9, (name, seed, box_px, drawn)
        checked += 1
    assert checked >= 8  # most draws keep the rectangle


def test_no_zero_area_or_outside_boxes_after_training_augmentation():
    cfg = synthetic.default_synthetic_config()
    cfg.truncation_prob = 0.5
    src = synthetic.SyntheticSource(cfg, "train")
    aug = pipeline.augment_preset("v2")
    aug.jitter = 0.45  # harsher than darknet, to produce many cut boxes
    n_boxes = 0
    for i in range(40):
        out = augment.train_augment(src[i], np.random.default_rng(i), (64, 64), aug)
        b = out["boxes"]
        assert b.dtype == np.float32 and np.isfinite(b).all()
        assert (b >= 0).all() and (b <= 1).all()
        assert ((b[:, 2] - b[:, 0]) * 64 >= 1.0).all() and ((b[:, 3] - b[:, 1]) * 64 >= 1.0).all()
        assert len(b) == len(out["classes"]) == len(out["difficult"]) == len(out["truncated"])
        n_boxes += len(b)
    assert n_boxes > 40


def test_hsv_adjust_hand_computed():
    gray = np.full((2, 2, 3), 100, np.uint8)
    np.testing.assert_array_equal(augment.hsv_adjust(gray, 0.0, 1.0, 1.5), np.full((2, 2, 3), 150))
    np.testing.assert_array_equal(augment.hsv_adjust(gray, 0.0, 1.5, 1.0), gray)  # gray has no saturation
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    # One third of the hue circle: red -> green.
    np.testing.assert_array_equal(augment.hsv_adjust(red, 1 / 3, 1.0, 1.0)[0, 0], [0, 255, 0])


def test_rand_scale_range_and_both_directions():
    rng = np.random.default_rng(0)
    f = np.array([augment._rand_scale(rng, 1.5) for _ in range(400)])
    assert (f >= 1 / 1.5 - 1e-9).all() and (f <= 1.5 + 1e-9).all()
    assert (f < 1).mean() == pytest.approx(0.5, abs=0.1)


def test_drop_difficult_and_eval_keeps_everything():
    ex = _rect_example()
    ex = dict(ex, boxes=np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.201, 0.3]], np.float32),
              classes=np.array([1, 2], np.int32), difficult=np.array([True, False]), truncated=np.zeros(2, bool))
    np.testing.assert_array_equal(augment.drop_difficult(ex)["classes"], [2])
    out = augment.eval_preprocess(ex, (64, 64))  # tiny box kept at evaluation
    np.testing.assert_array_equal(out["classes"], [1, 2])
    np.testing.assert_allclose(out["boxes"], ex["boxes"], atol=1e-6)


def test_train_augment_is_geometry_only():
    # The host no longer touches colours (the HSV jitter runs on the device): with the v2 preset, every output
    # pixel comes from the source by interpolation, so a two-colour image stays within those two colours'
    # range and the letterbox fill stays exactly gray.
    ex = _rect_example(240, 180)
    ex["image"][ex["image"] == 0] = 40
    for seed in range(6):
        out = augment.train_augment(ex, np.random.default_rng(seed), (96, 96), pipeline.augment_preset("v2"))
        assert out["image"].min() >= 40 and out["image"].max() <= 255
        assert (out["image"][..., 0] == out["image"][..., 1]).all()  # gray in, gray out: no hue shift
    lb = pipeline.augment_preset("v2")
    lb.update(letterbox=True, jitter=0.0, flip=False)
    out = augment.train_augment(ex, np.random.default_rng(0), (120, 120), lb)  # 240x180 -> 120x90, bands of 15
    assert (out["image"][:15] == augment.GRAY).all() and (out["image"][-15:] == augment.GRAY).all()


def test_train_augment_is_train_matrix_then_warp():
    ex = _rect_example(240, 180)
    aug = pipeline.augment_preset("v1")
    out = augment.train_augment(ex, np.random.default_rng(3), (64, 64), aug)
    m = augment.train_matrix(np.random.default_rng(3), (240, 180), (64, 64), aug)
    ref = augment.train_warp(ex, m, (64, 64), aug)
    np.testing.assert_array_equal(out["image"], ref["image"])
    np.testing.assert_array_equal(out["boxes"], ref["boxes"])


def test_hsv_adjust_rejects_negative_factors():
    with pytest.raises(ValueError, match="saturation and exposure"):
        augment.hsv_adjust(np.zeros((2, 2, 3), np.uint8), 0.0, -1.0, 1.0)


def test_zoom_shows_a_window_of_the_image_at_zoom_times_the_scale():
    aug = pipeline.augment_preset("none")
    plain = augment.train_matrix(np.random.default_rng(5), (240, 180), (64, 64), aug)
    aug.zoom = 2.5
    seen = []
    for seed in range(200):
        m = augment.train_matrix(np.random.default_rng(seed), (240, 180), (64, 64), aug)
        # the plain fit, enlarged 2.5 times, then shifted so that the 64 x 64 output lies inside it
        np.testing.assert_allclose(m[:2, :2], 2.5 * plain[:2, :2], rtol=1e-12)
        ox, oy = -m[0, 2], -m[1, 2]
        assert 0 <= ox <= 1.5 * 64 and 0 <= oy <= 1.5 * 64
        seen.append((ox, oy))
    seen = np.array(seen)  # the window's place is uniform over where it can be
    assert seen.min(0).max() < 0.05 * 96 and seen.max(0).min() > 0.95 * 96
    np.testing.assert_allclose(seen.mean(0), [48, 48], atol=6)
    with pytest.raises(ValueError, match="augment.zoom=0.5"):
        augment.zoom_window_matrix(np.random.default_rng(0), (64, 64), 0.5)
