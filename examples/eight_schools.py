"""Eight schools: Langevin and NUTS side by side.

The classic hierarchical model of Rubin (1981) on the SAT coaching data, in its non-centred
form: theta_j = mu + tau * theta_trans_j, y_j ~ N(theta_j, sigma_j). Both samplers are run with
their default adaptation on the same number of chains; the script prints the ArviZ summary of
each, the minimum bulk ESS per second of wall time (compilation included: what a user waits), and
saves a trace plot.

A Langevin step costs one gradient, a NUTS iteration tens of them, so Langevin makes several
steps per stored draw (``steps_per_sample``, run inside one compiled call, which also amortises
the per-iteration cost of NumPyro's driver): by default 10, so both samplers store 4 chains x
(1000 warmup + 2000) draws, at 10 gradients per draw for Langevin and ~15 for NUTS.

    python examples/eight_schools.py            # the default run
    python examples/eight_schools.py --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import pathlib
import time

import arviz as az
import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from numpyro_langevin import Langevin  # noqa: E402
from numpyro_langevin.posteriordb import eight_schools_noncentered  # noqa: E402

DATA = {
    "J": 8,
    "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
    "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0],
}
VAR_NAMES = ["mu", "tau", "theta"]


def run(kernel, args) -> tuple[az.InferenceData, float]:
    mcmc = MCMC(
        kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        chain_method="vectorized",
        progress_bar=not args.quick,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(args.seed), **DATA)
    jax.block_until_ready(mcmc.get_samples())
    seconds = time.perf_counter() - start
    return az.from_numpyro(mcmc, log_likelihood=True), seconds


def min_ess(idata) -> float:
    ess = az.ess(idata, var_names=VAR_NAMES, method="bulk")
    return float(min(np.min(np.asarray(ess[name])) for name in VAR_NAMES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps-per-sample", type=int, default=10, help="Langevin steps per stored draw"
    )
    parser.add_argument(
        "--output-dir", type=pathlib.Path, default=pathlib.Path(__file__).parent / "output"
    )
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
    args = parser.parse_args()
    if args.quick:
        args.num_warmup, args.num_samples, args.num_chains = 200, 200, 2
        args.steps_per_sample = 2
    numpyro.set_host_device_count(1)

    results = {}
    langevin = Langevin(eight_schools_noncentered, steps_per_sample=args.steps_per_sample)
    for name, kernel in (("Langevin", langevin), ("NUTS", NUTS(eight_schools_noncentered))):
        idata, seconds = run(kernel, args)
        ess = min_ess(idata)
        results[name] = (idata, seconds, ess)
        print(
            f"\n=== {name}: {seconds:.1f} s, min bulk ESS {ess:.0f}, "
            f"min ESS/s {ess / seconds:.1f}, divergences "
            f"{int(idata['sample_stats']['diverging'].sum())}"
        )
        print(az.summary(idata, var_names=VAR_NAMES).to_string())

    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / "eight_schools_trace.png"
    fig, axes = plt.subplots(2, 2, figsize=(11, 6), constrained_layout=True)
    for row, (name, (idata, _, _)) in enumerate(results.items()):
        post = idata["posterior"]
        for col, var in enumerate(("mu", "tau")):
            values = np.asarray(post[var])
            for chain in values:
                axes[row, col].plot(chain, lw=0.4, alpha=0.8)
            axes[row, col].set_title(f"{name}: {var}")
            axes[row, col].set_xlabel("draw")
    fig.suptitle("Eight schools (non-centred): trace of mu and tau per chain")
    fig.savefig(path, dpi=110)
    print(f"\nSaved trace plot to {path}")


if __name__ == "__main__":
    main()
