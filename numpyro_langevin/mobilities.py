r"""Built-in position-dependent mobilities: pick one instead of deriving a metric.

Each built-in is a :class:`MobilityField`: an object the sampler *binds* to the current potential
:math:`E` (flat position to scalar) on every step, getting back a mobility function
(:data:`numpyro_langevin.mobility.MobilityFn`) with :math:`K(x)`, its factor, log-determinant and
exact divergence :math:`\nabla\cdot K`. Binding happens where the potential is built, from the
current model arguments, so nothing is tied to the data seen at ``init``. Use them as
``Langevin(model, mobility=SoftAbsHessian())``, or with the functional core as
``core.step(key, state, E, SoftAbsHessian().bind(E), h)``.

* :class:`SoftAbsHessian` — dense; per step a Hessian, :math:`d` third-order directional
  derivatives and an :math:`O(d^3)` ``eigh``. For curved targets with :math:`d \lesssim 100`.
* :class:`GradientOuterProduct` — dense rank-one update of the identity in closed form; per step
  a Hessian's trace (:math:`d` Hessian–vector products) and :math:`O(d^2)` work. Shrinks steps
  along steep gradients only.
* :class:`DiagonalSoftAbsHessian` — diagonal; per step :math:`d` second-order directional
  derivatives of :math:`\nabla E`. Coordinate scales that move with the position (centred
  hierarchical models), larger :math:`d`.

A "directional derivative" costs a small multiple of one gradient (forward mode over the
gradient); all are vectorised with ``vmap``. :func:`funnel_fisher` is a worked example of a
hand-derived diagonal mobility (the inverse expected Fisher information of Neal's funnel), used
as an ordinary callable.

References: Betancourt (2013), "A general metric for Riemannian manifold Hamiltonian Monte Carlo"
(SoftAbs); Hartmann, Girolami & Klami (2022), "Lagrangian manifold Monte Carlo on Monge patches"
(gradient outer product metric); Girolami & Calderhead (2011) (Riemannian MALA); Xifara et al.
(2014) (the divergence term); Bhatia (1997), *Matrix Analysis*, Sec. V.3 (Daleckii–Krein
formula for derivatives of matrix functions).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from numpyro_langevin.mobility import Mobility, MobilityFn

Array = jax.Array
PotentialFn = Callable[[Array], Array]

__all__ = [
    "MobilityField",
    "SoftAbsHessian",
    "GradientOuterProduct",
    "DiagonalSoftAbsHessian",
    "funnel_fisher",
    "inverse_softabs",
]


class MobilityField(abc.ABC):
    """A mobility built from the potential: ``bind(potential_fn)`` gives a mobility function.

    Subclasses implement :meth:`bind`. :class:`~numpyro_langevin.kernel.Langevin` calls it with
    the flat potential of the current model arguments every step (it is cheap: it only builds a
    closure), so the mobility follows new data.
    """

    @abc.abstractmethod
    def bind(self, potential_fn: PotentialFn) -> MobilityFn:
        """Mobility function ``x_flat -> Mobility`` for the potential ``potential_fn``."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"`{name}` must be finite and > 0, got {value}.")
    return value


# ---------------------------------------------------------------------- derivatives of E


def _hvp(potential_fn: PotentialFn) -> Callable[[Array, Array], Array]:
    """``hvp(x, u) = H(x) u`` (forward over reverse)."""
    grad = jax.grad(potential_fn)
    return lambda x, u: jax.jvp(grad, (x,), (u,))[1]


def _hessian_and_third(potential_fn: PotentialFn, x: Array, u: Array) -> tuple[Array, Array]:
    """:math:`H(x)u` and :math:`\\nabla^3E(x)[u, u]` (the derivative of :math:`H(x)u` along u)."""
    hvp = _hvp(potential_fn)
    return jax.jvp(lambda y: hvp(y, u), (x,), (u,))


# ---------------------------------------------------------------------- SoftAbs map


def inverse_softabs(lam: Array, alpha: float) -> Array:
    r""":math:`\varphi(\lambda) = 1/(\lambda\coth(\alpha\lambda)) = \tanh(\alpha\lambda)/\lambda`.

    Smooth, even, positive, :math:`\varphi(0) = \alpha`; a Taylor series is used for
    :math:`|\alpha\lambda| < 10^{-2}` (no 0/0).
    """
    t = alpha * lam
    small = jnp.abs(t) < 1e-2
    safe = jnp.where(small, 1.0, lam)
    series = alpha * (1.0 - t**2 / 3.0 + 2.0 * t**4 / 15.0 - 17.0 * t**6 / 315.0)
    return jnp.where(small, series, jnp.tanh(alpha * safe) / safe)


