"""Pipeline: batch format, determinism across workers, resumption, multi-scale schedule, bad input."""
import json
import os

import cv2
import numpy as np
import pytest

from yolojax.data import pipeline, sources, synthetic


def _cfg(**kw):
    c = pipeline.default_data_config()
    c.source, c.train_split, c.eval_split = "synthetic", "train", "eval"
    c.synthetic.image_width, c.synthetic.image_height = 80, 64
    c.synthetic.num_train, c.synthetic.num_eval = 20, 7
    c.image_size = 64
    c.max_boxes = 8
    c.num_threads = 1
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batch_format():
    b = next(pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=4))
    assert b["image"].shape == (4, 64, 64, 3) and b["image"].dtype == np.uint8  # float + jitter on the device
    assert b["boxes"].shape == (4, 8, 4) and b["boxes"].dtype == np.float32
    assert b["classes"].shape == (4, 8) and b["classes"].dtype == np.int32
    assert b["mask"].shape == (4, 8) and b["mask"].dtype == bool
    assert (b["classes"][~b["mask"]] == -1).all() and (b["boxes"][~b["mask"]] == 0).all()
    assert (b["classes"][b["mask"]] >= 0).all()
    bx = b["boxes"][b["mask"]]
    assert ((bx[:, 2] - bx[:, 0]) * 64 >= 1).all() and ((bx[:, 3] - bx[:, 1]) * 64 >= 1).all()


def test_pad_objects_hand_computed():
    ex = {"boxes": np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.6, 0.7], [0, 0, 1, 1]], np.float32),
          "classes": np.array([4, 0, 9], np.int32), "difficult": np.array([False, True, False])}
    p = pipeline.pad_objects(ex, 4, with_difficult=True)
    np.testing.assert_array_equal(p["classes"], [4, 0, 9, -1])
    np.testing.assert_array_equal(p["mask"], [True, True, True, False])
    np.testing.assert_array_equal(p["difficult"], [False, True, False, False])
    np.testing.assert_array_equal(p["boxes"][3], [0, 0, 0, 0])
    before = sources.DATA_WARNINGS.get("too_many_objects", 0)
    t = pipeline.pad_objects(ex, 2)  # more objects than max_boxes: the first two, with a counted warning
    np.testing.assert_array_equal(t["classes"], [4, 0])
    assert sources.DATA_WARNINGS["too_many_objects"] == before + 1


def test_deterministic_whatever_the_threads_and_workers():
    ref = _take(pipeline.make_train_iterator(_cfg(num_threads=1), seed=3, global_batch_size=4), 4)
    _assert_batches_equal(ref, _take(pipeline.make_train_iterator(_cfg(num_threads=4), seed=3, global_batch_size=4), 4))
    _assert_batches_equal(ref, _take(pipeline.make_train_iterator(_cfg(num_workers=2), seed=3, global_batch_size=4), 4))
    other = next(pipeline.make_train_iterator(_cfg(), seed=4, global_batch_size=4))
    assert not np.array_equal(other["image"], ref[0]["image"])


def test_resume_mid_epoch_gives_the_identical_next_batch():
    # 20 examples, batch 6: step 2 starts mid-epoch; steps 3-4 cross into the second (reshuffled) epoch.
    ref = _take(pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=6), 5)
    it = pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=6)
    _take(it, 2)
    state = json.loads(json.dumps(it.get_state()))
    assert state == {"step": 2}
    resumed = pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=6, start_step=state["step"])
    _assert_batches_equal(ref[2:], _take(resumed, 3))
    it.set_state({"step": 1})
    _assert_batches_equal(ref[1:3], _take(it, 2))
    assert it.get_state() == {"step": 3}


def test_every_example_once_per_epoch():
    # No augmentation, no shuffle of images lost: each epoch visits each record exactly once.
    c = _cfg(augment=pipeline.augment_preset("none"), drop_difficult=False)
    b = pipeline._TrainBatcher(c, sources.make_source(c, "train"), seed=1, global_batch_size=5, process_index=0,
                               process_count=1)
    for epoch in range(2):
        seen = sorted(b._record_index(epoch * 20 + p) for p in range(20))
        assert seen == list(range(20))
    assert [b._record_index(p) for p in range(20)] != [b._record_index(20 + p) for p in range(20)]


def test_processes_split_the_global_batch():
    full = next(pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=4, process_index=0, process_count=1))
    parts = [next(pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=4, process_index=k,
                                               process_count=2)) for k in range(2)]
    for key in full:
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), full[key])
    with pytest.raises(ValueError, match="divisible"):
        pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=5, process_index=0, process_count=2)


