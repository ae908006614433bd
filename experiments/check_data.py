"""Check a config's dataset before training: every annotation parsed, every listed image found and its header read.

  python experiments/check_data.py --config configs/custom.py [--config.data.root=/data/mine] [--split val ...]

Prints the full report (every problem, one line per file, grouped by kind; docs/data_check.md). Exit status 0
when no problem is fatal, else 1 with one line on stderr naming the first bad file. Splits default to the
config's data.train_split and data.eval_split. Reports are cached (--cache_dir; --nocache checks again).
"""


from absl import app, flags
from ml_collections import config_flags

from yolojax import cli

check = cli.lazy_import("yolojax.data.check")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file (optionally :arg) or a "
                                          "workdir's config.json.", lock_config=True)
_SPLITS = flags.DEFINE_multi_string("split", None, "Split(s) to check (default: data.train_split and "
                                    "data.eval_split).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Where reports are cached (default <root>/.yolojax_check/, "
                                 "or ~/.cache/yolojax/check/ when the root is not writable).")
_CACHE = flags.DEFINE_bool("cache", True, "Reuse a cached report while the files are unchanged.")
flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    data = _CONFIG.value.data
    splits = _SPLITS.value or [s for s in (data.train_split, data.eval_split) if s]
    reports = [check.check_dataset(data, s, cache_dir=_CACHE_DIR.value, use_cache=_CACHE.value)
               for s in dict.fromkeys(splits)]
    for r in reports:
        print(r.full_report(), flush=True)
    bad = [r for r in reports if r.fatal]
    if bad:
        return cli.fail("check_data", bad[0].error_message())
    return 0


if __name__ == "__main__":
    cli.run(main, prog="check_data")
