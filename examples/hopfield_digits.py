"""Continuous Hopfield network on scikit-learn digits: learn, then complete masked digits.

A Hopfield network with 64 linear visible neurons and 50 leaky-ReLU hidden neurons (energy
E(v, h) of Krotov & Hopfield 2021, see ``numpyro_langevin.hopfield``) is learned by maximum
likelihood of exp(-E/T) with ``RecallLearn`` and its negative phase (persistent contrastive
divergence) on the NumPyro form of the model, ``Hopfield.model``: Langevin recall of the hidden
units of every training digit (positive phase, Hopfield mobility K = (d^2 L)^-1, whose gradient
flow is the classic Hopfield dynamics) and Langevin samples of the joint (negative phase, started
at the data, with the inverse of the mean Hessian of E/T as a constant mobility so that every
mode of the joint relaxes at the same rate). Every digit is a chain of its own with its own
Metropolis test (``block_plate="data"``). The temperature T is learned too.

The held-out digits are then masked -- (a) a random 50% of the pixels, (b) the bottom half -- and
the masked pixels are filled by Langevin recall of the unclamped units (posterior mean; the
chains switch from the Hopfield mobility to the inverse Hessian at their position half-way
through burn-in, which mixes the slow mode of a coupling near |U| = 1). The MSE
on the masked pixels is compared with baselines computed here: the training mean, PPCA with 20
components (Gaussian conditional mean) and scikit-learn's BernoulliRBM (100 hidden units, clamped
Gibbs sampling).

Outputs (under ``examples/output/``): ``hopfield_digits.json`` with the MSEs, shaped
``{"hopfield": {"random50": ..., "bottom_half": ...}, "ppca20": {...}, "rbm": {...},
"mean_fill": {...}}``, ``hopfield_digits_recall.png`` (original / masked / recalled digits) and
``hopfield_digits_U.png`` (columns of the learned coupling U).

Run ``python examples/hopfield_digits.py`` (about 3.5 minutes on 2 CPU cores) or with
``--quick`` (a smoke test of about 45 seconds).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer.initialization import init_to_uniform
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM

from numpyro_langevin import RecallLearn
from numpyro_langevin import hopfield as hf
from numpyro_langevin.em import PhaseMobility
from numpyro_langevin.hopfield import closed_form as cf

OUTPUT = pathlib.Path(__file__).resolve().parent / "output"


def load():
    x, y = load_digits(return_X_y=True)
    x_train, x_test, _, _ = train_test_split(
        x / 16.0, y, test_size=0.2, random_state=0, stratify=y
    )
    return x_train.astype(np.float32), x_test.astype(np.float32)


def make_masks(x_test):
    rng = np.random.default_rng(0)
    random50 = rng.random(x_test.shape) < 0.5
    bottom = np.zeros(x_test.shape, dtype=bool)
    bottom[:, 32:] = True  # rows 4-7 of the 8x8 image
    return {"random50": random50, "bottom_half": bottom}


def masked_mse(filled, x, mask):
    return float(np.mean((filled[mask] - x[mask]) ** 2))


# ---------------------------------------------------------------- baselines


def mean_fill(x_train, x, mask):
    return np.where(mask, x_train.mean(0), x)


def ppca_fill(x_train, x, mask, k=20):
    ppca = cf.ppca_mle(x_train, k)
    cov = ppca.W @ ppca.W.T + ppca.sigma2 * np.eye(x.shape[1])
    out = x.astype(np.float64).copy()
    for i, (row, m) in enumerate(zip(x, mask, strict=True)):
        o = ~m
        gain = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
        out[i, m] = ppca.mu[m] + gain @ (row[o] - ppca.mu[o])
    return out


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def fit_rbm(x_train, num_iter, seed=0):
    """scikit-learn's BernoulliRBM: 100 hidden units, persistent CD."""
    rbm = BernoulliRBM(
        n_components=100, learning_rate=0.06, batch_size=10, n_iter=num_iter, random_state=seed
    )
    return rbm.fit(x_train)


def rbm_fill(rbm, x_train, x, mask, sweeps=200, burn=50, seed=0):
    """Clamped Gibbs sampling; the fill is the average of p(v_m = 1 | h) over the sweeps after
    burn-in."""
    rng = np.random.default_rng(seed)
    w, b_h, b_v = rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_
    v = np.where(mask, x_train.mean(0), x)
    total = np.zeros_like(v, dtype=np.float64)
    for s in range(sweeps):
        h = rng.random((x.shape[0], w.shape[0])) < sigmoid(v @ w.T + b_h)
        p_v = sigmoid(h @ w + b_v)
        v = np.where(mask, rng.random(p_v.shape) < p_v, x).astype(np.float64)
        if s >= burn:
            total += p_v
    return np.where(mask, total / (sweeps - burn), x)


# ---------------------------------------------------------------- Hopfield


