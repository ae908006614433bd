"""The paper configs keep their exact recipes: on the same (synthetic) images they build bit-identical training
batches and losses to the code before the own-data recipe (configs/custom.py) gained its switches.

Each config runs as it is, except for what a test must shrink: a small VOC-layout dataset of JPEGs (the synthetic
shapes, 1300x1040, so the reduced-size JPEG decode runs) in place of VOC, width 1/8, batches of 2 (the ablation
rungs at their reduced-resolution ``rung@128`` form). The hashes were recorded from the
code before the switches existed; a change here means a paper recipe changed."""
from __future__ import annotations

import hashlib

import jax
import numpy as np
import pytest

from helpers import config_module
from yolojax.data import pipeline, synthetic
from yolojax.models import build_model, heads

# (config module, its get_config argument) -> (sha256 of the batches of steps 0, 1, 2 (an epoch and a half),
# float32 loss of the batch of step 0 at the initial parameters, as hex). Recorded with tests/conftest.py's XLA flags.
RECORDED = {
    ("yolov2_voc", ""): ("ef587b4f20034fd3b35b44b8396f5a5555c7ad2f352c7599d5ce58b462b645f0", "879ae042"),
    ("yolov2_voc", "paper_era"): ("ef587b4f20034fd3b35b44b8396f5a5555c7ad2f352c7599d5ce58b462b645f0", "20e5fe42"),
    ("tiny_yolov2_voc", ""): ("ef587b4f20034fd3b35b44b8396f5a5555c7ad2f352c7599d5ce58b462b645f0", "fdfba842"),
    ("yolov1_voc", ""): ("6a4c04c3c0463e5f5409557dd650906b68a491fd1a74a938131a2ce892aa4595", "cf8f3b41"),
    ("fast_yolo_voc", ""): ("6a4c04c3c0463e5f5409557dd650906b68a491fd1a74a938131a2ce892aa4595", "0cc24041"),
    ("yolov2_ablation", "batch_norm@128"): ("a1ba80aa559e0aac96648b763b0757753954f263017c07d5299b9ca8a7e5f816",
                                            "f78b2341"),
    ("yolov2_ablation", "anchor_boxes@128"): ("366b4777dcb2b07721024c54aeda463a938939fa4b8c29e9ce534ea058054830",
                                              "f01ad741"),
    ("yolov2_ablation", "hires_detector@128"): ("366b4777dcb2b07721024c54aeda463a938939fa4b8c29e9ce534ea058054830",
                                                "1d119741"),
    ("quickstart", ""): ("430dcf5fc27966d1bd4ae6672460b160fc16365fc633e4ad8b5243a8aa07d279", "065bae41"),
}


def write_voc(root: str) -> str:
    cfg = synthetic.default_synthetic_config()
    cfg.image_width, cfg.image_height, cfg.max_objects = 1300, 1040, 6
    return synthetic.write_dataset(root, "voc", cfg, num_train=4, num_eval=1)


def shrunk(name: str, arg: str, voc_root: str):
    module = config_module(name)
    c = module.get_config(arg) if arg else module.get_config()
    with c.unlocked():
        c.data.source, c.data.format, c.data.root = "files", "voc", voc_root
        c.data.train_split, c.data.eval_split = "train", "val"
        c.data.num_threads = 1
        c.batch_size = 2
        c.model.width = 0.125
    return c


def batch_hash(batches) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        for key in sorted(batch):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(batch[key]).tobytes())
    return digest.hexdigest()


def first_loss(c, batch) -> str:
    head = heads.Head.from_config(c)
    model = build_model(c.model)
    images = batch["image"].astype(np.float32) / 255.0
    variables = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, images[:1])
    outputs = model.apply(variables, images, train=False)
    total, _ = head.loss_fn(c.loss)(outputs.astype(np.float32), batch["boxes"], batch["classes"], batch["mask"], 0)
    return np.float32(total).tobytes().hex()


def fingerprint(name: str, arg: str, voc_root: str) -> tuple[str, str]:
    c = shrunk(name, arg, voc_root)
    it = pipeline.make_train_iterator(c.data, seed=c.seed, global_batch_size=c.batch_size)
    batches = [next(it), next(it), next(it)]
    return batch_hash(batches), first_loss(c, batches[0])


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return write_voc(str(tmp_path_factory.mktemp("paper_recipes") / "voc"))


@pytest.mark.parametrize("name,arg", list(RECORDED))
def test_paper_config_batches_and_loss_unchanged(name, arg, voc_root):
    assert fingerprint(name, arg, voc_root) == RECORDED[(name, arg)]
