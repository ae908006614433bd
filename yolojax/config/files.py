"""``get_config(path)`` for a ``config.json`` written by training, so every ``--config`` flag takes one:
``--config runs/x/config.json`` (``yolojax.cli`` points ml_collections' config-file flag here). Imports only
ml_collections."""
from __future__ import annotations

import json
import os

import ml_collections


def get_config(path: str) -> ml_collections.ConfigDict:
    """The locked ConfigDict saved in ``path`` (a ``config.json``); ValueError naming the file if it is not JSON."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    with open(path) as f:
        try:
            values = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a valid config.json ({e})") from None
    config = ml_collections.ConfigDict(_tuples(values))
    config.lock()
    return config


def _tuples(value):
    """JSON lists back to tuples (configs hold tuples: anchors, multi-scale sizes, boundaries)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
