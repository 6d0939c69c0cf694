r"""Recall and Learn: EM that alternates Langevin recall of the latents with gradient steps on θ.

A NumPyro model defines the energy :math:`E_\theta(v, h) = -\log p(v, h \mid \theta)` of visible
data :math:`v` (observed sites), latents :math:`h` (unobserved sample sites, on their unconstrained
space, Jacobian included) and parameters :math:`\theta` (``numpyro.param`` sites). At temperature
:math:`T` the free energy of a latent distribution :math:`p`,

.. math::

    F[p \mid v] = \langle E_\theta(v, \cdot) \rangle_p - T\,H[p] \;\ge\; -T \ln Z_\theta(v),
    \qquad Z_\theta(v) = \int e^{-E_\theta(v, h)/T}\,dh,

is minimised over both :math:`p` and :math:`\theta` (Neal & Hinton 1998), alternately:

* **Recall** (E-step): :math:`P` persistent particles :math:`h_p` take ``recall_steps`` Langevin
  steps (:mod:`numpyro_langevin.core`) toward :math:`q_\theta(h \mid v) \propto e^{-E_\theta(v,h)/T}`,
  each continuing from where the previous iteration left it.
* **Learn** (M-step): one optax update of :math:`\theta` along

  .. math::

      \nabla_\theta\bigl(-T \ln Z_\theta(v)\bigr) = \langle \nabla_\theta E_\theta(v, h) \rangle_{q_\theta(h\mid v)}
      \approx \frac1P \sum_p \nabla_\theta E_\theta(v, h_p).

For :math:`T = 1` and a normalised model, :math:`-\ln Z_\theta(v) = -\log p(v \mid \theta)`: this is
maximum likelihood by particle (stochastic-approximation) EM — PGD of Kuntz, Lim & Johansen
(AISTATS 2023) with several Langevin steps per update, as in alternating back-propagation (Han et
al., AAAI 2017) and SOUL (De Bortoli et al., Stat. Comput. 2021).

**Negative phase.** For an unnormalised energy (:math:`Z_\theta = \int e^{-E_\theta(v,h)/T}dv\,dh`
depends on :math:`\theta`), the log-likelihood gradient has a second term. With
``negative_phase=True`` a second set of persistent particles :math:`(v_q, h_q)` samples the joint
:math:`e^{-E_\theta(v,h)/T}/Z_\theta` (the model under ``numpyro.handlers.uncondition``), and the
update direction is

.. math::

    \langle \nabla_\theta E \rangle_{\text{data}} - \langle \nabla_\theta E \rangle_{\text{joint}},

persistent contrastive divergence (Tieleman, ICML 2008). Without it, learning on an unnormalised
energy can drive the energy to :math:`-\infty` (e.g. a linear Hopfield energy, where the positive
phase alone is power iteration on the coupling); :meth:`RecallLearn.run` detects such a diverging
objective and warns, naming ``negative_phase``.

**Losses.** Per iteration the surrogate whose :math:`\theta`-gradient is followed, evaluated at the
particles after recall and before the update: :math:`\langle E_\theta\rangle_{\text{data}}` (the
particle average of :math:`E`, summed over the data and mini-batch scaled), minus
:math:`\langle E_\theta\rangle_{\text{joint}}` with the negative phase. This is the energy term of
:math:`F`, not :math:`F` itself: with relaxed particles it estimates
:math:`-T\ln Z_\theta(v) + T\,H[q_\theta(\cdot\mid v)]`, whose entropy term changes with
:math:`\theta` too, so watch its trend (it flattens at convergence) rather than its value. The
entropy of a few particles in :math:`d` dimensions cannot be estimated in general; where
:math:`P \gg d` pass the particles to :func:`numpyro_langevin.diagnostics.free_energy` for
:math:`F`. Both phases' energies are kept in the state (``energy``, ``joint_energy``).

**Subsampling.** With ``numpyro.plate(..., subsample_size=b)`` each update draws a mini-batch of
indices; only the particles of those data points are recalled (the others are kept) and the
learning gradient is NumPyro's unbiased mini-batch estimate. Latent sites must lie inside the
subsampled plate (see :mod:`numpyro_langevin.em.sites`).

**Resuming.** The state is a pytree of arrays (PRNG key included): save it with
:func:`save_state` (``.npz``, no pickle), load it with :func:`load_state` and pass it as
``run(..., init_state=state)``; the continued run equals an uninterrupted one bit for bit.

**One chain per data point.** By default each particle is one flat vector of all latents of the
(mini-)batch, moved with one Metropolis–Hastings test, so for a fixed acceptance the step size
shrinks like :math:`d^{-1/3}` (Roberts & Rosenthal 1998) as the data grow. When every sample site
lies inside a plate over the data points, ``block_plate="name"`` makes each element of that
plate a chain of its own: the energy is split into one term per element (NumPyro's per-site log
densities summed over every dimension but the plate's), all terms and their gradients come from
one evaluation, and each element's latents are accepted or rejected on their own
(:func:`numpyro_langevin.core.block_step`); the step size is then that of one data point's
latents. The mobility is then a function of one element's latents, shared by all elements.

**Negative-phase mobility.** The joint often has slow modes that a fixed mobility cannot follow
as the parameters move (for a Hopfield energy near :math:`\|U\|_2 \to 1`). A
:class:`~numpyro_langevin.em.phase.PhaseMobility` is a constant mobility recomputed from the
current parameters and particles at the start of every recall phase (e.g. the inverse of the
energy's Hessian averaged over the particles,
:meth:`numpyro_langevin.hopfield.Hopfield.curvature_mobility`); each phase is then an exact
chain for the current target.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from numbers import Integral
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random
from numpyro.handlers import uncondition
from numpyro.infer.initialization import init_to_uniform

from numpyro_langevin import checks
from numpyro_langevin.em import health
from numpyro_langevin.em import phase as ph
from numpyro_langevin.em import sites as st
from numpyro_langevin.em.compile import compiled
from numpyro_langevin.em.divergence import (
    DivergingObjectiveWarning,
    diverging_objective,
    warn_if_diverging,
)
from numpyro_langevin.em.state_io import load_state, save_state

__all__ = [
    "RecallLearn",
    "RecallLearnState",
    "RecallLearnRunResult",
    "DivergingObjectiveWarning",
    "diverging_objective",
    "save_state",
    "load_state",
]


class RecallLearnState(NamedTuple):
    """State of :class:`RecallLearn` (a pytree; save it with :func:`save_state`).

    Attributes
    ----------
    iteration
        Number of updates done.
    params
        Unconstrained parameters (``{name: array}``).
    optim_state
        The optax optimiser state.
    particles
        Unconstrained latents of the data phase, ``{name: (P, *shape)}`` over the full data set.
    log_step_size
        :math:`\\log h` of the data-phase recall.
    joint_particles, joint_log_step_size
        The same for the negative phase (``None`` without it); the particles hold the visible
        sites too.
    rng_key
        PRNG key of the next update.
    accept_prob, joint_accept_prob
        Mean acceptance probability of the last recall phase(s).
    energy, joint_energy
        :math:`\\langle E\\rangle` over the data-phase (joint) particles in the last update.
    """

    iteration: jax.Array
    params: dict
    optim_state: Any
    particles: dict
    log_step_size: jax.Array
    joint_particles: dict | None
    joint_log_step_size: jax.Array | None
    rng_key: jax.Array
    accept_prob: jax.Array
    joint_accept_prob: jax.Array | None
    energy: jax.Array
    joint_energy: jax.Array | None


class RecallLearnRunResult(NamedTuple):
    """What :meth:`RecallLearn.run` returns: constrained ``params``, final ``state``, ``losses``."""

    params: dict
    state: RecallLearnState
    losses: jax.Array


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _broadcasts(shape: tuple, target: tuple) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def _arguments(args, kwargs):
    """What the model inspection depends on in its arguments: tree structure, array shapes and
    dtypes, and the other (static) leaves."""
    leaves, treedef = jax.tree.flatten((args, kwargs))
    return treedef, tuple(
        (tuple(x.shape), str(x.dtype)) if hasattr(x, "shape") else x for x in leaves
    )


def _signature(phase: ph.Phase | None):
    """What compiled code depends on in a phase (to invalidate the cache when it changes)."""
    if phase is None:
        return None
    s = phase.sites
    return (
        tuple(sorted(s.param_transforms)),
        s.latent_names,
        tuple(sorted(s.latent_shapes.items())),
        tuple(sorted(s.plates.items())),
        tuple(sorted(s.latent_axes.items())),
        s.scale,
        s.block_plate,
        tuple(sorted(s.block_axes.items())),
    )


class RecallLearn:
    r"""EM with Langevin recall of the latents and optax learning steps on ``numpyro.param`` sites.

    Shaped like :class:`numpyro.infer.SVI`::

        em = RecallLearn(model, optax.adam(1e-2), num_particles=4, recall_steps=10)
        result = em.run(jax.random.PRNGKey(0), 2000, data)
        result.params, result.state, result.losses

        state = em.init(key, data)
        state, loss = em.update(state, data)
        params = em.get_params(state)

    The loss is the particle average of the energy (minus the joint's with the negative phase),
    not the free energy: with the negative phase it is a difference of two large, noisy terms
    and swings by much more than its trend; watch the parameters (or a held-out score)
    instead. See the module docstring.

    Parameters
    ----------
    model
        A NumPyro model: ``numpyro.param`` sites are :math:`\theta` (constraints respected as in
        SVI: the optimiser works on the unconstrained values), latent ``numpyro.sample`` sites are
        :math:`h` (continuous), observed sites are :math:`v`.
    optimizer
        An optax ``GradientTransformation`` (e.g. ``optax.adam(1e-2)``, or with a schedule).
    num_particles
        :math:`P`, persistent particles of the latents (each a full set of latents for the data).
    recall_steps
        Langevin steps per particle per update.
    negative_phase
        Also sample the joint (observed sites unconditioned) with persistent particles and
        subtract its average :math:`\nabla_\theta E` (needed for unnormalised energies).
    num_joint_particles
        Particles of the joint (default: ``num_particles``).
    step_size
        Initial Langevin step :math:`h`; with ``adapt_step_size=True`` it is only the starting
        point of a search at ``init`` and of a constant-gain adaptation toward
        ``target_accept_prob`` (see :mod:`numpyro_langevin.em.recall`).
    mobility
        ``None``: identity. An array ``(d,)`` or ``(d, d)``: a constant mobility over the flat
        unconstrained latents of the data phase (ordered as ``ravel_pytree`` orders the sites;
        with subsampling, those of one mini-batch). A callable: position-dependent, taking the
        latents as a dict of unconstrained sites and returning ``(d,)`` or ``(d, d)`` (divergence
        by forward-mode autodiff, :math:`d` products), or a
        :class:`~numpyro_langevin.mobility.Mobility` (used as is: supply the factor,
        log-determinant and divergence yourself when :math:`d` is large). The joint phase uses
        the identity unless ``joint_mobility`` is given.
        A :class:`~numpyro_langevin.em.phase.PhaseMobility`: a constant mobility recomputed
        from the parameters and particles at the start of every recall phase.
    joint_mobility
        As ``mobility``, for the joint phase (its position includes the visible sites).
    joint_recall_steps
        Langevin steps per joint particle per update (default ``recall_steps``). The joint
        often mixes more slowly than the latents given the data.
    joint_init
        Where the joint's particles start: ``"data"`` (default) at the observed values, with
        the latents of the data-phase particles (as contrastive divergence starts its chains at
        the data, Hinton 2002); ``"init_strategy"``: every site from ``init_strategy``.
    block_plate
        The name of a plate over the data points (e.g. ``"data"``) whose elements are
        conditionally independent chains: each particle's latents of one plate element get
        their own Metropolis–Hastings test, so the step size does not shrink with the number
        of data points (see the module's Limitations). Every sample site must lie inside the
        plate; ``mobility`` is then a function of one element's latents (``{name: value
        without the plate axis}``) returning ``(k,)``/``(k, k)``, or an array of that size,
        applied to every element.
    temperature
        :math:`T > 0`. A model that already divides its energy by a temperature (such as
        :meth:`numpyro_langevin.hopfield.Hopfield.model`, whose factor is :math:`-E/T`) is
        sampled at the default 1.
    metropolis
        Metropolis-adjusted (MALA, default) or unadjusted (ULA) recall.
    adapt_step_size
        Adapt :math:`h` (default). When false, ``step_size`` is used as is.
    target_accept_prob
        Target of the step-size adaptation (0.574, optimal for MALA).
    init_strategy
        NumPyro init strategy of the latents (each particle draws its own values).
    """

    def __init__(
        self,
        model: Callable,
        optimizer,
        *,
        num_particles: int = 4,
        recall_steps: int = 10,
        negative_phase: bool = False,
        num_joint_particles: int | None = None,
        step_size: float = 1.0,
        mobility=None,
        joint_mobility=None,
        temperature: float = 1.0,
        metropolis: bool = True,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.574,
        init_strategy: Callable = init_to_uniform,
        joint_recall_steps: int | None = None,
        joint_init: str = "data",
        block_plate: str | None = None,
    ):
        if not callable(model):
            raise TypeError(f"`model` must be a NumPyro model (a callable), got {model!r}.")
        if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
            raise TypeError(
                "`optimizer` must be an optax GradientTransformation (with `init` and `update`), "
                f"e.g. optax.adam(1e-2); got {optimizer!r}."
            )
        self.model = model
        self.optimizer = optimizer
        self.num_particles = _positive_int("num_particles", num_particles)
        self.recall_steps = _positive_int("recall_steps", recall_steps)
        self.negative_phase = bool(negative_phase)
        self.num_joint_particles = _positive_int(
            "num_joint_particles",
            self.num_particles if num_joint_particles is None else num_joint_particles,
        )
        self.step_size = checks.positive_scalar(
            "step_size", step_size, "It is the initial Langevin step h (1.0 with adaptation)."
        )
        self.temperature = checks.positive_scalar(
            "temperature", temperature, "T scales the noise: the recall samples exp(-E/T)."
        )
        self.target_accept_prob = checks.probability("target_accept_prob", target_accept_prob)
        self.metropolis = bool(metropolis)
        self.adapt_step_size = bool(adapt_step_size)
        self.mobility = mobility
        self.joint_mobility = joint_mobility
        self.init_strategy = init_strategy
        self.joint_recall_steps = _positive_int(
            "joint_recall_steps",
            self.recall_steps if joint_recall_steps is None else joint_recall_steps,
        )
        if joint_init not in ("data", "init_strategy"):
            raise ValueError(
                f"`joint_init` must be 'data' or 'init_strategy', got {joint_init!r}."
            )
        self.joint_init = joint_init
        if block_plate is not None and not isinstance(block_plate, str):
            raise TypeError(
                f"`block_plate` must be the name of a plate (a string), got {block_plate!r}."
            )
        self.block_plate = block_plate
        self._recall_options = ph.RecallOptions(
            self.recall_steps,
            self.temperature,
            self.metropolis,
            self.adapt_step_size,
            self.target_accept_prob,
        )
        self._joint_recall_options = self._recall_options._replace(
            num_steps=self.joint_recall_steps
        )
        self._phases: tuple[ph.Phase, ph.Phase | None] | None = None
        self._arguments = None
        self._signature = None
        self._jit_cache: dict = {}

    # ------------------------------------------------------------------ model inspection
    def _inspect(self, model, rng_key, args, kwargs, role: str = "model") -> st.ModelSites:
        """:func:`~numpyro_langevin.em.sites.inspect_model` traced under ``jit`` (one compilation
        instead of one per primitive); the static description is taken out of the trace."""
        box = {}

        def trace_fn(key):
            sites = st.inspect_model(
                model, key, args, kwargs, self.init_strategy, role, self.block_plate
            )
            box["sites"] = sites._replace(param_values=None)
            return sites.param_values

        values = jax.jit(trace_fn)(rng_key)
        return box["sites"]._replace(param_values=values)

    def _setup(self, rng_key, args, kwargs) -> None:
        """Inspect the model (and its joint) for these arguments; reset compiled code if the
        sites changed (e.g. another data size)."""
        key_data, key_joint = random.split(rng_key)
        sites = self._inspect(self.model, key_data, args, kwargs)
        if not sites.param_transforms:
            raise ValueError(
                "The model has no numpyro.param sites: there is nothing to learn. To sample its "
                "latents use numpyro.infer.MCMC(numpyro_langevin.Langevin(model))."
            )
        if not sites.latent_names and not self.negative_phase:
            raise ValueError(
                "The model has no latent sample sites: there is nothing to recall. Fit its "
                "parameters with numpyro.infer.SVI and an empty guide, or, for an unnormalised "
                "energy over observed sites, pass negative_phase=True."
            )
        data = ph.Phase(self.model, sites, self.num_particles, self.mobility)
        joint = None
        if self.negative_phase:
            joint_model = uncondition(self.model)
            joint_sites = self._inspect(joint_model, key_joint, args, kwargs, "joint model")
            joint = ph.Phase(
                joint_model, joint_sites, self.num_joint_particles, self.joint_mobility
            )
        signature = (_signature(data), _signature(joint))
        if signature != self._signature:
            self._jit_cache.clear()
            self._signature = signature
        self._phases = (data, joint)
        self._arguments = _arguments(args, kwargs)

    def _constrain(self, params: dict) -> dict:
        transforms = self._phases[0].sites.param_transforms
        return {k: transforms[k](v) for k, v in params.items()}

    def _compiled(self, name: str, body: Callable, args, kwargs, *static_extra) -> Callable:
        return compiled(self._jit_cache, name, body, args, kwargs, *static_extra)

    # ------------------------------------------------------------------ init
    def init(self, rng_key, *args, init_params: dict | None = None, **kwargs) -> RecallLearnState:
        """Initial state: parameters from the model (or ``init_params``, constrained values),
        particles from ``init_strategy`` (one draw per particle) and, with adaptation, a step
        size found by halving or doubling (:func:`numpyro_langevin.em.recall.find_step_size`)."""
        self._setup(random.split(rng_key)[0], args, kwargs)
        data, joint = self._phases
        values = dict(data.sites.param_values)
        if init_params is not None:
            unknown = set(init_params) - set(values)
            if unknown:
                raise ValueError(
                    f"`init_params` names {sorted(unknown)}, which are not numpyro.param sites "
                    f"of the model (those are {sorted(values)})."
                )
            values.update(init_params)
        try:
            state = self._compiled("init", self._init_state, args, kwargs)(rng_key, values)
        except Exception:
            # a user mobility that fails inside the compiled init: report it as check_mobility
            # words it, at the particles the init strategy gives, else re-raise as is
            self._diagnose_init(rng_key, values, args, kwargs)
            raise
        constrained = self._constrain(state.params)
        phases = [(data, state.particles)]
        if joint is not None:
            phases.append((joint, state.joint_particles))
        for phase, particles in phases:
            ph.check_mobility(phase, particles, constrained, args, kwargs)
            ph.check_blocks(phase, particles, constrained, args, kwargs)
            health.check_finite(phase, particles)
        if self.adapt_step_size:
            health.warn_if_stuck("data", state.log_step_size, self.step_size)
            if joint is not None:
                health.warn_if_stuck("joint", state.joint_log_step_size, self.step_size)
        return state

    def _diagnose_init(self, rng_key, values, args, kwargs) -> None:
        data, joint = self._phases
        transforms = data.sites.param_transforms
        constrained = {k: transforms[k](transforms[k].inv(v)) for k, v in values.items()}
        for phase in (data, joint):
            if phase is None or not phase.sites.latent_names:
                continue
            init = jax.jit(
                lambda key, phase=phase: ph.init(
                    phase, key, constrained, self.init_strategy, args, kwargs
                )
            )
            particles = init(rng_key)
            ph.check_mobility(phase, particles, constrained, args, kwargs)

    def _init_state(self, rng_key, values, args, kwargs) -> RecallLearnState:
        _, key_data, key_joint, key_run = random.split(rng_key, 4)
        data, joint = self._phases
        ftype = jnp.result_type(float)
        transforms = data.sites.param_transforms
        params = {k: jnp.asarray(transforms[k].inv(v), dtype=ftype) for k, v in values.items()}
        constrained = self._constrain(params)
        log_h0 = jnp.asarray(np.log(self.step_size), dtype=ftype)

        def init_phase(phase, options, key, start=None):
            if not phase.sites.latent_names:
                return {}, log_h0
            key_init, key_find, key_start = random.split(key, 3)
            particles = ph.init(phase, key_init, constrained, self.init_strategy, args, kwargs)
            if start is not None:
                particles = start(particles, key_start)
            log_h = log_h0
            if self.adapt_step_size:
                log_h = ph.find_step_size(
                    phase, options, key_find, particles, log_h0, constrained, args, kwargs
                )
            return particles, log_h

        particles, log_h = init_phase(data, self._recall_options, key_data)
        joint_particles = joint_log_h = None
        if joint is not None:
            start = None
            if self.joint_init == "data":
                start = partial(self._start_at_data, particles, constrained, args, kwargs)
            joint_particles, joint_log_h = init_phase(
                joint, self._joint_recall_options, key_joint, start
            )
        zero = jnp.zeros((), dtype=ftype)
        joint_zero = None if joint is None else zero
        return RecallLearnState(
            jnp.zeros((), dtype=jnp.int32),
            params,
            self.optimizer.init(params),
            particles,
            log_h,
            joint_particles,
            joint_log_h,
            key_run,
            zero,
            joint_zero,
            zero,
            joint_zero,
        )

    def _start_at_data(self, particles, constrained, args, kwargs, joint_particles, key):
        """Joint particles with the observed sites at the data and the other latents copied
        from the data-phase particles (particle ``j`` from particle ``j mod P``)."""
        data, joint = self._phases
        observed = st.observed_values(
            self.model, key, args, kwargs, data.sites, self.init_strategy, constrained
        )
        out = dict(joint_particles)
        num = joint.num_particles
        for name, value in joint_particles.items():
            if name in observed and _broadcasts(observed[name].shape, value.shape[1:]):
                out[name] = jnp.broadcast_to(observed[name], value.shape).astype(value.dtype)
            elif name in particles and particles[name].shape[1:] == value.shape[1:]:
                out[name] = particles[name][jnp.arange(num) % data.num_particles]
        return out

    # ------------------------------------------------------------------ update
    def _update(self, state: RecallLearnState, args, kwargs):
        data, joint = self._phases
        rng_key, key_plates, key_data, key_joint = random.split(state.rng_key, 4)
        constrained = self._constrain(state.params)
        plates = {}
        for name, (size, sub) in sorted(data.sites.plates.items()):
            key_plates, key = random.split(key_plates)
            plates[name] = random.permutation(key, size)[:sub]
        options = self._recall_options

        particles, log_h, accept = state.particles, state.log_step_size, state.accept_prob
        if data.sites.latent_names:
            particles, log_h, info = ph.recall(
                data, options, key_data, particles, log_h, plates, constrained, args, kwargs
            )
            accept = info.accept_prob
        joint_particles, joint_log_h = state.joint_particles, state.joint_log_step_size
        joint_accept = state.joint_accept_prob
        if joint is not None:
            # the joint's particles are indexed like the data's: same mini-batch indices
            joint_particles, joint_log_h, info = ph.recall(
                joint,
                self._joint_recall_options,
                key_joint,
                joint_particles,
                joint_log_h,
                plates,
                constrained,
                args,
                kwargs,
            )
            joint_accept = info.accept_prob

        def objective(params):
            c = self._constrain(params)
            e = ph.mean_energy(data, particles, plates, c, args, kwargs)
            if joint is None:
                return e, (e, None)
            e_joint = ph.mean_energy(joint, joint_particles, plates, c, args, kwargs)
            return e - e_joint, (e, e_joint)

        (loss, (energy, joint_energy)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        updates, optim_state = self.optimizer.update(grads, state.optim_state, state.params)
        params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), state.params, updates)
        new = RecallLearnState(
            state.iteration + 1,
            params,
            optim_state,
            particles,
            log_h,
            joint_particles,
            joint_log_h,
            rng_key,
            accept,
            joint_accept,
            energy,
            joint_energy,
        )
        return new, loss

    def update(self, state: RecallLearnState, *args, **kwargs) -> tuple[RecallLearnState, Any]:
        """One iteration: recall (``recall_steps`` Langevin steps per particle), then one optax
        step. Returns the new state and the loss (see the module docstring: an energy, or with
        the negative phase an energy difference, whose trend rather than value tells
        convergence). Jit-compiled; can
        also be called inside ``jax.lax.scan``."""
        if self._phases is None:
            raise RuntimeError("Call `init` before `update`: the state comes from `init`.")
        self._setup_for(args, kwargs)
        self._check_state(state)
        return self._compiled("update", self._update, args, kwargs)(state)

    def _setup_for(self, args, kwargs, rng_key=None) -> None:
        """Inspect the model again when the arguments' shapes changed since the last setup
        (e.g. resuming a state with other data); the key only seeds the inspection trace."""
        if self._phases is not None and _arguments(args, kwargs) == self._arguments:
            return
        key = random.PRNGKey(0) if rng_key is None else rng_key
        self._setup(random.split(key)[0], args, kwargs)

    def _check_state(self, state: RecallLearnState) -> None:
        data, joint = self._phases
        health.check_particle_shapes(data, state.particles, "data-phase")
        if joint is not None:
            health.check_particle_shapes(joint, state.joint_particles, "joint")

    def get_params(self, state: RecallLearnState) -> dict:
        """The constrained parameters held by ``state``."""
        if self._phases is None:
            raise RuntimeError("Call `init` first: the parameter constraints come from the model.")
        return self._constrain(state.params)

    def run(
        self,
        rng_key,
        num_steps: int,
        *args,
        progress_bar: bool = True,
        init_state: RecallLearnState | None = None,
        init_params: dict | None = None,
        check_divergence: bool = True,
        **kwargs,
    ) -> RecallLearnRunResult:
        """Run ``num_steps`` updates from ``init(rng_key, ...)`` or from ``init_state``.

        Without a progress bar the loop is one ``lax.scan``; with one, a jitted :meth:`update` is
        called per step under ``tqdm``. Both give the same result. Continuing from
        ``init_state`` (e.g. loaded by :func:`load_state`) reproduces an uninterrupted run bit
        for bit; ``rng_key`` is then unused (the key is in the state). With ``check_divergence``
        a :class:`DivergingObjectiveWarning` is issued when the losses or the parameters become
        non-finite, or when the loss keeps falling ever faster (an energy unbounded below; see
        :func:`diverging_objective`).
        """
        num_steps = _positive_int("num_steps", num_steps)
        if init_state is None:
            state = self.init(rng_key, *args, init_params=init_params, **kwargs)
        else:
            state = init_state
            self._setup_for(args, kwargs, rng_key)
            self._check_state(state)
        if progress_bar:
            import tqdm

            step = self._compiled("update", self._update, args, kwargs)
            losses = []
            with tqdm.trange(1, num_steps + 1) as bar:
                for i in bar:
                    state, loss = step(state)
                    losses.append(loss)
                    if i % max(num_steps // 20, 1) == 0:
                        bar.set_postfix_str(f"loss {float(loss):.4g}")
            losses = jnp.stack(losses)
        else:
            scan = self._compiled("scan", partial(self._scan, num_steps), args, kwargs, num_steps)
            state, losses = scan(state)
        if check_divergence:
            warn_if_diverging(np.asarray(losses), state.params, self.negative_phase)
        data, joint = self._phases
        if data.sites.latent_names:
            health.warn_if_frozen("data", state.accept_prob)
        if joint is not None and joint.sites.latent_names:
            health.warn_if_frozen("joint", state.joint_accept_prob)
        return RecallLearnRunResult(self.get_params(state), state, losses)

    def _scan(self, num_steps: int, state: RecallLearnState, args, kwargs):
        return lax.scan(lambda s, _: self._update(s, args, kwargs), state, None, length=num_steps)
