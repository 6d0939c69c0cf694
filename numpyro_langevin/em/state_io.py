"""Save and load a state pytree as ``.npz`` (plain arrays, no pickle).

The leaves of the pytree (``jax.tree.leaves``, a fixed order) are stored as ``leaf_0``,
``leaf_1``, ...; the structure is not stored but taken from a state of the same kind (``like``),
e.g. the one :meth:`RecallLearn.init` returns for the same model and data. PRNG keys with a
typed dtype are stored as their raw key data. Loading restores every leaf bit for bit, so a run
continued from a loaded state gives exactly the result of an uninterrupted run.

Example
-------
>>> save_state("em.npz", state)                                    # doctest: +SKIP
>>> state = load_state("em.npz", like=em.init(key, data))          # doctest: +SKIP
>>> result = em.run(key, 1000, data, init_state=state)             # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["save_state", "load_state"]


def _is_typed_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def save_state(path: str | os.PathLike, state: Any) -> None:
    """Write the leaves of ``state`` to ``path`` (``.npz``, uncompressed)."""
    leaves = jax.tree.leaves(state)
    arrays = {}
    for i, leaf in enumerate(leaves):
        if _is_typed_key(leaf):
            leaf = jax.random.key_data(leaf)
        arrays[f"leaf_{i}"] = np.asarray(leaf)
    np.savez(path, **arrays)


def load_state(path: str | os.PathLike, like: Any) -> Any:
    """Read a state written by :func:`save_state`, with the structure of ``like``.

    Raises
    ------
    ValueError
        If the file's leaves do not match ``like`` in number, shape or dtype (a state of
        another model, data set or configuration).
    """
    leaves, treedef = jax.tree.flatten(like)
    with np.load(path, allow_pickle=False) as f:
        stored = [f[f"leaf_{i}"] for i in range(len(f.files))]
    if len(stored) != len(leaves):
        raise ValueError(
            f"{path} holds {len(stored)} arrays but `like` has {len(leaves)} leaves: it was saved "
            "from a state of another model or configuration."
        )
    out = []
    for i, (value, ref) in enumerate(zip(stored, leaves, strict=True)):
        if _is_typed_key(ref):
            impl = jax.random.key_impl(ref)
            out.append(jax.random.wrap_key_data(jnp.asarray(value), impl=impl))
            continue
        ref = np.asarray(ref)
        if value.shape != ref.shape or value.dtype != ref.dtype:
            raise ValueError(
                f"Leaf {i} in {path} has shape {value.shape} and dtype {value.dtype}; `like` "
                f"expects {ref.shape} and {ref.dtype}. Load it with a state of the same model, "
                "data and configuration."
            )
        out.append(jnp.asarray(value))
    return jax.tree.unflatten(treedef, out)
