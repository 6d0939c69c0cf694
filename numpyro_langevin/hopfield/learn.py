r"""Learning by persistent contrastive divergence, with the Hopfield mobility (temporary path).

Maximum likelihood for :math:`p_\theta(v) \propto \int e^{-E_\theta(v,h)/T} dh` follows

.. math::

    -\nabla_\theta \tfrac1n\sum_i \log p_\theta(v_i)
    = \Big\langle \nabla_\theta \tfrac{E_\theta}{T} \Big\rangle_{q(h\mid v_i),\ \text{data}}
    - \Big\langle \nabla_\theta \tfrac{E_\theta}{T} \Big\rangle_{q(v, h)},

the positive phase (recall of :math:`h` with :math:`v` clamped to the data) minus the negative
phase (samples of the joint); both are estimated with persistent Langevin particles that continue
from where the previous iteration left them (Younes 1989; Tieleman 2008). For a coupling :math:`U`
the difference is the Hebbian minus anti-Hebbian rule
:math:`\langle g(v)f(h)^\top\rangle_{\text{joint}} - \langle g(v)f(h)^\top\rangle_{\text{data}}`
(divided by :math:`T`).

Every particle is moved by :func:`numpyro_langevin.core.step` with its own Metropolis–Hastings
test (one test per data point and particle, so the step size does not shrink with the data set's
size): the positive phase with the Hopfield mobility :math:`K = (\partial^2 L)^{-1}`, the
negative phase by default with the inverse of the mean Hessian of :math:`E` (see
``joint_mobility`` of :class:`PCD`: with the Hopfield mobility the joint relaxes too slowly near
:math:`\|U\|_2 \to 1` for persistent chains to follow the parameters); one step size per phase is
adapted toward acceptance 0.574 by a constant-gain Robbins–Monro update of :math:`\log h`.

.. note::
   This is a Hopfield-specific stand-in for :class:`numpyro_langevin.RecallLearn` (the general
   NumPyro EM): that one currently takes the divergence of a callable mobility by :math:`d`
   forward-mode products over *all* latents of all data points at once, and accepts or rejects
   a particle's latents for the whole data set together. Both are fine for small models but not
   for 1,437 digits × 100 hidden units. Replace this module by ``RecallLearn`` once it offers a
   per-data-point Metropolis test and an elementwise (or supplied) mobility divergence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from numpyro_langevin import core
from numpyro_langevin import mobility as mob
from numpyro_langevin.hopfield.energy import Hopfield, Params

Array = jax.Array

__all__ = ["PCDState", "PCDResult", "PCD"]

TARGET_ACCEPT = 0.574
ADAPTATION_RATE = 0.05


class PCDState(NamedTuple):
    """State of :class:`PCD` (a pytree).

    Attributes
    ----------
    iteration
        Updates done.
    params
        Unconstrained parameters (``log_temperature`` instead of ``temperature``).
    optim_state
        The optax state.
    hidden
        Positive-phase particles, ``(n, P, n_h)``.
    joint
        Negative-phase particles :math:`(v, h)`, ``(M, n_v + n_h)``.
    log_step_size
        :math:`(\\log h_+, \\log h_-)` of the two phases.
    accept_prob
        Mean acceptance of the last positive and negative steps.
    rng_key
        PRNG key.
    average
        Running (Polyak) average of the unconstrained parameters since ``average_from``.
    """

    iteration: Array
    params: Params
    optim_state: Any
    hidden: Array
    joint: Array
    log_step_size: Array
    accept_prob: Array
    rng_key: Array
    average: Params


class PCDResult(NamedTuple):
    """What :meth:`PCD.run` returns: the averaged constrained ``params``, the last ``state`` and
    per-iteration ``losses`` (:math:`\\langle E\\rangle_{\\text{data}} - \\langle E\\rangle_{\\text{joint}}`
    divided by :math:`T`) and acceptance ``(positive, negative)``."""

    params: Params
    state: PCDState
    losses: Array
    accept_prob: Array


def _to_unconstrained(params: Params) -> Params:
    out = {k: v for k, v in params.items() if k != "temperature"}
    if "temperature" in params:
        out["log_temperature"] = jnp.log(params["temperature"])
    return out


def _to_constrained(params: Params) -> Params:
    out = {k: v for k, v in params.items() if k != "log_temperature"}
    if "log_temperature" in params:
        out["temperature"] = jnp.exp(params["log_temperature"])
    return out


class PCD:
    r"""Persistent-contrastive-divergence learning of a :class:`Hopfield` model.

    Parameters
    ----------
    hopfield
        The model.
    optimizer
        An optax ``GradientTransformation``.
    num_particles
        :math:`P`, positive-phase particles per data point.
    num_joint_particles
        :math:`M`, negative-phase particles of the joint.
    recall_steps
        Langevin steps of every positive-phase particle per update.
    joint_recall_steps
        Langevin steps of every negative-phase particle per update (default ``recall_steps``);
        the joint mixes more slowly than :math:`h \mid v` when :math:`\|U\|` is near its bound.
    batch_size
        Data points per update (``None``: all); the other points' particles are kept.
    metropolis
        Metropolis-adjusted steps (default). Unadjusted steps with the Hopfield mobility are
        biased at the kinks of a leaky ReLU whatever the step size (see
        :func:`~numpyro_langevin.hopfield.closed_form.ula_kink_limit`).
    step_size
        Initial step size of both phases (adapted).
    average_from
        Iteration from which the parameters are averaged (Polyak–Ruppert); ``None``: no average.
    joint_mobility
        How the negative phase moves the joint particles. Near the normalisability bound the
        joint has a mode of relaxation rate :math:`1 - \|U\|_2` under the Hopfield dynamics
        (about 60 time units for PPCA-10 on digits): persistent chains moved with
        :math:`K = (\partial^2 L)^{-1}` lag the parameters and learning stalls. Both other
        choices are constant dense mobilities, rebuilt at the start of each iteration, under
        which every mode of a Gaussian joint relaxes at the same rate:

        * ``"curvature"`` (default): :math:`K = \overline{\partial^2 E}^{-1}`, the inverse of the
          Hessian averaged over the joint particles at the *current* parameters
          (:meth:`~numpyro_langevin.hopfield.Hopfield.mean_hessian`; for identity Lagrangians
          :math:`T K` is the exact covariance of the joint).
        * ``"ensemble"``: the covariance of the joint particles (plus a ridge of 1e-6 of its mean
          variance), an ensemble preconditioner in the spirit of Garbuno-Inigo, Hoffmann, Li &
          Stuart (2020). It lags: the particles it is estimated from were drawn under the
          previous parameters. It also depends on all particles, so each chain is exact only up
          to :math:`O(1/M)`.
        * ``"hopfield"``: :math:`K = (\partial^2 L)^{-1}`, as in the positive phase.

        Measured on PPCA-10 (digits, T learned from 0.1, closed-form optimum 17.587 nats per
        digit, 40 joint steps per update, ``examples/hopfield_ppca.py``): ``"curvature"`` is at
        16.28 after 100 updates and 17.533 (0.31% below the optimum) after 1,000;
        ``"ensemble"`` is at about 2 after 100 updates and 17.535 (0.30%) after 1,000. With
        ``"ensemble"`` progress per update did not depend on the learning rate (10 joint steps:
        Adam 0.01 and 0.03 gave the same trajectory), and learning with exact joint samples
        instead of Langevin, or with ``"curvature"``, was as fast as with exact gradients: the
        lag of the ensemble estimate was the bottleneck. With ``"curvature"`` the number of joint
        steps still matters (10 per update: 4.4% short after 500 updates).
    """

    def __init__(
        self,
        hopfield: Hopfield,
        optimizer,
        *,
        num_particles: int = 1,
        num_joint_particles: int = 500,
        recall_steps: int = 5,
        joint_recall_steps: int | None = None,
        batch_size: int | None = None,
        metropolis: bool = True,
        step_size: float = 0.1,
        average_from: int | None = None,
        joint_mobility: str = "curvature",
    ) -> None:
        if joint_mobility not in ("curvature", "ensemble", "hopfield"):
            raise ValueError(
                "`joint_mobility` must be 'curvature', 'ensemble' or 'hopfield', "
                f"got {joint_mobility!r}."
            )
        self.joint_mobility = joint_mobility
        self.hopfield = hopfield
        self.optimizer = optimizer
        self.num_particles = int(num_particles)
        self.num_joint_particles = int(num_joint_particles)
        self.recall_steps = int(recall_steps)
        self.joint_recall_steps = int(
            recall_steps if joint_recall_steps is None else joint_recall_steps
        )
        self.batch_size = batch_size
        self.metropolis = bool(metropolis)
        self.step_size = float(step_size)
        self.average_from = average_from

    # ------------------------------------------------------------------ pieces

    def _scaled_energy(self, uparams: Params, v: Array, h: Array) -> Array:
        p = _to_constrained(uparams)
        return self.hopfield.energy(p, v, h) / self.hopfield.temperature_of(p)

    def _move(self, key, x, potential, mobility_fn, log_h, t, num_steps):
        """``num_steps`` steps of one chain; returns position and mean acceptance."""
        state = core.init(x, potential, mobility_fn, t)

        def body(state, k):
            state, info = core.step(
                k, state, potential, mobility_fn, jnp.exp(log_h), t, self.metropolis
            )
            return state, info.accept_prob

        state, acc = lax.scan(body, state, random.split(key, num_steps))
        return state.position, acc.mean()

    def init(self, rng_key: Array, data: Array, params: Params | None = None) -> PCDState:
        """Initial parameters (``hopfield.init_params`` unless given, constrained values),
        positive particles at :math:`h = U^\\top g(v)`, joint particles at data points."""
        hf = self.hopfield
        data = jnp.asarray(data)
        k_params, k_joint, k_run = random.split(rng_key, 3)
        params = hf.init_params(k_params, data) if params is None else dict(params)
        if hf.learn_temperature and "temperature" not in params:
            params["temperature"] = jnp.asarray(hf.temperature)
        uparams = _to_unconstrained({k: jnp.asarray(v) for k, v in params.items()})
        g = jax.vmap(hf.visible.activation)(data)
        h0 = g @ hf.coupling(params)
        hidden = jnp.broadcast_to(
            h0[:, None, :], (data.shape[0], self.num_particles, hf.num_hidden)
        )
        idx = random.choice(k_joint, data.shape[0], (self.num_joint_particles,))
        joint = hf.join(data[idx], h0[idx])
        log_h = jnp.log(jnp.full(2, self.step_size))
        return PCDState(
            jnp.zeros((), jnp.int32),
            uparams,
            self.optimizer.init(uparams),
            hidden,
            joint,
            log_h,
            jnp.zeros(2),
            k_run,
            jax.tree.map(jnp.zeros_like, uparams),
        )

    def update(self, state: PCDState, data: Array) -> tuple[PCDState, Array]:
        """One iteration: recall both phases, then one optax step (jit this)."""
        hf = self.hopfield
        key, k_batch, k_pos, k_neg = random.split(state.rng_key, 4)
        n = data.shape[0]
        if self.batch_size is None or self.batch_size >= n:
            idx = jnp.arange(n)
        else:
            idx = random.choice(k_batch, n, (self.batch_size,), replace=False)
        v = data[idx]
        hidden = state.hidden[idx]
        p = _to_constrained(state.params)
        t = hf.temperature_of(p)
        p = hf.resolve(p)
        log_h = state.log_step_size

        # positive phase: h | v for every (data point, particle)
        clamped_k = hf.mobility_fn(clamped=True)

        def pos_one(key, v_i, h_i):
            return self._move(
                key,
                h_i,
                hf.conditional_potential_fn(p, v_i),
                clamped_k,
                log_h[0],
                t,
                self.recall_steps,
            )

        keys = random.split(k_pos, v.shape[0] * self.num_particles).reshape(
            v.shape[0], self.num_particles, -1
        )
        hidden, acc_pos = jax.vmap(jax.vmap(pos_one, (0, None, 0)), (0, 0, 0))(keys, v, hidden)

        # negative phase: (v, h) of the joint
        if self.joint_mobility == "ensemble":
            x = lax.stop_gradient(state.joint)
            cov = jnp.cov(x, rowvar=False)
            ridge = 1e-6 * jnp.mean(jnp.diagonal(cov))
            joint_k = mob.constant(cov + ridge * jnp.eye(cov.shape[0], dtype=cov.dtype))
        elif self.joint_mobility == "curvature":
            hess = lax.stop_gradient(hf.mean_hessian(p, state.joint))
            chol = jnp.linalg.cholesky(hess)
            eye = jnp.eye(hess.shape[0], dtype=hess.dtype)
            joint_k = mob.constant(jax.scipy.linalg.cho_solve((chol, True), eye))
        else:
            joint_k = hf.mobility_fn()

        def neg_one(key, x):
            return self._move(
                key, x, hf.potential_fn(p), joint_k, log_h[1], t, self.joint_recall_steps
            )

        joint, acc_neg = jax.vmap(neg_one)(random.split(k_neg, state.joint.shape[0]), state.joint)
        acc = jnp.stack([acc_pos.mean(), acc_neg.mean()])
        steps = jnp.array([self.recall_steps, self.joint_recall_steps], dtype=acc.dtype)
        log_h = log_h + ADAPTATION_RATE * (acc - TARGET_ACCEPT) * steps

        def objective(uparams):
            e_pos = jax.vmap(jax.vmap(self._scaled_energy, (None, None, 0)), (None, 0, 0))(
                uparams, v, hidden
            )
            vj, hj = hf.split(joint)
            e_neg = jax.vmap(self._scaled_energy, (None, 0, 0))(uparams, vj, hj)
            return jnp.mean(e_pos) - jnp.mean(e_neg)

        loss, grads = jax.value_and_grad(objective)(state.params)
        updates, optim_state = self.optimizer.update(grads, state.optim_state, state.params)
        params = jax.tree.map(lambda a, b: a + b, state.params, updates)
        it = state.iteration + 1
        if self.average_from is None:
            average = params
        else:
            count = jnp.maximum(it - self.average_from, 0).astype(jnp.float32)
            weight = jnp.where(count > 0, 1.0 / jnp.maximum(count, 1.0), 1.0)
            average = jax.tree.map(lambda m, x: m + weight * (x - m), state.average, params)
        new = PCDState(
            it,
            params,
            optim_state,
            state.hidden.at[idx].set(hidden),
            joint,
            log_h,
            acc,
            key,
            average,
        )
        return new, loss

    def run(
        self,
        rng_key: Array,
        num_steps: int,
        data: Array,
        *,
        params: Params | None = None,
        callback: Callable[[int, PCDState, Array], None] | None = None,
        chunk: int = 100,
    ) -> PCDResult:
        """Run ``num_steps`` updates (compiled in ``lax.scan`` chunks of ``chunk``; ``callback``
        is called after each chunk, e.g. to print progress)."""
        data = jnp.asarray(data)
        state = self.init(rng_key, data, params)

        @jax.jit
        def many(state, length_marker):
            def body(s, _):
                s, loss = self.update(s, data)
                return s, (loss, s.accept_prob)

            return lax.scan(body, state, length_marker)

        losses, accepts = [], []
        done = 0
        while done < num_steps:
            m = min(chunk, num_steps - done)
            state, (loss, acc) = many(state, jnp.zeros(m))
            losses.append(np.asarray(loss))
            accepts.append(np.asarray(acc))
            done += m
            if callback is not None:
                callback(done, state, loss)
        final = state.average if self.average_from is not None else state.params
        return PCDResult(
            _to_constrained(final),
            state,
            jnp.asarray(np.concatenate(losses)),
            jnp.asarray(np.concatenate(accepts)),
        )
