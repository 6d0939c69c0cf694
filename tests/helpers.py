"""Shared helpers for the tests: Monte Carlo z-scores and vectorised chains on the core."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_langevin import core


def run_chains(
    key, x0, potential_fn, mobility_fn, step_size, num_steps, temperature=1.0, metropolis=True
):
    """Run ``len(x0)`` independent chains of the core for ``num_steps``; return final positions
    and the mean acceptance probability."""

    def one_chain(key, x):
        state = core.init(x, potential_fn, mobility_fn, temperature)

        def body(state, key):
            state, info = core.step(
                key, state, potential_fn, mobility_fn, step_size, temperature, metropolis
            )
            return state, (info.accept_prob, info.diverging)

        state, (acc, div) = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return state.position, acc.mean(), div.any()

    keys = jax.random.split(key, x0.shape[0])
    pos, acc, div = jax.jit(jax.vmap(one_chain))(keys, x0)
    return np.asarray(pos), float(acc.mean()), bool(div.any())


def z_scores(samples: np.ndarray, statistics: dict, expected: dict) -> dict:
    """z-scores of ensemble averages of independent draws: (mean - expected) / MCSE."""
    out = {}
    for name, fn in statistics.items():
        values = np.asarray(fn(samples), dtype=np.float64)
        mcse = values.std(ddof=1) / np.sqrt(values.shape[0])
        out[name] = (values.mean() - expected[name]) / mcse
    return out


def gaussian_moments(d: int, variance: float = 1.0):
    """Statistics of N(0, variance I_d) with their expectations: means, second moments,
    one cross moment and a fourth moment."""
    stats, expected = {}, {}
    for a in range(d):
        stats[f"x{a}"] = lambda x, a=a: x[:, a]
        expected[f"x{a}"] = 0.0
        stats[f"x{a}^2"] = lambda x, a=a: x[:, a] ** 2
        expected[f"x{a}^2"] = variance
    if d > 1:
        stats["x0*x1"] = lambda x: x[:, 0] * x[:, 1]
        expected["x0*x1"] = 0.0
    stats["x0^4"] = lambda x: x[:, 0] ** 4
    expected["x0^4"] = 3.0 * variance**2
    return stats, expected


def standard_normal_energy(x):
    return 0.5 * jnp.sum(x**2)
