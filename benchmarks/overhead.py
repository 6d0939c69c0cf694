r"""What one Langevin step costs inside ``numpyro.infer.MCMC`` against a bare jitted loop.

For a target we adapt :class:`~numpyro_langevin.Langevin` once (``MCMC.warmup``), freeze the
adapted state, and time ``n`` further steps in four ways, each compiled beforehand and timed on
its sampling clock (:mod:`benchmarks.clock`):

1. **bare** — ``jax.jit`` of a ``lax.scan`` of :func:`numpyro_langevin.core.step` with the
   adapted constant mobility, collecting the flat position: the floor (one gradient per step).
2. **kernel** — the same ``lax.scan`` over ``Langevin.sample`` (unravelling to the model's
   sites, the running acceptance mean, the warmup branch), collecting ``z``.
3. **kernel + postprocess** — as 2, collecting ``postprocess_fn(z)`` (the model's constrained
   and deterministic sites, which ``MCMC`` computes for every draw).
4. **MCMC** — ``MCMC.run`` from the post-warmup state (``fori_collect``: the model's
   ``postprocess_fn`` on every draw, five collected fields, a ``cond`` per collected value).

The time per step is the slope between two chain lengths (``n_short`` and ``n_long``, medians of
repetitions), so fixed costs drop out; the intercept of the MCMC line is the driver's fixed cost
per ``run`` from a warm state. ``overhead_ratio = MCMC / bare`` per step. Separately, the fixed
cost of a whole repeated ``run`` (``init`` included: ``initialize_model``, the initial Hessian,
tracing) is the sampling-clock time of a 10 + 10 iteration run, for Langevin, NUTS and one-step
HMC.
"""

from __future__ import annotations

import jax
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from numpyro.infer import HMC, MCMC, NUTS
from numpyro.infer.util import initialize_model

from benchmarks.clock import timed
from benchmarks.targets import Target
from numpyro_langevin import Langevin, core

__all__ = ["per_step_overhead", "fixed_run_cost", "AMORTISED_STEPS"]

#: Langevin steps per collected draw in the amortised MCMC measurement.
AMORTISED_STEPS = 10


def _slope(time_of, n_short: int, n_long: int, reps: int) -> tuple[float, float]:
    """(seconds per step, intercept) from median times at two lengths, interleaved."""
    short, long = [], []
    for _ in range(reps):
        short.append(time_of(n_short))
        long.append(time_of(n_long))
    t_short, t_long = float(np.median(short)), float(np.median(long))
    per_step = (t_long - t_short) / (n_long - n_short)
    return per_step, t_short - n_short * per_step


