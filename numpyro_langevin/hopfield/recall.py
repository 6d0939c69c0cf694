r"""Pattern completion: fill masked visible units by Langevin recall of the unclamped units.

Given a pattern :math:`v` whose units in a mask :math:`m` are missing, the unclamped units are
:math:`(v_m, h)` and the observed ones :math:`v_o` are held fixed. Two ways to fill :math:`v_m`:

* ``method="sample"``: Metropolis-adjusted Langevin chains on :math:`(v_m, h)` targeting
  :math:`q(v_m, h \mid v_o) \propto \exp(-E/T)`, with the Hopfield mobility
  :math:`K = (\partial^2 L)^{-1}`; the fill is the posterior mean of :math:`v_m`, estimated by
  the average over chains and post-burn-in steps. With an identity visible Lagrangian,
  :math:`v_m \mid h, v_o \sim N(I_m + U_m f(h), T)` exactly, and the average of
  :math:`I_m + U_m f(h)` is used instead (Rao–Blackwellisation: same mean, smaller variance).
* ``method="anneal"``: the same chains while :math:`T` decreases geometrically to
  ``final_temperature`` (simulated annealing; Kirkpatrick et al. 1983). As :math:`T \to 0` the
  Langevin step becomes an Euler step of the classic Hopfield dynamics, so the fill is a local
  minimum of :math:`E` reached from a noisy start: a "memory".

Vectorisation uses a fixed-size position :math:`x = (v, h)` for every pattern whatever its mask:
the observed coordinates of :math:`v` are replaced by their data values inside :math:`E`, and
carry an independent :math:`\tfrac12|x_o - v_o|^2` instead, so they are decoupled dummies and the
chain's marginal on :math:`(v_m, h)` is exactly the target.
"""

from __future__ import annotations

from functools import partial
from numbers import Integral
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax, random

from numpyro_langevin import checks, core
from numpyro_langevin.hopfield.energy import Hopfield, Params
from numpyro_langevin.mobility import Mobility, MobilityFn, constant, position_dependent

Array = jax.Array

__all__ = ["RecallResult", "recall"]


