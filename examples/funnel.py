"""Neal's funnel: NUTS against Langevin with constant and position-dependent mobilities.

The funnel (Neal 2003) is v ~ N(0, 3^2), x_i | v ~ N(0, e^v), i = 1..9, sampled on its own
(centred) coordinates. Its scale changes by orders of magnitude with v: in the neck (v < -4) the
x_i have standard deviations below 0.1, in the mouth (v > 4) above 7. No constant
preconditioner fits both, and samplers that adapt one (NUTS's diagonal mass matrix, Langevin with
an adapted constant mobility) either diverge or never enter the neck, which biases the lower
quantiles of v upwards. Position-dependent mobilities K(x) rescale the step where the chain is.

Every sampler gets the same number of gradient evaluations in its sampling phase: NUTS is run
first and its total number of leapfrog steps (one gradient each) sets the number of Langevin
steps per chain. Built-ins that use the Hessian cost more than one gradient per step (see
``numpyro_langevin.mobilities``); ESS per second shows that cost. For each sampler we print the
number of divergences, the mean of v and its 5% quantile with Monte Carlo standard errors
(truth: 0 and -4.935), and the bulk ESS of v per 1,000 gradients and per second, and save a PNG
of v against x_1 per sampler.

Usage::

    python examples/funnel.py            # 4 chains x 2000 NUTS draws (a few minutes on a CPU)
    python examples/funnel.py --quick    # seconds: smoke test
"""

from __future__ import annotations

import argparse
import pathlib
import time

V_SCALE = 3.0
TRUE_Q05 = -4.934560880854417  # 3 * Phi^{-1}(0.05)


def model(dim: int = 9):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    v = numpyro.sample("v", dist.Normal(0.0, V_SCALE))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([dim]))


def summarise(name, v, x1, grads, seconds, divergences):
    """Print and return the row of one sampler; ``v``, ``x1`` have shape (chains, draws)."""
    import arviz as az
    import numpy as np

    v, x1 = np.asarray(v, dtype=np.float64), np.asarray(x1, dtype=np.float64)
    mean = float(v.mean())
    mcse_mean = float(az.mcse(v, method="mean"))
    q05 = float(np.quantile(v, 0.05))
    mcse_q05 = float(az.mcse(v, method="quantile", prob=0.05))
    ess = float(az.ess(v, method="bulk"))
    row = dict(
        name=name,
        divergences=int(divergences),
        mean=mean,
        mcse_mean=mcse_mean,
        z_mean=mean / mcse_mean,
        q05=q05,
        mcse_q05=mcse_q05,
        z_q05=(q05 - TRUE_Q05) / mcse_q05,
        ess=ess,
        ess_per_kgrad=1000.0 * ess / grads,
        ess_per_s=ess / seconds,
        grads=grads,
        seconds=seconds,
        v=np.asarray(v).ravel(),
        x1=np.asarray(x1).ravel(),
    )
    print(
        f"{name:<28} div {row['divergences']:>5}  mean(v) {mean:+.3f} ± {mcse_mean:.3f} "
        f"(z {row['z_mean']:+.1f})  q05(v) {q05:+.3f} ± {mcse_q05:.3f} (z {row['z_q05']:+.1f})  "
        f"ESS(v) {ess:7.1f}  /1k grads {row['ess_per_kgrad']:6.2f}  /s {row['ess_per_s']:7.2f}"
        f"  [{grads:.3g} grads, {seconds:.1f} s]",
        flush=True,
    )
    return row


def run_nuts(args):
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(model, dense_mass=False),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(args.seed), extra_fields=("num_steps", "diverging"))
    seconds = time.perf_counter() - start
    samples = mcmc.get_samples(group_by_chain=True)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    grads = float(np.sum(extra["num_steps"]))
    divergences = np.sum(extra["diverging"])
    row = summarise(
        "NUTS (diag mass)", samples["v"], samples["x"][..., 0], grads, seconds, divergences
    )
    return row, grads