def test_multiscale_schedule():
    sizes = (32, 64, 96)
    c = _cfg(multiscale_sizes=sizes, multiscale_every_steps=3)
    it = pipeline.make_train_iterator(c, seed=5, global_batch_size=2)
    got = [next(it)["image"].shape for _ in range(12)]
    expected = [pipeline.multiscale_size(c, 5, s) for s in range(12)]
    assert [g[1:3] for g in got] == [(s, s) for s in expected]  # one size for the whole batch
    assert all(s in sizes for s in expected)
    for block in range(4):
        assert len(set(expected[3 * block:3 * block + 3])) == 1  # changes only every 3 steps
    long = [pipeline.multiscale_size(c, 5, s) for s in range(0, 600, 3)]
    assert set(long) == set(sizes)
    assert pipeline.darknet_multiscale_sizes() == (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)
    assert pipeline.multiscale_size(_cfg(), 5, 7) == 64  # no multi-scale: image_size


def test_training_drops_difficult_objects():
    c = _cfg(augment=pipeline.augment_preset("none"), shuffle=False)
    c.synthetic.update(min_objects=6, max_objects=6, max_overlap_iou=1.0)
    src = synthetic.SyntheticSource(c.synthetic, "train")
    b = next(pipeline.make_train_iterator(c, seed=0, global_batch_size=4))
    for i in range(4):
        ex = src[i]
        keep = ~ex["difficult"]
        assert b["mask"][i].sum() == min(keep.sum(), 8)
        np.testing.assert_array_equal(b["classes"][i][: keep.sum()], ex["classes"][keep][:8])
    assert sum((~src[i]["difficult"]).sum() for i in range(4)) < sum(len(src[i]["classes"]) for i in range(4))


def test_eval_batches():
    c = _cfg()
    data = pipeline.EvalData(c, "eval")
    batches = list(pipeline.make_eval_batches(c, "eval", 3, 48, process_index=0, process_count=1))
    assert len(batches) == 3
    idx = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(idx, [0, 1, 2, 3, 4, 5, 6, -1, -1])
    last = batches[-1]
    assert last["image"].shape == (3, 48, 48, 3) and not last["mask"][1:].any()
    np.testing.assert_array_equal(last["orig_size"][0], [64, 80])
    for b in batches:
        for j, i in enumerate(b["index"]):
            if i < 0:
                continue
            ex = data.example(int(i))
            n = len(ex["boxes"])
            np.testing.assert_allclose(b["boxes"][j, :n], ex["boxes"], atol=1e-6)
            np.testing.assert_array_equal(b["difficult"][j, :n], ex["difficult"])  # difficult kept, flagged
            assert data.image_id(int(i)) == ex["image_id"]
    # Two processes: contiguous shares, the same number of batches each.
    per = [list(pipeline.make_eval_batches(c, "eval", 3, 48, process_index=k, process_count=2)) for k in range(2)]
    assert len(per[0]) == len(per[1]) == 2
    got = np.concatenate([b["index"] for p in per for b in p])
    assert sorted(got[got >= 0].tolist()) == list(range(7))


