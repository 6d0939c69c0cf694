r"""BlackJAX's MALA with a step size tuned by bisection on the acceptance rate.

BlackJAX's ``mala`` proposes :math:`x' = x + h\nabla\log q(x) + \sqrt{2h}\,\xi` (identity
preconditioner) and has no adaptation of its own. We spend the same warmup budget as the NumPyro
samplers on tuning :math:`h`: the warmup is cut into ``rounds`` equal rounds; the chain keeps
moving through all of them, and after each round the mean acceptance probability of that round
decides the next :math:`\log h` — first by factors of 4 until the target acceptance 0.574
(Roberts & Rosenthal 1998) is bracketed, then by bisection of the bracket in :math:`\log h`.
Each chain tunes its own :math:`h`. The potential and the initial points come from NumPyro
(``initialize_model`` with ``init_to_uniform``, as the NumPyro kernels start), so all samplers
start from the same distribution.
"""

from __future__ import annotations

import math

import blackjax
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import initialize_model

from benchmarks.targets import Target

__all__ = ["BlackJAXMALA"]

TARGET_ACCEPT = 0.574


class BlackJAXMALA:
    """A reusable BlackJAX MALA runner for one target (compiled on the first :meth:`run`).

    Parameters
    ----------
    target
        The posterior.
    num_warmup, num_samples, num_chains
        As for ``numpyro.infer.MCMC``; the warmup is the tuning budget.
    chain_method
        ``"parallel"`` (``pmap``, one chain per device), ``"vectorized"`` (``vmap``) or
        ``"sequential"`` (one jitted chain at a time), as in NumPyro.
    rounds
        Number of tuning rounds.
    initial_step_size
        First :math:`h` tried.
    """

    def __init__(
        self,
        target: Target,
        num_warmup: int,
        num_samples: int,
        num_chains: int,
        chain_method: str = "parallel",
        rounds: int = 10,
        initial_step_size: float = 0.1,
    ) -> None:
        self.target = target
        self.num_warmup, self.num_samples, self.num_chains = num_warmup, num_samples, num_chains
        self.chain_method = chain_method
        self.rounds = max(1, min(rounds, num_warmup))
        self.initial_step_size = initial_step_size
        self._chain = None
        self._postprocess = None
        self.step_sizes = None
        self.accept = None

    def _build(self, potential_fn, unravel):
        def logdensity(flat):
            return -potential_fn(unravel(flat))

        kernel = blackjax.mala.build_kernel()
        per_round = max(self.num_warmup // self.rounds, 1)
        rounds, num_samples = self.rounds, self.num_samples
        log_factor = math.log(4.0)

        def run_steps(state, key, h, n):
            def body(s, k):
                s, info = kernel(k, s, logdensity, h)
                return s, (s.position, info.acceptance_rate)

            return jax.lax.scan(body, state, jax.random.split(key, n))

        def tune(carry, key):
            state, lo, hi, logh = carry
            state, (_, acc) = run_steps(state, key, jnp.exp(logh), per_round)
            up = jnp.mean(acc) > TARGET_ACCEPT
            lo = jnp.where(up, logh, lo)
            hi = jnp.where(up, hi, logh)
            bracketed = jnp.isfinite(lo) & jnp.isfinite(hi)
            new = jnp.where(
                bracketed, 0.5 * (lo + hi), jnp.where(up, logh + log_factor, logh - log_factor)
            )
            return (state, lo, hi, new), None

        def chain(key, flat):
            key_tune, key_sample = jax.random.split(key)
            state = blackjax.mala.init(flat, logdensity)
            inf = jnp.asarray(jnp.inf, flat.dtype)
            logh0 = jnp.log(jnp.asarray(self.initial_step_size, flat.dtype))
            carry = (state, -inf, inf, logh0)
            (state, _, _, logh), _ = jax.lax.scan(tune, carry, jax.random.split(key_tune, rounds))
            _, (positions, acc) = run_steps(state, key_sample, jnp.exp(logh), num_samples)
            return positions, jnp.exp(logh), jnp.mean(acc)

        if self.chain_method == "parallel":
            return jax.pmap(chain)
        return jax.jit(jax.vmap(chain) if self.chain_method == "vectorized" else chain)

    def run(self, rng_key: jax.Array) -> dict:
        """Sample; returns constrained draws grouped by chain ``{site: (chains, draws, ...)}``."""
        key_init, key_run = jax.random.split(rng_key)
        keys = jax.random.split(key_init, self.num_chains)
        info = initialize_model(keys, self.target.model, model_kwargs=self.target.kwargs)
        z = info.param_info.z
        flat = jax.vmap(lambda p: ravel_pytree(p)[0])(z)
        _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], z))
        if self._chain is None:
            self._chain = self._build(info.potential_fn, unravel)
            self._postprocess = jax.jit(
                jax.vmap(jax.vmap(lambda x: info.postprocess_fn(unravel(x))))
            )
        run_keys = jax.random.split(key_run, self.num_chains)
        if self.chain_method != "sequential":
            positions, h, acc = self._chain(run_keys, flat)
        else:
            outs = [self._chain(run_keys[c], flat[c]) for c in range(self.num_chains)]
            positions, h, acc = (jnp.stack(x) for x in zip(*outs, strict=True))
        samples = jax.block_until_ready(self._postprocess(positions))
        self.step_sizes, self.accept = h, acc
        return samples
