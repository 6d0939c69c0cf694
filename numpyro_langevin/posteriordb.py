"""NumPyro versions of the posteriordb models we validate against, and a loader for the reference
files (``shared/posteriordb/*.json``: data plus reference means, sds and quantiles from 10,000
well-tuned Stan draws).

Each model takes the posteriordb data as keyword arguments, so ``model(**case.data)`` runs it.
Sizes are read from the arrays' shapes (the integer size arguments are accepted and ignored), so
the models also work with ``MCMC(..., jit_model_args=True)``; ``arK`` needs its lag count ``K`` as
a Python integer.
Parameters are named as in Stan; ``beta[2]`` in a reference file is ``beta[..., 1]`` here.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

__all__ = ["PosteriorCase", "load", "MODELS", "reference_table"]


def eight_schools_noncentered(J, y, sigma):
    """theta_j = mu + tau * theta_trans_j; y_j ~ N(theta_j, sigma_j)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    y, sigma = jnp.asarray(y), jnp.asarray(sigma)
    with numpyro.plate("J", sigma.shape[0]):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_trans)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def kidscore_momiq(N, kid_score, mom_iq, **unused):
    """kid_score ~ N(beta_1 + beta_2 mom_iq, sigma); flat prior on beta, half-Cauchy(2.5) sigma."""
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (2,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    mom_iq = jnp.asarray(mom_iq, dtype=float)
    with numpyro.plate("N", mom_iq.shape[0]):
        numpyro.sample(
            "kid_score",
            dist.Normal(beta[0] + beta[1] * mom_iq, sigma),
            obs=jnp.asarray(kid_score, dtype=float),
        )


def blr(N, D, X, y):
    """Bayesian linear regression: beta_d ~ N(0, 10), sigma ~ half-N(0, 10), y ~ N(X beta, sigma)."""
    X = jnp.asarray(X)
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(10.0))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=jnp.asarray(y))


def ar_k(K, T, y):
    """AR(K): y_t ~ N(alpha + sum_k beta_k y_{t-k}, sigma) for t = K+1..T."""
    y = jnp.asarray(y, dtype=float)
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    lags = jnp.stack([y[K - k : T - k] for k in range(1, K + 1)], axis=-1)
    with numpyro.plate("T", T - K):
        numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma), obs=y[K:])


MODELS: dict[str, Callable] = {
    "eight_schools-eight_schools_noncentered": eight_schools_noncentered,
    "kidiq-kidscore_momiq": kidscore_momiq,
    "sblrc-blr": blr,
    "arK-arK": ar_k,
}


class PosteriorCase(NamedTuple):
    """One reference posterior: its name, NumPyro model, data and reference moments."""

    name: str
    model: Callable
    data: dict
    reference: dict


def load(path: str | pathlib.Path) -> PosteriorCase:
    """Load a posteriordb reference file (its name selects the model)."""
    path = pathlib.Path(path)
    content = json.loads(path.read_text())
    name = content["name"]
    if name not in MODELS:
        raise ValueError(f"No NumPyro model for posteriordb case {name!r}; known: {list(MODELS)}.")
    return PosteriorCase(name, MODELS[name], content["data"], content["reference"])


def _draws_of(samples: dict, parameter: str) -> np.ndarray:
    """Draws (chains, draws) of a reference parameter name like ``beta[2]``."""
    match = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", parameter)
    site, index = match.group(1), match.group(2)
    values = np.asarray(samples[site])
    return values if index is None else values[..., int(index) - 1]


def reference_table(case: PosteriorCase, samples: dict) -> list[dict]:
    """Compare grouped-by-chain draws with the reference, parameter by parameter.

    Returns rows with the mean error in Monte Carlo standard errors (ours, from the bulk ESS,
    combined with the reference's own, sd / sqrt(n_draws)), the sd ratio and the ESS.
    """
    from numpyro.diagnostics import effective_sample_size

    rows = []
    for parameter, ref in case.reference.items():
        draws = _draws_of(samples, parameter)
        ess = float(effective_sample_size(draws))
        sd = float(draws.std())
        mcse = np.hypot(sd / np.sqrt(ess), ref["sd"] / np.sqrt(ref["n_draws"]))
        rows.append(
            {
                "parameter": parameter,
                "mean": float(draws.mean()),
                "reference_mean": ref["mean"],
                "z": (float(draws.mean()) - ref["mean"]) / mcse,
                "sd_ratio": sd / ref["sd"],
                "ess": ess,
            }
        )
    return rows
