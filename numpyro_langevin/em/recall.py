r"""Recall: persistent particles moved by Langevin steps at fixed parameters.

Each of :math:`P` particles is a flat vector :math:`x_p` (the unconstrained latents, raveled). A
recall phase of :math:`n` steps applies :func:`numpyro_langevin.core.step` to every particle
(``vmap``) :math:`n` times, targeting :math:`q(x) \propto \exp(-E_\theta(x)/T)` at the current
:math:`\theta`. The core state (energy, gradient, mobility, drift at the particle) is rebuilt at the
start of each phase because :math:`\theta` changed since the last one; a phase of :math:`n` steps
therefore costs :math:`n + 1` gradients per particle.

Step size
---------
One step size :math:`h` is shared by the particles and carried from phase to phase as
:math:`\log h`. After every step it moves toward the target acceptance :math:`a^\ast` (0.574, the
optimum for MALA; Roberts & Rosenthal 1998) by a constant-gain Robbins–Monro update

.. math::

    \log h \leftarrow \log h + \gamma\,(\bar a - a^\ast),

where :math:`\bar a` is the acceptance probability averaged over the particles and
:math:`\gamma = 0.2` (:data:`ADAPTATION_RATE`). A constant gain (rather than a decreasing one, as
in dual averaging) keeps tracking the target, which moves as :math:`\theta` is learned; averaging
over the particles keeps the fluctuation of :math:`\log h` small (its standard deviation is of the
order of :math:`\sqrt{\gamma / P}`). Before the first phase :func:`find_step_size` halves or
doubles :math:`h` until one step's mean acceptance crosses :math:`a^\ast`, so no tuning is needed
even when the posterior scale is far from 1.

Because :math:`h` depends on the particles' past, the chain with adaptation is not exactly
invariant for :math:`q`; the effect is of the order of the fluctuation of :math:`\log h` and is
swamped by the Monte Carlo error of the learning gradient. Pass ``adapt_step_size=False`` to
:class:`~numpyro_langevin.RecallLearn` for a fixed :math:`h` and an exact (MALA) recall.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax, random

from numpyro_langevin import core
from numpyro_langevin import mobility as mob
from numpyro_langevin.mobility import MobilityFn

__all__ = ["RecallInfo", "recall", "find_step_size", "ADAPTATION_RATE"]

#: Gain :math:`\gamma` of the per-step update of :math:`\log h`.
ADAPTATION_RATE = 0.2


class RecallInfo(NamedTuple):
    """Summary of one recall phase.

    Attributes
    ----------
    accept_prob
        Acceptance probability averaged over particles and steps.
    num_diverging
        Number of rejected non-finite proposals (over particles and steps).
    potential_energy
        :math:`E` of each particle at the end, shape ``(P,)``.
    """

    accept_prob: jax.Array
    num_diverging: jax.Array
    potential_energy: jax.Array


def _axes(mobility_fn, blocks: bool):
    """``vmap`` axes of the particles' states: a constant mobility shared by the blocks of a
    block state is also shared by the particles (one copy, not ``P``)."""
    if blocks and mob.constant_value(mobility_fn) is not None:
        return core.LangevinState(0, 0, 0, None, 0, None, 0)
    return 0


def _init_states(positions, potential_fn, mobility_fn, temperature, blocks=False):
    init = core.block_init if blocks else core.init
    axes = _axes(mobility_fn, blocks)
    return jax.vmap(lambda x: init(x, potential_fn, mobility_fn, temperature), out_axes=axes)(
        positions
    )


def _step_all(
    key, states, potential_fn, mobility_fn, step_size, temperature, metropolis, blocks=False
):
    keys = random.split(key, states.position.shape[0])
    step = core.block_step if blocks else core.step
    axes = _axes(mobility_fn, blocks)
    info_axes = 0 if axes == 0 else core.LangevinInfo(0, 0, 0, axes)
    return jax.vmap(
        lambda k, s: step(k, s, potential_fn, mobility_fn, step_size, temperature, metropolis),
        in_axes=(0, axes),
        out_axes=(axes, info_axes),
    )(keys, states)


def recall(
    rng_key: jax.Array,
    positions: jax.Array,
    log_step_size: jax.Array,
    potential_fn: Callable[[jax.Array], jax.Array],
    mobility_fn: MobilityFn,
    num_steps: int,
    temperature: float = 1.0,
    metropolis: bool = True,
    adapt_step_size: bool = True,
    target_accept_prob: float = 0.574,
    blocks: bool = False,
) -> tuple[jax.Array, jax.Array, RecallInfo]:
    """Move the particles ``positions`` (shape ``(P, d)``) by ``num_steps`` Langevin steps.

    With ``blocks`` the positions are ``(P, B, k)``, ``potential_fn`` maps one particle's
    ``(B, k)`` to its ``B`` block energies and every block is a chain of its own
    (:func:`numpyro_langevin.core.block_step`); the acceptance is averaged over blocks too.

    Returns
    -------
    (positions, log_step_size, RecallInfo)
    """
    states = _init_states(positions, potential_fn, mobility_fn, temperature, blocks)

    def body(carry, key):
        states, log_h = carry
        states, info = _step_all(
            key, states, potential_fn, mobility_fn, jnp.exp(log_h), temperature, metropolis,
            blocks,
        )  # fmt: skip
        accept = jnp.mean(info.accept_prob)
        if adapt_step_size:
            log_h = log_h + ADAPTATION_RATE * (accept - target_accept_prob)
        return (states, log_h), (accept, jnp.sum(info.diverging))

    (states, log_h), (accept, diverging) = lax.scan(
        body, (states, log_step_size), random.split(rng_key, num_steps)
    )
    energies = states.potential_energy
    if blocks:
        energies = jnp.sum(energies, axis=-1)
    info = RecallInfo(jnp.mean(accept), jnp.sum(diverging), energies)
    return states.position, log_h, info


def find_step_size(
    rng_key: jax.Array,
    positions: jax.Array,
    log_step_size: jax.Array,
    potential_fn: Callable[[jax.Array], jax.Array],
    mobility_fn: MobilityFn,
    temperature: float = 1.0,
    metropolis: bool = True,
    target_accept_prob: float = 0.574,
    max_doublings: int = 40,
    blocks: bool = False,
) -> jax.Array:
    """Halve or double :math:`h` until one step's mean acceptance crosses the target.

    The same key is used for every trial (common random numbers), so the acceptance is a smooth
    function of :math:`h`. Returns the new :math:`\\log h` (the last value on the side of the
    target with acceptance above it).
    """
    states = _init_states(positions, potential_fn, mobility_fn, temperature, blocks)

    def accept(log_h):
        _, info = _step_all(
            rng_key, states, potential_fn, mobility_fn, jnp.exp(log_h), temperature, metropolis,
            blocks,
        )  # fmt: skip
        return jnp.mean(info.accept_prob)

    direction = jnp.where(accept(log_step_size) > target_accept_prob, 1.0, -1.0)
    log2 = jnp.log(2.0).astype(log_step_size.dtype)

    def cond(carry):
        i, log_h, _ = carry
        a = accept(log_h)
        crossed = jnp.where(direction > 0, a < target_accept_prob, a > target_accept_prob)
        return (i < max_doublings) & ~crossed

    def body(carry):
        i, log_h, _ = carry
        return i + 1, log_h + direction * log2, log_h

    _, log_h, previous = lax.while_loop(cond, body, (0, log_step_size, log_step_size))
    # going up, the last h above the target is the previous one; going down, the crossing one
    return jnp.where(direction > 0, previous, log_h)
