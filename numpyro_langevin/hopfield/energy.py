r"""The continuous Hopfield latent model: energy, mobility, dynamics and NumPyro model.

Visible neurons :math:`v \in \mathbb{R}^{n_v}` and hidden neurons :math:`h \in \mathbb{R}^{n_h}`
with Lagrangians :math:`L_v, L_h` (:mod:`~numpyro_langevin.hopfield.lagrangians`), activations
:math:`g = \nabla L_v`, :math:`f = \nabla L_h`, coupling :math:`U` (:math:`n_v\times n_h`) and
visible bias :math:`I` (Krotov & Hopfield 2021, "Large associative memory problem in neurobiology
and machine learning", ICLR):

.. math::

    E(v, h) = \big[(v - I)\cdot g(v) - L_v(v)\big] + \big[h\cdot f(h) - L_h(h)\big]
              - g(v)^\top U f(h).

Gradient and mobility
---------------------
Since :math:`\nabla_v[v\cdot g(v) - L_v(v)] = \partial^2 L_v(v)\,v`,

.. math::

    \nabla_v E = \partial^2 L_v(v)\,\big(v - I - U f(h)\big), \qquad
    \nabla_h E = \partial^2 L_h(h)\,\big(h - U^\top g(v)\big).

With the mobility :math:`K = \mathrm{blockdiag}\big((\partial^2 L_v)^{-1}, (\partial^2 L_h)^{-1}\big)`
the gradient flow :math:`\dot x = -K\nabla E` is *exactly* the classic continuous Hopfield network
(Hopfield 1984):

.. math::

    \dot v = U f(h) - v + I, \qquad \dot h = U^\top g(v) - h,

and at temperature :math:`T` the Langevin diffusion with this :math:`K` samples
:math:`\exp(-E/T)`. For the built-in Lagrangians :math:`K` is piecewise constant. Where it jumps
(the kink of a leaky ReLU at :math:`h_\mu = 0`) :math:`\nabla\cdot K` is a Dirac mass that no
pointwise derivative sees. The Metropolis-adjusted chain is exact all the same (its acceptance
ratio uses the proposal densities, not the drift); the unadjusted chain is not: in the small-step
limit it samples :math:`\exp(-E/T)/\det K`, which weighs each negative half-line of a leaky unit
by its slope :math:`a` (see :func:`numpyro_langevin.hopfield.closed_form.ula_kink_limit`).

Coupling
--------
:math:`\exp(-E/T)` is normalisable only for a bounded coupling: with identity Lagrangians iff
:math:`\|U\|_2 < 1`, and :math:`\|U\|_2 < 1` suffices for identity or leaky-ReLU Lagrangians with
slopes :math:`a \le 1` (in the activations :math:`u = g(v), w = f(h)` the energy is
:math:`\tfrac12 u^\top D_v^{-1}u + \tfrac12 w^\top D_h^{-1} w - u^\top U w - I\cdot u` with
:math:`D^{-1} \succeq 1`). With ``coupling="contractive"`` (the default) the parameter is an
unconstrained :math:`V` and

.. math::

    U = V L^{-\top}, \qquad L L^\top = 1 + V^\top V \ (\text{Cholesky}),

so that :math:`U^\top U = 1 - (L^\top L)^{-1}` and :math:`\|U\|_2 < 1` always; the map is a
bijection onto the open unit ball. It also conditions learning: for identity Lagrangians
:math:`V = W/\sqrt T` is probabilistic PCA's loading matrix in units of the noise, while
:math:`U` itself must approach the unit sphere (e.g. :math:`\|U\|_2 = 0.984` for PPCA-10 on
digits), where the likelihood is stiff. ``coupling="free"`` learns :math:`U` directly.
Parameters that carry ``"U"`` are always used as given.

Learning
--------
:math:`-\partial E/\partial U = g(v) f(h)^\top` (Hebbian) and :math:`-\partial E/\partial I = g(v)`.
The energy is not normalised, so maximum likelihood needs a negative phase (samples of the joint,
as in persistent contrastive divergence; Tieleman 2008).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import block_diag, solve_triangular
from numpyro.distributions import constraints

from numpyro_langevin import checks
from numpyro_langevin.hopfield.lagrangians import Lagrangian, identity, leaky_relu
from numpyro_langevin.mobility import Mobility, MobilityFn, position_dependent

Array = jax.Array
Params = dict[str, Array]

__all__ = ["Hopfield"]


class Hopfield:
    r"""A continuous Hopfield network with visible and hidden neurons.

    The energy, with activations :math:`g = \nabla L_v`, :math:`f = \nabla L_h`, is

    .. math::

        E(v, h) = \big[(v - I)\cdot g(v) - L_v(v)\big] + \big[h\cdot f(h) - L_h(h)\big]
        - g(v)^\top U f(h),

    and the density :math:`\exp(-E/T)`.

    Parameters
    ----------
    num_visible, num_hidden
        :math:`n_v`, :math:`n_h`.
    visible, hidden
        Lagrangians :math:`L_v`, :math:`L_h` (default: identity visible, leaky-ReLU hidden with
        slope 0.1).
    temperature
        :math:`T > 0`: the density is :math:`\exp(-E/T)`. The initial value when
        ``learn_temperature`` is true.
    learn_temperature
        Make :math:`T` a parameter (``params["temperature"]``, a ``numpyro.param`` with a
        positive constraint in :meth:`model`). With identity Lagrangians this makes the model
        exactly probabilistic PCA with :math:`T = \sigma^2`.
    coupling
        ``"contractive"`` (default): learn :math:`V` with :math:`U = V L^{-\top}`,
        :math:`LL^\top = 1 + V^\top V`, so :math:`\|U\|_2 < 1` (see the module notes).
        ``"free"``: learn :math:`U` itself.
    init_scale
        Standard deviation of the random initial coupling (:math:`V` or :math:`U`).

    Notes
    -----
    Parameters are a dict ``{"V" or "U": (n_v, n_h), "I": (n_v,)}`` (plus ``"temperature"`` when
    it is learned); :meth:`coupling` gives :math:`U` and :meth:`resolve` a dict with ``"U"``.
    Flat positions are :math:`x = (v, h)`, shape ``(n_v + n_h,)`` (:meth:`potential_fn`,
    :meth:`mobility`, :meth:`mean_hessian`). The NumPyro side orders sites by name instead:
    the rows that :class:`~numpyro_langevin.RecallLearn` passes to
    :meth:`curvature_mobility` and :meth:`recall_mobility` are :math:`(h, v)`.
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        visible: Lagrangian | None = None,
        hidden: Lagrangian | None = None,
        *,
        temperature: float = 1.0,
        learn_temperature: bool = False,
        coupling: str = "contractive",
        init_scale: float = 0.01,
    ) -> None:
        for name, n in (("num_visible", num_visible), ("num_hidden", num_hidden)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {n!r}.")
        self.num_visible = num_visible
        self.num_hidden = num_hidden
        self.visible = identity() if visible is None else visible
        self.hidden = leaky_relu(0.1) if hidden is None else hidden
        for name, lag in (("visible", self.visible), ("hidden", self.hidden)):
            if not isinstance(lag, Lagrangian):
                raise TypeError(
                    f"`{name}` must be a Lagrangian (hopfield.identity(), "
                    f"hopfield.leaky_relu(slope), hopfield.custom(L)), got {type(lag).__name__}."
                )
        self.temperature = checks.positive_scalar(
            "temperature", temperature, "It is T in exp(-E/T)."
        )
        self.learn_temperature = bool(learn_temperature)
        if coupling not in ("contractive", "free"):
            raise ValueError(f"`coupling` must be 'contractive' or 'free', got {coupling!r}.")
        self.coupling_kind = coupling
        self.init_scale = checks.positive_scalar(
            "init_scale", init_scale, "It is the standard deviation of the initial U."
        )

    def __repr__(self) -> str:
        return (
            f"Hopfield(num_visible={self.num_visible}, num_hidden={self.num_hidden}, "
            f"visible={self.visible.name}, hidden={self.hidden.name}, "
            f"temperature={self.temperature:g}, learn_temperature={self.learn_temperature}, "
            f"coupling={self.coupling_kind!r})"
        )

    @property
    def dim(self) -> int:
        """:math:`n_v + n_h`, the size of a flat position."""
        return self.num_visible + self.num_hidden

    # ------------------------------------------------------------------ parameters

    @property
    def coupling_name(self) -> str:
        """The name of the learned coupling parameter: ``"V"`` (contractive) or ``"U"``."""
        return "V" if self.coupling_kind == "contractive" else "U"

    def init_params(self, rng_key: Array, data: Array | None = None) -> Params:
        """Random initial parameters: the coupling (:math:`V` or :math:`U`) with entries
        :math:`N(0, \\text{init\\_scale}^2)`, :math:`I` the data mean (zero without data)."""
        u = self.init_scale * jax.random.normal(rng_key, (self.num_visible, self.num_hidden))
        bias = jnp.zeros(self.num_visible) if data is None else jnp.mean(jnp.asarray(data), 0)
        params = {self.coupling_name: u, "I": bias}
        if self.learn_temperature:
            params["temperature"] = jnp.asarray(self.temperature)
        return params

    @staticmethod
    def contract(v: Array) -> Array:
        """:math:`U = V L^{-\\top}` with :math:`LL^\\top = 1 + V^\\top V`; :math:`\\|U\\|_2 < 1`."""
        chol = jnp.linalg.cholesky(jnp.eye(v.shape[1], dtype=v.dtype) + v.T @ v)
        return solve_triangular(chol, v.T, lower=True).T

    def coupling(self, params: Params) -> Array:
        """:math:`U`: ``params["U"]`` if present, else the contraction of ``params["V"]``."""
        if "U" in params:
            return params["U"]
        return self.contract(params["V"])

    def resolve(self, params: Params) -> Params:
        """``params`` with :math:`U` computed once (``"V"`` replaced by ``"U"``)."""
        out = {k: v for k, v in params.items() if k != "V"}
        out["U"] = self.coupling(params)
        return out

    def temperature_of(self, params: Params) -> Array:
        """:math:`T`: ``params["temperature"]`` when it is learned, else the fixed value."""
        if self.learn_temperature:
            return params["temperature"]
        return jnp.asarray(self.temperature)

    # ------------------------------------------------------------------ energy

    def energy(self, params: Params, v: Array, h: Array) -> Array:
        """:math:`E(v, h)` for one configuration (``v`` of shape ``(n_v,)``, ``h`` ``(n_h,)``)."""
        g = self.visible.activation(v)
        f = self.hidden.activation(h)
        return (
            jnp.dot(v - params["I"], g)
            - self.visible.value(v)
            + self.hidden.legendre(h)
            - g @ self.coupling(params) @ f
        )

    def split(self, x: Array) -> tuple[Array, Array]:
        """A flat position :math:`x` into :math:`(v, h)`."""
        return x[..., : self.num_visible], x[..., self.num_visible :]

    def join(self, v: Array, h: Array) -> Array:
        """:math:`(v, h)` into a flat position."""
        return jnp.concatenate([v, h], axis=-1)

    def potential_fn(self, params: Params) -> Any:
        """:math:`x \\mapsto E(v, h)` on flat positions :math:`x = (v, h)` (for the core, or
        ``Langevin(potential_fn=..., temperature=T)``)."""
        return lambda x: self.energy(params, *self.split(x))

    def conditional_potential_fn(self, params: Params, v: Array) -> Any:
        """:math:`h \\mapsto E(v, h)` with the visible units clamped to ``v``."""
        return lambda h: self.energy(params, v, h)

    # ------------------------------------------------------------------ mobility

    def _block_mobility(self, v: Array | None, h: Array) -> Array:
        kh = self.hidden.mobility(h)
        if v is None:
            return kh
        kv = self.visible.mobility(v)
        if self.visible.diagonal and self.hidden.diagonal:
            return jnp.concatenate([kv, kh])
        kv = kv if kv.ndim == 2 else jnp.diag(kv)
        kh = kh if kh.ndim == 2 else jnp.diag(kh)
        return block_diag(kv, kh)

    def mobility(self, x: Array) -> Array:
        """:math:`K(x) = \\mathrm{blockdiag}((\\partial^2 L_v)^{-1}, (\\partial^2 L_h)^{-1})` on a
        flat position: the diagonal ``(d,)`` when both Lagrangians are separable, else
        ``(d, d)``. Pass it as ``Langevin(potential_fn=..., mobility=model.mobility)``."""
        return self._block_mobility(*self.split(x))

    def hidden_mobility(self, h: Array) -> Array:
        """:math:`(\\partial^2 L_h(h))^{-1}`: the mobility when the visible units are clamped."""
        return self._block_mobility(None, h)

    def _piecewise_constant(self, clamped: bool) -> bool:
        lags = (self.hidden,) if clamped else (self.visible, self.hidden)
        return all(lag.piecewise_constant and lag.diagonal for lag in lags)

    def mobility_fn(self, clamped: bool = False) -> MobilityFn:
        """The mobility as a core :data:`~numpyro_langevin.mobility.MobilityFn`.

        Parameters
        ----------
        clamped
            For positions :math:`h` (visible units clamped) rather than :math:`(v, h)`.

        Notes
        -----
        For piecewise-constant diagonal Hessians (the built-in Lagrangians) :math:`\\nabla\\cdot K`
        is zero away from the kinks and is returned as zeros without autodiff; the Dirac part at a
        kink is invisible to any pointwise evaluation (see the module notes). Otherwise the
        divergence is taken by forward-mode autodiff
        (:func:`numpyro_langevin.mobility.position_dependent`).
        """
        fn = self.hidden_mobility if clamped else self.mobility
        if not self._piecewise_constant(clamped):
            return position_dependent(fn)

        def evaluate(x: Array) -> Mobility:
            k = fn(x)
            sqrt = jnp.sqrt(k)
            return Mobility(k, sqrt, 1.0 / sqrt, jnp.sum(jnp.log(k)), jnp.zeros_like(k))

        return evaluate

    # ------------------------------------------------------------------ dynamics and learning

    def dynamics(self, params: Params, v: Array, h: Array) -> tuple[Array, Array]:
        """The classic Hopfield vector field :math:`(U f(h) - v + I,\\ U^\\top g(v) - h)`."""
        u = self.coupling(params)
        dv = u @ self.hidden.activation(h) - v + params["I"]
        dh = u.T @ self.visible.activation(v) - h
        return dv, dh

    def mean_hessian(self, params: Params, x: Array) -> Array:
        r"""The Hessian of :math:`E` averaged over configurations ``x`` (shape ``(M, n_v + n_h)``),
        away from kinks, for separable Lagrangians.

        With :math:`H_v = \partial^2 L_v(v)`, :math:`H_h = \partial^2 L_h(h)` (diagonal, piecewise
        constant)

        .. math::

            \partial^2 E = \begin{pmatrix} H_v & -H_v U H_h \\ -H_h U^\top H_v & H_h \end{pmatrix},

        and the average replaces :math:`H_v, H_h` by their means over ``x`` (exact for identity
        visible units; otherwise the off-diagonal block uses the product of the means). It is
        positive definite whenever :math:`\|U\|_2 < 1` and the slopes are at most 1 (the
        module notes' argument with :math:`H^{-1} \succeq 1`). Its inverse is a constant mobility
        under which every mode of a Gaussian joint relaxes at the same rate.
        """
        if not (self.visible.diagonal and self.hidden.diagonal):
            raise ValueError("mean_hessian needs separable (diagonal) Lagrangians.")
        v, h = self.split(x)
        hv = jnp.mean(1.0 / jax.vmap(self.visible.mobility)(v), axis=0)
        hh = jnp.mean(1.0 / jax.vmap(self.hidden.mobility)(h), axis=0)
        cross = -hv[:, None] * self.coupling(params) * hh[None, :]
        return jnp.block([[jnp.diag(hv), cross], [cross.T, jnp.diag(hh)]])

    def hebbian(self, v: Array, h: Array) -> Array:
        """:math:`-\\partial E/\\partial U = g(v) f(h)^\\top` for one configuration."""
        return jnp.outer(self.visible.activation(v), self.hidden.activation(h))

    # ------------------------------------------------------------------ NumPyro model

    def model(self, v: Array | None = None, *, num_data: int | None = None) -> None:
        """The model as a NumPyro program (for :class:`~numpyro_langevin.RecallLearn` and MCMC).

        ``numpyro.param`` sites ``V`` (or ``U`` with ``coupling="free"``), ``I`` (and ``temperature``, positive, when it is learned);
        inside ``plate("data", n)``, a visible site ``v`` (observed when ``v`` is given) and a
        latent site ``h``, both improper flat (``ImproperUniform``), and a factor
        :math:`-E(v, h)/T`. NumPyro's potential energy is therefore :math:`E/T`: sample it at
        temperature 1. Under ``numpyro.handlers.uncondition`` the visible site becomes latent and
        the model is the joint :math:`\\exp(-E/T)` (the negative phase).

        Parameters
        ----------
        v
            Data, shape ``(n, n_v)``; ``None`` with ``num_data`` for the joint.
        num_data
            Number of configurations when ``v`` is ``None``.
        """
        if v is None and num_data is None:
            raise ValueError("Pass the data `v` (n, n_v), or `num_data` for the joint model.")
        n = v.shape[0] if v is not None else int(num_data)
        u = numpyro.param(
            self.coupling_name,
            lambda key: (
                self.init_scale * jax.random.normal(key, (self.num_visible, self.num_hidden))
            ),
        )
        bias = numpyro.param(
            "I", jnp.zeros(self.num_visible) if v is None else jnp.mean(jnp.asarray(v), 0)
        )
        params = {self.coupling_name: u, "I": bias}
        if self.learn_temperature:
            params["temperature"] = numpyro.param(
                "temperature", jnp.asarray(self.temperature), constraint=constraints.positive
            )
        t = self.temperature_of(params)
        params = self.resolve(params)
        with numpyro.plate("data", n):
            v = numpyro.sample(
                "v", dist.ImproperUniform(constraints.real_vector, (), (self.num_visible,)), obs=v
            )
            h = numpyro.sample(
                "h", dist.ImproperUniform(constraints.real_vector, (), (self.num_hidden,))
            )
            e = jax.vmap(self.energy, (None, 0, 0))(params, v, h)
            numpyro.factor("energy", -e / t)

    def site_mobility(self, sites: dict[str, Array]) -> Array:
        """The mobility over the model's latent sites (``{"h": ...}`` or ``{"h": ..., "v": ...}``),
        flattened in the order of ``jax.flatten_util.ravel_pytree`` (diagonal Lagrangians only).

        Pass it as ``mobility=`` wherever a callable over the site dict is taken (e.g.
        ``Langevin(model.model, mobility=model.site_mobility)``).
        """
        if not (self.visible.diagonal and self.hidden.diagonal):
            raise ValueError(
                "site_mobility needs separable (diagonal) Lagrangians; use the flat "
                "`mobility` with `potential_fn` for a dense one."
            )
        fns = {"v": self.visible.mobility, "h": self.hidden.mobility}
        sizes = {"v": self.num_visible, "h": self.num_hidden}
        per_site = {}
        for name, value in sites.items():
            if name in fns and (jnp.ndim(value) == 0 or jnp.shape(value)[-1] != sizes[name]):
                raise ValueError(
                    f"Site {name!r} must have a last axis of {sizes[name]} units, got shape "
                    f"{jnp.shape(value)}."
                )
            if name in fns:
                per_site[name] = jax.vmap(fns[name])(value.reshape(-1, value.shape[-1]))
            elif jnp.size(value) == 0:
                # the factor's empty Unit site, which `uncondition` turns into a latent
                per_site[name] = jnp.zeros((0,), dtype=value.dtype)
            else:
                raise ValueError(f"Unexpected latent site {name!r} in the Hopfield model.")
        return ravel_pytree(per_site)[0]

    def recall_mobility(self, sites: dict[str, Array]) -> Mobility:
        """:meth:`site_mobility` as a :class:`~numpyro_langevin.mobility.Mobility`, with its
        divergence: zero for piecewise-constant Lagrangians (away from the kinks, which no
        pointwise evaluation sees; see the module notes), else by forward-mode autodiff.

        The positive-phase mobility of :class:`~numpyro_langevin.RecallLearn`
        (``mobility=model.recall_mobility``) without :math:`d` autodiff products per step.
        """
        k = self.site_mobility(sites)
        if self._piecewise_constant(clamped="v" not in sites):
            sqrt = jnp.sqrt(k)
            return Mobility(k, sqrt, 1.0 / sqrt, jnp.sum(jnp.log(k)), jnp.zeros_like(k))
        flat, unravel = ravel_pytree(sites)
        return position_dependent(lambda x: self.site_mobility(unravel(x)))(flat)

    def curvature_mobility(self, params: Params, positions: Array) -> Array:
        r"""The joint's mobility :math:`K = \overline{\partial^2 (E/T)}^{-1}`, for
        ``RecallLearn(..., block_plate="data", joint_mobility=PhaseMobility(model.curvature_mobility))``.

        ``positions`` are the joint particles in block layout, ``(..., n_h + n_v)`` with the
        model's sites in sorted order (``h`` then ``v``); ``params`` the constrained
        parameters. The Hessian of :math:`E/T` (NumPyro's potential of :meth:`model`) is
        averaged over the particles at the current parameters (:meth:`mean_hessian`) and
        inverted: a constant mobility under which every mode of a Gaussian joint relaxes at
        the same rate (for identity Lagrangians it is the joint's covariance). With the
        Hopfield mobility the slowest mode relaxes at rate :math:`1 - \|U\|_2`, which near
        the normalisability bound is too slow for persistent chains to follow the parameters.
        """
        n_v, n_h = self.num_visible, self.num_hidden
        positions = jnp.asarray(positions)
        if positions.shape[-1] != self.dim:
            raise ValueError(
                f"curvature_mobility takes one configuration (h, v) per row, {self.dim} "
                f"values; got rows of {positions.shape[-1]}. It is the mobility of the joint "
                "(negative) phase: pass it as RecallLearn(..., block_plate='data', "
                "joint_mobility=PhaseMobility(model.curvature_mobility)), and "
                "mobility=model.recall_mobility for the data phase."
            )
        x = positions.reshape(-1, self.dim)
        h, v = x[:, :n_h], x[:, n_h:]
        hess = self.mean_hessian(self.resolve(params), self.join(v, h))
        hess = hess / self.temperature_of(params)
        order = jnp.concatenate([jnp.arange(n_v, n_v + n_h), jnp.arange(n_v)])
        hess = hess[order][:, order]
        chol = jnp.linalg.cholesky(hess)
        eye = jnp.eye(self.dim, dtype=hess.dtype)
        return jax.scipy.linalg.cho_solve((chol, True), eye)
