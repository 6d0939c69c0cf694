r"""The NumPyro adapter: :class:`Langevin`, a drop-in ``MCMCKernel``.

A thin layer over :mod:`numpyro_langevin.core`: it builds the potential from the model (NumPyro's
potential energy :math:`E`, i.e. :math:`-\log p` on the unconstrained space), flattens the
position, adapts the step size (and a constant mobility) with NumPyro's own warmup adapter, and
exposes the fields ``MCMC`` and ArviZ read. The potential is rebuilt from ``model_args`` on every
step, never bound at ``init``, so a second ``run`` on new data samples the new posterior.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc_util import (
    HMCAdaptState,
    _initialize_mass_matrix,
    build_adaptation_schedule,
    dual_averaging,
    warmup_adapter,
)
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import ParamInfo, initialize_model
from numpyro.util import identity, is_prng_key

from numpyro_langevin import checks, core, fisher, warmup
from numpyro_langevin import mobility as mob
from numpyro_langevin import nonreversible as nonrev
from numpyro_langevin.mobilities import MobilityField

__all__ = ["Langevin", "LangevinMCMCState", "DENSE_AUTO_MAX_DIM", "SHRINK_PRIOR_PER_DIM"]

#: With ``dense_mobility=None``, an adapted mobility is dense up to this many dimensions.
DENSE_AUTO_MAX_DIM = 50

#: Weight, in draws per dimension, of the previous dense mobility when a warmup window ends
#: (see :func:`_shrink_to_previous`).
SHRINK_PRIOR_PER_DIM = 10


class LangevinMCMCState(NamedTuple):
    """State of :class:`Langevin` inside ``numpyro.infer.MCMC``.

    Attributes
    ----------
    i
        Iteration counter (it keeps counting after warmup; adaptation runs while ``i < num_warmup``).
    z
        Current position: the unconstrained sites as the potential takes them.
    potential_energy
        :math:`E(z)` (ArviZ reports ``lp = -potential_energy``).
    accept_prob
        :math:`\\min(1, \\alpha)` of the last proposal (ArviZ ``acceptance_rate``).
    mean_accept_prob
        Running mean of ``accept_prob``, restarted when warmup ends.
    diverging
        The last proposal was not finite and was rejected.
    adapt_state
        NumPyro's ``HMCAdaptState``: ``step_size`` and, for a constant mobility, the mobility as
        ``inverse_mass_matrix`` with its square roots (in scaled coordinates when adapted).
    mobility_scale
        Fixed per-coordinate scale :math:`s` of an adapted mobility, :math:`K = S\\Sigma S`
        (see :mod:`numpyro_langevin.warmup`); ones otherwise.
    core
        The flat :class:`~numpyro_langevin.core.LangevinState` (cached gradient, mobility, drift).
    rng_key
        PRNG key of the chain.
    """

    i: jax.Array
    z: Any
    potential_energy: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    diverging: jax.Array
    adapt_state: HMCAdaptState
    mobility_scale: jax.Array
    core: core.LangevinState
    rng_key: jax.Array


class Langevin(MCMCKernel):
    r"""Metropolis-adjusted (or unadjusted) Langevin with a position-dependent mobility.

    Samples :math:`q(x) \propto \exp(-E(x)/T)` with proposals
    :math:`x' \sim N\big(x + h[T\nabla\cdot K(x) - K(x)\nabla E(x)],\ 2Th\,K(x)\big)`, accepted with
    the exact Metropolis–Hastings ratio (both proposal densities, their
    :math:`\log\det K` terms included) when ``metropolis=True``. See :mod:`numpyro_langevin.core`.

    Parameters
    ----------
    model
        A NumPyro model. Exactly one of ``model`` and ``potential_fn``.
    potential_fn
        :math:`E` on the position (array or pytree); then pass ``init_params`` to ``MCMC.run``.
    step_size
        Initial step size :math:`h` (the final one when ``adapt_step_size=False``).
    mobility
        ``None``: a constant mobility adapted in warmup to the posterior covariance estimate
        (windowed Welford, as NUTS adapts its mass matrix). An array: a constant mobility, ``(d,)``
        diagonal or ``(d, d)`` dense over the flattened unconstrained position (the order of
        ``jax.flatten_util.ravel_pytree``). A callable: a position-dependent mobility; it takes
        the position as the potential takes it and returns ``(d,)`` or ``(d, d)``; its
        divergence is taken by forward-mode autodiff. A built-in
        :class:`~numpyro_langevin.mobilities.MobilityField` (e.g.
        :class:`~numpyro_langevin.mobilities.SoftAbsHessian`): a mobility built from the
        potential, bound to the potential of the current model arguments on every step. With a
        callable or a built-in, warmup adapts the step size only.
    temperature
        :math:`T > 0`; ``1`` samples the posterior.
    metropolis
        Metropolis–Hastings correction (MALA) when true; unadjusted chain (ULA) when false.
    adapt_step_size
        Dual averaging of :math:`h` to ``target_accept_prob`` during warmup.
    adapt_mobility
        How warmup adapts a constant mobility (``mobility=None``): ``True`` or ``"covariance"``,
        the posterior covariance estimate (windowed Welford of the positions); ``"fisher"``, the
        inverse Fisher matrix :math:`\mathbb E[\nabla E\nabla E^\top]^{-1}T^2`, the optimal
        constant preconditioner for Langevin (Titsias 2023), estimated in the same windows from
        the gradients (:mod:`numpyro_langevin.fisher`); ``False``, no adaptation (identity).
    antisymmetric
        Optional non-reversible part :math:`A`: ``None``, a constant antisymmetric ``(d, d)``
        array, or a callable taking the position as the potential takes it and returning one
        (its divergence by forward-mode autodiff). The drift becomes
        :math:`T\nabla\cdot(K + A) - (K + A)\nabla E` and the noise still comes from
        :math:`K` alone (:mod:`numpyro_langevin.nonreversible`). The adjusted chain stays exact
        (it is reversible again); the unadjusted one keeps the non-reversible speed-up, at an
        :math:`O(h)` bias. :func:`numpyro_langevin.nonreversible.optimal_constant` builds a
        good constant :math:`A` from a covariance. It needs a fixed mobility (an array, a
        callable, a built-in, or ``adapt_mobility=False``): an adapted :math:`K` would change
        the relative strength of :math:`A` during warmup. With the Metropolis correction the
        log acceptance ratio of the antisymmetric drift is :math:`O(\sqrt h\,\|A\|)`, not
        :math:`O(h^{3/2})`, so a strong :math:`A` forces a small step.
    dense_mobility
        Dense (``True``) or diagonal (``False``) adapted mobility; ``None`` chooses dense up to
        ``DENSE_AUTO_MAX_DIM`` dimensions, where it pays for itself on correlated posteriors.
    target_accept_prob
        Target of the step-size adaptation; 0.574 is optimal for MALA (Roberts & Rosenthal 1998).
    init_strategy
        NumPyro initialisation strategy (models only).
    steps_per_sample
        Langevin steps per MCMC iteration (per stored draw before ``MCMC``'s thinning), run
        inside one compiled call. A Langevin step costs one gradient, so on small models the
        per-iteration cost of NumPyro's driver (tens of microseconds, far more with a progress
        bar) dominates; several steps per iteration amortise it. ``num_warmup`` then counts
        iterations, i.e. ``num_warmup * steps_per_sample`` adaptation steps.
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        step_size: float = 1.0,
        mobility: jax.Array | Callable | None = None,
        temperature: float = 1.0,
        metropolis: bool = True,
        adapt_step_size: bool = True,
        adapt_mobility: bool | str = True,
        dense_mobility: bool | None = None,
        antisymmetric: jax.Array | Callable | None = None,
        target_accept_prob: float = 0.574,
        init_strategy: Callable = init_to_uniform,
        steps_per_sample: int = 1,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError(
                "Pass exactly one of `model` (a NumPyro model) and `potential_fn` (a function "
                "of the position returning the potential energy, with init_params given to "
                "MCMC.run)."
            )
        for name, fn in (("model", model), ("potential_fn", potential_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"`{name}` must be callable, got {type(fn).__name__}.")
        self._model = model
        self._potential_fn = potential_fn
        self._step_size = checks.positive_scalar(
            "step_size", step_size, "It is the initial Langevin step h (try 1.0 with adaptation)."
        )
        self._temperature = checks.positive_scalar(
            "temperature", temperature, "T = 1 samples the posterior; T > 1 flattens it."
        )
        if (
            mobility is not None
            and not callable(mobility)
            and not isinstance(mobility, MobilityField)
        ):
            if jnp.ndim(mobility) not in (1, 2):
                raise ValueError(
                    "`mobility` must be None, a (d,) or (d, d) array, or a callable; got an "
                    f"array of shape {jnp.shape(mobility)}."
                )
        if dense_mobility not in (None, True, False):
            raise TypeError(
                f"`dense_mobility` must be None, True or False, got {dense_mobility!r}."
            )
        for name, flag in (("metropolis", metropolis), ("adapt_step_size", adapt_step_size)):
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be True or False, got {flag!r}.")
        self._mobility = mobility
        self._metropolis = metropolis
        self._adapt_step_size = adapt_step_size
        if adapt_mobility not in (True, False, "covariance", "fisher"):
            raise ValueError(
                "`adapt_mobility` must be True or 'covariance' (Welford estimate of the "
                "posterior covariance), 'fisher' (inverse Fisher matrix from the gradients) or "
                f"False; got {adapt_mobility!r}."
            )
        self._adapt_mobility = adapt_mobility is not False
        self._adapt_fisher = adapt_mobility == "fisher"
        if antisymmetric is not None and not callable(antisymmetric):
            if jnp.ndim(antisymmetric) != 2:
                raise ValueError(
                    "`antisymmetric` must be None, a (d, d) antisymmetric array or a callable; "
                    f"got an array of shape {jnp.shape(antisymmetric)}."
                )
        if antisymmetric is not None and mobility is None and self._adapt_mobility:
            raise ValueError(
                "`antisymmetric` cannot be combined with an adapted mobility: A is in the units "
                "of the position, and as warmup rescales the mobility K it changes the relative "
                "strength of A (a strong A makes the adjusted chain shrink its step, the "
                "adapted K then shrinks with it, and the chain freezes). Pass adapt_mobility="
                "False (identity K), or a fixed `mobility` (e.g. a covariance estimate) and build "
                "A for it, e.g. nonreversible.optimal_constant(covariance, mobility)."
            )
        self._antisymmetric = antisymmetric
        self._dense_mobility = dense_mobility
        self._target_accept_prob = checks.probability("target_accept_prob", target_accept_prob)
        if (
            isinstance(steps_per_sample, bool)
            or not isinstance(steps_per_sample, int)
            or (steps_per_sample < 1)
        ):
            raise ValueError(
                f"`steps_per_sample` must be an integer >= 1, got {steps_per_sample!r}."
            )
        self._steps_per_sample = steps_per_sample
        self._init_strategy = init_strategy
        self._reset()

    def _reset(self) -> None:
        # Closures rebuilt by `init` (none depends on traced values or data).
        self._sample_fn = None
        self._wa_update = None
        self._potential_fn_gen = None
        self._postprocess_fn_gen = None
        self._unravel = None
        self._mobility_kind = None
        self._antisymmetric_fn = None
        self._num_warmup = 0
        self._restart_steps: tuple[int, ...] = ()
        self._batched = False
        self._init_cache: dict = {}

    # ------------------------------------------------------------------ NumPyro API

    @property
    def model(self) -> Callable | None:
        """The NumPyro model, or ``None`` for a kernel built from ``potential_fn``."""
        return self._model

    @property
    def default_fields(self) -> tuple[str, ...]:
        """Fields collected by ``MCMC`` so ArviZ gets ``diverging``, ``lp``,
        ``acceptance_rate`` and ``step_size`` without ``extra_fields``."""
        return ("z", "diverging", "potential_energy", "accept_prob", "adapt_state.step_size")

    def get_diagnostics_str(self, state: LangevinMCMCState) -> str:
        """Progress-bar text: step size and mean acceptance probability."""
        return (
            f"step size {float(state.adapt_state.step_size):.2e}. "
            f"acc. prob={float(state.mean_accept_prob):.2f}"
        )

    def postprocess_fn(self, model_args, model_kwargs) -> Callable:
        """Map an unconstrained ``z`` to constrained sites plus deterministic sites."""
        if self._postprocess_fn_gen is None:
            return identity
        return self._postprocess_fn_gen(*model_args, **(model_kwargs or {}))

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        """Initial state (a batch of states when ``rng_key`` is a batch of keys)."""
        model_args = tuple(model_args or ())
        model_kwargs = dict(model_kwargs or {})
        # Adaptation counts Langevin steps, not MCMC iterations.
        self._num_warmup = int(num_warmup) * self._steps_per_sample
        self._batched = not is_prng_key(rng_key)
        keys = (
            jax.vmap(random.split, (0, None))(rng_key, 3)
            if self._batched
            else random.split(rng_key, 3)
        )
        key_chain, key_model, key_adapt = (
            keys[:, j] if self._batched else keys[j] for j in range(3)
        )

        if isinstance(init_params, ParamInfo):
            init_params = init_params.z
        if self._model is not None:
            try:
                info = initialize_model(
                    key_model,
                    self._model,
                    init_strategy=self._init_strategy,
                    dynamic_args=True,
                    model_args=model_args,
                    model_kwargs=model_kwargs,
                )
            except Exception:
                # NumPyro's own error for a discrete latent asks for funsor: say what we need.
                checks.continuous_latents(
                    checks.trace_model(
                        self._model, key_model, model_args, model_kwargs, self._init_strategy
                    )
                )
                raise
            checks.continuous_latents(info.model_trace)
            self._potential_fn_gen = info.potential_fn
            self._postprocess_fn_gen = info.postprocess_fn
            if init_params is None:
                init_params = info.param_info.z
            else:
                checks.init_params_match(init_params, info.param_info.z)
        elif init_params is None:
            raise ValueError(
                "A kernel built from `potential_fn` needs a starting point: pass `init_params` "
                "to MCMC.run (with a leading axis of size num_chains when num_chains > 1)."
            )

        first = jax.tree.map(lambda x: x[0], init_params) if self._batched else init_params
        flat, self._unravel = ravel_pytree(first)
        flat = jnp.asarray(flat, dtype=jnp.result_type(float))
        self._setup_mobility(flat)
        self._restart_steps = _restart_steps(self._num_warmup)
        self._wa_init, self._wa_update = warmup_adapter(
            max(self._num_warmup, 1),
            adapt_step_size=self._adapt_step_size,
            adapt_mass_matrix=self._mobility_kind == "adapt",
            dense_mass=self._dense,
            target_accept_prob=self._target_accept_prob,
        )
        init_fn = self._compiled_init(model_args, model_kwargs)
        state = init_fn(key_chain, key_adapt, init_params)
        checks.finite_start(state.potential_energy, state.core.potential_grad)
        self._sample_fn = self._sample_one
        return state

    def sample(self, state: LangevinMCMCState, model_args, model_kwargs) -> LangevinMCMCState:
        """``steps_per_sample`` Langevin steps of every chain in ``state``.

        With several steps, ``accept_prob`` is their mean and ``diverging`` their "any".
        """
        n = self._steps_per_sample
        if n == 1:
            return self._step(state, model_args, model_kwargs)

        def body(_, carry):
            state, accept_sum, diverged = carry
            state = self._step(state, model_args, model_kwargs)
            return state, accept_sum + state.accept_prob, diverged | state.diverging

        zero = (jnp.zeros_like(state.accept_prob), jnp.zeros_like(state.diverging))
        state, accept_sum, diverged = lax.fori_loop(0, n, body, (state, *zero))
        return state._replace(accept_prob=accept_sum / n, diverging=diverged)

    def _step(self, state: LangevinMCMCState, model_args, model_kwargs) -> LangevinMCMCState:
        if self._batched:
            state, accept_prob = jax.vmap(self._move, in_axes=(0, None, None))(
                state, model_args, model_kwargs
            )
            return self._adaptation(state, accept_prob, model_args, model_kwargs, batched=True)
        return self._sample_one(state, model_args, model_kwargs)

    def refresh(self, state: LangevinMCMCState, model_args, model_kwargs) -> LangevinMCMCState:
        """Recompute the cached energy, gradient, mobility and drift for new model arguments."""
        potential = self._flat_potential(model_args, model_kwargs)

        def one(s):
            c = core.init(
                s.core.position,
                potential,
                self._mobility_fn(s.adapt_state, s.mobility_scale, potential),
                self._temperature,
                self._antisymmetric_fn,
            )
            return s._replace(core=c, potential_energy=c.potential_energy)

        return jax.vmap(one)(state) if jnp.ndim(state.i) == 1 else one(state)

    def wrap_model(self, wrapper: Callable) -> Langevin:
        """A copy bound to ``wrapper(model)``; it rebuilds its closures on ``init``."""
        if self._model is None:
            raise ValueError("`wrap_model` needs a kernel built from a model.")
        new = copy.copy(self)
        new._model = wrapper(self._model)
        new._reset()
        return new

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_sample_fn", "_wa_update", "_wa_init", "_unravel", "_antisymmetric_fn"):
            state[name] = None
        state["_init_cache"] = {}
        return state

    # ------------------------------------------------------------------ internals

    def _setup_mobility(self, flat: jax.Array) -> None:
        d = flat.shape[0]
        self._setup_antisymmetric(flat)
        if isinstance(self._mobility, MobilityField):
            self._mobility_kind = "field"
            self._dense = False  # the adapter's mass matrix is unused: keep it small
        elif callable(self._mobility):
            self._mobility_kind = "callable"
            self._dense = False  # the adapter's mass matrix is unused: keep it small
            checks.mobility_shape(self._user_mobility, flat)
            checks.mobility_values(self._user_mobility, flat)
        elif self._mobility is not None:
            self._mobility_kind = "constant"
            self._constant = checks.constant_mobility(self._mobility, d)
            self._dense = self._constant.ndim == 2
        else:
            self._mobility_kind = "adapt" if self._adapt_mobility else "identity"
            dense = self._dense_mobility
            self._dense = d <= DENSE_AUTO_MAX_DIM if dense is None else dense

    def _setup_antisymmetric(self, flat: jax.Array) -> None:
        a = self._antisymmetric
        if a is None:
            self._antisymmetric_fn = None
        elif callable(a):
            nonrev.check_callable(self._user_antisymmetric, flat)
            self._antisymmetric_fn = nonrev.position_dependent(self._user_antisymmetric)
        else:
            self._antisymmetric_fn = nonrev.constant(nonrev.check_matrix(a, flat.shape[0]))

    def _user_antisymmetric(self, flat: jax.Array) -> jax.Array:
        return self._antisymmetric(self._unravel(flat))

    def _user_mobility(self, flat: jax.Array) -> jax.Array:
        return self._mobility(self._unravel(flat))

    def _mobility_fn(
        self, adapt_state: HMCAdaptState, scale: jax.Array, potential: Callable | None = None
    ) -> mob.MobilityFn:
        if self._mobility_kind == "callable":
            return mob.position_dependent(self._user_mobility)
        if self._mobility_kind == "field":
            return self._mobility.bind(potential)
        from_adapt_state = (
            fisher.from_adapt_state
            if self._mobility_kind == "adapt" and self._adapt_fisher
            else mob.from_adapt_state
        )
        m = from_adapt_state(
            adapt_state.inverse_mass_matrix,
            adapt_state.mass_matrix_sqrt,
            adapt_state.mass_matrix_sqrt_inv,
        )
        if self._mobility_kind == "adapt":
            m = warmup.scaled(m, scale)
        return lambda x: m

    def _flat_potential(self, model_args, model_kwargs) -> Callable[[jax.Array], jax.Array]:
        if self._potential_fn_gen is not None:
            fn = self._potential_fn_gen(*model_args, **(model_kwargs or {}))
        else:
            fn = self._potential_fn
        return lambda flat: fn(self._unravel(flat))

    def _compiled_init(self, model_args: tuple, model_kwargs: dict) -> Callable:
        """The initial state as one compiled call, compiled once per kernel.

        One call: op-by-op dispatch of the initial Hessian and eigendecomposition would take
        longer than the whole warmup. The array leaves of the model arguments are arguments of
        the compiled function and the rest (plate sizes, flags) part of its cache key, so a
        repeated ``run``, or a new data set of the same shapes, does not compile it again.
        """
        leaves, treedef = jax.tree.flatten((model_args, model_kwargs))
        dynamic = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
        static = tuple(None if d else x for x, d in zip(leaves, dynamic, strict=True))
        arrays = [x for x, d in zip(leaves, dynamic, strict=True) if d]

        def init_all(key_chain, key_adapt, params, arrays):
            it = iter(arrays)
            full = [next(it) if d else x for x, d in zip(static, dynamic, strict=True)]
            args, kwargs = jax.tree.unflatten(treedef, full)
            one = partial(self._init_one, potential=self._flat_potential(args, kwargs))
            return (jax.vmap(one) if self._batched else one)(key_chain, key_adapt, params)

        try:
            key = (self._batched, treedef, static)
            hash(key)
        except TypeError:  # unhashable argument: compile for these arguments only
            return partial(jax.jit(init_all), arrays=arrays)
        if key not in self._init_cache:
            self._init_cache[key] = jax.jit(init_all)
        return partial(self._init_cache[key], arrays=arrays)

    def _init_one(self, key_chain, key_adapt, params, potential) -> LangevinMCMCState:
        flat = jnp.asarray(ravel_pytree(params)[0], dtype=jnp.result_type(float))
        dtype = flat.dtype
        step_size = jnp.asarray(self._step_size, dtype=dtype)
        scale = jnp.ones_like(flat)
        inverse_mass_matrix = self._constant if self._mobility_kind == "constant" else None
        if self._mobility_kind == "adapt":
            scale, inverse_mass_matrix = warmup.initial_scale(potential, flat, self._dense)
            if self._adapt_fisher:
                inverse_mass_matrix = fisher.initial_fisher(inverse_mass_matrix)
        adapt_state = self._wa_init(
            (flat,),
            key_adapt,
            step_size,
            inverse_mass_matrix=inverse_mass_matrix,
            mass_matrix_size=flat.shape[0],
        )._replace(rng_key=None)
        c = core.init(
            flat,
            potential,
            self._mobility_fn(adapt_state, scale, potential),
            self._temperature,
            self._antisymmetric_fn,
        )
        zero = jnp.zeros((), dtype=dtype)
        return LangevinMCMCState(
            jnp.zeros((), dtype=jnp.result_type(int)),
            self._unravel(flat),
            c.potential_energy,
            zero,
            zero,
            jnp.zeros((), dtype=bool),
            adapt_state,
            scale,
            c,
            key_chain,
        )

    def _sample_one(self, state: LangevinMCMCState, model_args, model_kwargs):
        state, accept_prob = self._move(state, model_args, model_kwargs)
        return self._adaptation(state, accept_prob, model_args, model_kwargs)

    def _move(self, state: LangevinMCMCState, model_args, model_kwargs):
        """One step of one chain; the counter ``i`` is left for :meth:`_adaptation`."""
        potential = self._flat_potential(model_args, model_kwargs)
        rng_key, key_step = random.split(state.rng_key)
        if self._mobility_kind in ("field", "callable"):
            mobility_fn = self._mobility_fn(state.adapt_state, state.mobility_scale, potential)
        else:
            # A constant mobility is cached in the core state: reuse it rather than rebuild it
            # from the adapter's matrices (and the accept/reject select of identical operands
            # then folds away).
            cached = state.core.mobility
            mobility_fn = lambda x: cached  # noqa: E731
        c, info = core.step(
            key_step,
            state.core,
            potential,
            mobility_fn,
            state.adapt_state.step_size,
            self._temperature,
            self._metropolis,
            self._antisymmetric_fn,
        )
        i, num_warmup = state.i, self._num_warmup
        n = jnp.where(i < num_warmup, i + 1, i + 1 - num_warmup)
        mean_accept_prob = state.mean_accept_prob + (info.accept_prob - state.mean_accept_prob) / n
        new = state._replace(
            z=self._unravel(c.position),
            potential_energy=c.potential_energy,
            accept_prob=info.accept_prob,
            mean_accept_prob=mean_accept_prob,
            diverging=info.diverging,
            core=c,
            rng_key=rng_key,
        )
        return new, info.accept_prob

    def _adaptation(self, state, accept_prob, model_args, model_kwargs, batched=False):
        """Warmup adaptation after a step, then ``i += 1``.

        In vectorized mode every chain shares the counter, so the branches are chosen once for
        the batch (``lax.cond`` on chain 0's counter, the per-chain work ``vmap``-ed inside):
        after warmup no adaptation work is done at all, and the Newton restarts
        (:meth:`_newton_restart`) run only at their iterations.
        """
        num_warmup = self._num_warmup
        adapting = self._adapt_step_size or self._mobility_kind == "adapt"
        if num_warmup > 0 and adapting:
            i = state.i[0] if batched else state.i
            per_chain = jax.vmap if batched else (lambda f: f)
            restarts = self._restart_steps if self._mobility_kind == "adapt" else ()
            potential = self._flat_potential(model_args, model_kwargs) if restarts else None

            def warm(state):
                state = per_chain(self._adapt_one)(state, accept_prob)
                if restarts:
                    state = lax.cond(
                        jnp.any(i == jnp.asarray(restarts)),
                        per_chain(lambda s: self._newton_restart(s, potential)),
                        lambda s: s,
                        state,
                    )
                return _adapted(state)

            # Only what adaptation changes goes through the branch (after warmup the identity
            # branch copies its outputs: keep them few).
            state = _with_adapted(state, lax.cond(i < num_warmup, warm, _adapted, state))
        return state._replace(i=state.i + 1)

    def _adapt_one(self, state: LangevinMCMCState, accept_prob) -> LangevinMCMCState:
        c, scale = state.core, state.mobility_scale
        if self._adapt_fisher:
            sample = fisher.signal(c.potential_grad, scale, self._temperature)
        else:
            sample = c.position / scale
        adapt_state = self._wa_update(state.i, accept_prob, (sample,), state.adapt_state)
        if self._mobility_kind == "adapt" and self._dense:
            adapt_state = _shrink_to_previous(adapt_state, state.adapt_state, c.position)
        if self._mobility_kind == "adapt":
            new = self._mobility_fn(adapt_state, scale)(c.position)
            c = core.set_mobility(c, new, self._temperature)
        return state._replace(adapt_state=adapt_state, core=c)

    def _newton_restart(self, state: LangevinMCMCState, potential) -> LangevinMCMCState:
        """Restart the adapted mobility from the curvature at the current point.

        During the initial fast window the chain is still travelling; the mobility built from
        the Hessian where it started can be off by orders of magnitude once it arrives (a scale
        parameter started far in a tail). Re-taking the floored Hessian inverse
        (:func:`numpyro_langevin.warmup.initial_scale`) a few times in that window, and
        restarting the step-size dual averaging, gives the Welford windows a mobility with the
        right scales to start from. Costs ``d`` gradients, a few times per warmup.
        """
        position = state.core.position
        scale, covariance = warmup.initial_scale(potential, position, self._dense)
        if self._adapt_fisher:
            covariance = fisher.initial_fisher(covariance)
        matrix, sqrt, sqrt_inv = _initialize_mass_matrix(position, covariance, self._dense)
        step_size = state.adapt_state.step_size
        adapt_state = state.adapt_state._replace(
            inverse_mass_matrix=matrix,
            mass_matrix_sqrt=sqrt,
            mass_matrix_sqrt_inv=sqrt_inv,
            ss_state=dual_averaging()[0](jnp.log(10.0 * step_size)),
        )
        c = core.set_mobility(
            state.core, self._mobility_fn(adapt_state, scale)(position), self._temperature
        )
        return state._replace(adapt_state=adapt_state, mobility_scale=scale, core=c)


def _shrink_to_previous(new: HMCAdaptState, old: HMCAdaptState, position) -> HMCAdaptState:
    r"""At the end of a slow window, shrink a dense estimate towards the previous one.

    NumPyro regularises a window's covariance estimate :math:`\hat\Sigma` (``n`` draws) towards
    a tiny multiple of the identity. A dense estimate from a window shorter than the dimension
    (the first windows are 25 and 50 draws) has rank below ``d``; the directions it misses get
    that tiny variance, the next window's chain cannot move along them, and the estimate never
    recovers (on the 31-dimensional breast-cancer logistic regression the adapted mobility ended
    up 100 times too small in most directions). Here the window's estimate is combined with the
    previous mobility as a prior worth :math:`k = 10d` draws (``SHRINK_PRIOR_PER_DIM``),
    :math:`\Sigma = (n\hat\Sigma + k\Sigma_{\text{prev}})/(n + k)`: early windows refine the
    Newton start (:mod:`numpyro_langevin.warmup`), the long last window weighs most. (The
    draws of a window are autocorrelated, so ``n`` overstates their information. ``10d`` was
    chosen on that logistic regression, where ``d + 5`` still left min-ESS 29 of 4000 draws,
    ``3d`` 101 and ``10d`` 229; the other benchmark targets did not change beyond noise.)
    """
    n_old = old.mm_state[2]
    window_end = (new.mm_state[2] == 0) & (n_old > 0)

    def shrink(new, old):
        d = position.shape[0]
        n = jnp.asarray(n_old + 1, dtype=position.dtype)
        k = jnp.asarray(SHRINK_PRIOR_PER_DIM * d, dtype=position.dtype)
        matrix = (n * new.inverse_mass_matrix + k * old.inverse_mass_matrix) / (n + k)
        matrix, sqrt, sqrt_inv = _initialize_mass_matrix(position, matrix, True)
        return new._replace(
            inverse_mass_matrix=matrix, mass_matrix_sqrt=sqrt, mass_matrix_sqrt_inv=sqrt_inv
        )

    return lax.cond(window_end, shrink, lambda new, old: new, new, old)


def _adapted(state: LangevinMCMCState) -> tuple:
    """The parts of the state that warmup adaptation changes."""
    return state.adapt_state, state.mobility_scale, state.core.mobility, state.core.drift


def _with_adapted(state: LangevinMCMCState, adapted: tuple) -> LangevinMCMCState:
    adapt_state, scale, mobility, drift = adapted
    c = state.core._replace(mobility=mobility, drift=drift)
    return state._replace(adapt_state=adapt_state, mobility_scale=scale, core=c)


def _restart_steps(num_warmup: int) -> tuple[int, ...]:
    """Iterations of the Newton restarts: thirds of the initial fast window (``()`` when the
    window is too short to matter)."""
    if num_warmup < 20:
        return ()
    end = build_adaptation_schedule(num_warmup)[0][1]
    return tuple(sorted({end // 3, 2 * end // 3, end}))