def train_hopfield(x_train, args):
    """Recall and Learn with the negative phase: one chain (and Metropolis test) per digit."""
    model = hf.Hopfield(
        64,
        args.hidden,
        hf.identity(),
        hf.leaky_relu(args.slope),
        temperature=args.temperature,
        learn_temperature=True,
        init_scale=0.05,
    )
    schedule = optax.piecewise_constant_schedule(
        args.lr, {int(0.6 * args.steps): 1 / 3, int(0.85 * args.steps): 1 / 3}
    )
    em = RecallLearn(
        model.model,
        optax.adam(schedule),
        num_particles=1,
        recall_steps=args.recall_steps,
        negative_phase=True,
        num_joint_particles=1,
        joint_recall_steps=args.joint_recall_steps,
        step_size=0.1,
        mobility=model.recall_mobility,
        joint_mobility=PhaseMobility(model.curvature_mobility),
        block_plate="data",
        init_strategy=init_to_uniform(radius=0.1),
    )
    t0 = time.time()
    data = jnp.asarray(x_train)
    state = em.init(jax.random.PRNGKey(0), data)
    chunk = max(args.steps // 10, 1)
    done = 0
    while done < args.steps:
        m = min(chunk, args.steps - done)
        state = em.run(None, m, data, init_state=state, progress_bar=False).state
        done += m
        print(
            f"  update {done:5d}  T {float(em.get_params(state)['temperature']):.4f}  "
            f"acceptance {float(state.accept_prob):.2f} / {float(state.joint_accept_prob):.2f}"
            f"  {time.time() - t0:.0f} s",
            flush=True,
        )
    return model, em.get_params(state)


def hopfield_fill(model, params, x, mask, args, seed=1):
    out = hf.recall(
        jax.random.PRNGKey(seed),
        model,
        params,
        jnp.asarray(x),
        jnp.asarray(mask),
        method=args.recall_method,
        num_steps=args.recall_num_steps,
        num_chains=args.recall_chains,
        mobility=args.recall_mobility,
    )
    return np.asarray(out.visible)


# ---------------------------------------------------------------- figures


def save_figures(x_test, masks, fills, u):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("original", x_test)]
    for name, mask in masks.items():
        rows += [
            (f"masked ({name})", np.where(mask, np.nan, x_test)),
            (f"recalled ({name})", fills[name]),
        ]
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("tab:red")  # masked pixels
    n = 10
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0))
    for r, (title, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(8, 8), cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", fontsize=7)
    fig.suptitle("masked pixels in red; recalled = posterior mean", fontsize=8)
    fig.tight_layout()
    recall_path = OUTPUT / "hopfield_digits_recall.png"
    fig.savefig(recall_path, dpi=120)
    plt.close(fig)

    order = np.argsort(-np.linalg.norm(u, axis=0))
    cols = min(u.shape[1], 40)
    fig, axes = plt.subplots(4, cols // 4 if cols >= 4 else cols, figsize=(cols / 4 * 1.0, 4.2))
    for ax, j in zip(np.ravel(axes), order[:cols], strict=False):
        lim = np.abs(u[:, j]).max()
        ax.imshow(u[:, j].reshape(8, 8), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("learned coupling U: columns of largest norm (each on its own colour scale)")
    u_path = OUTPUT / "hopfield_digits_U.png"
    fig.savefig(u_path, dpi=120)
    plt.close(fig)
    return recall_path, u_path


def main(argv=None):
    global OUTPUT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test (CI)")
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--slope", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=0.05, help="initial T")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--recall-steps", type=int, default=3)
    parser.add_argument("--joint-recall-steps", type=int, default=10)
    parser.add_argument("--recall-num-steps", type=int, default=400)
    parser.add_argument("--recall-chains", type=int, default=4)
    parser.add_argument("--recall-method", choices=["sample", "anneal"], default="sample")
    parser.add_argument(
        "--recall-mobility", choices=["curvature", "hopfield"], default="curvature"
    )
    parser.add_argument("--rbm-iter", type=int, default=40)
    parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args(argv)
    OUTPUT = args.output_dir
    if args.quick:
        args.steps, args.hidden = 20, 16
        args.recall_num_steps, args.recall_chains, args.rbm_iter = 40, 1, 1
    OUTPUT.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    x_train, x_test = load()
    masks = make_masks(x_test)
    print(f"digits: {x_train.shape[0]} train, {x_test.shape[0]} test")

    print("learning the Hopfield network (Recall and Learn, negative phase)...")
    model, params = train_hopfield(x_train, args)
    print(f"  learned T = {float(params['temperature']):.4f}; {model}")
    params_path = OUTPUT / "hopfield_digits_params.npz"
    np.savez(params_path, **{k: np.asarray(v) for k, v in params.items()})
    print(f"wrote {params_path}")

    results = {"hopfield": {}, "ppca20": {}, "rbm": {}, "mean_fill": {}}
    fills = {}
    for name, mask in masks.items():
        t0 = time.time()
        fills[name] = hopfield_fill(model, params, x_test, mask, args)
        results["hopfield"][name] = masked_mse(fills[name], x_test, mask)
        print(f"  recall {name}: {time.time() - t0:.0f} s")
        results["ppca20"][name] = masked_mse(ppca_fill(x_train, x_test, mask), x_test, mask)
        results["mean_fill"][name] = masked_mse(mean_fill(x_train, x_test, mask), x_test, mask)
    print("fitting the BernoulliRBM baseline...")
    rbm = fit_rbm(x_train, args.rbm_iter)
    for name, mask in masks.items():
        fill = rbm_fill(rbm, x_train, x_test, mask)
        results["rbm"][name] = masked_mse(fill, x_test, mask)

    print("\nMSE on the masked pixels (360 held-out digits):")
    print(f"  {'method':<10} {'random50':>9} {'bottom_half':>12}")
    for method, row in results.items():
        print(f"  {method:<10} {row['random50']:9.4f} {row['bottom_half']:12.4f}")

    path = OUTPUT / "hopfield_digits.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {path}")
    u = np.asarray(model.coupling(params))
    for p in save_figures(x_test, masks, fills, u):
        print(f"wrote {p}")
    print(f"total time {time.time() - t_start:.0f} s")
    return results


if __name__ == "__main__":
    main()
