"""Probabilistic PCA on scikit-learn's digits, learned by Recall and Learn.

Model (Tipping & Bishop 1999), with images x_n in [0, 1]^64 (digits / 16):

    h_n ~ N(0, I_q),    x_n | h_n ~ N(W h_n + mu, sigma^2 I),

with W, mu, sigma as `numpyro.param` sites (sigma > 0) and the latent coordinates h_n as sample
sites. `RecallLearn` alternates Langevin recall of h (persistent particles, MALA) with one Adam
step on (W, mu, sigma) along the particle average of grad_theta E. The maximum-likelihood solution
is known in closed form (mu = data mean, sigma^2 = mean of the d - q smallest eigenvalues of the
sample covariance, W = U_q (Lambda_q - sigma^2 I)^(1/2) R), so the script prints the exact
log-likelihood per image of the learned parameters next to the closed-form optimum, and saves

* ``examples/output/ppca_digits_components.png``: the principal directions of the learned W (its
  left singular vectors, sign-aligned) above the closed-form ones;
* ``examples/output/ppca_digits_loss.png``: the loss (particle-average energy per image) with
  its exact value at the optimum, -log p(x) + H[q(h | x)] (the energy term of the free energy).

    python examples/ppca_digits.py            # all 1797 images, q = 10, 1500 steps (a few minutes)
    python examples/ppca_digits.py --quick    # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.distributions import constraints

from numpyro_langevin import RecallLearn

OUTPUT = pathlib.Path(__file__).parent / "output"


def ppca(X, q: int):
    """h ~ N(0, I_q); x | h ~ N(W h + mu, sigma^2 I)."""
    d = X.shape[1]
    W = numpyro.param("W", lambda key: 0.1 * jax.random.normal(key, (d, q)))
    mu = numpyro.param("mu", jnp.mean(X, 0))
    sigma = numpyro.param("sigma", 1.0, constraint=constraints.positive)
    with numpyro.plate("images", X.shape[0]):
        h = numpyro.sample("h", dist.Normal(0.0, 1.0).expand([q]).to_event(1))
        numpyro.sample("x", dist.Normal(h @ W.T + mu, sigma).to_event(1), obs=X)


def closed_form(X: np.ndarray, q: int):
    """Tipping–Bishop MLE: (W, mu, sigma^2), with the sample covariance normalised by n."""
    S = np.cov(X.T, bias=True)
    lam, vec = np.linalg.eigh(S)
    lam, vec = lam[::-1], vec[:, ::-1]
    s2 = lam[q:].mean()
    return vec[:, :q] * np.sqrt(lam[:q] - s2), X.mean(0), s2


def log_likelihood(X: np.ndarray, W, mu, s2) -> float:
    """Exact mean log-likelihood per image: x ~ N(mu, W W^T + sigma^2 I)."""
    W, mu = np.asarray(W, dtype=np.float64), np.asarray(mu, dtype=np.float64)
    C = W @ W.T + float(s2) * np.eye(X.shape[1])
    r = X - mu
    _, logdet = np.linalg.slogdet(C)
    quad = np.einsum("ni,ij,nj->n", r, np.linalg.inv(C), r)
    return float(np.mean(-0.5 * (X.shape[1] * np.log(2 * np.pi) + logdet + quad)))


def posterior_entropy(W: np.ndarray, s2: float) -> float:
    """H[q(h | x)] of one image, q(h | x) = N(., sigma^2 M^-1) with M = W^T W + sigma^2 I.

    Once the particles have relaxed, the loss per image is <E>_q = -log p(x) + H[q] (the free
    energy -log p(x) plus the entropy it subtracts).
    """
    q = W.shape[1]
    M = W.T @ W + s2 * np.eye(q)
    _, logdet = np.linalg.slogdet(s2 * np.linalg.inv(M))
    return 0.5 * (q * np.log(2 * np.pi * np.e) + logdet)


def directions(W: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Left singular vectors of W (W = U_q (Lambda - sigma^2)^(1/2) R up to a rotation R), signs
    aligned with ``reference``."""
    u = np.linalg.svd(np.asarray(W, dtype=np.float64), full_matrices=False)[0]
    return u * np.sign(np.sum(u * reference, axis=0))


