"""Learning a linear Hopfield network on digits reaches the closed-form PPCA optimum.

With identity Lagrangians the continuous Hopfield energy
E(v, h) = |v|^2/2 - I.v + |h|^2/2 - v^T U h at temperature T is exactly probabilistic PCA
(Tipping & Bishop 1999) with sigma^2 = T and W = sqrt(T) V, where U = V (1 + V^T V)^(-1/2)
(see ``numpyro_langevin.hopfield``). Its maximum-likelihood parameters are known in closed form,
so this script checks the learning loop end to end: ``RecallLearn`` with the negative phase
(persistent contrastive divergence) on the NumPyro form of the model (``Hopfield.model``), from
a random start, T learned, on the 1,437 training digits (X/16, stratified 80/20 split,
random_state=0), compared with the exact optimum.

Settings that matter: every digit is a chain of its own (``block_plate="data"``: one
Metropolis test per digit, so the step size does not shrink with the data set); the positive
phase moves h | v with the Hopfield mobility K = (d^2 L)^-1 (``Hopfield.recall_mobility``);
the negative phase uses the inverse of the mean Hessian of E/T as a constant mobility
(``PhaseMobility(Hopfield.curvature_mobility)``), so that the joint's slow mode (rate 1 - |U|
under the Hopfield dynamics, about 60 time units here) relaxes as fast as the others, with 40
Langevin steps per update; Adam at 0.03, divided by 3 at 60% and again at 85% of the updates.

Outputs: the exact log-likelihood per digit of the learned and of the optimal parameters, and
``examples/output/hopfield_ppca.png`` (log-likelihood and T along the run).

Run ``python examples/hopfield_ppca.py`` (about 2 minutes on 2 CPU cores) or with ``--quick``.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer.initialization import init_to_uniform
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from numpyro_langevin import RecallLearn
from numpyro_langevin import hopfield as hf
from numpyro_langevin.em import PhaseMobility
from numpyro_langevin.hopfield import closed_form as cf

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
    parser.add_argument("--joint-recall-steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.updates, args.joint_recall_steps = 20, 5
    args.output_dir.mkdir(parents=True, exist_ok=True)

    x, y = load_digits(return_X_y=True)
    train, _, _, _ = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    q = args.components
    ppca = cf.ppca_mle(train, q)
    optimum = cf.ppca_log_likelihood(ppca, train)
    print(f"PPCA-{q} closed form: {optimum:.4f} nats per digit, sigma^2 = {ppca.sigma2:.5f}")

    model = hf.Hopfield(
        64,
        q,
        hf.identity(),
        hf.identity(),
        temperature=0.1,
        learn_temperature=True,
        init_scale=0.05,
    )
    n = args.updates
    schedule = optax.piecewise_constant_schedule(
        args.lr, {int(0.6 * n): 1 / 3, int(0.85 * n): 1 / 3}
    )
    em = RecallLearn(
        model.model,
        optax.adam(schedule),
        num_particles=1,
        recall_steps=5,
        negative_phase=True,
        num_joint_particles=1,
        joint_recall_steps=args.joint_recall_steps,
        step_size=0.1,
        mobility=model.recall_mobility,
        joint_mobility=PhaseMobility(model.curvature_mobility),
        block_plate="data",
        init_strategy=init_to_uniform(radius=0.1),
    )
    data = jnp.asarray(train, jnp.float32)
    trace, t0 = [], time.time()
    state = em.init(jax.random.PRNGKey(0), data)
    chunk, done = max(n // 20, 1), 0
    while done < n:
        m = min(chunk, n - done)
        state = em.run(None, m, data, init_state=state, progress_bar=False).state
        done += m
        params = em.get_params(state)
        ll = exact_log_likelihood(model, params, train)
        t = float(params["temperature"])
        trace.append((done, ll, t))
        print(f"  update {done:5d}  log-likelihood {ll:8.4f}  T {t:.5f}  {time.time() - t0:.0f} s")
    params = em.get_params(state)
    learned = exact_log_likelihood(model, params, train)
    gap = 100 * (optimum - learned) / abs(optimum)
    print(
        f"learned: {learned:.4f} nats per digit, T = "
        f"{float(params['temperature']):.5f}; gap to the optimum {gap:.2f}%"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, lls, ts = np.array(trace).T
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(steps, lls, "o-", label="Recall and Learn")
    a.axhline(optimum, color="k", ls="--", label="closed-form optimum")
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
