"""Jit-compiling functions of a model's arguments, with a cache.

NumPyro models take arbitrary arguments: data arrays, but also Python numbers that fix shapes
(a latent dimension, a subsample size). :func:`compiled` traces the array leaves of ``(args,
kwargs)`` and treats every other leaf as static, so one compiled function serves all data of the
same shapes, and shape-defining numbers stay concrete inside the model.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import numpy as np

__all__ = ["compiled"]


def compiled(cache: dict, name: str, body: Callable, args, kwargs, *static_extra) -> Callable:
    """``body(*inputs, args, kwargs)`` jit-compiled, returned with ``args, kwargs`` bound.

    Compiled functions are kept in ``cache`` under ``name``, ``static_extra`` and the
    signature of the arguments (tree structure and static leaves); an unhashable static leaf
    compiles without caching.
    """
    leaves, treedef = jax.tree.flatten((args, kwargs))
    is_array = tuple(isinstance(x, jax.Array | np.ndarray | np.generic) for x in leaves)
    static = tuple(x for x, a in zip(leaves, is_array, strict=True) if not a)
    arrays = [x for x, a in zip(leaves, is_array, strict=True) if a]
    key = (name, static_extra, treedef, is_array, static)
    try:
        fn = cache.get(key)
    except TypeError:
        key, fn = None, None
    if fn is None:

        def fn(arrays, *inputs):
            it_arrays, it_static = iter(arrays), iter(static)
            full = [next(it_arrays) if a else next(it_static) for a in is_array]
            a, k = jax.tree.unflatten(treedef, full)
            return body(*inputs, a, k)

        fn = jax.jit(fn)
        if key is not None:
            cache[key] = fn
    return partial(fn, arrays)
