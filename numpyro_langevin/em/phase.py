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

With a *block plate* (``RecallLearn(block_plate=...)``), every element of that plate (a data
point) is a chain of its own: a particle is laid out as ``(B, k)``, one row of ``k`` flat
latents per element (sites in ``ravel_pytree`` order), the potential returns the ``B``
per-element energies (:func:`block_energy`, from NumPyro's per-site log densities summed over
everything but the plate's dimension), and each row has its own Metropolis–Hastings test
(:func:`numpyro_langevin.core.block_step`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from jax.flatten_util import ravel_pytree
from numpyro.handlers import substitute
from numpyro.infer.util import _unconstrain_reparam, compute_log_probs, potential_energy

from numpyro_langevin import checks
from numpyro_langevin import mobility as mob
from numpyro_langevin.em import recall as rc
from numpyro_langevin.em import sites as st

__all__ = [
    "Phase",
    "PhaseMobility",
    "RecallOptions",
    "energy",
    "block_energy",
    "mean_energy",
    "recall",
    "find_step_size",
    "init",
]


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
        ``None`` (identity), a constant array, a callable or a :class:`PhaseMobility` (see
        :class:`~numpyro_langevin.RecallLearn`).
    """

    model: Callable
    sites: st.ModelSites
    num_particles: int
    mobility: object


class PhaseMobility:
    r"""A constant mobility recomputed at the start of every recall phase.

    ``fn(params, positions)`` gets the constrained parameters (``{name: value}`` of the
    ``numpyro.param`` sites) and the phase's particles as flat positions — ``(P, d)``, or
    ``(P, B, k)`` with a block plate — and returns a constant mobility over one position:
    ``(d,)``/``(d, d)`` (``(k,)``/``(k, k)`` with a block plate, shared by all blocks). It is
    held fixed during the phase, so each chain is exactly invariant for the current target
    given the particles it was computed from; only the choice between phases depends on the
    particles (as in ensemble preconditioning, Leimkuhler, Matthews & Weare 2018).
    :meth:`numpyro_langevin.hopfield.Hopfield.curvature_mobility` is one: the inverse of the
    Hessian of :math:`E` averaged over the particles, at the current parameters.
    """

    def __init__(self, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError(
                "PhaseMobility takes a function fn(params, positions) returning a constant "
                f"mobility; got {fn!r}."
            )
        self.fn = fn

    def __repr__(self) -> str:
        return f"PhaseMobility({self.fn!r})"


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


def block_energy(
    phase: Phase, plates: dict, latents: dict, params: dict, args, kwargs
) -> jax.Array:
    """The energy of each element of the block plate, shape ``(B,)``; they sum to
    :func:`energy` (mini-batch scaled, as NumPyro scales the log densities in the plate)."""
    plate = phase.sites.block_plate
    model = substitute(phase.model, data=plates) if plates else phase.model
    model = substitute(model, substitute_fn=partial(_unconstrain_reparam, {**latents, **params}))
    log_probs, tr = compute_log_probs(model, args, kwargs, {}, sum_log_prob=False)
    total = 0.0
    for name, lp in log_probs.items():
        (frame,) = [f for f in tr[name]["cond_indep_stack"] if f.name == plate]
        dim, size = frame.dim, frame.size
        lp = jnp.asarray(lp)
        lp = jnp.broadcast_to(lp, jnp.broadcast_shapes(lp.shape, (size,) + (1,) * (-dim - 1)))
        lp = jnp.moveaxis(lp, dim, 0)
        total = total + jnp.sum(lp.reshape(size, -1), axis=1)
    return -total


def _block_layout(phase: Phase, batch_one: dict):
    """Names, per-element shapes and sizes of one particle's latents in block layout."""
    names = sorted(batch_one)
    axes = phase.sites.block_axes
    shapes = {n: jnp.moveaxis(batch_one[n], axes[n], 0).shape for n in names}
    return names, shapes


def _to_blocks(phase: Phase, latents: dict) -> jax.Array:
    """One particle's latents ``{name: value}`` to ``(B, k)`` (sites in sorted order)."""
    axes = phase.sites.block_axes
    rows = []
    for name in sorted(latents):
        v = jnp.moveaxis(latents[name], axes[name], 0)
        rows.append(v.reshape(v.shape[0], int(np.prod(v.shape[1:], dtype=int))))
    return jnp.concatenate(rows, axis=1)


def _block_unravel(phase: Phase, batch_one: dict):
    """Inverse of :func:`_to_blocks` for latents shaped like ``batch_one``; also the map from
    one row ``(k,)`` to that element's latents ``{name: value without the plate axis}``."""
    names, shapes = _block_layout(phase, batch_one)
    axes = phase.sites.block_axes
    sizes = [int(np.prod(shapes[n][1:], dtype=int)) for n in names]
    cuts = np.cumsum(sizes)[:-1].tolist()

    def unravel(blocks):
        parts = jnp.split(blocks, cuts, axis=1)
        return {
            n: jnp.moveaxis(p.reshape(shapes[n]), 0, axes[n])
            for n, p in zip(names, parts, strict=True)
        }

    def unravel_row(row):
        parts = jnp.split(row, cuts)
        return {n: p.reshape(shapes[n][1:]) for n, p in zip(names, parts, strict=True)}

    return unravel, unravel_row


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


def mobility_fn(spec, unravel: Callable, dim: int, params=None, flat=None) -> mob.MobilityFn:
    """The core's mobility function for a ``mobility`` argument on ``dim`` flat coordinates.

    A callable returning a :class:`~numpyro_langevin.mobility.Mobility` (factor, log-determinant
    and divergence supplied by the user, e.g. for an elementwise :math:`K` whose divergence is
    cheap) is used as is; one returning an array gets its divergence by forward-mode autodiff
    (:func:`numpyro_langevin.mobility.position_dependent`, :math:`d` products). A
    :class:`PhaseMobility` is evaluated at ``params`` and the particles' flat positions
    ``flat``.
    """
    if spec is None:
        return mob.constant(jnp.ones(dim, dtype=jnp.result_type(float)))
    if isinstance(spec, PhaseMobility):
        matrix = spec.fn(params, jax.lax.stop_gradient(flat))
        return mob.constant(checks.constant_mobility(matrix, dim))
    if callable(spec):
        if _returns_mobility(spec, unravel, dim):
            return lambda flat: spec(unravel(flat))
        return mob.position_dependent(lambda flat: spec(unravel(flat)))
    return mob.constant(checks.constant_mobility(spec, dim))


def _check_phase_mobility(phase: Phase, particles: dict, params: dict, args, kwargs) -> None:
    """Evaluate a :class:`PhaseMobility` at the initial particles, outside ``jit``, so that a
    wrong shape, a callable that fails, or values that are not positive (definite) are reported
    at ``init``."""
    plates = {n: jnp.arange(b) for n, (_, b) in phase.sites.plates.items()}
    flat, *_ = _flat(phase, particles, plates, params, args, kwargs, with_mobility=False)
    try:
        matrix = phase.mobility.fn(params, flat)
    except Exception as err:
        raise TypeError(
            "Calling the PhaseMobility function failed. It is called as fn(params, positions) "
            "with the constrained parameters {name: value} and the particles' flat positions, "
            f"shape {tuple(flat.shape)}: {type(err).__name__}: {err}"
        ) from err
    k = flat.shape[-1]
    try:
        checks.constant_mobility(np.asarray(matrix), k)
    except ValueError as err:
        raise ValueError(f"The PhaseMobility at the initial particles: {err}") from None


def check_mobility(phase: Phase, particles: dict, params=None, args=(), kwargs=None) -> None:
    """Check a user mobility at the first particle (shape, and values where concrete); a
    :class:`PhaseMobility` is evaluated at all particles with ``params``."""
    spec = phase.mobility
    if spec is None or not phase.sites.latent_names:
        return
    if isinstance(spec, PhaseMobility):
        if params is not None:
            _check_phase_mobility(phase, particles, params, args, kwargs or {})
        return
    first = jax.tree.map(lambda x: x[0], particles)
    plates = {n: jnp.arange(b) for n, (_, b) in phase.sites.plates.items()}
    batch = st.gather(first, plates, phase.sites.latent_axes)
    if phase.sites.block_plate is not None:
        flat = _to_blocks(phase, batch)[0]
        unravel = _block_unravel(phase, batch)[1]
    else:
        flat, unravel = ravel_pytree(batch)
    if callable(spec):
        if _returns_mobility(spec, unravel, flat.shape[0]):
            return
        fn = lambda x: spec(unravel(x))  # noqa: E731
        checks.mobility_shape(fn, flat)
        checks.mobility_values(fn, flat)
    else:
        checks.constant_mobility(spec, flat.shape[0])


def _flat(
    phase: Phase, particles: dict, plates: dict, params: dict, args, kwargs, with_mobility=True
):
    """Flat mini-batch positions ``(P, d)`` (``(P, B, k)`` with a block plate), the unravel
    function, potential and mobility (``None`` unless ``with_mobility``)."""
    batch = _batch(phase, particles, plates)
    one = jax.tree.map(lambda x: x[0], batch)
    scale = phase.sites.scale
    if phase.sites.block_plate is not None:
        unravel, unravel_row = _block_unravel(phase, one)
        flat = jax.vmap(partial(_to_blocks, phase))(batch)

        def potential(x):
            return block_energy(phase, plates, unravel(x), params, args, kwargs) / scale

        if not with_mobility:
            return flat, unravel, potential, None
        k = flat.shape[-1]
        return flat, unravel, potential, mobility_fn(phase.mobility, unravel_row, k, params, flat)
    _, unravel = ravel_pytree(one)
    flat = jax.vmap(lambda t: ravel_pytree(t)[0])(batch)

    def potential(x):
        return energy(phase, plates, unravel(x), params, args, kwargs) / scale

    if not with_mobility:
        return flat, unravel, potential, None
    dim = flat.shape[1]
    return flat, unravel, potential, mobility_fn(phase.mobility, unravel, dim, params, flat)


def check_blocks(phase: Phase, particles: dict, params: dict, args, kwargs, num_probes=4):
    """Check that each block-plate element's energy depends on that element's latents only.

    ``num_probes`` forward-mode products at the first particle, each with a random tangent on a
    random half of the elements: the energies of the other half must not move. A coupling
    between two elements (e.g. one element's likelihood depending on another's latent) escapes
    one probe with probability 1/2.
    """
    if phase.sites.block_plate is None or not phase.sites.latent_names:
        return
    plates = {n: jnp.arange(b) for n, (_, b) in phase.sites.plates.items()}
    flat, _, potential, _ = _flat(phase, particles, plates, params, args, kwargs, False)
    x = flat[0]
    if x.shape[0] < 2 or x.shape[1] == 0:
        return

    @jax.jit
    def probe(key):
        k1, k2 = random.split(key)
        half = random.bernoulli(k1, 0.5, (x.shape[0],))
        tangent = jnp.where(half[:, None], random.normal(k2, x.shape, x.dtype), 0.0)
        e, de = jax.jvp(potential, (x,), (tangent,))
        leak = jnp.max(jnp.where(half, 0.0, jnp.abs(de)))
        return leak, jnp.max(jnp.abs(de)), jnp.argmax(jnp.where(half, 0.0, jnp.abs(de)))

    for key in random.split(random.PRNGKey(0), num_probes):
        leak, size, where = (np.asarray(v) for v in probe(key))
        if leak > 1e-4 * max(float(size), 1.0):
            plate = phase.sites.block_plate
            raise ValueError(
                f"With block_plate={plate!r} every element of the plate must be independent "
                "given the parameters, but the energy term of element "
                f"{int(where)} changes when other elements' latents move (by {float(leak):.3g}). "
                "Each element would be accepted or rejected on its own energy term and sample "
                "the wrong distribution. Leave block_plate=None for coupled elements, or "
                f"name the plate over independent data points."
            )


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
        blocks=phase.sites.block_plate is not None,
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
        blocks=phase.sites.block_plate is not None,
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
