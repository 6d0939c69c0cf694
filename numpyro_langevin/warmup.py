r"""Scale-free warmup of a constant mobility, on top of NumPyro's ``warmup_adapter``.

NumPyro's windowed Welford estimator regularises the covariance towards :math:`10^{-3} I` in
absolute units, and starts from the identity. Both assume scales near 1: on a posterior whose
standard deviations span :math:`10^{-3}\ldots 10^{4}` the identity start makes the first
Langevin steps crawl (the step size is set by the stiffest direction) and the shrinkage swamps
the small variances. We therefore run the adapter in *scaled coordinates* :math:`u = x / s`,
with a fixed per-chain scale :math:`s` taken from the curvature at the initial point,
:math:`s_i = |\partial_i^2 E(x_0)|^{-1/2}`, and start it from the inverse of the scaled Hessian
(with its eigenvalues' magnitudes floored, as in the SoftAbs map of Betancourt 2013) — a Newton
preconditioner, exact for a Gaussian target. The mobility in :math:`x` is
:math:`K = S\,\Sigma_u\,S` with :math:`S = \mathrm{diag}(s)` and :math:`\Sigma_u` the adapter's
covariance estimate, so the adaptation is unchanged by a rescaling of any coordinate.

The Hessian costs :math:`d` gradient evaluations, once per chain at ``init``; above
``HESSIAN_MAX_DIM`` dimensions it is skipped (:math:`s = 1`, identity start).

For a dense mobility the kernel also replaces NumPyro's shrinkage at the end of each slow
window: the window's estimate is averaged with the previous mobility, weighted as ``n`` draws
against ``10 d`` (:func:`numpyro_langevin.kernel._shrink_to_previous`), so a window shorter than
the dimension cannot leave directions with next to no mobility.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from numpyro_langevin.mobility import Mobility

__all__ = ["HESSIAN_MAX_DIM", "initial_scale", "scaled"]

#: Largest dimension for which the initial Hessian is computed.
HESSIAN_MAX_DIM = 1000

# Relative floor of the scaled Hessian's eigenvalue magnitudes (its diagonal is +-1).
_EIGEN_FLOOR = 1e-3


def initial_scale(
    potential_fn: Callable[[jax.Array], jax.Array], position: jax.Array, dense: bool
) -> tuple[jax.Array, jax.Array]:
    """Scale :math:`s` and the adapter's initial covariance in scaled coordinates.

    Returns ``(scale, inverse_mass_matrix)``: ``scale`` of shape ``(d,)``; the covariance is
    ``(d, d)`` (inverse of the floored scaled Hessian) when ``dense``, else ones ``(d,)``.
    Non-finite or zero curvature falls back to a unit scale.
    """
    d = position.shape[0]
    ones = jnp.ones(d, dtype=position.dtype)
    if d > HESSIAN_MAX_DIM:
        return ones, (jnp.eye(d, dtype=position.dtype) if dense else ones)
    hessian = jax.hessian(potential_fn)(position)
    curvature = jnp.abs(jnp.diagonal(hessian))
    ok = jnp.isfinite(curvature) & (curvature > 0)
    scale = jnp.where(ok, 1.0 / jnp.sqrt(jnp.where(ok, curvature, 1.0)), 1.0)
    if not dense:
        return scale, ones
    scaled_hessian = scale[:, None] * hessian * scale[None, :]
    scaled_hessian = jnp.where(jnp.isfinite(scaled_hessian), scaled_hessian, 0.0)
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (scaled_hessian + scaled_hessian.T))
    inverse = 1.0 / jnp.maximum(jnp.abs(eigenvalues), _EIGEN_FLOOR)
    covariance = (vectors * inverse) @ vectors.T
    return scale, 0.5 * (covariance + covariance.T)


def scaled(mobility: Mobility, scale: jax.Array) -> Mobility:
    """The mobility :math:`S K S` for a mobility :math:`K` of the scaled coordinates."""
    log_det = mobility.log_det + 2.0 * jnp.sum(jnp.log(scale))
    if jnp.ndim(mobility.matrix) == 1:
        return Mobility(
            mobility.matrix * scale**2,
            mobility.sqrt * scale,
            mobility.inv_sqrt / scale,
            log_det,
            None,
        )
    return Mobility(
        scale[:, None] * mobility.matrix * scale[None, :],
        scale[:, None] * mobility.sqrt,
        mobility.inv_sqrt / scale[None, :],
        log_det,
        None,
    )