def _integer(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


TARGET_ACCEPT = 0.574
ADAPTATION_RATE = 0.1


class RecallResult(NamedTuple):
    """What :func:`recall` returns.

    Attributes
    ----------
    visible
        The completed patterns, shape of ``v``: observed units as given, masked ones filled.
    hidden
        The hidden units of every chain at the end, ``(..., num_chains, n_h)``.
    accept_prob
        Mean acceptance probability per pattern (after burn-in for ``"sample"``).
    step_size
        Final step size per pattern.
    """

    visible: Array
    hidden: Array
    accept_prob: Array
    step_size: Array


def _masked_problem(hopfield: Hopfield, params: Params, v_obs: Array, missing: Array):
    """Potential and mobility on :math:`x = (v, h)` with the observed units decoupled."""

    # values under the mask are ignored: NaN there must not reach a gradient through `where`
    v_obs = jnp.where(missing, 0.0, v_obs)

    def visible_of(x):
        return jnp.where(missing, x[: hopfield.num_visible], v_obs)

    def potential(x):
        xv, h = hopfield.split(x)
        dummy = 0.5 * jnp.sum(jnp.where(missing, 0.0, (xv - v_obs) ** 2))
        return hopfield.energy(params, visible_of(x), h) + dummy

    def k_of(x):
        kv = jnp.where(missing, hopfield.visible.mobility(visible_of(x)), 1.0)
        return jnp.concatenate([kv, hopfield.hidden.mobility(hopfield.split(x)[1])])

    if hopfield._piecewise_constant(clamped=False):

        def mobility_fn(x):
            k = k_of(x)
            sqrt = jnp.sqrt(k)
            return Mobility(k, sqrt, 1.0 / sqrt, jnp.sum(jnp.log(k)), jnp.zeros_like(k))

    else:
        mobility_fn = position_dependent(k_of)
    return potential, mobility_fn


def _curvature(hopfield: Hopfield, params: Params, x: Array, missing: Array) -> MobilityFn:
    """The inverse Hessian of the masked problem's potential at ``x``, as a constant mobility:
    :meth:`Hopfield.mean_hessian` at one point, with the decoupled observed units' unit
    curvature in their rows and columns."""
    hess = hopfield.mean_hessian(params, x[None])
    observed = jnp.concatenate([~missing, jnp.zeros(hopfield.num_hidden, dtype=bool)])
    hess = jnp.where(observed[:, None] | observed[None, :], 0.0, hess)
    hess = hess + jnp.diag(observed.astype(hess.dtype))
    chol = jnp.linalg.cholesky(hess)
    eye = jnp.eye(hess.shape[0], dtype=hess.dtype)
    return constant(jax.scipy.linalg.cho_solve((chol, True), eye))


def _recall_one(
    key, hopfield, params, v_obs, missing, *, method, num_steps, num_burnin, num_chains,
    step_size, adapt, temperature, final_temperature, rao_blackwell, mobility,
):  # fmt: skip
    potential, hopfield_k = _masked_problem(hopfield, params, v_obs, missing)
    v0 = jnp.where(missing, params["I"], v_obs)
    h0 = params["U"].T @ hopfield.visible.activation(v0)
    x0 = hopfield.join(v0, h0)
    t0 = temperature
    if method == "anneal":
        ratio = (final_temperature / t0) ** (1.0 / max(num_steps - 1, 1))
        temps = t0 * ratio ** jnp.arange(num_steps)
    else:
        temps = jnp.full(num_steps, t0)
    f = hopfield.hidden.activation

    def estimate(x):
        xv, h = hopfield.split(x)
        if rao_blackwell:
            return params["I"] + params["U"] @ f(h)
        return xv

    def one_chain(key):
        def body(mobility_fn, carry, inputs):
            state, log_h, total, acc = carry
            i, t, k = inputs
            state = core.set_mobility(state, state.mobility, t)  # drift at the new T
            state, info = core.step(k, state, potential, mobility_fn, jnp.exp(log_h), t)
            burning = i < num_burnin
            if adapt:
                log_h = jnp.where(
                    burning, log_h + ADAPTATION_RATE * (info.accept_prob - TARGET_ACCEPT), log_h
                )
            keep = (~burning).astype(x0.dtype)
            total = total + keep * estimate(state.position)
            acc = acc + keep * info.accept_prob
            return (state, log_h, total, acc), None

        inputs = (jnp.arange(num_steps), temps, random.split(key, num_steps))
        state = core.init(x0, potential, hopfield_k, t0)
        carry = (state, jnp.log(jnp.asarray(step_size, x0.dtype)), jnp.zeros_like(v0), 0.0)
        if mobility == "curvature":
            # the Hopfield mobility for the first half of the burn-in, then the inverse
            # Hessian at where the chain got to, held fixed (each stage is an exact chain)
            switch = num_burnin // 2
            first = jax.tree.map(lambda a: a[:switch], inputs)
            rest = jax.tree.map(lambda a: a[switch:], inputs)
            carry, _ = lax.scan(partial(body, hopfield_k), carry, first)
            k = _curvature(hopfield, params, carry[0].position, missing)
            state = core.init(carry[0].position, potential, k, temps[switch])
            carry = (state, *carry[1:])
            carry, _ = lax.scan(partial(body, k), carry, rest)
        else:
            carry, _ = lax.scan(partial(body, hopfield_k), carry, inputs)
        state, log_h, total, acc = carry
        kept = num_steps - num_burnin
        fill = total / kept if method == "sample" else estimate(state.position)
        return fill, hopfield.split(state.position)[1], acc / kept, jnp.exp(log_h)

    fills, hidden, acc, h = jax.vmap(one_chain)(random.split(key, num_chains))
    return jnp.where(missing, fills.mean(0), v_obs), hidden, acc.mean(), h.mean()


@partial(
    jax.jit,
    static_argnames=(
        "hopfield", "method", "num_steps", "num_burnin", "num_chains", "step_size", "adapt",
        "final_temperature", "rao_blackwell", "mobility",
    ),
)  # fmt: skip
def _recall_batch(keys, params, flat_v, flat_m, temperature, *, hopfield, **options):
    """Every pattern of the batch, vectorised; compiled once per model and options."""

    def one(k, x, m):
        return _recall_one(k, hopfield, params, x, m, temperature=temperature, **options)

    return jax.vmap(one)(keys, flat_v, flat_m)


def recall(
    rng_key: Array,
    hopfield: Hopfield,
    params: Params,
    v: Array,
    mask: Array,
    *,
    method: str = "sample",
    num_steps: int = 400,
    num_burnin: int | None = None,
    num_chains: int = 4,
    step_size: float = 0.1,
    adapt_step_size: bool = True,
    temperature: float | None = None,
    final_temperature: float = 1e-3,
    rao_blackwell: bool | None = None,
    mobility: str = "hopfield",
) -> RecallResult:
    """Fill the masked visible units of ``v`` by Langevin recall (jit-compiled, vectorised).

    Parameters
    ----------
    rng_key
        PRNG key.
    hopfield, params
        The model and its parameters.
    v
        Patterns, ``(n_v,)`` or ``(batch, n_v)``; values under the mask are ignored.
    mask
        Boolean, same shape as ``v``: ``True`` marks a *missing* unit to fill.
    method
        ``"sample"`` (posterior mean by MALA at temperature :math:`T`) or ``"anneal"``
        (:math:`T \\to` ``final_temperature``, returning the end point).
    num_steps
        Langevin steps per chain.
    num_burnin
        Steps discarded (and used to adapt the step size) before averaging; default half of
        ``num_steps`` for ``"sample"``. With ``"anneal"`` the step size is adapted during the
        first ``num_burnin`` steps (default a quarter).
    num_chains
        Independent chains per pattern.
    step_size
        Initial Langevin step :math:`h` (adapted to acceptance 0.574 during burn-in).
    adapt_step_size
        Adapt :math:`h` during burn-in.
    temperature
        :math:`T` of the chains (the start of annealing); default the model's.
    final_temperature
        End of annealing (``"anneal"`` only).
    rao_blackwell
        Average :math:`I_m + U_m f(h)` instead of :math:`v_m` (identity visible Lagrangian only;
        default: whenever the visible Lagrangian is the identity).
    mobility
        ``"hopfield"`` (default): :math:`K = (\\partial^2 L)^{-1}` throughout, the mobility
        whose gradient flow is the Hopfield dynamics. ``"curvature"``: the Hopfield mobility
        for the first half of the burn-in, then the inverse Hessian of :math:`E` (masked
        problem) at the chain's position then, held constant: near :math:`\\|U\\|_2 \\to 1` the
        unclamped units have a slow mode (relaxation rate about :math:`1 - \\|U\\|_2` under the
        Hopfield dynamics) that this mobility speeds up, for a dense
        :math:`(n_v + n_h)^2` product per step. Both stages are exact chains.
    """
    if method not in ("sample", "anneal"):
        raise ValueError(f"`method` must be 'sample' or 'anneal', got {method!r}.")
    if mobility not in ("hopfield", "curvature"):
        raise ValueError(f"`mobility` must be 'hopfield' or 'curvature', got {mobility!r}.")
    if not (hopfield.visible.diagonal and hopfield.hidden.diagonal):
        raise ValueError("recall needs separable (diagonal) Lagrangians.")
    v = jnp.asarray(v)
    mask = jnp.asarray(mask, dtype=bool)
    if v.shape != mask.shape or v.shape[-1] != hopfield.num_visible:
        raise ValueError(
            f"`v` and `mask` must both have shape (..., {hopfield.num_visible}); got {v.shape} "
            f"and {mask.shape}."
        )
    num_steps = _integer("num_steps", num_steps, 1)
    num_chains = _integer("num_chains", num_chains, 1)
    if num_burnin is not None:
        num_burnin = _integer("num_burnin", num_burnin, 0)
    checks.positive_scalar("step_size", step_size, "It is the initial Langevin step h.")
    checks.positive_scalar("final_temperature", final_temperature, "Annealing ends at this T > 0.")
    if temperature is not None:
        checks.positive_scalar("temperature", temperature, "The chains sample exp(-E/T).")
    if num_burnin is None:
        num_burnin = num_steps // 2 if method == "sample" else num_steps // 4
    if not 0 <= num_burnin < num_steps:
        raise ValueError(f"Need 0 <= num_burnin < num_steps, got {num_burnin}, {num_steps}.")
    if rao_blackwell is None:
        rao_blackwell = hopfield.visible.name == "identity"
    elif rao_blackwell and hopfield.visible.name != "identity":
        raise ValueError("`rao_blackwell=True` needs the identity visible Lagrangian.")
    t = hopfield.temperature_of(params) if temperature is None else jnp.asarray(temperature)
    params = hopfield.resolve(params)
    batch_shape = v.shape[:-1]
    flat_v = v.reshape(-1, v.shape[-1])
    flat_m = mask.reshape(-1, v.shape[-1])
    keys = random.split(rng_key, flat_v.shape[0])
    filled, hidden, acc, h = _recall_batch(
        keys, params, flat_v, flat_m, t,
        hopfield=hopfield, method=method, num_steps=num_steps, num_burnin=int(num_burnin),
        num_chains=int(num_chains), step_size=float(step_size), adapt=bool(adapt_step_size),
        final_temperature=float(final_temperature), rao_blackwell=bool(rao_blackwell),
        mobility=mobility,
    )  # fmt: skip
    return RecallResult(
        filled.reshape(v.shape),
        hidden.reshape(*batch_shape, *hidden.shape[1:]),
        acc.reshape(batch_shape),
        h.reshape(batch_shape),
    )
