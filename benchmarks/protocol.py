r"""One protocol for every sampler: fresh and repeated runs, two clocks, interleaved repetitions.

For each (target, sampler) a :class:`Runner` is built once. Its first run is *fresh*: a new
kernel and a new ``MCMC`` object; its wall time, tracing and XLA compilation included, is the
**time to result** a user waits. Later runs build a new kernel and ``MCMC`` object again (reusing
one breaks NumPyro's NUTS and HMC in vectorized mode on a second ``run``) and run them with the
same data and a new key. NumPyro 0.22 on JAX 0.10 re-lowers and recompiles its sampling loop on
*every* ``run`` anyway (and, with ``chain_method="sequential"``, for every chain), because
``fori_collect`` wraps its body in a new ``jit`` each call; ``run.py`` therefore turns on JAX's
persistent compilation cache (in a fresh temporary directory, so the first run still compiles)
and the repeated runs load the executable instead of compiling it. The **sampling time** of a run is
its wall time minus the time JAX spent tracing, lowering and compiling or loading executables
(:mod:`benchmarks.clock`): warmup plus sampling plus the Python work of the driver (``init``,
which re-runs ``initialize_model``, and collection). ESS/s is the min bulk-ESS of a repeated run
over its sampling time. Repetitions are interleaved (repetition, then target, then sampler) so
that slow drifts of the machine hit every sampler alike; tables report medians.

Gradient counts are those of the sampling phase (warmup excluded): one per iteration for the
Langevin kernels, BarkerMH, one-step HMC and MALA; the sum of ``num_steps`` for NUTS. A
position-dependent mobility costs more than a gradient per step (see
:mod:`numpyro_langevin.mobilities`); ESS/s accounts for it, ESS per gradient does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from numpyro.infer import MCMC

from benchmarks import metrics
from benchmarks.blackjax_mala import BlackJAXMALA
from benchmarks.clock import timed
from benchmarks.samplers import SamplerSpec
from benchmarks.targets import Target

__all__ = ["Config", "Runner", "RunRecord"]


@dataclass
class Config:
    """Chains, warmup and draws shared by every sampler in one regime."""

    num_chains: int = 4
    num_warmup: int = 1000
    num_samples: int = 1000
    chain_method: str = "parallel"

    @property
    def vectorized(self) -> bool:
        return self.chain_method == "vectorized"


@dataclass
class RunRecord:
    """Wall time and metrics of one run."""

    seconds: float
    sampling: float
    fresh: bool
    gradients: float
    divergences: int | None
    quality: dict


class Runner:
    """Runs one sampler on one target, fresh the first time and cached afterwards."""

    def __init__(self, target: Target, spec: SamplerSpec, config: Config) -> None:
        self.target, self.spec, self.config = target, spec, config
        self._mcmc = None
        self._blackjax = None
        self.runs = 0

    def _new(self) -> None:
        c = self.config
        if self.spec.build is None:
            self._blackjax = BlackJAXMALA(
                self.target, c.num_warmup, c.num_samples, c.num_chains, c.chain_method
            )
        else:
            self._mcmc = MCMC(
                self.spec.build(self.target.model),
                num_warmup=c.num_warmup,
                num_samples=c.num_samples,
                num_chains=c.num_chains,
                chain_method=c.chain_method,
                progress_bar=False,
            )

    def run(self, rng_key: jax.Array) -> RunRecord:
        """One run; the first builds everything (time to result), later ones reuse it."""
        fresh = self.runs == 0
        with timed() as clock:
            if fresh or self._blackjax is None:
                self._new()
            if self._blackjax is not None:
                samples = self._blackjax.run(rng_key)
                fields = {}
            else:
                extra = ("num_steps",) if self.spec.gradients == "num_steps" else ()
                self._mcmc.run(rng_key, extra_fields=extra, **self.target.kwargs)
                samples = jax.block_until_ready(self._mcmc.get_samples(group_by_chain=True))
                fields = self._mcmc.get_extra_fields(group_by_chain=True)
        self.runs += 1
        c = self.config
        if self.spec.gradients == "num_steps":
            gradients = float(np.sum(np.asarray(fields["num_steps"])))
        else:
            gradients = float(c.num_chains * c.num_samples)
        divergences = (
            int(np.sum(np.asarray(fields["diverging"]))) if "diverging" in fields else None
        )
        return RunRecord(
            clock.wall,
            clock.sampling,
            fresh,
            gradients,
            divergences,
            metrics.quality(self.target, samples),
        )


def summarize(records: list[RunRecord]) -> dict:
    """Medians over runs: time to result from the fresh runs, everything else from cached ones
    (from the fresh runs only when there are no cached runs)."""
    fresh = [r for r in records if r.fresh]
    cached = [r for r in records if not r.fresh] or fresh
    q = [r.quality for r in cached]

    def med(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    out = {
        "min_ess": med([x["min_ess"] for x in q]),
        "ess_per_s": med([x["min_ess"] / r.sampling for x, r in zip(q, cached, strict=True)]),
        "ess_per_grad": med([x["min_ess"] / r.gradients for x, r in zip(q, cached, strict=True)]),
        "max_err_sd": med([x["max_err_sd"] for x in q]),
        "divergences": med([r.divergences for r in cached]),
        "max_err_mcse": med([x["max_err_mcse"] for x in q]),
        "sampling_s": med([r.sampling for r in cached]),
        "rerun_s": med([r.seconds for r in cached]),
        "time_to_result_s": med([r.seconds for r in fresh]),
        "ess_per_s_to_result": med(
            [
                x["min_ess"] / r.seconds
                for x, r in zip([r.quality for r in fresh], fresh, strict=True)
            ]
        ),
        "gradients": med([r.gradients for r in cached]),
        "runs": len(records),
    }
    for key in ("v_mean", "v_q05"):
        if key in q[0]:
            out[key] = med([x[key] for x in q])
    if out["divergences"] is not None:
        out["divergences"] = int(round(out["divergences"]))
    return out
