r"""Quality metrics of one run: ESS, mean error against the reference, divergences.

* ``min_ess`` — the smallest bulk effective sample size (rank-normalised split-:math:`\hat R`
  ESS of Vehtari et al. 2021, ``arviz.ess(method="bulk")``) over every scalar component of every
  sampled and deterministic site, chains pooled.
* ``max_err_sd`` — :math:`\max_p |\bar\theta_p - \mu_p| / \sigma_p` over the reference
  parameters (reference mean :math:`\mu_p` and sd :math:`\sigma_p`); ``None`` without one.
* ``max_err_mcse`` — the same error in Monte Carlo standard errors,
  :math:`\mathrm{MCSE}_p = \sqrt{s_p^2/\mathrm{ESS}_p + \sigma_p^2/n_\mathrm{ref}}` (the second
  term only for posteriordb references, :math:`n_\mathrm{ref} = 10^4`): a value above ~4 is bias,
  not noise.
"""

from __future__ import annotations

import arviz as az
import numpy as np

from benchmarks.targets import Target, draws_of

__all__ = ["quality", "REFERENCE_DRAWS"]

#: posteriordb references come from 10,000 near-independent draws.
REFERENCE_DRAWS = 10_000


def _bulk_ess(draws: np.ndarray) -> np.ndarray:
    """Bulk ESS of every component of ``draws`` (chains, draws, ...)."""
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1)
    dataset = az.convert_to_dataset({"v": flat})
    return np.asarray(az.ess(dataset, method="bulk")["v"].values).ravel()


def quality(target: Target, samples: dict) -> dict:
    """Metrics of grouped-by-chain constrained ``samples`` ``{site: (chains, draws, ...)}``."""
    arrays = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    ess = np.concatenate([_bulk_ess(v) for v in arrays.values()])
    out = {"min_ess": float(np.nanmin(ess)), "max_err_sd": None, "max_err_mcse": None}
    if target.reference:
        errors, zs = [], []
        n_ref = None if target.name.startswith(("gaussian", "funnel")) else REFERENCE_DRAWS
        for parameter, (mean, sd) in target.reference.items():
            draws = draws_of(arrays, parameter)
            err = abs(float(draws.mean()) - mean)
            ess_p = float(_bulk_ess(draws[..., None])[0])
            mcse2 = draws.var() / max(ess_p, 1.0) + (sd**2 / n_ref if n_ref else 0.0)
            errors.append(err / sd)
            zs.append(err / np.sqrt(mcse2))
        out["max_err_sd"] = float(max(errors))
        out["max_err_mcse"] = float(max(zs))
    if target.name.startswith("funnel"):
        v = arrays["v"]
        out["v_mean"] = float(v.mean())
        out["v_q05"] = float(np.quantile(v, 0.05))
    return out