def per_step_overhead(
    target: Target,
    num_warmup: int = 500,
    n_short: int = 2000,
    n_long: int = 20000,
    reps: int = 5,
    **kernel_kwargs,
) -> dict:
    """Seconds per step: bare core loop, kernel in a bare loop, and inside ``MCMC``."""
    kwargs = target.kwargs
    kernel = Langevin(target.model, **kernel_kwargs)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=n_short, progress_bar=False)
    mcmc.warmup(jax.random.key(0), **kwargs)
    state = mcmc.post_warmup_state

    info = initialize_model(jax.random.key(1), target.model, model_kwargs=kwargs)
    _, unravel = ravel_pytree(state.z)

    def potential(flat):
        return info.potential_fn(unravel(flat))

    mobility = state.core.mobility

    def mobility_fn(x):
        return mobility

    step_size = state.adapt_state.step_size

    def bare_loop(key, s, n):
        def body(c, k):
            c, _ = core.step(k, c, potential, mobility_fn, step_size)
            return c, c.position

        return lax.scan(body, s, jax.random.split(key, n))

    def kernel_loop(key, s, n):
        def body(c, k):
            c = kernel.sample(c._replace(rng_key=k), (), kwargs)
            return c, c.z

        return lax.scan(body, s, jax.random.split(key, n))

    def postprocess_loop(key, s, n):
        def body(c, k):
            c = kernel.sample(c._replace(rng_key=k), (), kwargs)
            return c, info.postprocess_fn(c.z)

        return lax.scan(body, s, jax.random.split(key, n))

    compiled = {}

    def timer(name, loop, s):
        def time_of(n):
            if (name, n) not in compiled:
                compiled[(name, n)] = jax.jit(lambda key, s0, n=n: loop(key, s0, n))
                jax.block_until_ready(compiled[(name, n)](jax.random.key(2), s))
            with timed() as clock:
                jax.block_until_ready(compiled[(name, n)](jax.random.key(3), s))
            return clock.sampling

        return time_of

    def mcmc_time(n):
        mcmc.num_samples = n
        mcmc.post_warmup_state = state
        mcmc.run(jax.random.key(4), **kwargs)  # compiles (or loads) this length
        with timed() as clock:
            mcmc.run(jax.random.key(5), **kwargs)
            jax.block_until_ready(mcmc.get_samples())
        return clock.sampling

    # The same MCMC with 10 Langevin steps per collected draw (``steps_per_sample=10``): the
    # driver's per-draw work is paid once per 10 steps.
    amortised = MCMC(
        Langevin(target.model, steps_per_sample=AMORTISED_STEPS, **kernel_kwargs),
        num_warmup=max(num_warmup // AMORTISED_STEPS, 1),
        num_samples=n_short,
        progress_bar=False,
    )
    amortised.warmup(jax.random.key(0), **kwargs)
    amortised_state = amortised.post_warmup_state

    def amortised_time(n):
        n_draws = max(n // AMORTISED_STEPS, 1)
        amortised.num_samples = n_draws
        amortised.post_warmup_state = amortised_state
        amortised.run(jax.random.key(4), **kwargs)
        with timed() as clock:
            amortised.run(jax.random.key(5), **kwargs)
            jax.block_until_ready(amortised.get_samples())
        return clock.sampling

    bare, _ = _slope(timer("bare", bare_loop, state.core), n_short, n_long, reps)
    in_kernel, _ = _slope(timer("kernel", kernel_loop, state), n_short, n_long, reps)
    with_post, _ = _slope(timer("post", postprocess_loop, state), n_short, n_long, reps)
    in_mcmc, fixed = _slope(mcmc_time, n_short, n_long, reps)
    in_amortised, _ = _slope(amortised_time, n_short, n_long, reps)
    return {
        "target": target.name,
        "dim": target.dim,
        "bare_us": bare * 1e6,
        "kernel_us": in_kernel * 1e6,
        "postprocess_us": with_post * 1e6,
        "mcmc_us": in_mcmc * 1e6,
        "ratio": in_mcmc / bare,
        "kernel_ratio": in_kernel / bare,
        "mcmc_steps10_us": in_amortised * 1e6,
        "ratio_steps10": in_amortised / bare,
        "mcmc_fixed_warm_s": fixed,
    }


def fixed_run_cost(target: Target, reps: int = 3) -> dict:
    """Sampling-clock seconds of a repeated 10 + 10 iteration ``run`` (one chain), per kernel."""
    kernels = {
        "Langevin": lambda m: Langevin(m),
        "NUTS": lambda m: NUTS(m),
        "HMC 1-step (MALA)": lambda m: HMC(m, num_steps=1, trajectory_length=None),
    }
    out = {"target": target.name}
    for name, build in kernels.items():
        mcmc = MCMC(build(target.model), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(jax.random.key(0), **target.kwargs)
        times = []
        for r in range(reps):
            with timed() as clock:
                mcmc.run(jax.random.key(r + 1), **target.kwargs)
                jax.block_until_ready(mcmc.get_samples())
            times.append((clock.sampling, clock.wall))
        out[name] = float(np.median([t[0] for t in times]))
        out[name + " (wall)"] = float(np.median([t[1] for t in times]))
    return out


#: What the per-step columns measure, for RESULTS.md.
EXPLANATION = """Per step, four layers are timed on the same adapted state (slope between two chain
lengths, each program compiled beforehand, sampling clock): the bare functional core
(`lax.scan` of `core.step` with the adapted constant mobility, collecting the flat position —
the floor: one gradient and one mobility application per step); our kernel's
`Langevin.sample` in the same scan (adds a PRNG split of the chain key, unravelling to the
model's sites, the running acceptance mean and the warmup `lax.cond` branches, skipped after
warmup); the same collecting `postprocess_fn(z)` (the model's constrained and deterministic
sites, which `MCMC` computes for every draw inside its loop); and `MCMC.run` from the
post-warmup state (NumPyro's `fori_collect`: the postprocessing above plus five collected
fields, each written through a `cond`). The differences between columns say where the time
goes; on a small model the per-draw postprocessing and collection are of the same order as the
gradient itself, so the ratio is largest there. Timings of a few µs are noisy on a shared
machine."""