def _inverse_softabs_derivative(lam: Array, alpha: float) -> Array:
    r""":math:`\varphi'(\lambda) = (\alpha\lambda\,\mathrm{sech}^2(\alpha\lambda) - \tanh(\alpha\lambda))/\lambda^2`."""
    t = alpha * lam
    small = jnp.abs(t) < 1e-2
    safe = jnp.where(small, 1.0, lam)
    ts = alpha * safe
    exact = (ts / jnp.cosh(ts) ** 2 - jnp.tanh(ts)) / safe**2
    series = alpha**2 * (-2.0 * t / 3.0 + 8.0 * t**3 / 15.0 - 102.0 * t**5 / 315.0)
    return jnp.where(small, series, exact)


def _divided_differences(lam: Array, alpha: float) -> Array:
    r"""First divided differences of :math:`\varphi` on the eigenvalues (Daleckii–Krein).

    :math:`D_{ij} = (\varphi(\lambda_i) - \varphi(\lambda_j))/(\lambda_i - \lambda_j)`, and
    :math:`\varphi'` at the midpoint when the two are (nearly) equal, which is where differentiating
    through ``eigh`` would give NaN. The midpoint rule errs by :math:`O(\delta^2)` for a gap
    :math:`\delta`, below the threshold's rounding error.
    """
    li, lj = lam[:, None], lam[None, :]
    gap = li - lj
    scale = jnp.maximum(jnp.maximum(jnp.abs(li), jnp.abs(lj)), 1.0 / alpha)
    eps = jnp.finfo(lam.dtype).eps
    close = jnp.abs(gap) <= jnp.sqrt(eps) * scale
    phi = inverse_softabs(lam, alpha)
    quotient = (phi[:, None] - phi[None, :]) / jnp.where(close, 1.0, gap)
    return jnp.where(close, _inverse_softabs_derivative(0.5 * (li + lj), alpha), quotient)


class SoftAbsHessian(MobilityField):
    r"""Inverse SoftAbs Hessian (Betancourt 2013): :math:`K(x) = \operatorname{softabs}(\nabla^2E(x))^{-1}`.

    With :math:`\nabla^2 E = Q\Lambda Q^\top`,

    .. math::

        K = Q\,\varphi(\Lambda)\,Q^\top, \qquad
        \varphi(\lambda) = \frac{1}{\lambda\coth(\alpha\lambda)} = \frac{\tanh(\alpha\lambda)}{\lambda},

    the inverse Hessian where the curvature is large and positive, the inverse of its absolute
    value where it is negative, and at most :math:`\alpha` where it is flat (a trust region: no
    direction gets a mobility above :math:`\alpha`). The square root :math:`Q\varphi^{1/2}Q^\top`,
    its inverse and :math:`\log\det K = \sum\log\varphi(\lambda_i)` come from the same
    eigendecomposition.

    **Divergence.** By the Daleckii–Krein formula the derivative of :math:`K` along :math:`u` is
    :math:`Q\,(D\circ Q^\top\partial_u H\,Q)\,Q^\top` with :math:`D` the first divided differences
    of :math:`\varphi` on :math:`\Lambda` (:math:`\varphi'` on the diagonal and between equal
    eigenvalues). Summing over :math:`u = e_b` gives

    .. math::

        \nabla\cdot K = Q\,\Big(\sum_j D_{ij} M_{ij}\Big)_i, \qquad
        M_{ij} = \nabla^3E[q_i, q_j, q_j],

    so only the :math:`d` directional third derivatives :math:`\nabla^3E[\cdot, q_j, q_j]` are
    needed, never the :math:`d^3` tensor, and ``eigh`` is never differentiated — repeated
    eigenvalues (symmetric points, e.g. of Neal's funnel) are handled exactly.

    **Cost per step**: one Hessian (:math:`d` Hessian–vector products), :math:`d` second-order
    directional derivatives of :math:`\nabla E`, an :math:`O(d^3)` ``eigh``; :math:`O(d^2)`
    memory. Meant for :math:`d` up to about 100.

    **When to use it**: targets whose curvature changes across the space (hierarchical models,
    funnels, banana shapes) where no constant mobility fits everywhere.

    Parameters
    ----------
    alpha
        SoftAbs sharpness :math:`\alpha > 0`, in units of inverse curvature: eigenvalues with
        :math:`|\lambda| \gg 1/\alpha` are used as :math:`|\lambda|`, and :math:`K \preceq \alpha I`.
        Large values follow the Hessian closely (and allow big moves in flat regions); small values
        blend towards :math:`\alpha I`. The default :math:`10^6` is effectively no cap for
        posteriors of unit scale; lower it (to a generous bound on the posterior variances) when
        the Hessian has flat or negatively curved directions, where :math:`K` reaches
        :math:`\alpha`.
    """

    def __init__(self, alpha: float = 1e6) -> None:
        self.alpha = _positive("alpha", alpha)

    def bind(self, potential_fn: PotentialFn) -> MobilityFn:
        alpha, hvp = self.alpha, _hvp(potential_fn)

        def evaluate(x: Array) -> Mobility:
            eye = jnp.eye(x.shape[0], dtype=x.dtype)
            hess = jax.vmap(lambda u: hvp(x, u))(eye)
            lam, q = jnp.linalg.eigh(0.5 * (hess + hess.T))
            phi = inverse_softabs(lam, alpha)
            root = jnp.sqrt(phi)
            matrix = (q * phi) @ q.T
            sqrt = (q * root) @ q.T
            inv_sqrt = (q / root) @ q.T
            # third[j] = grad^3 E[., q_j, q_j]; M_ij = q_i . third[j]
            third = jax.vmap(lambda u: _hessian_and_third(potential_fn, x, u)[1])(q.T)
            m = q.T @ third.T
            divergence = q @ jnp.sum(_divided_differences(lam, alpha) * m, axis=1)
            return Mobility(matrix, sqrt, inv_sqrt, jnp.sum(jnp.log(phi)), divergence)

        return jax.jit(evaluate)  # compiled once when called eagerly (kernel init)


