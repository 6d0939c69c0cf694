r"""Lagrangians of Hopfield neurons: :math:`L`, its gradient (the activation) and its Hessian.

A layer of neurons with states :math:`x \in \mathbb{R}^n` is described by a convex Lagrangian
:math:`L(x)` (Krotov & Hopfield 2021, "Large associative memory problem in neurobiology and
machine learning"; Krotov 2021, "Hierarchical associative memory"). Its activations are
:math:`g = \nabla L` and its energy term is the Legendre transform
:math:`x\cdot\nabla L(x) - L(x)`. The Langevin mobility of the layer is
:math:`K = (\partial^2 L)^{-1}` (see :mod:`numpyro_langevin.hopfield.energy`), so the Hessian must
be positive definite everywhere:

* :func:`identity`: :math:`L = \tfrac12|x|^2`, :math:`g(x) = x`, :math:`\partial^2 L = I`;
* :func:`leaky_relu`: :math:`L = \tfrac12\sum_i \mathrm{relu}(x_i)^2 + \tfrac a2\sum_i \min(x_i, 0)^2`,
  :math:`g(x) = \max(x, a x)`, :math:`\partial^2 L = \mathrm{diag}(1 \text{ if } x_i > 0 \text{ else } a)`:
  piecewise constant, with a kink at :math:`x_i = 0`;
* :func:`custom`: any user-supplied strictly convex :math:`L`.

A plain ReLU (:math:`a = 0`) is rejected: see :func:`relu`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from numpyro_langevin import checks

Array = jax.Array

__all__ = ["Lagrangian", "identity", "leaky_relu", "relu", "custom"]

RELU_MESSAGE = (
    "A plain ReLU Lagrangian (slope a = 0) is not allowed: for x_i < 0 it is flat, so the "
    "energy does not depend on a unit once it is negative. exp(-E/T) then has flat directions "
    "(every negative value of a 'dead' unit has the same energy) and cannot be normalised, and "
    "the mobility K = (d^2 L)^-1 is infinite there, so Langevin chains drift away without bound. "
    "Use a leaky slope instead, e.g. leaky_relu(slope=0.1) (any a > 0 works; a small a makes the "
    "negative side wide, with variance T/a)."
)


@dataclass(frozen=True)
class Lagrangian:
    """A neuron layer's Lagrangian with its derivatives.

    Attributes
    ----------
    value
        :math:`L(x)`: shape ``(n,)`` to scalar.
    activation
        :math:`g(x) = \\nabla L(x)`, shape ``(n,)``.
    hessian
        :math:`\\partial^2 L(x)`: its diagonal ``(n,)`` when ``diagonal`` is true, else ``(n, n)``.
    diagonal
        Whether :math:`\\partial^2 L` is diagonal (a separable Lagrangian).
    piecewise_constant
        Whether :math:`\\partial^2 L` is piecewise constant, so :math:`\\nabla\\cdot K = 0` away
        from the kinks and the sampler can skip computing it.
    name
        For messages and reprs.
    """

    value: Callable[[Array], Array]
    activation: Callable[[Array], Array]
    hessian: Callable[[Array], Array]
    diagonal: bool = True
    piecewise_constant: bool = False
    name: str = "custom"

    def legendre(self, x: Array) -> Array:
        """The layer's energy term :math:`x\\cdot g(x) - L(x)`."""
        return jnp.dot(x, self.activation(x)) - self.value(x)

    def mobility(self, x: Array) -> Array:
        """:math:`K = (\\partial^2 L(x))^{-1}`: ``(n,)`` diagonal or ``(n, n)`` dense."""
        hess = self.hessian(x)
        if self.diagonal:
            return 1.0 / hess
        return jnp.linalg.inv(hess)


def identity() -> Lagrangian:
    """:math:`L(x) = \\tfrac12|x|^2`: linear neurons, :math:`g(x) = x`, :math:`K = I`."""
    return Lagrangian(
        value=lambda x: 0.5 * jnp.sum(x**2),
        activation=lambda x: x,
        hessian=jnp.ones_like,
        diagonal=True,
        piecewise_constant=True,
        name="identity",
    )


def leaky_relu(slope: float = 0.1) -> Lagrangian:
    """Leaky-ReLU neurons with slope :math:`a > 0` on the negative side.

    :math:`L(x) = \\tfrac12\\sum_i \\mathrm{relu}(x_i)^2 + \\tfrac a2\\sum_i\\min(x_i, 0)^2`,
    :math:`g(x) = \\max(x, a x)` (for :math:`a \\le 1`) and
    :math:`\\partial^2 L = \\mathrm{diag}(\\mathbb{1}[x > 0] + a\\,\\mathbb{1}[x \\le 0])`, so the
    mobility is :math:`1` on the positive side and :math:`1/a` on the negative side.

    Parameters
    ----------
    slope
        :math:`a > 0`. ``0`` (a plain ReLU) is rejected: see :func:`relu`.
    """
    if isinstance(slope, int | float) and slope == 0:
        raise ValueError(RELU_MESSAGE)
    a = checks.positive_scalar("slope", slope, RELU_MESSAGE)

    def value(x):
        return 0.5 * jnp.sum(jnp.maximum(x, 0.0) ** 2) + 0.5 * a * jnp.sum(
            jnp.minimum(x, 0.0) ** 2
        )

    return Lagrangian(
        value=value,
        activation=lambda x: jnp.where(x > 0, x, a * x),
        hessian=lambda x: jnp.where(x > 0, 1.0, a).astype(x.dtype),
        diagonal=True,
        piecewise_constant=True,
        name=f"leaky_relu(slope={a:g})",
    )


def relu() -> Lagrangian:
    """Not available: always raises, and says why (flat directions) and what to use instead."""
    raise ValueError(RELU_MESSAGE)


def custom(
    value: Callable[[Array], Array],
    *,
    separable: bool = True,
    piecewise_constant: bool = False,
    name: str = "custom",
) -> Lagrangian:
    """A user-supplied Lagrangian :math:`L`; activation and Hessian by autodiff.

    Parameters
    ----------
    value
        :math:`L(x)`: shape ``(n,)`` to scalar. It must be strictly convex (positive-definite
        Hessian everywhere) for :math:`\\exp(-E/T)` to be normalisable and for the mobility
        :math:`(\\partial^2 L)^{-1}` to exist; where it is not, the sampler rejects the step and
        flags it ``diverging``.
    separable
        :math:`L(x) = \\sum_i \\ell(x_i)`: the Hessian is diagonal and is taken with one
        forward-over-reverse product; otherwise the dense Hessian is computed.
    piecewise_constant
        Declare that the Hessian is piecewise constant, so the divergence of :math:`K` vanishes
        away from kinks and is skipped (as for the built-in Lagrangians).
    name
        Shown in messages.
    """
    if not callable(value):
        raise TypeError(f"`value` must be a callable L(x), got {type(value).__name__}.")
    activation = jax.grad(value)
    if separable:

        def hessian(x):
            return jax.jvp(activation, (x,), (jnp.ones_like(x),))[1]

    else:
        hessian = jax.hessian(value)
    return Lagrangian(
        value=value,
        activation=activation,
        hessian=hessian,
        diagonal=bool(separable),
        piecewise_constant=bool(piecewise_constant),
        name=name,
    )
