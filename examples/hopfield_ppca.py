"""Learning a linear Hopfield network on digits reaches the closed-form PPCA optimum.

With identity Lagrangians the continuous Hopfield energy
E(v, h) = |v|^2/2 - I.v + |h|^2/2 - v^T U h at temperature T is exactly probabilistic PCA
(Tipping & Bishop 1999) with sigma^2 = T and W = sqrt(T) V, where U = V (1 + V^T V)^(-1/2)
(see ``numpyro_langevin.hopfield``). Its maximum-likelihood parameters are known in closed form,
so this script checks the learning loop end to end: persistent contrastive divergence
(``numpyro_langevin.hopfield.learn.PCD``) from a random start, T learned, on the 1,437 training
digits (X/16, stratified 80/20 split, random_state=0), compared with the exact optimum.

Settings that matter (measured, see the PCD docstring): the negative phase uses the inverse of
the mean Hessian of E as its mobility (``joint_mobility="curvature"``), so that the joint's slow
mode (rate 1 - |U| under the Hopfield dynamics, about 60 time units here) relaxes as fast as the
others, with 40 Langevin steps per update; Adam at 0.03, then 0.01 with Polyak averaging of the
parameters over the last 40% of the updates.

Outputs: the exact log-likelihood per digit of the learned and of the optimal parameters, and
``examples/output/hopfield_ppca.png`` (log-likelihood and T along the run).

Run ``python examples/hopfield_ppca.py`` (about 4 minutes on 2 CPU cores) or with ``--quick``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from numpyro_langevin import hopfield as hf
from numpyro_langevin.hopfield import closed_form as cf
from numpyro_langevin.hopfield.learn import PCD, _to_constrained

OUTPUT = pathlib.Path(__file__).resolve().parent / "output"


def exact_log_likelihood(model, params, data):
    """Exact mean log-likelihood per digit of constrained parameters (V, I, temperature)."""
    params = model.resolve(params)
    return cf.linear_hopfield_log_likelihood({k: np.asarray(v) for k, v in params.items()}, data)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test (CI)")
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--joint-particles", type=int, default=1000)
    parser.add_argument("--joint-recall-steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument(
        "--joint-mobility", choices=["curvature", "ensemble", "hopfield"], default="curvature"
    )
    parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.updates, args.joint_particles, args.joint_recall_steps = 20, 100, 5
    args.output_dir.mkdir(parents=True, exist_ok=True)

    x, y = load_digits(return_X_y=True)
    train, _, _, _ = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    q = args.components
    ppca = cf.ppca_mle(train, q)
    optimum = cf.ppca_log_likelihood(ppca, train)
    print(f"PPCA-{q} closed form: {optimum:.4f} nats per digit, sigma^2 = {ppca.sigma2:.5f}")

    model = hf.Hopfield(
        64, q, hf.identity(), hf.identity(), temperature=0.1, learn_temperature=True
    )
    switch = int(0.6 * args.updates)
    pcd = PCD(
        model,
        optax.adam(optax.piecewise_constant_schedule(args.lr, {switch: 1 / 3})),
        num_joint_particles=args.joint_particles,
        recall_steps=3,
        joint_recall_steps=args.joint_recall_steps,
        joint_mobility=args.joint_mobility,
        average_from=switch,
    )
    trace, t0 = [], time.time()

    def progress(i, state, loss):
        ll = exact_log_likelihood(model, _to_constrained(state.params), train)
        t = float(jnp.exp(state.params["log_temperature"]))
        trace.append((i, ll, t))
        print(f"  update {i:5d}  log-likelihood {ll:8.4f}  T {t:.5f}  {time.time() - t0:.0f} s")

    result = pcd.run(
        jax.random.PRNGKey(0),
        args.updates,
        jnp.asarray(train, jnp.float32),
        chunk=max(args.updates // 20, 1),
        callback=progress,
    )
    learned = exact_log_likelihood(model, result.params, train)
    gap = 100 * (optimum - learned) / abs(optimum)
    print(
        f"learned (averaged): {learned:.4f} nats per digit, T = "
        f"{float(result.params['temperature']):.5f}; gap to the optimum {gap:.2f}%"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, lls, ts = np.array(trace).T
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(steps, lls, "o-", label="PCD (current parameters)")
    a.axhline(optimum, color="k", ls="--", label="closed-form optimum")
    a.axhline(learned, color="C1", ls=":", label="PCD (averaged)")
    a.set_ylim(min(optimum - 10, np.max(lls) - 10), optimum + 1)
    a.set_xlabel("update")
    a.set_ylabel("log-likelihood per digit (nats)")
    a.legend(fontsize=7)
    b.semilogy(steps, ts, "o-")
    b.axhline(ppca.sigma2, color="k", ls="--")
    b.set_xlabel("update")
    b.set_ylabel("T (dashed: PPCA sigma^2)")
    fig.tight_layout()
    path = args.output_dir / "hopfield_ppca.png"
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
    return {"optimum": optimum, "learned": learned, "gap_percent": gap}


if __name__ == "__main__":
    main()
