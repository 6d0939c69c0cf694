r"""Mobility fields :math:`K(x)`: evaluation, factorisation and divergence.

A mobility is a symmetric positive-definite matrix field over the flattened position
:math:`x \in \mathbb{R}^d`. The sampler needs, at every point it visits,

* :math:`K(x)` itself, to precondition the gradient in the drift :math:`-K(x)\nabla E(x)`;
* a square root :math:`F(x)` with :math:`F F^\top = K`, to draw the noise
  :math:`\sqrt{2Th}\,F\xi`, and a way to apply :math:`F^{-1}` for the reverse proposal density;
* :math:`\log\det K(x)`, for the Metropolis–Hastings ratio;
* the divergence :math:`(\nabla\cdot K)_a = \sum_b \partial_b K_{ab}`, for the drift term
  :math:`T\,\nabla\cdot K` that keeps :math:`\exp(-E/T)` invariant (Xifara et al. 2014).

All of this is gathered in :class:`Mobility`, evaluated once per point and cached in the sampler
state. A *mobility function* maps a flat position to a :class:`Mobility`; this module builds one
from a constant array (:func:`constant`), from a position-dependent callable
(:func:`position_dependent`) and from NumPyro's warmup adaptation state (:func:`from_adapt_state`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

Array = jax.Array

__all__ = [
    "Mobility",
    "MobilityFn",
    "constant",
    "constant_value",
    "position_dependent",
    "from_adapt_state",
    "apply",
    "whiten",
    "color",
]


class Mobility(NamedTuple):
    """A mobility :math:`K` evaluated at one point.

    Attributes
    ----------
    matrix
        :math:`K`: shape ``(d,)`` for a diagonal mobility (its diagonal), ``(d, d)`` for a dense one.
    sqrt
        A square root :math:`F` with :math:`F F^\\top = K`: elementwise square root for a diagonal
        :math:`K`; for a dense :math:`K` the lower Cholesky factor when ``inv_sqrt`` is ``None``,
        otherwise any square root whose inverse is ``inv_sqrt``.
    inv_sqrt
        :math:`F^{-1}` when it is known for free (constant mobilities), else ``None`` and
        :math:`F^{-1}r` is computed by a triangular solve.
    log_det
        :math:`\\log\\det K`.
    divergence
        :math:`\\nabla\\cdot K`, shape ``(d,)``; ``None`` for a constant mobility (it is zero, and
        no work is spent on it).
    """

    matrix: Array
    sqrt: Array
    inv_sqrt: Array | None
    log_det: Array
    divergence: Array | None


MobilityFn = Callable[[Array], Mobility]


def is_diagonal(mobility: Mobility) -> bool:
    """Whether ``mobility`` stores a diagonal :math:`K` (a vector)."""
    return jnp.ndim(mobility.matrix) == 1


def apply(mobility: Mobility, v: Array) -> Array:
    """Return :math:`K v`."""
    if is_diagonal(mobility):
        return mobility.matrix * v
    return mobility.matrix @ v


def color(mobility: Mobility, xi: Array) -> Array:
    """Return :math:`F\\xi`, so that ``color(m, xi)`` has covariance :math:`K` for standard ``xi``."""
    if is_diagonal(mobility):
        return mobility.sqrt * xi
    return mobility.sqrt @ xi


def whiten(mobility: Mobility, r: Array) -> Array:
    """Return :math:`F^{-1} r`, so that :math:`|F^{-1}r|^2 = r^\\top K^{-1} r`."""
    if is_diagonal(mobility):
        if mobility.inv_sqrt is not None:
            return mobility.inv_sqrt * r
        return r / mobility.sqrt
    if mobility.inv_sqrt is not None:
        return mobility.inv_sqrt @ r
    return solve_triangular(mobility.sqrt, r, lower=True)


def _factor(matrix: Array, divergence: Array | None) -> Mobility:
    """Factorise a diagonal or dense :math:`K`; a non-positive-definite one gives NaNs."""
    if jnp.ndim(matrix) == 1:
        sqrt = jnp.sqrt(matrix)
        log_det = jnp.sum(jnp.log(matrix))
    else:
        sqrt = jnp.linalg.cholesky(matrix)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(sqrt)))
    return Mobility(matrix, sqrt, None, log_det, divergence)


def constant(matrix: Array) -> MobilityFn:
    """A constant mobility: ``(d,)`` diagonal or ``(d, d)`` dense.

    The factorisation (and, for a dense matrix, the inverse of its Cholesky factor) is computed
    once, here; evaluating the returned function costs nothing and the divergence is skipped.
    """
    matrix = jnp.asarray(matrix)
    m = _factor(matrix, None)
    if jnp.ndim(matrix) == 1:
        m = m._replace(inv_sqrt=1.0 / m.sqrt)
    else:
        eye = jnp.eye(matrix.shape[0], dtype=matrix.dtype)
        m = m._replace(inv_sqrt=solve_triangular(m.sqrt, eye, lower=True))
    return _Constant(m)


class _Constant:
    """A mobility function that returns the same :class:`Mobility` everywhere (see
    :func:`constant_value`)."""

    def __init__(self, value: Mobility) -> None:
        self.value = value

    def __call__(self, x: Array) -> Mobility:
        return self.value


def constant_value(mobility_fn: MobilityFn) -> Mobility | None:
    """The :class:`Mobility` of a function made by :func:`constant`, else ``None``.

    Lets callers that run many chains at once (:func:`numpyro_langevin.core.block_init`) keep
    one copy of a constant mobility instead of one per chain.
    """
    return mobility_fn.value if isinstance(mobility_fn, _Constant) else None


def from_adapt_state(
    inverse_mass_matrix: Array, mass_matrix_sqrt: Array, mass_matrix_sqrt_inv: Array
) -> Mobility:
    """The constant mobility held by NumPyro's warmup adapter (``HMCAdaptState``).

    NumPyro's ``inverse_mass_matrix`` is the posterior covariance estimate, which is our
    :math:`K`. Its ``mass_matrix_sqrt_inv`` is a lower-triangular :math:`L` with
    :math:`L^\\top L = K` (``mass_matrix_sqrt`` is :math:`L^{-1}`), so :math:`F = L^\\top` and
    :math:`F^{-1} = (L^{-1})^\\top`: no factorisation is needed here.
    """
    if jnp.ndim(inverse_mass_matrix) == 1:
        sqrt, inv_sqrt = mass_matrix_sqrt_inv, mass_matrix_sqrt
        log_det = jnp.sum(jnp.log(inverse_mass_matrix))
    else:
        sqrt, inv_sqrt = mass_matrix_sqrt_inv.T, mass_matrix_sqrt.T
        log_det = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(mass_matrix_sqrt_inv))))
    return Mobility(inverse_mass_matrix, sqrt, inv_sqrt, log_det, None)


def position_dependent(fn: Callable[[Array], Array]) -> MobilityFn:
    """A position-dependent mobility from ``fn(x) -> K(x)`` on flat positions.

    ``fn`` returns the diagonal ``(d,)`` or the full ``(d, d)`` matrix. The divergence is taken by
    forward-mode autodiff: one linearisation of ``fn`` and ``d`` Jacobian–vector products (a
    ``(d, d, d)`` tensor for a dense :math:`K`), together with :math:`K(x)` itself, so :math:`K`
    is evaluated once per point.
    """

    def evaluate(x: Array) -> Mobility:
        matrix, jvp = jax.linearize(fn, x)
        # tangents[c] = d K / d x_c
        tangents = jax.vmap(jvp)(jnp.eye(x.shape[0], dtype=x.dtype))
        if jnp.ndim(matrix) == 1:
            divergence = jnp.diagonal(tangents)
        else:
            divergence = jnp.einsum("bab->a", tangents)
        return _factor(matrix, divergence)

    return evaluate
