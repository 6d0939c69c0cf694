r"""Benchmark targets: NumPyro models with reference moments where one exists.

Each :class:`Target` holds a model, its keyword arguments (data, converted once to NumPy arrays so
that ``MCMC``'s jit cache, keyed by the arrays' identities, hits on a second ``run``) and, where
known, a reference ``{parameter: (mean, sd)}`` for the mean-error metric. Parameters are named
``site`` or ``site[i]`` (1-based, as in posteriordb).

* ``gaussian_100d`` — :math:`x_i \sim N(0, \sigma_i^2)`, :math:`\sigma_i` log-spaced from 0.1 to 10
  (condition number :math:`10^4`); reference analytic.
* ``funnel_10d`` — Neal's funnel (Neal 2003): :math:`v \sim N(0, 3^2)`,
  :math:`x_i \mid v \sim N(0, e^{v})`, :math:`i = 1..9`; reference analytic: :math:`v` has mean 0
  and sd 3, each :math:`x_i` mean 0 and sd :math:`\sqrt{E[e^v]} = e^{9/4}`.
* ``logistic_breast_cancer`` — logistic regression on scikit-learn's breast-cancer data
  (569 x 30, standardised features, an intercept, :math:`N(0, 1)` priors); no reference.
* ``eight_schools_noncentered`` / ``eight_schools_centered`` — Rubin (1981); the same posterior in
  two parametrisations, both checked against the posteriordb reference for ``mu``, ``tau`` and
  ``theta``.
* ``kidiq``, ``sblrc_blr``, ``arK`` — the other posteriordb references
  (:mod:`numpyro_langevin.posteriordb`).
"""

from __future__ import annotations

import math
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from numpyro_langevin import posteriordb

__all__ = ["Target", "default_posteriordb_dir", "build_targets", "draws_of"]

#: Where the posteriordb reference files live in a checkout: ``<repo>/../shared/posteriordb``.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def default_posteriordb_dir() -> pathlib.Path:
    """``../shared/posteriordb`` relative to the repository root."""
    return REPO_ROOT.parent / "shared" / "posteriordb"


@dataclass
class Target:
    """A posterior to sample.

    Attributes
    ----------
    name
        Short identifier used in the tables.
    model
        NumPyro model, called as ``model(**kwargs)``.
    kwargs
        Its keyword arguments (NumPy arrays, built once).
    dim
        Dimension of the unconstrained space.
    reference
        ``{parameter: (mean, sd)}`` or ``None`` when no reference exists.
    position_dependent
        ``{label: mobility}`` of built-in position-dependent mobilities that fit this target.
    """

    name: str
    model: Callable
    kwargs: dict
    dim: int
    reference: dict[str, tuple[float, float]] | None = None
    position_dependent: dict[str, Callable] = field(default_factory=dict)


def draws_of(samples: dict, parameter: str) -> np.ndarray:
    """Draws ``(chains, draws)`` of ``site`` or ``site[i]`` (1-based) from grouped samples."""
    match = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", parameter)
    site, index = match.group(1), match.group(2)
    values = np.asarray(samples[site])
    return values if index is None else values[..., int(index) - 1]


# ---------------------------------------------------------------------- models


def gaussian(scales):
    """Independent Gaussian with standard deviations ``scales``."""
    numpyro.sample("x", dist.Normal(0.0, scales).to_event(1))


def funnel(n=9):
    """Neal's funnel: v ~ N(0, 3^2), x_i | v ~ N(0, e^v), i = 1..n."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2.0)).expand([n]).to_event(1))


def logistic_regression(X, y):
    """Bernoulli-logit regression with an intercept and N(0, 1) priors on all coefficients."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=alpha + X @ beta), obs=y)


def eight_schools_centered(J, y, sigma):
    """theta_j ~ N(mu, tau); y_j ~ N(theta_j, sigma_j) (the centred parametrisation)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


# ---------------------------------------------------------------------- builders


def _gaussian_target(d: int = 100) -> Target:
    scales = np.logspace(-1.0, 1.0, d)
    reference = {f"x[{i + 1}]": (0.0, float(s)) for i, s in enumerate(scales)}
    return Target(f"gaussian_{d}d", gaussian, {"scales": scales}, d, reference)


def _funnel_target(n: int = 9) -> Target:
    from numpyro_langevin import mobilities

    reference = {"v": (0.0, 3.0)}
    reference.update({f"x[{i + 1}]": (0.0, math.exp(9.0 / 4.0)) for i in range(n)})
    pd = {
        "funnel-Fisher": mobilities.funnel_fisher(),
        "DiagSoftAbs": mobilities.DiagonalSoftAbsHessian(),
    }
    return Target(f"funnel_{n + 1}d", funnel, {"n": n}, n + 1, reference, pd)


def _logistic_target() -> Target:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return Target(
        "logistic_breast_cancer",
        logistic_regression,
        {"X": np.asarray(X, dtype=float), "y": np.asarray(y, dtype=float)},
        X.shape[1] + 1,
    )


def _as_arrays(data: dict) -> dict:
    """posteriordb data (lists) as NumPy arrays; integer scalars stay Python ints."""
    return {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in data.items()}


def _reference(case: posteriordb.PosteriorCase) -> dict[str, tuple[float, float]]:
    return {k: (float(r["mean"]), float(r["sd"])) for k, r in case.reference.items()}


def _dim(case: posteriordb.PosteriorCase) -> int:
    return {
        "eight_schools-eight_schools_noncentered": 10,
        "kidiq-kidscore_momiq": 3,
        "sblrc-blr": 6,
        "arK-arK": 7,
    }[case.name]


_SHORT = {
    "eight_schools-eight_schools_noncentered": "eight_schools_noncentered",
    "kidiq-kidscore_momiq": "kidiq",
    "sblrc-blr": "sblrc_blr",
    "arK-arK": "arK",
}


def _posteriordb_targets(directory: pathlib.Path) -> list[Target]:
    from numpyro_langevin import mobilities

    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise FileNotFoundError(
            f"No posteriordb reference files in {directory}; pass --posteriordb DIR."
        )
    out = []
    for path in paths:
        case = posteriordb.load(path)
        data = _as_arrays(case.data)
        if case.name == "kidiq-kidscore_momiq":
            data = {k: data[k] for k in ("N", "kid_score", "mom_iq")}
        reference = _reference(case)
        out.append(Target(_SHORT[case.name], case.model, data, _dim(case), reference))
        if case.name == "eight_schools-eight_schools_noncentered":
            out.append(
                Target(
                    "eight_schools_centered",
                    eight_schools_centered,
                    {k: data[k] for k in ("J", "y", "sigma")},
                    10,
                    reference,
                    {"DiagSoftAbs": mobilities.DiagonalSoftAbsHessian()},
                )
            )
    return out


def build_targets(posteriordb_dir: pathlib.Path | None = None) -> list[Target]:
    """All benchmark targets, in table order."""
    directory = default_posteriordb_dir() if posteriordb_dir is None else posteriordb_dir
    pdb = {t.name: t for t in _posteriordb_targets(pathlib.Path(directory))}
    order = ["eight_schools_noncentered", "eight_schools_centered", "kidiq", "sblrc_blr", "arK"]
    return [_gaussian_target(), _funnel_target(), _logistic_target()] + [
        pdb[name] for name in order if name in pdb
    ]
