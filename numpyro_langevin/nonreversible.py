r"""The antisymmetric (non-reversible) part :math:`A(x)` of the mobility.

The general flux that leaves :math:`q \propto \exp(-E/T)` invariant has a mobility
:math:`K = S + A` with :math:`S` symmetric positive definite and :math:`A = -A^\top`
(Ma, Chen & Fox 2015, "A complete recipe for stochastic gradient MCMC"):

.. math::

    dx = \big[T\,\nabla\cdot(S + A) - (S + A)\nabla E\big]\,dt + \sqrt{2T}\,S^{1/2}\,dW,
    \qquad (\nabla\cdot A)_a = \sum_b \partial_b A_{ab}.

The noise comes from :math:`S` only. The antisymmetric part adds the drift
:math:`T\nabla\cdot A - A\nabla E`, which is divergence free with respect to :math:`q`: it moves
probability along the level sets of :math:`q` without changing it, and never slows the diffusion
down (Hwang, Hwang-Ma & Sheu 1993, 2005). For a Gaussian target with precision :math:`P` and
:math:`S = I` the reversible rate of convergence is :math:`\lambda_{\min}(P)`; a well-chosen
constant :math:`A` raises the slowest rate to the *mean* eigenvalue :math:`\operatorname{tr}P/d`
(Lelièvre, Nier & Pavliotis 2013, J. Stat. Phys. 152:237–274). :func:`optimal_constant` builds
that :math:`A` from a covariance.

With the Metropolis–Hastings correction the chain is reversible again (it uses the exact Gaussian
proposal densities, so it stays exact) and keeps only part of the speed-up (Ottobre, Pillai &
Spiliopoulos 2016); the unadjusted chain keeps all of it, at an :math:`O(h)` bias, and large
:math:`A` makes it stiff (the step must shrink as :math:`\|A\|` grows).

This module mirrors :mod:`numpyro_langevin.mobility`: :class:`Antisymmetric` is :math:`A`
evaluated at a point with its divergence, an *antisymmetric function* maps a flat position to one,
:func:`constant` and :func:`position_dependent` build them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_langevin import checks

Array = jax.Array

__all__ = [
    "Antisymmetric",
    "AntisymmetricFn",
    "constant",
    "position_dependent",
    "drift",
    "check_matrix",
    "check_callable",
    "optimal_constant",
    "slowest_rate",
]


class Antisymmetric(NamedTuple):
    """An antisymmetric part :math:`A` evaluated at one point.

    Attributes
    ----------
    matrix
        :math:`A`, shape ``(d, d)``, :math:`A^\\top = -A`.
    divergence
        :math:`\\nabla\\cdot A`, shape ``(d,)``; ``None`` for a constant :math:`A` (it is zero).
    """

    matrix: Array
    divergence: Array | None


AntisymmetricFn = Callable[[Array], Antisymmetric]


def constant(matrix: Array) -> AntisymmetricFn:
    """A constant antisymmetric part; its divergence is skipped (zero)."""
    a = Antisymmetric(jnp.asarray(matrix), None)
    return lambda x: a


def position_dependent(fn: Callable[[Array], Array]) -> AntisymmetricFn:
    """A position-dependent :math:`A(x)` from ``fn(x) -> (d, d)`` on flat positions.

    The divergence :math:`(\\nabla\\cdot A)_a = \\sum_b \\partial_b A_{ab}` is taken by
    forward-mode autodiff: one linearisation of ``fn`` and ``d`` Jacobian–vector products.
    ``fn`` must return an antisymmetric matrix; it is not symmetrised here.
    """

    def evaluate(x: Array) -> Antisymmetric:
        matrix, jvp = jax.linearize(fn, x)
        tangents = jax.vmap(jvp)(jnp.eye(x.shape[0], dtype=x.dtype))  # tangents[c] = dA/dx_c
        return Antisymmetric(matrix, jnp.einsum("bab->a", tangents))

    return evaluate


def drift(a: Antisymmetric, potential_grad: Array, temperature: float) -> Array:
    """The antisymmetric part of the drift, :math:`T\\nabla\\cdot A - A\\nabla E`."""
    b = -(a.matrix @ potential_grad)
    if a.divergence is not None:
        b = b + temperature * a.divergence
    return b


def _check_values(matrix: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"The antisymmetric part {where} has non-finite entries.")
    scale = max(float(np.abs(matrix).max(initial=0.0)), float(np.finfo(matrix.dtype).tiny))
    asym = float(np.abs(matrix + matrix.T).max(initial=0.0))
    if asym > 1e-5 * scale:
        raise ValueError(
            f"The antisymmetric part {where} is not antisymmetric: max |A + A^T| = {asym:.3g} "
            f"(max |A| = {scale:.3g}). Pass (A - A.T) / 2; a symmetric part belongs in "
            "`mobility`."
        )


def check_matrix(matrix, dim: int) -> jax.Array:
    """Validate a constant antisymmetric part: shape ``(d, d)``, :math:`A^\\top = -A`, finite.

    Values are checked on concrete arrays only (under tracing just the shape is checked).
    """
    shape = np.shape(matrix)
    if shape != (dim, dim):
        raise ValueError(
            f"`antisymmetric` must have shape ({dim}, {dim}) for this {dim}-dimensional "
            f"unconstrained position (ordered as jax.flatten_util.ravel_pytree orders the "
            f"sites); got shape {shape}."
        )
    if not isinstance(matrix, jax.core.Tracer):
        _check_values(np.asarray(matrix), "array")
    return jnp.asarray(matrix, dtype=jnp.result_type(float))


def check_callable(fn: Callable[[Array], Array], position: Array) -> None:
    """Shape-check an antisymmetric callable on flat ``position`` and check its value there."""
    dim = position.shape[0]
    out = checks.output_shape(fn, position, "antisymmetric", "a (d, d) array")
    if getattr(out, "shape", None) != (dim, dim):
        raise ValueError(
            f"The `antisymmetric` callable must return shape ({dim}, {dim}); it returned "
            f"{getattr(out, 'shape', type(out).__name__)}."
        )
    if not isinstance(position, jax.core.Tracer):
        _check_values(np.asarray(fn(position)), "returned at the initial position")


# ---------------------------------------------------------------------- optimal constant A


def _constant_diagonal_basis(p: np.ndarray) -> np.ndarray:
    """An orthonormal :math:`\\Psi` with :math:`(\\Psi^\\top P\\Psi)_{kk} = \\operatorname{tr}P/d`.

    Start in the eigenbasis of :math:`P` and apply :math:`d - 1` plane rotations; each puts one
    diagonal entry above the mean and one below it into the plane and rotates until the first
    equals the mean (possible by continuity: the rotated entry runs from one to the other).
    """
    d = p.shape[0]
    _, basis = np.linalg.eigh(p)
    m = basis.T @ p @ basis
    target = np.trace(p) / d
    for _ in range(d - 1):
        diag = np.diag(m)
        off = np.abs(diag - target)
        if off.max() <= 1e-12 * max(abs(target), 1.0):
            break
        i = int(np.argmax(off))
        above = diag[i] > target
        candidates = np.where((diag < target) if above else (diag > target))[0]
        j = int(candidates[np.argmax(np.abs(diag[candidates] - target))])
        # diag_i(theta) = avg + half cos 2theta + m_ij sin 2theta; solve for target.
        avg, half = 0.5 * (m[i, i] + m[j, j]), 0.5 * (m[i, i] - m[j, j])
        radius = np.hypot(half, m[i, j])
        phi = np.arctan2(m[i, j], half)
        theta = 0.5 * (phi + np.arccos(np.clip((target - avg) / radius, -1.0, 1.0)))
        c, s = np.cos(theta), np.sin(theta)
        rot = np.eye(d)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        basis = basis @ rot
        m = rot.T @ m @ rot
    return basis


def optimal_constant(covariance, mobility=None) -> np.ndarray:
    r"""A constant :math:`A` that makes the slowest Gaussian rate the mean one.

    For the Gaussian target :math:`N(0, \Sigma)` (precision :math:`P = \Sigma^{-1}`) and a
    constant symmetric mobility :math:`S` (identity by default), the linear drift is
    :math:`-(S + A)Px`. Without :math:`A` its slowest rate is :math:`\lambda_{\min}(SP)`.
    Following Lelièvre, Nier & Pavliotis (2013), whiten with :math:`S = LL^\top`
    (:math:`\tilde P = L^\top P L`, so the drift matrix is similar to
    :math:`\tilde P + \tilde P^{1/2} J \tilde P^{1/2}` with :math:`J = L^{-1}AL^{-\top}`). Pick an
    orthonormal basis :math:`\psi_k` in which :math:`\tilde P` has the constant diagonal
    :math:`m = \operatorname{tr}\tilde P/d`, distinct numbers :math:`\omega_k = k`, and set

    .. math::

        \tilde J = \sum_{j \ne k} \frac{\omega_j + \omega_k}{\omega_j - \omega_k}
            \langle\psi_j, \tilde P\psi_k\rangle\,\psi_j\psi_k^\top, \qquad
        J = \tilde P^{-1/2}\tilde J\tilde P^{-1/2}, \qquad A = L J L^\top.

    Then every eigenvalue of :math:`\tilde P + \tilde J`, hence of :math:`(S + A)P`, has real
    part :math:`m = \operatorname{tr}(SP)/d`, the largest possible slowest rate over
    antisymmetric :math:`A` (the real parts always average to :math:`m`). Check it with
    :func:`slowest_rate`.

    Parameters
    ----------
    covariance
        :math:`\Sigma`, ``(d, d)`` symmetric positive definite (e.g. a posterior covariance
        estimate).
    mobility
        The constant symmetric part :math:`S`: ``None`` (identity), ``(d,)`` diagonal or
        ``(d, d)``.

    Returns
    -------
    numpy.ndarray
        :math:`A`, ``(d, d)`` antisymmetric, in float64. Its norm grows with the condition
        number of :math:`SP`; an unadjusted chain then needs a correspondingly smaller step.
    """
    sigma = np.asarray(covariance, dtype=np.float64)
    d = sigma.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"`covariance` must be a square matrix, got shape {sigma.shape}.")
    if mobility is None:
        chol = np.eye(d)
    else:
        s = np.asarray(mobility, dtype=np.float64)
        chol = np.diag(np.sqrt(s)) if s.ndim == 1 else np.linalg.cholesky(s)
    precision = np.linalg.inv(sigma)
    p_tilde = chol.T @ precision @ chol
    p_tilde = 0.5 * (p_tilde + p_tilde.T)
    psi = _constant_diagonal_basis(p_tilde)
    m = psi.T @ p_tilde @ psi
    omega = np.arange(1, d + 1, dtype=np.float64)
    num = omega[:, None] + omega[None, :]
    den = omega[:, None] - omega[None, :]
    np.fill_diagonal(den, 1.0)
    coeff = num / den
    np.fill_diagonal(coeff, 0.0)
    j_tilde = psi @ (coeff * m) @ psi.T
    evals, evecs = np.linalg.eigh(p_tilde)
    inv_sqrt = evecs @ np.diag(evals**-0.5) @ evecs.T
    a = chol @ inv_sqrt @ j_tilde @ inv_sqrt @ chol.T
    return 0.5 * (a - a.T)


def slowest_rate(covariance, mobility=None, antisymmetric=None) -> float:
    """Slowest exponential rate :math:`\\min\\operatorname{Re}\\lambda((S + A)\\Sigma^{-1})`
    of the Gaussian (Ornstein–Uhlenbeck) diffusion, :math:`T = 1`."""
    sigma = np.asarray(covariance, dtype=np.float64)
    d = sigma.shape[0]
    s = np.eye(d) if mobility is None else np.asarray(mobility, dtype=np.float64)
    s = np.diag(s) if s.ndim == 1 else s
    a = np.zeros((d, d)) if antisymmetric is None else np.asarray(antisymmetric, np.float64)
    return float(np.linalg.eigvals((s + a) @ np.linalg.inv(sigma)).real.min())
