r"""Convert darknet .cfg + .weights into a yolojax training workdir (orbax checkpoint + config.json).

  python experiments/convert_darknet.py --cfg yolov2-voc.cfg --weights yolov2-voc.weights --out runs/darknet_v2
  python experiments/evaluate.py --workdir runs/darknet_v2 --voc_root ROOT --out_dir runs/darknet_v2/eval
  python experiments/train.py --config runs/darknet_v2/config.json ...   # or fine-tune from it

The cfg must be one of the hand-written architectures (yolov2-voc, yolo-voc.2.0, yolov2-tiny-voc, the YOLOv1 /
Fast YOLO paper cfgs); other cfgs load with yolojax.darknet.load but have no training config. The experiment
config (optimizer, data, ...) comes from --config, or by default from the configs/ file of that architecture;
its model section is overwritten from the cfg (classes, anchors, passthrough, ...).
"""

import os

from absl import app, flags
from ml_collections import config_flags

from yolojax import cli
from yolojax.config import files as config_files

darknet = cli.lazy_import("yolojax.darknet")
checkpoints = cli.lazy_import("yolojax.training.checkpoints")

_CFG = flags.DEFINE_string("cfg", None, "darknet .cfg")
_WEIGHTS = flags.DEFINE_string("weights", None, "darknet .weights (complete, not a backbone file)")
_OUT = flags.DEFINE_string("out", None, "output workdir: checkpoints/0 and config.json are written there")
_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (default: by architecture)",
                                          lock_config=False)
_ALLOW_PARTIAL = flags.DEFINE_bool("allow_partial", False, "accept a partial .weights file (the rest keeps "
                                   "a fresh initialization)")
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")
flags.mark_flags_as_required(["cfg", "weights", "out"])

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# config.model.name (+ passthrough) -> the experiment config of that architecture.
DEFAULT_CONFIGS = {
    ("yolov2", "conv64_reorg"): ("yolov2_voc", ""), ("yolov2", "reorg"): ("yolov2_voc", "paper_era"),
    ("yolov2", "none"): ("yolov2_voc", ""), ("tiny_yolov2", None): ("tiny_yolov2_voc", None),
    ("yolov1", None): ("yolov1_voc", None), ("fast_yolo", None): ("fast_yolo_voc", None),
}


def default_config(fields):
    key = (fields["name"], fields.get("v2", {}).get("passthrough") if fields["name"] == "yolov2" else None)
    name, variant = DEFAULT_CONFIGS[key]
    path = os.path.join(_REPO, "configs", f"{name}.py") + (f":{variant}" if variant else "")
    return config_files.load(path)


def _update(cfg, fields):
    for k, v in fields.items():
        if isinstance(v, dict) and k in cfg:
            _update(cfg[k], v)
        else:
            cfg[k] = v


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    model, variables, report = darknet.load_with_report(_CFG.value, _WEIGHTS.value)
    if report.conversion.uninitialized and not _ALLOW_PARTIAL.value:
        raise ValueError(f"{_WEIGHTS.value} covers only part of {_CFG.value}: layers "
                         f"{list(report.conversion.missing_layers)} have no weights (pass --allow_partial to keep "
                         f"them freshly initialized)")
    sections = darknet.load_cfg(_CFG.value)
    fields = darknet.model_config_fields(model, sections)
    config = _CONFIG.value if _CONFIG.value is not None else default_config(fields)
    with config.unlocked():
        _update(config.model, fields)

    out = os.path.abspath(_OUT.value)
    meta = {"model": checkpoints.model_signature(config), "seen": int(report.header.seen),
            "source": f"darknet {os.path.abspath(_CFG.value)} + {os.path.abspath(_WEIGHTS.value)}"}
    checkpoints.write_variables(out, variables, meta=meta, step=0, overwrite=True)
    checkpoints.write_config(out, config)
    print(f"{_CFG.value} + {_WEIGHTS.value} ({report.num_floats} floats, header "
          f"{report.header.major}.{report.header.minor}.{report.header.revision}, seen {report.header.seen}) -> "
          f"{type(model).__name__} {out}/checkpoints/0 and {out}/config.json")


if __name__ == "__main__":
    cli.run(main, prog="convert_darknet")
