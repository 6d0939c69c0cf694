r"""The functional core: one Langevin step with a position-dependent mobility.

Target :math:`q(x) \propto \exp(-E(x)/T)` on :math:`\mathbb{R}^d`. With a mobility :math:`K(x)`
(see :mod:`numpyro_langevin.mobility`) the overdamped Langevin diffusion

.. math::

    dx = b(x)\,dt + \sqrt{2T}\,K(x)^{1/2}\,dW, \qquad b(x) = T\,\nabla\cdot K(x) - K(x)\nabla E(x)

leaves :math:`q` invariant. One Euler–Maruyama step of size :math:`h` proposes

.. math::

    x' = x + h\,b(x) + \sqrt{2Th}\,F(x)\,\xi, \qquad F F^\top = K,\ \xi \sim N(0, I),

that is :math:`x' \sim N(x + h\,b(x),\, 2Th\,K(x))`, with log density

.. math::

    \log p(x' \mid x) = -\frac{|F(x)^{-1}(x' - x - h\,b(x))|^2}{4Th} - \tfrac12\log\det K(x) + c.

With the Metropolis–Hastings correction the proposal is accepted with probability
:math:`\min(1, \alpha)`,
:math:`\log\alpha = -(E(x') - E(x))/T + \log p(x \mid x') - \log p(x' \mid x)`, which makes the chain
exact for any :math:`h` (MALA; Roberts & Tweedie 1996, Girolami & Calderhead 2011 for a
position-dependent :math:`K`, Xifara et al. 2014 for the divergence term). Without it every finite
proposal is accepted (the unadjusted chain, ULA) and :math:`\alpha` is still reported, as a measure
of the discretisation error.

Positions are flat arrays of shape ``(d,)``. Everything the next step needs at the current point —
:math:`E`, :math:`\nabla E`, the factorised mobility with its divergence and the drift — is
cached in :class:`LangevinState`, so one step costs one gradient and one mobility evaluation, both at
the proposal. A proposal whose energy, gradient, mobility factor or acceptance ratio is not
finite (NaN, overflow, a :math:`K` that is not positive definite) is rejected and flagged
``diverging``; the chain never holds a NaN.

A non-reversible part (:mod:`numpyro_langevin.nonreversible`): with an antisymmetric
:math:`A(x)` the mobility is :math:`S + A`, the drift becomes
:math:`T\nabla\cdot(S + A) - (S + A)\nabla E` and the noise still comes from the symmetric
:math:`S = K` alone, so the proposal is :math:`N(x + h\,b(x), 2Th\,S(x))` and both proposal
densities above stay exact (the adjusted chain is exact, and reversible again; the unadjusted chain
keeps the non-reversible speed-up). Without it (``antisymmetric_fn=None``, the default) nothing is
computed for it.

All functions are pure and work under ``jit`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_langevin import mobility as mob
from numpyro_langevin import nonreversible as nonrev
from numpyro_langevin.mobility import Mobility, MobilityFn
from numpyro_langevin.nonreversible import AntisymmetricFn

Array = jax.Array
PotentialFn = Callable[[Array], Array]

__all__ = [
    "LangevinState",
    "LangevinInfo",
    "init",
    "step",
    "set_mobility",
    "drift",
    "proposal_log_density",
    "block_init",
    "block_step",
]


class LangevinState(NamedTuple):
    """Everything a step needs at the current point :math:`x`.

    Attributes
    ----------
    position
        :math:`x`, shape ``(d,)``.
    potential_energy
        :math:`E(x)`.
    potential_grad
        :math:`\\nabla E(x)`.
    mobility
        :math:`K(x)` with its factor, log-determinant and divergence (:class:`Mobility`).
    drift
        :math:`b(x) = T\\nabla\\cdot K(x) - K(x)\\nabla E(x)`, plus
        ``antisymmetric_drift`` when there is an antisymmetric part.
    antisymmetric_drift
        :math:`T\\nabla\\cdot A(x) - A(x)\\nabla E(x)`, or ``None`` without an antisymmetric
        part.
    temperature
        The :math:`T` the state (its drift) was built with; :func:`step` uses it unless given
        another.
    """

    position: Array
    potential_energy: Array
    potential_grad: Array
    mobility: Mobility
    drift: Array
    antisymmetric_drift: Array | None = None
    temperature: Array | None = None


class LangevinInfo(NamedTuple):
    """What happened in one step.

    Attributes
    ----------
    accept_prob
        :math:`\\min(1, \\alpha)` of the proposal (0 when it was not finite). For the unadjusted
        chain it is the acceptance the adjusted chain would have had.
    is_accepted
        Whether the chain moved to the proposal.
    diverging
        The proposal was not finite (NaN or infinite energy, gradient, drift or ratio, or a
        mobility that is not positive definite) and was rejected.
    proposal
        The proposed state, accepted or not.
    """

    accept_prob: Array
    is_accepted: Array
    diverging: Array
    proposal: LangevinState


def drift(mobility: Mobility, potential_grad: Array, temperature: float) -> Array:
    """:math:`b = T\\nabla\\cdot K - K\\nabla E` (the divergence term is skipped for constants)."""
    b = -mob.apply(mobility, potential_grad)
    if mobility.divergence is not None:
        b = b + temperature * mobility.divergence
    return b


def _state_at(
    position: Array,
    potential_fn: PotentialFn,
    mobility_fn: MobilityFn,
    temperature: float,
    antisymmetric_fn: AntisymmetricFn | None = None,
) -> LangevinState:
    energy, grad = jax.value_and_grad(potential_fn)(position)
    m = mobility_fn(position)
    b = drift(m, grad, temperature)
    t = jnp.asarray(temperature, dtype=position.dtype)
    if antisymmetric_fn is None:
        return LangevinState(position, energy, grad, m, b, None, t)
    b_anti = nonrev.drift(antisymmetric_fn(position), grad, temperature)
    return LangevinState(position, energy, grad, m, b + b_anti, b_anti, t)


def _log_ratio(
    state: LangevinState, proposed: LangevinState, xi: Array, step_size: Array, temperature
) -> Array:
    r""":math:`\log\alpha` of the move ``state -> proposed`` made with standard noise ``xi``."""
    # log p(x'|x): the residual is sqrt(2Th) F xi, so its whitened norm is |xi|^2 / 2.
    forward = -0.5 * jnp.sum(xi**2) - 0.5 * state.mobility.log_det
    backward = proposal_log_density(state.position, proposed, step_size, temperature)
    log_ratio = -(proposed.potential_energy - state.potential_energy) / temperature
    return log_ratio + backward - forward


def _decide(key: Array, proposed: LangevinState, log_ratio: Array, metropolis: bool):
    """``(accept_prob, is_accepted, finite)`` of one proposal; non-finite ones are refused."""
    finite = _is_finite(proposed) & ~jnp.isnan(log_ratio)
    accept_prob = jnp.where(finite, jnp.clip(jnp.exp(log_ratio), max=1.0), 0.0)
    if metropolis:
        u = jax.random.uniform(key, dtype=proposed.position.dtype)
        return accept_prob, finite & (u < accept_prob), finite
    return accept_prob, finite, finite


def init(
    position: Array,
    potential_fn: PotentialFn,
    mobility_fn: MobilityFn,
    temperature: float = 1.0,
    antisymmetric_fn: AntisymmetricFn | None = None,
) -> LangevinState:
    """Build the state at ``position``: one gradient and one mobility evaluation.

    Parameters
    ----------
    position
        Flat position, shape ``(d,)``, floating point.
    potential_fn
        :math:`E`: flat position to scalar.
    mobility_fn
        Flat position to :class:`~numpyro_langevin.mobility.Mobility`, e.g. from
        :func:`numpyro_langevin.mobility.constant` or
        :func:`numpyro_langevin.mobility.position_dependent`.
    temperature
        :math:`T > 0`.
    antisymmetric_fn
        Optional non-reversible part: flat position to
        :class:`~numpyro_langevin.nonreversible.Antisymmetric`, e.g. from
        :func:`numpyro_langevin.nonreversible.constant`. ``None``: none (no work spent on it).
    """
    return _state_at(
        jnp.asarray(position), potential_fn, mobility_fn, temperature, antisymmetric_fn
    )


def set_mobility(state: LangevinState, mobility: Mobility, temperature: float) -> LangevinState:
    """Replace the cached mobility (e.g. after warmup adapted it) and recompute the drift.

    No potential or gradient evaluation: the gradient is cached (and so is the antisymmetric
    part of the drift, which does not depend on the mobility).
    """
    b = drift(mobility, state.potential_grad, temperature)
    if state.antisymmetric_drift is not None:
        b = b + state.antisymmetric_drift
    return state._replace(mobility=mobility, drift=b)


def proposal_log_density(
    to: Array, origin: LangevinState, step_size: Array, temperature: float
) -> Array:
    """:math:`\\log p(\\text{to} \\mid \\text{origin})` up to a constant shared by both directions.

    The Gaussian :math:`N(x + h\\,b(x), 2Th\\,K(x))` at ``origin``, including its
    :math:`-\\tfrac12\\log\\det K(x)` term.
    """
    residual = to - origin.position - step_size * origin.drift
    white = mob.whiten(origin.mobility, residual)
    return -jnp.sum(white**2) / (4.0 * temperature * step_size) - 0.5 * origin.mobility.log_det


def _is_finite(state: LangevinState) -> Array:
    leaves = (state.potential_energy, state.potential_grad, state.drift, state.mobility.log_det)
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def step(
    rng_key: Array,
    state: LangevinState,
    potential_fn: PotentialFn,
    mobility_fn: MobilityFn,
    step_size: Array,
    temperature: float | None = None,
    metropolis: bool = True,
    antisymmetric_fn: AntisymmetricFn | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """One Langevin step from ``state``.

    Parameters
    ----------
    rng_key
        PRNG key; split into one key for the noise :math:`\\xi` and one for the accept test.
    state
        Current :class:`LangevinState`.
    potential_fn, mobility_fn
        As in :func:`init`; the same ones that built ``state``.
    temperature
        :math:`T`; ``None`` (default): the one ``state`` was built with (its cached drift
        depends on it). Pass another only to change it on purpose, e.g. when annealing.
    step_size
        :math:`h > 0`.
    metropolis
        Accept with the Metropolis–Hastings ratio (MALA) when true; accept every finite proposal
        (ULA) when false.
    antisymmetric_fn
        The non-reversible part that built ``state`` (``None`` for none), as in :func:`init`.

    Returns
    -------
    (LangevinState, LangevinInfo)
        The next state and what happened.
    """
    x = state.position
    if temperature is None:
        temperature = state.temperature
    step_size = jnp.asarray(step_size, dtype=x.dtype)
    key_noise, key_accept = jax.random.split(rng_key)
    xi = jax.random.normal(key_noise, x.shape, dtype=x.dtype)
    noise_scale = jnp.sqrt(2.0 * temperature * step_size)
    proposed = _state_at(
        x + step_size * state.drift + noise_scale * mob.color(state.mobility, xi),
        potential_fn,
        mobility_fn,
        temperature,
        antisymmetric_fn,
    )

    log_ratio = _log_ratio(state, proposed, xi, step_size, temperature)
    accept_prob, is_accepted, finite = _decide(key_accept, proposed, log_ratio, metropolis)
    new_state = jax.tree.map(lambda new, old: jnp.where(is_accepted, new, old), proposed, state)
    return new_state, LangevinInfo(accept_prob, is_accepted, ~finite, proposed)


# ---------------------------------------------------------------------------- independent blocks


def _block_axes(state: LangevinState, shared_mobility: bool) -> LangevinState:
    """``vmap`` axes of a block state: everything per block but a shared mobility and T."""
    m_axis = None if shared_mobility else 0
    return LangevinState(0, 0, 0, m_axis, 0, None, None)


def block_init(
    positions: Array,
    block_potential_fn: Callable[[Array], Array],
    mobility_fn: MobilityFn,
    temperature: float = 1.0,
) -> LangevinState:
    r"""The state of :math:`B` independent chains whose energies come from one call.

    For a target that factorises over blocks,
    :math:`q(x_1, \dots, x_B) \propto \prod_b \exp(-e_b(x_b)/T)` (the latents of distinct data
    points given the parameters, for instance), each block is its own chain with its own
    Metropolis–Hastings test, while all energies and gradients come from one evaluation of
    ``block_potential_fn`` (one reverse pass for all gradients: :math:`\partial e_b/\partial
    x_c = 0` for :math:`b \ne c`). Then the step size is set by one block's dimension, not by
    :math:`B` times it (for a single test over all blocks :math:`h` shrinks like
    :math:`(Bk)^{-1/3}`; Roberts & Rosenthal 1998).

    Parameters
    ----------
    positions
        ``(B, k)``: one flat position per block.
    block_potential_fn
        ``(B, k) -> (B,)``: :math:`e_b(x_b)` for every block; :math:`e_b` must depend on
        :math:`x_b` alone (this is not checked; the chain is exact only if it holds).
    mobility_fn
        One block's position ``(k,)`` to its :class:`~numpyro_langevin.mobility.Mobility`,
        applied to every block; a constant one (:func:`numpyro_langevin.mobility.constant`) is
        stored once and shared, not copied per block.
    temperature
        :math:`T > 0`.

    Returns
    -------
    LangevinState
        With a leading block axis on ``position``, ``potential_energy``, ``potential_grad``
        and ``drift`` (and on ``mobility`` unless it is constant).
    """
    positions = jnp.asarray(positions)
    if positions.ndim != 2:
        raise ValueError(
            f"Block positions must have shape (B, k), one flat position per block; got shape "
            f"{positions.shape}."
        )
    energy, pullback = jax.vjp(block_potential_fn, positions)
    if jnp.shape(energy) != positions.shape[:1]:
        raise ValueError(
            f"`block_potential_fn` must return one energy per block, shape "
            f"{positions.shape[:1]}, for positions of shape {positions.shape}; got "
            f"{jnp.shape(energy)}."
        )
    (grad,) = pullback(jnp.ones_like(energy))
    shared = mob.constant_value(mobility_fn)
    if shared is None:
        m = jax.vmap(mobility_fn)(positions)
        b = jax.vmap(drift, (0, 0, None))(m, grad, temperature)
    else:
        m = shared
        b = jax.vmap(drift, (None, 0, None))(m, grad, temperature)
    t = jnp.asarray(temperature, dtype=positions.dtype)
    return LangevinState(positions, energy, grad, m, b, None, t)


def block_step(
    rng_key: Array,
    state: LangevinState,
    block_potential_fn: Callable[[Array], Array],
    mobility_fn: MobilityFn,
    step_size: Array,
    temperature: float | None = None,
    metropolis: bool = True,
) -> tuple[LangevinState, LangevinInfo]:
    """One Langevin step of every block of a :func:`block_init` state.

    The proposal, its densities and the accept test are those of :func:`step`, made per block
    (each block accepts or rejects on its own); the energies and gradients at the proposals
    come from one call of ``block_potential_fn``. Arguments as in :func:`block_init` and
    :func:`step`; ``info`` fields have one entry per block.
    """
    x = state.position
    if temperature is None:
        temperature = state.temperature
    step_size = jnp.asarray(step_size, dtype=x.dtype)
    shared = mob.constant_value(mobility_fn) is not None
    axes = _block_axes(state, shared)
    key_noise, key_accept = jax.random.split(rng_key)
    xi = jax.random.normal(key_noise, x.shape, dtype=x.dtype)
    noise = jax.vmap(mob.color, (axes.mobility, 0))(state.mobility, xi)
    proposed = block_init(
        x + step_size * state.drift + jnp.sqrt(2.0 * temperature * step_size) * noise,
        block_potential_fn,
        mobility_fn,
        temperature,
    )
    log_ratio = jax.vmap(_log_ratio, (axes, axes, 0, None, None))(
        state, proposed, xi, step_size, temperature
    )
    keys = jax.random.split(key_accept, x.shape[0])
    accept_prob, is_accepted, finite = jax.vmap(_decide, (0, axes, 0, None))(
        keys, proposed, log_ratio, metropolis
    )

    def select(new, old, axis):
        if axis is None:  # shared by all blocks (constant mobility, temperature)
            return new
        return jnp.where(jnp.reshape(is_accepted, (-1,) + (1,) * (new.ndim - 1)), new, old)

    fields = []
    for new, old, axis in zip(proposed, state, axes, strict=True):
        if new is None:
            fields.append(None)
        else:
            fields.append(jax.tree.map(lambda n, o, a=axis: select(n, o, a), new, old))
    return LangevinState(*fields), LangevinInfo(accept_prob, is_accepted, ~finite, proposed)