def run_langevin(name, kernel, args, steps_per_chain, thin):
    import jax
    import numpy as np
    from numpyro.infer import MCMC

    mcmc = MCMC(
        kernel,
        num_warmup=args.langevin_warmup,
        num_samples=steps_per_chain,
        num_chains=args.num_chains,
        thinning=thin,
        chain_method="vectorized",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(args.seed + 1))
    seconds = time.perf_counter() - start
    samples = mcmc.get_samples(group_by_chain=True)
    divergences = np.sum(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    grads = float(steps_per_chain * args.num_chains)
    return summarise(name, samples["v"], samples["x"][..., 0], grads, seconds, divergences)


def langevin_variants(args):
    from numpyro_langevin import Langevin, mobilities

    return {
        "Langevin, Welford constant": Langevin(model),
        "Langevin, Fisher constant": Langevin(model, adapt_mobility="fisher"),
        "Langevin, funnel Fisher K(x)": Langevin(model, mobility=mobilities.funnel_fisher()),
        "Langevin, diag SoftAbs K(x)": Langevin(
            model, mobility=mobilities.DiagonalSoftAbsHessian(args.alpha_diagonal)
        ),
        "Langevin, SoftAbs K(x)": Langevin(
            model, mobility=mobilities.SoftAbsHessian(args.alpha_softabs)
        ),
        "Langevin, Monge K(x)": Langevin(
            model, mobility=mobilities.GradientOuterProduct(args.alpha_monge)
        ),
    }


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = 4
    nrows = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.4 * nrows), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    for ax, row in zip(axes, rows, strict=False):
        keep = np.linspace(0, row["v"].size - 1, min(row["v"].size, 4000)).astype(int)
        ax.scatter(row["x1"][keep], row["v"][keep], s=2, alpha=0.3)
        ax.axhline(TRUE_Q05, color="k", lw=0.8, ls="--")
        ax.set_xlim(-20, 20)
        ax.set_ylim(-10, 10)
        ax.set_title(
            f"{row['name']}\nq05 {row['q05']:+.2f}±{row['mcse_q05']:.2f}, div {row['divergences']}",
            fontsize=9,
        )
        ax.set_xlabel("x1")
    for ax in axes[len(rows) :]:
        ax.axis("off")
    axes[0].set_ylabel("v")
    fig.suptitle("Neal's funnel: v against x1 (dashed: true 5% quantile of v)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--num-warmup", type=int, default=1000, help="NUTS warmup draws")
    parser.add_argument("--num-samples", type=int, default=2000, help="NUTS draws per chain")
    parser.add_argument("--langevin-warmup", type=int, default=5000, help="Langevin warmup steps")
    parser.add_argument(
        "--budget-factor",
        type=float,
        default=1.0,
        help="Langevin sampling gradients as a multiple of NUTS's",
    )
    parser.add_argument("--max-draws", type=int, default=4000, help="kept draws per chain")
    parser.add_argument("--alpha-softabs", type=float, default=1e6)
    parser.add_argument("--alpha-diagonal", type=float, default=1e6)
    parser.add_argument("--alpha-monge", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float32", action="store_true", help="single precision (default x64)")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of sampler names")
    parser.add_argument("--quick", action="store_true", help="smoke test (seconds)")
    parser.add_argument(
        "--output-dir", type=pathlib.Path, default=pathlib.Path(__file__).parent / "output"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.num_chains, args.num_warmup, args.num_samples = 2, 50, 50
        args.langevin_warmup, args.max_draws = 100, 100
        if args.only is None:  # compilation dominates: smoke-test two Langevin variants
            args.only = ["Welford", "funnel Fisher"]

    import numpyro

    if not args.float32:
        numpyro.enable_x64()
    numpyro.set_host_device_count(1)

    rows = []
    nuts_row, nuts_grads = run_nuts(args)
    rows.append(nuts_row)
    steps = max(int(args.budget_factor * nuts_grads / args.num_chains), 1)
    thin = max(1, steps // args.max_draws)
    steps = thin * max(steps // thin, 1)
    print(f"Langevin: {steps} sampling steps per chain (thinned by {thin}) = NUTS's gradients")
    for name, kernel in langevin_variants(args).items():
        if args.only and not any(s in name for s in args.only):
            continue
        rows.append(run_langevin(name, kernel, args, steps, thin))
    path = args.output_dir / "funnel.png"
    plot(rows, path)
    print(f"saved {path}")
    return rows


if __name__ == "__main__":
    main()
