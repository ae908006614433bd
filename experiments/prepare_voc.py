"""Prepares TFDS voc/2007 and voc/2012 in array_record format (needs `pip install -e ".[prepare]"`).

  python experiments/prepare_voc.py --data_dir ~/tensorflow_datasets                 # TFDS downloads
  python experiments/prepare_voc.py --data_dir DIR --tarball_dir ~/Downloads/voc     # the original tarballs
  python experiments/prepare_voc.py --data_dir DIR --devkit_dir ~/data/VOCdevkit     # an extracted VOCdevkit

Training then reads the prepared data through tfds.data_source without TensorFlow
(`--config.data.tfds_data_dir=DIR`). Users with a VOCdevkit may also skip this step and train from the folder
directly (`--config.data.source=voc_dir --config.data.voc_dir=...`): the examples are the same.
"""
from absl import flags

from yolojax import cli

sources = cli.lazy_import("yolojax.data.sources")

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir to write into.", required=True)
_YEARS = flags.DEFINE_list("years", ["2007", "2012"], "VOC years to prepare.")
_TARBALL_DIR = flags.DEFINE_string("tarball_dir", None, "Folder holding the original VOC tarballs.")
_DEVKIT_DIR = flags.DEFINE_string("devkit_dir", None, "An extracted VOCdevkit folder (holding VOC<year>/).")
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")


def main(argv):
    del argv
    for year in _YEARS.value:
        sources.prepare_tfds_voc(year, _DATA_DIR.value, tarball_dir=_TARBALL_DIR.value,
                                 devkit_dir=_DEVKIT_DIR.value)
        print(f"voc/{year} prepared in {_DATA_DIR.value}")


if __name__ == "__main__":
    cli.run(main, prog="prepare_voc")