class GradientOuterProduct(MobilityField):
    r"""The gradient outer product ("Monge") metric of Hartmann, Girolami & Klami (2022).

    The metric :math:`G(x) = I + \alpha^2 g g^\top` with :math:`g = \nabla E(x)` is that of the
    graph of :math:`E` (scaled by :math:`\alpha`); its inverse, the mobility, is a rank-one
    update of the identity, in closed form:

    .. math::

        K = I - c\,g g^\top, \quad c = \frac{\alpha^2}{1 + \alpha^2|g|^2}, \qquad
        K^{1/2} = I - \alpha^2\beta\,g g^\top, \quad K^{-1/2} = I + \alpha^2\gamma\,g g^\top,

    with :math:`r = \sqrt{1 + \alpha^2|g|^2}`, :math:`\beta = 1/(r(1 + r))`,
    :math:`\gamma = 1/(1 + r)` and :math:`\log\det K = -2\log r`. It shrinks steps only along the
    gradient, where the target is steep, and leaves the other directions alone. The divergence is

    .. math::

        \nabla\cdot K = -c\,Hg - \big(c\operatorname{tr}H - 2c^2\,g^\top H g\big)\,g,
        \qquad H = \nabla^2 E(x).

    **Cost per step**: :math:`Hg` is one Hessian–vector product, but :math:`\operatorname{tr}H`
    needs the Hessian's diagonal — :math:`d` Hessian–vector products — so an exact divergence
    costs about a Hessian; no factorisation (:math:`O(d^2)` to build the dense matrices). Cheaper
    than :class:`SoftAbsHessian` (no third derivatives, no ``eigh``).

    **When to use it**: targets with steep walls or strong, position-dependent gradients, where
    the step along the gradient must shrink but a full Hessian metric is too expensive. It never
    *enlarges* a step (:math:`K \preceq I`), so combine it with a well-scaled parameterisation.

    Parameters
    ----------
    alpha
        :math:`\alpha \ge 0` (``0`` gives the identity). Hartmann et al. tune it per target;
        :math:`\alpha^2|g|^2 \approx 1` at typical points is a sensible start.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        alpha = float(alpha)
        if not alpha >= 0 or alpha == float("inf"):
            raise ValueError(f"`alpha` must be finite and >= 0, got {alpha}.")
        self.alpha = alpha

    def bind(self, potential_fn: PotentialFn) -> MobilityFn:
        a2, hvp = self.alpha**2, _hvp(potential_fn)
        grad_fn = jax.grad(potential_fn)

        def evaluate(x: Array) -> Mobility:
            eye = jnp.eye(x.shape[0], dtype=x.dtype)
            g = grad_fn(x)  # shared with the core's gradient under jit (same computation)
            g2 = jnp.sum(g**2)
            r = jnp.sqrt(1.0 + a2 * g2)
            c = a2 / (1.0 + a2 * g2)
            outer = jnp.outer(g, g)
            matrix = eye - c * outer
            sqrt = eye - (a2 / (r * (1.0 + r))) * outer
            inv_sqrt = eye + (a2 / (1.0 + r)) * outer
            hg = hvp(x, g)
            trace = jnp.sum(jax.vmap(lambda e: jnp.dot(e, hvp(x, e)))(eye))
            divergence = -c * hg - (c * trace - 2.0 * c**2 * jnp.dot(g, hg)) * g
            return Mobility(matrix, sqrt, inv_sqrt, -2.0 * jnp.log(r), divergence)

        return jax.jit(evaluate)  # compiled once when called eagerly (kernel init)


class DiagonalSoftAbsHessian(MobilityField):
    r"""Diagonal SoftAbs of the Hessian's diagonal: :math:`K_{aa}(x) = \varphi(\partial_a^2E(x))`.

    :math:`\varphi(\lambda) = \tanh(\alpha\lambda)/\lambda` as in :class:`SoftAbsHessian`: the
    inverse curvature of each coordinate, capped at :math:`\alpha`. Its divergence is
    :math:`(\nabla\cdot K)_a = \varphi'(\partial_a^2E)\,\partial_a^3E`, and both
    :math:`\partial_a^2E` and :math:`\partial_a^3E` come from one second-order directional
    derivative of :math:`\nabla E` along :math:`e_a`.

    **Cost per step**: :math:`d` second-order directional derivatives of :math:`\nabla E`
    (vectorised), :math:`O(d)` memory per direction; no factorisation.

    **When to use it**: the scale of each coordinate depends on where the chain is but the
    coordinates are roughly uncoupled at each point — e.g. the local latents of a centred
    hierarchical model, whose scale is set by a global variance parameter (Neal's funnel:
    :math:`K_{x_ix_i} = e^{v}`, the exact conditional variance). It ignores correlations; for
    those use :class:`SoftAbsHessian`.

    Parameters
    ----------
    alpha
        Cap :math:`\alpha > 0` on each :math:`K_{aa}` (inverse curvature units); see
        :class:`SoftAbsHessian`.
    """

    def __init__(self, alpha: float = 1e6) -> None:
        self.alpha = _positive("alpha", alpha)

    def bind(self, potential_fn: PotentialFn) -> MobilityFn:
        alpha = self.alpha

        def evaluate(x: Array) -> Mobility:
            eye = jnp.eye(x.shape[0], dtype=x.dtype)
            hcol, third = jax.vmap(lambda u: _hessian_and_third(potential_fn, x, u))(eye)
            curvature, third_diag = jnp.diagonal(hcol), jnp.diagonal(third)
            matrix = inverse_softabs(curvature, alpha)
            divergence = _inverse_softabs_derivative(curvature, alpha) * third_diag
            sqrt = jnp.sqrt(matrix)
            return Mobility(matrix, sqrt, 1.0 / sqrt, jnp.sum(jnp.log(matrix)), divergence)

        return jax.jit(evaluate)  # compiled once when called eagerly (kernel init)


def funnel_fisher(
    v_scale: float = 3.0, v_site: str = "v", x_site: str = "x"
) -> Callable[[dict], Array]:
    r"""Inverse expected Fisher information of Neal's funnel, as a mobility callable.

    For :math:`v \sim N(0, \sigma_v^2)` and :math:`x_i \mid v \sim N(0, e^{v})`, :math:`i = 1..n`,
    the expected Fisher information given :math:`v` is diagonal: :math:`1/\sigma_v^2 + n/2` for
    :math:`v` (prior plus :math:`\tfrac12` per :math:`x_i`) and :math:`e^{-v}` for each
    :math:`x_i`. Its inverse,

    .. math::

        K(v, x) = \operatorname{diag}\big(1/(1/\sigma_v^2 + n/2),\ e^{v}, \dots, e^{v}\big),

    is a position-dependent mobility (Girolami & Calderhead 2011). Each diagonal entry depends
    only on the *other* coordinates (:math:`K_{x_ix_i}` on :math:`v`), so
    :math:`\nabla\cdot K = 0`; the sampler still computes it by autodiff (:math:`d`
    Jacobian–vector products of this cheap function). Cost: nothing beyond that and the core's
    gradient. It is a worked example of deriving one by hand: the same recipe
    (expected Fisher of each likelihood site, given its parents) applies to other hierarchical
    models.

    Returns a callable on the model's position ``{v_site: (), x_site: (n,)}`` giving the
    diagonal over the flattened position (ordered as ``ravel_pytree`` orders the sites).
    """
    v_scale = _positive("v_scale", v_scale)

    def mobility(position: dict) -> Array:
        v, x = position[v_site], position[x_site]
        n = jnp.size(x)
        k_v = 1.0 / (1.0 / v_scale**2 + 0.5 * n)
        flat, _ = ravel_pytree(
            {
                v_site: jnp.full(jnp.shape(v), k_v, dtype=v.dtype),
                x_site: jnp.exp(v) * jnp.ones_like(x),
            }
        )
        return flat

    return mobility
