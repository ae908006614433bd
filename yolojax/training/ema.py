"""Exponential moving average (EMA) of the model variables, kept beside the raw ones during training.

With ``config.optim.ema.decay = decay > 0`` every training step t (t = 1 after the first update) sets

    d_t   = decay * (1 - exp(-t / warmup_steps))        (warmup_steps = 0: d_t = decay)
    ema_t = d_t * ema_{t-1} + (1 - d_t) * v_t           (optax.incremental_update, step size 1 - d_t)

where v_t are the model variables after update t and ema_0 the variables training starts from (after
``config.init``). This is ultralytics' ModelEMA rule (decay 0.9999, warm-up 2000 updates): d_t grows from
about decay / warmup_steps at t = 1 to 0.63 * decay at t = warmup_steps, so early on the EMA follows the raw
weights closely instead of remembering the random initialization for thousands of steps.

What is averaged: the parameters and the batch-norm running statistics (``batch_stats``), with the same d_t;
ultralytics and timm average every floating variable of the model, buffers included, so the EMA model carries
statistics that belong to averaged weights rather than to the latest raw ones. Frozen variables
(``config.optim.freeze``, and ``freeze_batch_stats``) keep their EMA value, which equals the raw one bit for
bit (both start equal and neither changes). The averages are float32 like the parameters.

Only leaves and plain functions here; ``yolojax.training.train`` holds the EMA in ``TrainState.ema`` as a variables dict
``{"params": ..., "batch_stats": ...}`` and ``yolojax.training.checkpoints`` saves it as the state's ``"ema"`` entry
(docs/checkpoints.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from yolojax.training import initialization

PyTree = Any

WEIGHTS = ("auto", "ema", "raw")  # the choices of which weights to read from a checkpoint


def settings(optim_cfg: Any) -> dict[str, float] | None:
    """``{"decay": float, "warmup_steps": int}`` of ``config.optim.ema``, or None when the EMA is off (decay 0
    or no ``ema`` field). ValueError naming the field for a decay outside [0, 1) or warmup_steps < 0."""
    cfg = optim_cfg.get("ema", None) if hasattr(optim_cfg, "get") else None
    if cfg is None:
        return None
    decay, warmup = cfg.get("decay", 0.0), cfg.get("warmup_steps", 0)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= float(decay) < 1.0:
        raise ValueError(f"config.optim.ema.decay={decay!r}: expected a number in [0, 1) (0 = no EMA)")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"config.optim.ema.warmup_steps={warmup!r}: expected an integer >= 0 (0 = no warm-up)")
    if float(decay) == 0.0:
        return None
    return {"decay": float(decay), "warmup_steps": int(warmup)}


def decay_at(t: jax.Array | int, decay: float, warmup_steps: int) -> jax.Array:
    """float32 [] d_t = decay * (1 - exp(-t / warmup_steps)) for the update number ``t`` (1, 2, ...);
    ``decay`` itself when warmup_steps is 0."""
    decay = jnp.float32(decay)
    if not warmup_steps:
        return decay
    return decay * -jnp.expm1(-jnp.asarray(t, jnp.float32) / jnp.float32(warmup_steps))


def start(variables: Mapping[str, PyTree]) -> dict[str, PyTree]:
    """ema_0: a copy of ``{"params", "batch_stats"}`` (own buffers, same shardings: the state is donated)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True),
                        {"params": variables["params"], "batch_stats": variables.get("batch_stats") or {}})


def update(ema: Mapping[str, PyTree], variables: Mapping[str, PyTree], t: jax.Array, *, decay: float,
           warmup_steps: int, freeze: str = "", freeze_stats: str = "") -> dict[str, PyTree]:
    """ema_t from ema_{t-1} (``ema``) and the variables after update ``t`` (both ``{"params", "batch_stats"}``).

    ``freeze`` / ``freeze_stats``: the regexes of ``config.optim.freeze`` over parameter / statistic paths
    (``initialization.freeze_mask`` / ``keep_frozen_stats``); those leaves keep ema_{t-1} exactly.
    Pure and traceable: called inside the jitted train step.
    """
    d = decay_at(t, decay, warmup_steps)
    new = {"params": variables["params"], "batch_stats": variables.get("batch_stats") or {}}
    out = optax.incremental_update(new, dict(ema), step_size=1.0 - d)
    if freeze or freeze_stats:
        if freeze:
            frozen = initialization.freeze_mask(out["params"], regex=freeze)
            out["params"] = jax.tree.map(lambda f, old, cur: old if f else cur, frozen, ema["params"],
                                         out["params"])
        if freeze_stats and out["batch_stats"]:
            out["batch_stats"] = initialization.keep_frozen_stats(out["batch_stats"], ema["batch_stats"],
                                                                  freeze_stats)
    return out


def check_choice(weights: str) -> str:
    """``weights`` if it is one of "auto", "ema", "raw"; ValueError naming the value otherwise."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r}: expected one of {', '.join(WEIGHTS)}")
    return weights