@pytest.fixture(scope="module")
def bad_devkit(tmp_path_factory):
    """A VOCdevkit with a corrupt JPEG, a truncated JPEG, an image without objects, a box outside the image,
    and an image with more objects than max_boxes."""
    root = tmp_path_factory.mktemp("bad")
    sc = synthetic.default_synthetic_config()
    sc.update(image_width=64, image_height=48, num_train=8, num_eval=2, max_objects=3)
    voc_dir = synthetic.write_voc_devkit(str(root), sc)
    ids = sources.VocDevkitSource(str(root), "2007", "trainval").ids
    jpg = lambda i: os.path.join(voc_dir, "JPEGImages", f"{i}.jpg")
    xml = lambda i: os.path.join(voc_dir, "Annotations", f"{i}.xml")
    with open(jpg(ids[0]), "wb") as f:
        f.write(b"this is not a jpeg")
    data = open(jpg(ids[1]), "rb").read()
    with open(jpg(ids[1]), "wb") as f:
        f.write(data[: len(data) // 2])
    head = open(xml(ids[2])).read().split("<object>")[0]
    with open(xml(ids[2]), "w") as f:
        f.write(head + "</annotation>\n")
    obj = ("<object><name>{}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
           "<bndbox><xmin>{}</xmin><ymin>5</ymin><xmax>{}</xmax><ymax>40</ymax></bndbox></object>")
    with open(xml(ids[3]), "w") as f:
        f.write(head + obj.format("dog", 30, 90) + "</annotation>\n")  # x_max 90 > width 64
    with open(xml(ids[4]), "w") as f:
        f.write(head + "".join(obj.format("cat", 1 + 2 * k, 20 + 2 * k) for k in range(12)) + "</annotation>\n")
    return str(root / "VOCdevkit"), ids


def test_bad_input_is_handled(bad_devkit):
    devkit, ids = bad_devkit
    c = _cfg(source="voc_dir", voc_dir=devkit, train_split="2007_trainval", eval_split="2007_trainval",
             shuffle=False, augment=pipeline.augment_preset("none"), max_boxes=8)
    # Warnings are counted on the batcher itself: grain's threads prefetch ahead, in the background.
    batcher = pipeline._TrainBatcher(c, sources.make_source(c, c.train_split), seed=0, global_batch_size=8,
                                     process_index=0, process_count=1)
    before = dict(sources.DATA_WARNINGS)
    batches = [batcher(0), batcher(1)]
    delta = {k: v - before.get(k, 0) for k, v in sources.DATA_WARNINGS.items()}
    # Per epoch: position 0 tries records 0, 1 (both bad) then 2; position 1 tries record 1 then 2 -> 3 warnings.
    assert delta["corrupt_image"] == 6
    assert delta["box_outside_image"] >= 1 and delta["too_many_objects"] >= 1
    for b in batches:
        assert np.isfinite(b["image"]).all() and np.isfinite(b["boxes"]).all()
        bx = b["boxes"][b["mask"]]
        assert (bx >= 0).all() and (bx <= 1).all() and ((bx[:, 2:] - bx[:, :2]) > 0).all()
    b = batches[0]
    # Positions 0, 1 (corrupt) take records 2, 2 (next valid one): the image without objects, all-False mask.
    assert not b["mask"][:3].any()
    assert b["mask"][3, 0] and b["boxes"][3, 0, 2] == 1.0  # clipped to the image
    assert b["mask"][4].all()  # 12 objects truncated to max_boxes = 8
    _assert_batches_equal(batches, _take(pipeline.make_train_iterator(c, seed=0, global_batch_size=8), 2))
    ev = list(pipeline.make_eval_batches(c, "2007_trainval", 4, 32, process_index=0, process_count=1))
    np.testing.assert_array_equal(np.concatenate([e["index"] for e in ev]), [-1, -1, 2, 3, 4, 5, 6, 7])
    assert all(np.isfinite(e["image"]).all() for e in ev)


def test_prefetch_to_device_keeps_the_state():
    it = pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=2, start_step=5)
    dev = pipeline.prefetch_to_device(it, size=2)
    first = next(dev)
    assert dev.get_state() == {"step": 6}
    ref = next(pipeline.make_train_iterator(_cfg(), seed=0, global_batch_size=2, start_step=5))
    np.testing.assert_array_equal(np.asarray(first["image"]), ref["image"])


def test_stack_images_keeps_uint8():
    images = [np.full((1, 2, 3), v, np.uint8) for v in (0, 51, 255)]
    out = pipeline.stack_images(images)
    assert out.dtype == np.uint8 and out.shape == (3, 1, 2, 3)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [0, 51, 255])


def test_voc_annotations_parsed_once_and_records_are_copies(bad_devkit, monkeypatch):
    # The pipeline relies on VocDevkitSource caching the parsed XML (a third of a JPEG decode per read).
    from yolojax.data import voc

    devkit, ids = bad_devkit
    src = sources.VocDevkitSource(devkit, "2007", "trainval")
    calls = []
    parse = voc.parse_annotation
    monkeypatch.setattr(voc, "parse_annotation", lambda path: calls.append(path) or parse(path))
    first = src[5]
    first["boxes"][:] = -7  # a caller scribbling on its record must not reach the cache
    second = src[5]
    assert len(calls) == 1
    assert (second["boxes"] >= 0).all() and second["image_bytes"] == first["image_bytes"]
    assert second["image_id"] == ids[5] and len(second["classes"]) == len(second["boxes"])


# ------------------------------------------------------------------------------------- reduced-size decoding
def _jpeg(image, quality=95, exif_orientation=None):
    import io

    from PIL import Image

    im = Image.fromarray(image)
    buf = io.BytesIO()
    if exif_orientation is None:
        im.save(buf, "JPEG", quality=quality)
    else:
        exif = im.getexif()
        exif[0x0112] = exif_orientation
        im.save(buf, "JPEG", quality=quality, exif=exif)
    return buf.getvalue()


