"""yolojax.inference.export: ONNX (onnxruntime) and StableHLO exports agree with the JAX model, darknet's reorg
included.

Models are width-reduced darknet cfgs (yolov2-voc with either passthrough, tiny-yolov2, yolov1) written with
random weights by the project's own darknet writer and loaded with ``yolojax.load`` (the darknet-files path of
experiments/export.py). Inputs are a natural photo (matplotlib's grace_hopper.jpg sample) and its mirror.
Error measure: max |export - jax| / max |jax| (``export.rel_error``), required <= 1e-4.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import yolojax  # noqa: E402  (after the optional-dependency skips)
from yolojax import darknet as dk  # noqa: E402
from yolojax.darknet import mapping  # noqa: E402
from yolojax.inference import export  # noqa: E402
from yolojax.models import build_model, default_model_config  # noqa: E402
from yolojax.ops import postprocess  # noqa: E402

TOL = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (config.model, input size). yolov1's fully connected layers need its own 448 input.
CASES = {
    "yolov2_conv64": (dict(name="yolov2", width=0.125, v2=dict(passthrough="conv64_reorg")), 96),
    "yolov2_reorg": (dict(name="yolov2", width=0.125, v2=dict(passthrough="reorg")), 96),  # paper_era
    "tiny_yolov2": (dict(name="tiny_yolov2", width=0.25), 96),
    "yolov1": (dict(name="yolov1", width=0.0625), 448),
}


def write_darknet(model, size: int, directory, seed: int = 0):
    """Random-weight darknet files for ``model`` (the project's writer); returns (cfg path, weights path)."""
    sections = mapping.module_sections(model, size, size)
    cfg, weights = os.path.join(directory, "model.cfg"), os.path.join(directory, "model.weights")
    with open(cfg, "w") as f:
        f.write(dk.format_cfg(sections))
    dk.write_weights(weights, sections, dk.random_blobs(sections, seed=seed))
    return cfg, weights


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = {}
    for name, (cfg, size) in CASES.items():
        out[name] = write_darknet(build_model(default_model_config(cfg)), size, tmp_path_factory.mktemp(name),
                                  seed=len(out))
    return out


@pytest.fixture(scope="module")
def detectors(files):
    return {name: yolojax.load(*paths) for name, paths in files.items()}


jax_out = export.jax_raw_outputs  # jitted once per model and shape


@pytest.fixture(scope="module")
def photos(detectors):
    return {name: export.check_image(det) for name, det in detectors.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_matches_jax_on_a_photo(name, detectors, photos):
    det, images = detectors[name], photos[name]
    assert images.std() > 0.1  # a real photo, not a flat colour
    got = export.onnx_session(export.to_onnx(det)).run(["outputs"], {"images": images})[0]
    want = jax_out(det, images)
    assert got.shape == want.shape
    assert export.rel_error(got, want) <= TOL
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL * np.abs(want).max())
    # the two images differ, so a batch-mixing export would fail
    assert export.rel_error(got[1], want[0]) > 0.01


def test_darknet_reorg_is_exported_as_darknet_computes_it(detectors, photos):
    """The reorg is written as darknet's permutation; SpaceToDepth (the onnx/models#258 bug) gives another
    function, and is exactly what a model trained with reorg_impl='space_to_depth' gets."""
    images = photos["yolov2_reorg"]
    for name in ("yolov2_reorg", "yolov2_conv64"):
        ops = {n.op_type for n in export.to_onnx(detectors[name]).graph.node}
        assert "Concat" in ops and not ops & {"SpaceToDepth", "DepthToSpace"}
    det = detectors["yolov2_reorg"]
    s2d = yolojax.inference.api.Detector(model=det.model.clone(reorg_impl="space_to_depth"), variables=det.variables,
                               head=det.head, input_hw=det.input_hw, class_names=det.class_names)
    model = export.to_onnx(s2d)
    assert "SpaceToDepth" in {n.op_type for n in model.graph.node}
    got = export.onnx_session(model).run(["outputs"], {"images": images})[0]
    assert export.rel_error(got, jax_out(s2d, images)) <= TOL  # what the space_to_depth model computes
    assert export.rel_error(got, jax_out(det, images)) > 0.05  # ... is not darknet's reorg


def test_onnx_matches_opencv_darknet_importer(files, detectors, photos):
    """An independent darknet implementation (OpenCV's importer reads the same cfg/weights) agrees with the
    ONNX export of both passthrough variants."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip("needs OpenCV 4's darknet importer")
    for name in ("yolov2_reorg", "yolov2_conv64"):
        images = photos[name][:1]
        net = cv2.dnn.readNetFromDarknet(*files[name])
        net.setInput(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        last_conv = [n for n in net.getLayerNames() if n.startswith("conv_")][-1]
        want = net.forward(last_conv).transpose(0, 2, 3, 1)  # [1, S, S, A·(5+C)]
        got = export.onnx_session(export.to_onnx(detectors[name])).run(["outputs"], {"images": images})[0]
        assert export.rel_error(got.reshape(want.shape), want) <= 1e-3


@pytest.mark.parametrize("name", ["yolov2_conv64", "yolov1"])
def test_onnx_decode_and_nms_match_postprocess(name, detectors, photos):
    det, images = detectors[name], photos[name]
    sess = export.onnx_session(export.to_onnx(det, with_nms=True))
    want_scores = np.asarray(det.decode(jax_out(det, images))[1])
    # a threshold that leaves a few dozen candidates per image (random weights give low scores)
    score_t = float(np.quantile(want_scores, 1 - 60 / want_scores[0].size))
    feeds = {"images": images, "score_threshold": np.array([score_t], np.float32),
             "iou_threshold": np.array([0.45], np.float32), "max_per_class": np.array([200], np.int64)}
    raw, boxes, scores, selected, sel_scores = sess.run(
        ["outputs", "boxes", "scores", "selected", "selected_scores"], feeds)
    assert export.rel_error(raw, jax_out(det, images)) <= TOL
    # the graph's decode is postprocess's arithmetic: compared on the graph's own raw outputs
    want_boxes, want_scores = (np.asarray(a) for a in det.decode(raw))
    np.testing.assert_allclose(boxes, want_boxes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-7)
    # NMS semantics on identical inputs: ONNX NonMaxSuppression vs batched_nms on the graph's own boxes/scores
    nms = jax.device_get(jax.jit(functools.partial(postprocess.batched_nms, score_threshold=score_t,
                                                   iou_threshold=0.45, max_detections=200))(boxes, scores))
    assert len(selected) == int(nms["count"].sum()) > 10
    for b in range(len(images)):
        mine, mine_scores = selected[selected[:, 0] == b], sel_scores[selected[:, 0] == b]
        k = int(nms["count"][b])
        assert sorted(zip(mine[:, 1].tolist(), mine_scores.tolist())) == \
            sorted(zip(nms["classes"][b, :k].tolist(), nms["scores"][b, :k].tolist()))
        order = np.lexsort((mine[:, 1], -mine_scores))  # batched_nms order: score, then class
        np.testing.assert_array_equal(boxes[b, mine[order, 2]], nms["boxes"][b, :k])


def _same_detections(a: dict, b: dict):
    assert len(a["scores"]) == len(b["scores"]) > 0
    np.testing.assert_array_equal(a["classes"], b["classes"])
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-4)
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4, atol=1e-6)
    assert a["image_size"] == b["image_size"] and a["class_names"] == b["class_names"]


def test_export_files_and_export_backed_detectors_predict_the_same(detectors, photos, tmp_path):
    from matplotlib import cbook

    det, images = detectors["yolov2_conv64"], photos["yolov2_conv64"]
    photo = yolojax.load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    batch = [photo, np.ascontiguousarray(photo[:, ::-1])]
    scores = np.asarray(det.decode(jax_out(det, images))[1])
    thresh = float(np.quantile(scores, 1 - 40 / scores.size))  # ~20 detections per image before NMS
    want = det.predict(batch, score_threshold=thresh, batch_size=2)
    onnx_path, hlo_path = str(tmp_path / "m.onnx"), str(tmp_path / "m.jaxexport")
    assert export.export_onnx(det, onnx_path, images=images).rel_error <= TOL
    assert export.export_stablehlo(det, hlo_path, images=images).rel_error <= TOL
    for path in (onnx_path, hlo_path):
        fast = export.load_exported(path)
        assert (fast.family, fast.input_hw, tuple(fast.class_names)) == (det.family, det.input_hw, det.class_names)
        for got, ref in zip(fast.predict(batch, score_threshold=thresh, batch_size=2), want):
            _same_detections(got, ref)
    meta = export.read_onnx_metadata(onnx_path)
    assert meta["family"] == "v2" and np.allclose(meta["anchors"], det.anchors)


FRESH = textwrap.dedent("""
    import sys, numpy as np, jax
    exported = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
    for i, path in enumerate(sys.argv[2:]):
        np.save(path + ".out.npy", np.asarray(exported.call(np.load(path))))
    assert not any(m.split(".")[0] in ("yolojax", "flax") for m in sys.modules), "model code was imported"
    print("input", exported.in_avals[0].shape)
""")


@pytest.mark.slow
def test_stablehlo_reloads_in_a_fresh_process(detectors, photos, tmp_path):
    """The artifact runs in a new interpreter that imports neither yolojax nor Flax, at batch 2 and 3."""
    for name in ("yolov2_reorg",):
        det, images = detectors[name], photos[name]
        path = str(tmp_path / f"{name}.jaxexport")
        export.export_stablehlo(det, path)
        inputs = {2: images, 3: np.concatenate([images, images[:1, ::-1]])}
        for b, x in inputs.items():
            np.save(tmp_path / f"{name}_{b}.npy", x)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        run = subprocess.run([sys.executable, "-c", FRESH, path] + [str(tmp_path / f"{name}_{b}.npy") for b in inputs],
                             capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "input (b, " in run.stdout
        for b, x in inputs.items():
            got = np.load(tmp_path / f"{name}_{b}.npy.out.npy")
            assert got.shape[0] == b
            assert export.rel_error(got, jax_out(det, x)) <= TOL
        meta = json.load(open(path + ".json"))
        assert meta["input_hw"] == list(det.input_hw) and meta["outputs"] == "raw"


def test_bad_files_give_one_line_errors(tmp_path, detectors):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(export.ExportError, match="bogus.onnx"):
        export.load_onnx(bogus)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        export.load_onnx(tmp_path / "missing.onnx")
    nms_path = tmp_path / "nms.onnx"
    nms_path.write_bytes(export.to_onnx(detectors["tiny_yolov2"], with_nms=True).SerializeToString())
    with pytest.raises(export.ExportError, match="decode \\+ NMS"):
        export.load_onnx(nms_path)
    with pytest.raises(FileNotFoundError, match="nothing.jaxexport"):
        export.load_stablehlo(tmp_path / "nothing.jaxexport")


def test_unsupported_layer_is_named(tmp_path):
    cfg = tmp_path / "local.cfg"
    cfg.write_text("[net]\nheight=32\nwidth=32\nchannels=3\n\n[local]\nsize=3\nstride=1\npad=1\nfilters=4\n"
                   "activation=leaky\n\n[connected]\noutput=30\nactivation=linear\n\n[detection]\nclasses=0\n"
                   "side=1\nnum=6\ncoords=4\n")
    model, variables = dk.load(cfg)
    from yolojax.models import heads

    det = yolojax.inference.api.Detector(model=model, variables=variables, input_hw=(32, 32), class_names=(),
                               head=heads.Head("v1", 0, grid_size=1, boxes_per_cell=6))
    with pytest.raises(export.ExportError, match=r"layer 0 \[local\]"):
        export.to_onnx(det)


def test_cli_exports_darknet_files(files, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_export_cli", os.path.join(ROOT, "experiments", "export.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cfg, weights = files["tiny_yolov2"]
    out = tmp_path / "out"
    assert cli.main(["--darknet_cfg", cfg, "--darknet_weights", weights, "--out_dir", str(out),
                     "--formats", "onnx"]) == 0
    assert export.read_onnx_metadata(out / "model.onnx")["family"] == "v2"
    assert cli.main(["--darknet_cfg", cfg, "--out_dir", str(out)]) == 1  # weights missing: one-line error
    assert cli.main(["--darknet_cfg", cfg, "--darknet_weights", weights, "--out_dir", str(out),
                     "--formats", "tflite"]) == 1
