"""The one way to load a config: :func:`load` takes a ``configs/*.py`` file (``path.py[:arg]``, its
``get_config()``), a ``config.json`` written by training, a ConfigDict or a dict, and returns a locked ConfigDict.

``get_config(path)`` is the same loader for a ``config.json`` in the shape ml_collections' config-file flag
expects, so every ``--config`` flag takes one (``yolojax.cli`` points the flag here). Imports only ml_collections.

:func:`read_text` is the one way a text file of the user's (a label file, an image list, a result file, a
dataset JSON) is read: its error for a file that is not UTF-8 names the file, the line and the byte.
"""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

import ml_collections


def read_text(path: str | os.PathLike, error: type[Exception] = ValueError) -> str:
    """The contents of the UTF-8 text file ``path``. A file that is not UTF-8 raises ``error`` (a ValueError
    subclass) naming the file, the line and the offending byte, instead of a UnicodeDecodeError naming none."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise error(f"{os.fspath(path)}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}: "
                    f"{e.reason}); save the file as UTF-8") from None


def get_config(path: str) -> ml_collections.ConfigDict:
    """The locked ConfigDict saved in ``path`` (a ``config.json``); ValueError naming the file if it is not JSON."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    try:
        values = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a valid config.json ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: not a valid config.json (expected an object, got {type(values).__name__})")
    config = ml_collections.ConfigDict(_tuples(values))
    config.lock()
    return config


def load(spec: Any) -> ml_collections.ConfigDict:
    """A locked ConfigDict from a ConfigDict (returned as it is), a dict, a ``config.json`` written by training, or
    a config file ``configs/x.py[:arg]`` with ``get_config()``. FileNotFoundError / ValueError name the file."""
    if isinstance(spec, ml_collections.ConfigDict):
        return spec
    if isinstance(spec, dict):
        config = ml_collections.ConfigDict(_tuples(spec))
        config.lock()
        return config
    spec = os.fspath(spec)
    path, _, arg = spec.partition(":") if spec.split(":")[0].endswith(".py") else (spec, "", "")
    if path.endswith(".json"):
        return get_config(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    module_spec = importlib.util.spec_from_file_location("_yolojax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: a config file defines get_config()")
    config = module.get_config(arg) if arg else module.get_config()
    config.lock()
    return config


def _tuples(value):
    """JSON lists back to tuples (configs hold tuples: anchors, multi-scale sizes, boundaries)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
