"""Argument checks with errors that say what was wrong and what to do.

Checks on values (positive definiteness, finiteness) run only on concrete arrays: under
``pmap`` the kernel's ``init`` is traced and those checks are skipped; the sampler then
rejects and flags (``diverging``) any step where the same problem shows up.
"""

from __future__ import annotations

import math
from numbers import Real

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.handlers import seed, substitute, trace
from numpyro.util import is_prng_key

__all__ = [
    "positive_scalar",
    "probability",
    "constant_mobility",
    "mobility_shape",
    "mobility_values",
    "continuous_latents",
    "trace_model",
    "finite_start",
    "init_params_match",
]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def positive_scalar(name: str, value, hint: str) -> float:
    """``value`` must be a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, Real | np.ndarray | jax.Array):
        raise TypeError(f"`{name}` must be a positive number, got {value!r}. {hint}")
    if np.ndim(value) != 0:
        raise ValueError(f"`{name}` must be a scalar, got shape {np.shape(value)}. {hint}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be finite and > 0, got {value}. {hint}")
    return value


def probability(name: str, value) -> float:
    """``value`` must lie strictly between 0 and 1."""
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a number between 0 and 1, got {value!r}.") from err
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must lie strictly between 0 and 1, got {value}.")
    return value


def _check_matrix_values(matrix: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"The mobility {where} has non-finite entries.")
    if matrix.ndim == 1:
        if np.any(matrix <= 0):
            raise ValueError(
                f"The diagonal mobility {where} must be > 0 everywhere; its smallest entry is "
                f"{matrix.min():.3g}. Pass positive values (e.g. posterior variances)."
            )
        return
    scale = max(np.abs(matrix).max(), np.finfo(matrix.dtype).tiny)
    if not np.allclose(matrix, matrix.T, rtol=1e-5, atol=1e-6 * scale):
        raise ValueError(
            f"The dense mobility {where} is not symmetric (max |K - K^T| = "
            f"{np.abs(matrix - matrix.T).max():.3g}). Return (K + K.T) / 2, or pass a "
            "non-reversible part through its own argument."
        )
    if np.linalg.eigvalsh(matrix.astype(np.float64)).min() <= 0:
        raise ValueError(
            f"The dense mobility {where} is not positive definite (smallest eigenvalue "
            f"{np.linalg.eigvalsh(matrix.astype(np.float64)).min():.3g}). A mobility must be "
            "symmetric positive definite, e.g. a covariance matrix."
        )


def constant_mobility(matrix, dim: int) -> jax.Array:
    """Validate a constant mobility: shape ``(d,)`` or ``(d, d)``, positive (definite)."""
    shape = np.shape(matrix)
    if shape not in ((dim,), (dim, dim)):
        raise ValueError(
            f"A constant `mobility` must have shape ({dim},) (diagonal) or ({dim}, {dim}) "
            f"(dense) for this {dim}-dimensional unconstrained position (ordered as "
            f"jax.flatten_util.ravel_pytree orders the sites); got shape {shape}."
        )
    if _is_concrete(matrix):
        _check_matrix_values(np.asarray(matrix), "array")
    return jnp.asarray(matrix, dtype=jnp.result_type(float))


def output_shape(fn, position: jax.Array, name: str, returns: str):
    """``jax.eval_shape`` of a user callable at the initial position, with an error that says
    how the callable is called when it fails."""
    try:
        return jax.eval_shape(fn, position)
    except Exception as err:  # report the user's error with the context they need
        raise TypeError(
            f"Calling the `{name}` callable on the initial position failed. It must take the "
            "position as the potential takes it (a dict of unconstrained sites for a model) "
            f"and return {returns}: {type(err).__name__}: {err}"
        ) from err


def mobility_shape(fn, position: jax.Array) -> bool:
    """Shape-check a mobility callable on flat ``position``; return whether it is diagonal."""
    dim = position.shape[0]
    out = output_shape(fn, position, "mobility", "a JAX array")
    if not hasattr(out, "shape") or out.shape not in ((dim,), (dim, dim)):
        raise ValueError(
            f"The `mobility` callable must return shape ({dim},) (diagonal) or ({dim}, {dim}) "
            f"(dense) over the flattened unconstrained position; it returned "
            f"{getattr(out, 'shape', type(out).__name__)}."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"The `mobility` callable must return floats, got {out.dtype}.")
    return len(out.shape) == 1


def mobility_values(fn, position: jax.Array) -> None:
    """Check the callable mobility at the initial position (concrete positions only)."""
    if _is_concrete(position):
        _check_matrix_values(np.asarray(fn(position)), "returned at the initial position")


def init_params_match(init_params, expected) -> None:
    """User ``init_params`` must have the sites and shapes of the model's own (unconstrained)
    initial values, which carry the leading ``num_chains`` axis when chains are vectorized."""
    got_shapes = jax.tree.map(np.shape, init_params)
    want_shapes = jax.tree.map(np.shape, expected)
    if (
        jax.tree.structure(got_shapes) != jax.tree.structure(want_shapes)
        or got_shapes != want_shapes
    ):
        raise ValueError(
            "`init_params` must give every latent site of the model, unconstrained, with these "
            f"shapes: {want_shapes} (a leading axis of size num_chains when num_chains > 1); "
            f"got {got_shapes}."
        )


def finite_start(energy, grad) -> None:
    """The potential and its gradient must be finite where the chain starts."""
    if _is_concrete(energy) and not (
        np.all(np.isfinite(np.asarray(energy))) and np.all(np.isfinite(np.asarray(grad)))
    ):
        raise ValueError(
            "The potential energy or its gradient is not finite at `init_params` "
            f"(energy {np.asarray(energy)}). Start the chain inside the support, e.g. at a "
            "point where `potential_fn` is finite."
        )


def continuous_latents(model_trace) -> None:
    """Raise if a model trace has a latent (unobserved) discrete sample site."""
    for name, site in model_trace.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        fn = site["fn"]
        support = getattr(fn, "support", None)
        if getattr(support, "is_discrete", False) or getattr(fn, "has_enumerate_support", False):
            raise ValueError(
                f"Site '{name}' is a discrete latent variable; Langevin moves continuous "
                "variables by their gradient. Marginalise it out (sum it into the "
                "likelihood, e.g. with a mixture distribution), or sample it with "
                "numpyro.infer.DiscreteHMCGibbs / MixedHMC."
            )


def trace_model(model, rng_key, model_args, model_kwargs, init_strategy):
    """One trace of the model, its latent sites set by ``init_strategy``."""
    key = rng_key if is_prng_key(rng_key) else rng_key[0]
    seeded = substitute(seed(model, key), substitute_fn=init_strategy)
    return trace(seeded).get_trace(*model_args, **(model_kwargs or {}))
