r"""Fisher-adaptive constant mobility: the inverse of the score outer product.

Titsias (2023, "Optimal preconditioning and Fisher adaptive Langevin sampling", NeurIPS;
arXiv:2305.14442) shows that the constant preconditioner maximising the expected squared jump of
the Langevin diffusion is the inverse Fisher matrix of the target,

.. math::

    K^\star \propto \mathcal I^{-1}, \qquad
    \mathcal I = \mathbb E_q\big[\nabla\log q\,\nabla\log q^\top\big]
               = \tfrac{1}{T^2}\,\mathbb E_q\big[\nabla E\,\nabla E^\top\big],

rather than the covariance :math:`\Sigma` that the usual (Welford) warmup estimates. The two agree
for a Gaussian (:math:`\mathcal I = \Sigma^{-1}`); they differ on skewed or heavy-tailed targets,
where :math:`\mathcal I^{-1}` weights the directions by their typical curvature instead of their
spread. It is estimated from gradients the sampler computes anyway: no extra cost per step.

Here it is a warmup option of :class:`~numpyro_langevin.kernel.Langevin`
(``adapt_mobility="fisher"``) that reuses NumPyro's windowed adapter: the adapter's Welford
estimator is fed the score :math:`s\odot\nabla E(x)/T` of the scaled coordinates
(:mod:`numpyro_langevin.warmup`) instead of the position, so its "covariance" is the Fisher
matrix estimate :math:`\hat{\mathcal I}` (the score has mean zero under :math:`q`; Welford
also subtracts the sample mean, which removes the bias of a chain still drifting), with Stan's
shrinkage towards the identity; at the end of each window the mobility becomes
:math:`\hat{\mathcal I}^{-1}`. The adapter's square roots of its matrix serve, swapped, as the
factor of the inverse (:func:`from_adapt_state`): no extra factorisation.

Titsias adapts from the Rao–Blackwellised score increments
:math:`\sqrt{\alpha}\,(\nabla\log q(y) - \nabla\log q(x))` with a recursive square-root update;
we use the plain scores at the chain's states within NumPyro's windows, which estimates the same
:math:`\mathcal I` and needs no new machinery.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_langevin.mobility import Mobility

Array = jax.Array

__all__ = ["signal", "from_adapt_state", "initial_fisher"]


def signal(potential_grad: Array, scale: Array, temperature: float) -> Array:
    """The score of the scaled coordinates :math:`u = x/s`: :math:`s\\odot\\nabla E(x)/T`
    (its sign is irrelevant to the outer product)."""
    return scale * potential_grad / temperature


def from_adapt_state(fisher: Array, fisher_sqrt_inv: Array, fisher_sqrt: Array) -> Mobility:
    """The mobility :math:`K = \\hat{\\mathcal I}^{-1}` from the adapter's estimate.

    NumPyro's adapter stores its matrix :math:`M` (here :math:`\\hat{\\mathcal I}`) as
    ``inverse_mass_matrix``, a lower-triangular :math:`L` with :math:`L^\\top L = M` as
    ``mass_matrix_sqrt_inv`` and :math:`L^{-1}` as ``mass_matrix_sqrt``. Then
    :math:`K = M^{-1} = L^{-1}L^{-\\top}`: the factor is :math:`F = L^{-1}` and
    :math:`F^{-1} = L`. Pass the fields in that order:
    ``from_adapt_state(inverse_mass_matrix, mass_matrix_sqrt, mass_matrix_sqrt_inv)``.
    """
    if jnp.ndim(fisher) == 1:
        matrix = 1.0 / fisher
        log_det = -jnp.sum(jnp.log(fisher))
    else:
        matrix = fisher_sqrt_inv @ fisher_sqrt_inv.T
        log_det = -2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(fisher_sqrt))))
    return Mobility(matrix, fisher_sqrt_inv, fisher_sqrt, log_det, None)


def initial_fisher(initial_covariance: Array) -> Array:
    """The adapter's starting matrix: the inverse of the starting covariance guess (for the
    scaled warmup, the floored scaled Hessian; ones for a diagonal start)."""
    if jnp.ndim(initial_covariance) == 1:
        return 1.0 / initial_covariance
    inverse = jnp.linalg.inv(initial_covariance)
    return 0.5 * (inverse + inverse.T)
