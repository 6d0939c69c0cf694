r"""A phase of Recall and Learn: the particles of one model (data or joint) and their energy.

The *data phase* samples the latents :math:`h` given the observed data (the model as written);
the *joint phase* (negative phase) samples visible and latent sites together (the model under
``numpyro.handlers.uncondition``). Both store their particles as unconstrained site values over
the full data set, ``{name: (P, *shape)}``. A recall phase

1. gathers the mini-batch part of every particle (all of it without subsampling),
2. ravels each particle to a flat vector :math:`x_p \in \mathbb{R}^d`,
3. moves them with :func:`numpyro_langevin.em.recall.recall` on the potential
   :math:`E_\theta(x)/s` (NumPyro's potential energy with the parameters substituted; :math:`s`
   the subsampling scale, see :mod:`numpyro_langevin.em.sites`),
4. writes them back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from jax.flatten_util import ravel_pytree
from numpyro.handlers import substitute
from numpyro.infer.util import potential_energy

from numpyro_langevin import checks
from numpyro_langevin import mobility as mob
from numpyro_langevin.em import recall as rc
from numpyro_langevin.em import sites as st

__all__ = ["Phase", "RecallOptions", "energy", "mean_energy", "recall", "find_step_size", "init"]


class Phase(NamedTuple):
    """One set of persistent particles.

    Attributes
    ----------
    model
        The model it samples (the user's, or its unconditioned joint).
    sites
        Its :class:`~numpyro_langevin.em.sites.ModelSites`.
    num_particles
        :math:`P`.
    mobility
        ``None`` (identity), a constant array or a callable (see :class:`RecallLearn`).
    """

    model: Callable
    sites: st.ModelSites
    num_particles: int
    mobility: object


class RecallOptions(NamedTuple):
    """Options of the Langevin recall (see :func:`numpyro_langevin.em.recall.recall`)."""

    num_steps: int
    temperature: float
    metropolis: bool
    adapt_step_size: bool
    target_accept_prob: float


def energy(phase: Phase, plates: dict, latents: dict, params: dict, args, kwargs) -> jax.Array:
    """:math:`E_\\theta` at one particle's unconstrained latents (mini-batch scaled).

    ``params`` are constrained values; ``plates`` the mini-batch indices of subsampled plates.
    """
    model = substitute(phase.model, data=plates) if plates else phase.model
    return potential_energy(model, args, kwargs, {**latents, **params})


def _batch(phase: Phase, particles: dict, plates: dict) -> dict:
    if not plates:
        return particles
    return jax.vmap(partial(st.gather, indices=plates, axes=phase.sites.latent_axes))(particles)


def mean_energy(phase: Phase, particles: dict, plates: dict, params: dict, args, kwargs):
    """:math:`\\frac1P\\sum_p E_\\theta(h_p)` over the mini-batch part of the particles."""
    if not phase.sites.latent_names:
        return energy(phase, plates, {}, params, args, kwargs)
    batch = _batch(phase, particles, plates)
    return jnp.mean(jax.vmap(lambda h: energy(phase, plates, h, params, args, kwargs))(batch))


def _returns_mobility(spec, unravel: Callable, dim: int) -> bool:
    out = jax.eval_shape(
        lambda x: spec(unravel(x)), jax.ShapeDtypeStruct((dim,), jnp.result_type(float))
    )
    return isinstance(out, mob.Mobility)


def mobility_fn(spec, unravel: Callable, dim: int) -> mob.MobilityFn:
    """The core's mobility function for a ``mobility`` argument on ``dim`` flat coordinates.

    A callable returning a :class:`~numpyro_langevin.mobility.Mobility` (factor, log-determinant
    and divergence supplied by the user, e.g. for an elementwise :math:`K` whose divergence is
    cheap) is used as is; one returning an array gets its divergence by forward-mode autodiff
    (:func:`numpyro_langevin.mobility.position_dependent`, :math:`d` products).
    """
    if spec is None:
        return mob.constant(jnp.ones(dim, dtype=jnp.result_type(float)))
    if callable(spec):
        if _returns_mobility(spec, unravel, dim):
            return lambda flat: spec(unravel(flat))
        return mob.position_dependent(lambda flat: spec(unravel(flat)))
    return mob.constant(checks.constant_mobility(spec, dim))


def check_mobility(phase: Phase, particles: dict) -> None:
    """Check a user mobility at the first particle (shape, and values where concrete)."""
    spec = phase.mobility
    if spec is None or not phase.sites.latent_names:
        return
    first = jax.tree.map(lambda x: x[0], particles)
    plates = {n: jnp.arange(b) for n, (_, b) in phase.sites.plates.items()}
    flat, unravel = ravel_pytree(st.gather(first, plates, phase.sites.latent_axes))
    if callable(spec):
        if _returns_mobility(spec, unravel, flat.shape[0]):
            return
        fn = lambda x: spec(unravel(x))  # noqa: E731
        checks.mobility_shape(fn, flat)
        checks.mobility_values(fn, flat)
    else:
        checks.constant_mobility(spec, flat.shape[0])


def _flat(phase: Phase, particles: dict, plates: dict, params: dict, args, kwargs):
    """Flat mini-batch positions ``(P, d)``, the unravel function, potential and mobility."""
    batch = _batch(phase, particles, plates)
    _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], batch))
    flat = jax.vmap(lambda t: ravel_pytree(t)[0])(batch)
    scale = phase.sites.scale

    def potential(x):
        return energy(phase, plates, unravel(x), params, args, kwargs) / scale

    return flat, unravel, potential, mobility_fn(phase.mobility, unravel, flat.shape[1])


def recall(
    phase: Phase,
    options: RecallOptions,
    rng_key,
    particles: dict,
    log_step_size,
    plates: dict,
    params: dict,
    args,
    kwargs,
):
    """Gather, recall, scatter back. Returns ``(particles, log_step_size, RecallInfo)``."""
    flat, unravel, potential, mobility = _flat(phase, particles, plates, params, args, kwargs)
    flat, log_step_size, info = rc.recall(
        rng_key,
        flat,
        log_step_size,
        potential,
        mobility,
        options.num_steps,
        options.temperature,
        options.metropolis,
        options.adapt_step_size,
        options.target_accept_prob,
    )
    batch = jax.vmap(unravel)(flat)
    if plates:
        scatter = partial(st.scatter, indices=plates, axes=phase.sites.latent_axes)
        particles = jax.vmap(scatter)(particles, batch)
    else:
        particles = batch
    return particles, log_step_size, info


def find_step_size(
    phase: Phase, options: RecallOptions, rng_key, particles, log_step_size, params, args, kwargs
):
    """:func:`numpyro_langevin.em.recall.find_step_size` on the first mini-batch indices."""
    plates = {n: jnp.arange(b) for n, (_, b) in phase.sites.plates.items()}
    flat, _, potential, mobility = _flat(phase, particles, plates, params, args, kwargs)
    return rc.find_step_size(
        rng_key,
        flat,
        log_step_size,
        potential,
        mobility,
        options.temperature,
        options.metropolis,
        options.target_accept_prob,
    )


def init(phase: Phase, rng_key, params: dict, init_strategy: Callable, args, kwargs) -> dict:
    """Initial particles ``{name: (P, *shape)}``, one ``init_strategy`` draw each."""
    keys = random.split(rng_key, phase.num_particles)
    one = partial(
        st.init_latents,
        phase.model,
        args=args,
        kwargs=kwargs,
        sites=phase.sites,
        init_strategy=init_strategy,
        params=params,
    )
    ftype = jnp.result_type(float)
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=ftype), jax.vmap(one)(keys))
