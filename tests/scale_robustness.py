"""Run by test_dtypes.py in a fresh interpreter (float64 needs JAX_ENABLE_X64 before JAX starts).

A linear regression whose posterior has coefficients in the thousands and standard deviations
from 7e-5 to 70, sampled from NumPyro's default start (uniform on (-2, 2) in unconstrained space,
millions of posterior sds away). The posterior is Gaussian in closed form. Prints a JSON report:
z-scores of every mean and variance (MCSE from the bulk ESS), divergences and the dtypes of the
state before and after sampling.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC

from numpyro_langevin import Langevin

rng = np.random.default_rng(0)
N = 200
X = rng.normal(size=(N, 3)) * np.array([1e3, 1.0, 1e-3])
NOISE = 1.0
Y = 5000.0 + X @ np.array([2.5, -3000.0, 4000.0]) + NOISE * rng.normal(size=N)
PRIOR_SD = 1e5


def model(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, PRIOR_SD))
    b = numpyro.sample("b", dist.Normal(0.0, PRIOR_SD).expand([3]).to_event(1))
    numpyro.sample("y", dist.Normal(a + x @ b, NOISE), obs=y)


def closed_form():
    phi = np.column_stack([np.ones(N), X])
    precision = phi.T @ phi / NOISE**2 + np.eye(4) / PRIOR_SD**2
    cov = np.linalg.inv(precision)
    return cov @ (phi.T @ Y / NOISE**2), cov


def main():
    mean, cov = closed_form()
    kernel = Langevin(model)
    mcmc = MCMC(
        kernel,
        num_warmup=1000,
        num_samples=2000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    key = jax.random.PRNGKey(1)
    init_state = kernel.init(
        jax.random.split(key, 4), 1000, None, (jnp.asarray(X), jnp.asarray(Y)), {}
    )
    mcmc.run(key, jnp.asarray(X), jnp.asarray(Y))
    samples = mcmc.get_samples(group_by_chain=True)
    draws = np.concatenate([np.asarray(samples["a"])[..., None], np.asarray(samples["b"])], -1)
    z = []
    for j in range(4):
        for stat, expected in (
            (draws[..., j], mean[j]),
            ((draws[..., j] - mean[j]) ** 2, cov[j, j]),
        ):
            z.append(
                float(
                    (stat.mean() - expected) / (stat.std() / np.sqrt(effective_sample_size(stat)))
                )
            )
    dtypes = lambda tree: [str(leaf.dtype) for leaf in jax.tree.leaves(tree)]  # noqa: E731
    print(
        json.dumps(
            {
                "z": z,
                "min_ess": float(min(effective_sample_size(draws[..., j]) for j in range(4))),
                "divergences": int(mcmc.get_extra_fields()["diverging"].sum()),
                "sample_dtypes": sorted({str(v.dtype) for v in samples.values()}),
                "stat_dtypes": sorted({str(v.dtype) for v in mcmc.get_extra_fields().values()}),
                "init_state_dtypes": dtypes(init_state),
                "last_state_dtypes": dtypes(mcmc.last_state),
            }
        )
    )


if __name__ == "__main__":
    main()