def test_header_size_and_reduced_decode_match_the_full_decoder():
    img = np.zeros((120, 200, 3), np.uint8)
    img[20:60, 30:110] = (250, 40, 10)
    plain, turned = _jpeg(img), _jpeg(img, exif_orientation=6)  # 6: shown turned by 90 degrees
    assert pipeline.encoded_image_size(plain) == (200, 120)
    assert pipeline._jpeg_frame_size(turned) is None  # EXIF: the orientation is read by PIL instead
    assert pipeline.encoded_image_size(turned) == (120, 200)
    for data in (plain, turned):
        full = sources.decode_image(data)
        assert full.shape[1::-1] == pipeline.encoded_image_size(data)
        np.testing.assert_array_equal(pipeline.decode_reduced(data, 1), full)
        for r in (2, 4):
            small = pipeline.decode_reduced(data, r)  # the same orientation and colours, 1/r the size
            assert small.shape == (-(-full.shape[0] // r), -(-full.shape[1] // r), 3)
            ref = cv2.resize(full, small.shape[1::-1], interpolation=cv2.INTER_AREA)
            assert np.abs(small.astype(int) - ref).mean() < 3.0
    with pytest.raises(sources.CorruptImageError):
        pipeline.decode_reduced(plain[: len(plain) // 2], 2, "x")
    with pytest.raises(sources.CorruptImageError):
        pipeline.encoded_image_size(b"not an image", "x")


def test_decode_reduction_rule():
    m = lambda s: np.diag([s, s, 1.0])
    assert [pipeline.decode_reduction(m(s)) for s in (1.2, 0.51, 0.5, 0.3, 0.25, 0.1, 0.01)] == [1, 1, 2, 2, 4, 8, 8]
    assert pipeline.decode_reduction(np.diag([0.2, 0.6, 1.0])) == 1  # the less-shrunk axis decides
    assert pipeline.decode_reduction(np.diag([-0.2, 0.2, 1.0])) == 4  # a flip does not matter


@pytest.fixture(scope="module")
def big_devkit(tmp_path_factory):
    """A VOCdevkit of 320x240 JPEGs, each a white rectangle (its one box) on a dark textured background."""
    root = tmp_path_factory.mktemp("big")
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = []
    for i in range(8):
        img = rng.integers(0, 60, (240, 320, 3), dtype=np.uint8)
        x0, y0 = int(rng.integers(20, 150)), int(rng.integers(20, 110))
        x1, y1 = x0 + int(rng.integers(60, 150)), y0 + int(rng.integers(50, 110))
        img[y0:y1, x0:x1] = 255
        image_id = f"{i:06d}"
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(_jpeg(img))
        (voc / "Annotations" / f"{image_id}.xml").write_text(synthetic.annotation_xml(
            image_id, 320, 240, np.array([[x0 + 1, y0 + 1, x1, y1]]), np.array([7]), np.zeros(1, bool),
            np.zeros(1, bool)))
        ids.append(image_id)
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{x}\n" for x in ids))
    return str(root / "VOCdevkit")


def test_reduced_decode_training_keeps_boxes_on_their_objects(big_devkit, monkeypatch):
    from yolojax.ops import boxes as box_lib

    c = _cfg(source="voc_dir", voc_dir=big_devkit, train_split="2007_trainval", image_size=64, shuffle=False)
    used = []
    decode = pipeline.decode_reduced
    monkeypatch.setattr(pipeline, "decode_reduced",
                        lambda data, r, where="", **kw: used.append(r) or decode(data, r, where, **kw))
    batcher = pipeline._TrainBatcher(c, sources.make_source(c, c.train_split), seed=0, global_batch_size=8,
                                     process_index=0, process_count=1)
    checked = 0
    for step in range(3):
        b = batcher(step)
        for i in range(8):
            if not b["mask"][i, 0]:
                continue  # cut away by the jitter crop
            ys, xs = np.nonzero(b["image"][i, ..., 0] > 160)
            drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
            assert box_lib.iou(b["boxes"][i, 0] * 64, drawn) >= 0.8, (step, i)
            checked += 1
    assert checked >= 16 and max(used) >= 4  # 320x240 -> 64: decoded at 1/4 (or 1/2 for jitter-enlarged crops)
    assert min(used) >= 2
    # The map is drawn from the encoded size, so the reduced decode changes no geometry, only the sampling.
    monkeypatch.setattr(pipeline, "decode_reduction", lambda m: 1)
    full = pipeline._TrainBatcher(c, sources.make_source(c, c.train_split), seed=0, global_batch_size=8,
                                  process_index=0, process_count=1)(0)
    ref = batcher(0)
    np.testing.assert_array_equal(full["mask"], ref["mask"])
    np.testing.assert_allclose(full["boxes"], ref["boxes"], atol=1.5 / 64)  # placement rounded to output pixels
    assert np.abs(full["image"].astype(int) - ref["image"]).mean() < 8.0


def test_eval_decodes_in_full(big_devkit, monkeypatch):
    c = _cfg(source="voc_dir", voc_dir=big_devkit, eval_split="2007_trainval")
    monkeypatch.setattr(pipeline, "decode_reduced", lambda *a, **k: pytest.fail("eval must decode in full"))
    b = next(pipeline.make_eval_batches(c, "2007_trainval", 4, 32, process_index=0, process_count=1))
    assert b["image"].dtype == np.uint8 and (b["orig_size"] == [240, 320]).all()
