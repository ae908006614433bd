"""Images as the networks take them: float32 in [0, 1]."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_float(images: jax.Array) -> jax.Array:
    """uint8 [..., 3] -> float32 in [0, 1] (the host's former float batch, bit for bit); float passes through."""
    if images.dtype != jnp.uint8:
        return images.astype(jnp.float32)
    return images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