def save_figures(
    learned_dirs,
    exact_dirs,
    losses,
    num_images: int,
    expected_energy: float,
    output: pathlib.Path = OUTPUT,
) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    q = learned_dirs.shape[1]
    fig, axes = plt.subplots(2, q, figsize=(1.2 * q, 2.8), squeeze=False)
    for j in range(q):
        for row, dirs, label in ((0, learned_dirs, "learned"), (1, exact_dirs, "closed form")):
            ax = axes[row, j]
            ax.imshow(dirs[:, j].reshape(8, 8), cmap="RdBu_r")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("PPCA principal directions", fontsize=9)
    fig.tight_layout()
    components = output / "ppca_digits_components.png"
    fig.savefig(components, dpi=120)
    plt.close(fig)

    per_image = np.asarray(losses) / num_images
    start = len(per_image) // 10
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, first in ((axes[0], 0), (axes[1], start)):
        steps = np.arange(first, len(per_image))
        ax.plot(steps, per_image[first:], lw=1, label="RecallLearn")
        ax.axhline(expected_energy, color="k", ls="--", lw=1, label="exact, at the MLE")
        ax.set_xlabel("iteration")
    axes[0].set_yscale("symlog")
    axes[0].set_ylabel("particle-average energy per image")
    axes[1].set_title(f"from iteration {start}", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    loss = output / "ppca_digits_loss.png"
    fig.savefig(loss, dpi=120)
    plt.close(fig)
    return [components, loss]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=1797)
    parser.add_argument("--latent-dim", type=int, default=10)
    parser.add_argument("--num-steps", type=int, default=1500)
    parser.add_argument("--num-particles", type=int, default=2)
    parser.add_argument("--recall-steps", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress-bar", action="store_true")
    parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT)
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 200 images, q = 5, 200 steps"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.num_images, args.latent_dim, args.num_steps = 200, 5, 200

    from sklearn.datasets import load_digits

    X = load_digits().data[: args.num_images] / 16.0
    q = args.latent_dim
    schedule = optax.cosine_decay_schedule(args.learning_rate, args.num_steps, alpha=0.01)
    em = RecallLearn(
        ppca,
        optax.adam(schedule),
        num_particles=args.num_particles,
        recall_steps=args.recall_steps,
    )
    start = time.perf_counter()
    result = em.run(
        jax.random.PRNGKey(args.seed),
        args.num_steps,
        jnp.asarray(X, dtype=jnp.float32),
        q,
        progress_bar=args.progress_bar,
    )
    jax.block_until_ready(result.losses)
    seconds = time.perf_counter() - start

    W, mu, s2 = closed_form(X, q)
    p = result.params
    learned_s2 = float(p["sigma"]) ** 2
    best = log_likelihood(X, W, mu, s2)
    learned = log_likelihood(X, p["W"], p["mu"], learned_s2)
    print(f"PPCA, {X.shape[0]} images, q = {q}: {args.num_steps} steps in {seconds:.1f} s")
    print(f"  log-likelihood per image: learned {learned:.4f}, closed form {best:.4f}")
    print(f"  relative gap {(best - learned) / abs(best):.2e}")
    print(f"  sigma^2: learned {learned_s2:.5f}, closed form {s2:.5f}")
    print(
        f"  recall: step size {float(jnp.exp(result.state.log_step_size)):.2e}, "
        f"acceptance {float(result.state.accept_prob):.2f}"
    )
    exact_dirs = np.asarray(W) / np.linalg.norm(W, axis=0)
    learned_dirs = directions(p["W"], exact_dirs)
    cosines = np.abs(np.sum(learned_dirs * exact_dirs, axis=0))
    print("  |cos| between learned and closed-form directions:", np.round(cosines, 3))
    energy = -best + posterior_entropy(W, s2)
    last = float(np.mean(np.asarray(result.losses)[-max(args.num_steps // 10, 1) :])) / X.shape[0]
    print(f"  loss per image (last 10%): {last:.4f}; exact <E> at the MLE {energy:.4f}")
    for path in save_figures(
        learned_dirs, exact_dirs, result.losses, X.shape[0], energy, args.output_dir
    ):
        print(f"saved {path}")


if __name__ == "__main__":
    main()
