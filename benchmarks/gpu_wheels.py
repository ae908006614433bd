r"""Wheels for an accelerator machine without a package registry, and their offline install there.

Such a machine (the project's GPU check runs on one) has a Python with JAX for its accelerator, flax, optax,
orbax-checkpoint, numpy, opencv-python-headless and tensorboard. What else yolojax imports when it trains
travels with the working tree as wheels:

  # 1. here, with the registry (this environment's versions, the ones the tests ran with):
  python benchmarks/gpu_wheels.py download                 # -> .whl/ (CPython 3.12, manylinux x86_64)
  python benchmarks/gpu_wheels.py download --python 3.11,3.12,3.13       # when its version is not known
  # 2. there, offline (its own python3; only the standard library is needed):
  python3 benchmarks/gpu_wheels.py install                 # -> .whl/site, only what that python lacks
  PYTHONPATH=$PWD:$PWD/.whl/site python3 benchmarks/accelerator_check.py

``install`` skips every wheel whose distribution that python already has (its own builds stay in use), and uses
``pip install --no-deps --no-index --target`` when pip is there, else unpacks the wheels itself. yolojax itself is
used from the working tree (``PYTHONPATH=$PWD``); nothing is built there.

The lists: NEEDED is what the training path imports at runtime (the import closure of
``benchmarks/accelerator_check.py`` after a run) beyond what such a machine has; SPARE are dependencies of
flax, orbax-checkpoint and tensorboard that the machine should already have, shipped in case it does not.
"""
from __future__ import annotations

import argparse
import glob
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import zipfile
from importlib.machinery import PathFinder

NEEDED = ("grain", "array_record", "cloudpickle", "portpicker", "ml_collections", "simplejpeg", "tensorboardX",
          "tqdm")
SPARE = ("absl-py", "etils", "fsspec", "zipp", "importlib_resources", "PyYAML", "packaging", "psutil", "pillow",
         "typing_extensions")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pinned(name: str) -> str:
    """``name==version`` of this environment's install (the tested version), else ``name`` (the newest)."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def download(dest: str, pythons: list[str], platforms: list[str]) -> int:
    os.makedirs(dest, exist_ok=True)
    failed = []
    for python in pythons:
        base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest",
                dest, "--python-version", python, "--implementation", "cp", "--abi", f"cp{python.replace('.', '')}",
                "--abi", "abi3", "--abi", "none"]
        for platform in platforms:
            base += ["--platform", platform]
        for name in NEEDED + SPARE:
            spec = _pinned(name)
            if subprocess.run(base + [spec]).returncode:
                failed.append(f"{spec} (python {python})")
    wheels = sorted(glob.glob(os.path.join(dest, "*.whl")))
    total = sum(os.path.getsize(w) for w in wheels) / 2**20
    print(f"{len(wheels)} wheels, {total:.1f} MiB in {dest}" + (f"; not found: {', '.join(failed)}" if failed else ""))
    return 1 if any(f.split("==")[0] in NEEDED for f in failed) else 0


def _distribution(wheel: str) -> str:
    """The distribution name of a wheel file (``name-version-...whl``)."""
    return os.path.basename(wheel).split("-")[0]


def _have(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def install(dest: str) -> int:
    site = os.path.join(dest, "site")
    wheels = sorted(glob.glob(os.path.join(dest, "*.whl")))
    if not wheels:
        print(f"gpu_wheels: error: no wheels in {dest} (run 'download' where the registry is reachable)",
              file=sys.stderr)
        return 1
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    todo = []
    for wheel in wheels:
        dist = _distribution(wheel)
        have = _have(dist) or _have(dist.replace("_", "-"))
        tags = os.path.basename(wheel)[:-4].split("-")[-3:]
        if have:
            print(f"  have {dist} {have}")
        elif tags[0] not in ("py3", "py2.py3", tag) and tags[1] != "abi3":
            print(f"  skip {os.path.basename(wheel)}: not for this python ({tag})")
        else:
            todo.append(wheel)
    os.makedirs(site, exist_ok=True)
    if todo and importlib.util.find_spec("pip") is not None:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--upgrade",
               "--target", site, *todo]
        if subprocess.run(cmd).returncode:
            return 1
    else:
        for wheel in todo:  # a wheel is a zip of the files of site-packages
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
    for wheel in todo:
        print(f"  installed {os.path.basename(wheel)}")
    # Every needed module importable now, from this python or from DEST/site (import names = distribution names).
    missing = [n for n in NEEDED if importlib.util.find_spec(n) is None and PathFinder.find_spec(n, [site]) is None]
    if missing:
        print(f"gpu_wheels: error: still missing {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"run with: PYTHONPATH={ROOT}:{os.path.abspath(site)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download the wheels (needs the registry)")
    d.add_argument("--python", default="3.12",
                   help="the target machine's CPython version, or several: 3.11,3.12,3.13 (about 13 MiB each)")
    d.add_argument("--platform", action="append", default=None,
                   help="wheel platform tags (repeatable; default manylinux x86_64: manylinux2014, _2_17, _2_28)")
    d.add_argument("--dest", default=os.path.join(ROOT, ".whl"))
    i = sub.add_parser("install", help="install the wheels this python lacks into DEST/site (offline)")
    i.add_argument("--dest", default=os.path.join(ROOT, ".whl"))
    args = p.parse_args(argv)
    if args.command == "download":
        platforms = args.platform or ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]
        return download(args.dest, [v.strip() for v in args.python.split(",") if v.strip()], platforms)
    return install(args.dest)


if __name__ == "__main__":
    sys.exit(main())
