"""Free-energy relaxation F(t) of Langevin chains under different mobilities.

Target: an ill-conditioned, correlated 2-D Gaussian, E(x) = x^T S^{-1} x / 2 with covariance S of
standard deviations 5 and 0.5 along axes rotated by 30 degrees (condition number 100), T = 1, so
-T ln Z = -ln(2 pi sqrt(det S)) is known. Thousands of chains start together far from the target
and are moved by the Metropolis-adjusted core step (`numpyro_langevin.core`, vmapped over chains)
with three constant mobilities:

* identity K = I (plain MALA);
* the diagonal of the covariance, K = diag(S);
* the covariance itself, K = S (the ideal constant preconditioner for a Gaussian).

Each gets the step size h = 0.25 / lambda_max(K S^{-1}) (the stiffest direction fixes it).
At recorded steps (a geometric grid) the chains form an ensemble and `numpyro_langevin.diagnostics.free_energy`
estimates F = <E> - T H with a nearest-neighbour entropy; F - (-T ln Z) = T KL(p_t || q) is
the free energy still to be dissipated. The script prints KL after 10, 30, 100, ... steps for each
mobility and saves a PNG of F(t) and KL(t).

    python examples/relaxation.py            # 2000 chains, 3000 steps (about a minute)
    python examples/relaxation.py --quick    # smoke test (seconds)
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_langevin import core, diagnostics
from numpyro_langevin import mobility as mob

OUTPUT = pathlib.Path(__file__).parent / "output"


def target_covariance() -> np.ndarray:
    angle = np.deg2rad(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return rotation @ np.diag([5.0**2, 0.5**2]) @ rotation.T


def recording_steps(num_steps: int, num_draws: int) -> np.ndarray:
    """0 and about ``num_draws`` steps spaced geometrically up to ``num_steps``."""
    grid = np.unique(np.round(np.geomspace(1, num_steps, num_draws)).astype(int))
    return np.concatenate([[0], grid])


@jax.jit
def run_chains(key, x0, precision, matrix, step_size, segments):
    """MALA chains with a constant mobility, recorded after each segment of ``segments`` steps.

    Returns positions (chains, draws, 2), energies (chains, draws) and the acceptance rate per
    chain. Compiled once for all mobilities: the matrix and the step size are traced arguments.
    """
    mobility_fn = mob.constant(matrix)

    def potential(x):
        return 0.5 * x @ precision @ x

    def one_chain(key, x):
        state = core.init(x, potential, mobility_fn)

        def record(carry, segment):
            state, accepted, key = carry

            def advance(i, inner):
                state, accepted = inner
                state, info = core.step(
                    jax.random.fold_in(key, i), state, potential, mobility_fn, step_size
                )
                return state, accepted + info.is_accepted

            state, accepted = jax.lax.fori_loop(0, segment, advance, (state, accepted))
            carry = (state, accepted, jax.random.split(key)[0])
            return carry, (state.position, state.potential_energy)

        init = (state, jnp.zeros((), jnp.int32), key)
        (_, accepted, _), (xs, es) = jax.lax.scan(record, init, segments)
        xs = jnp.concatenate([state.position[None], xs])
        es = jnp.concatenate([state.potential_energy[None], es])
        return xs, es, accepted / jnp.sum(segments)

    return jax.vmap(one_chain)(jax.random.split(key, x0.shape[0]), x0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-chains", type=int, default=2000)
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--num-draws", type=int, default=80, help="recorded steps (geometric)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 300 chains, 200 steps")
    parser.add_argument("--output-dir", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args()
    if args.quick:
        args.num_chains, args.num_steps, args.num_draws = 300, 200, 15

    covariance = target_covariance()
    precision = np.linalg.inv(covariance)
    free_energy_eq = -np.log(2 * np.pi * np.sqrt(np.linalg.det(covariance)))
    mobilities = {
        "identity": np.eye(2),
        "diagonal of covariance": np.diag(np.diag(covariance)),
        "covariance": covariance,
    }

    key_start, key_run = jax.random.split(jax.random.PRNGKey(args.seed))
    x0 = jnp.array([12.0, -6.0]) + 0.5 * jax.random.normal(key_start, (args.num_chains, 2))
    steps = recording_steps(args.num_steps, args.num_draws)
    checkpoints = [c for c in (10, 30, 100, 300, 1000, 3000) if c <= args.num_steps]
    steps = np.unique(np.concatenate([steps, checkpoints]))
    segments = jnp.asarray(np.diff(steps), jnp.int32)

    results = {}
    print(f"{args.num_chains} chains, {args.num_steps} MALA steps; -T ln Z = {free_energy_eq:.3f}")
    print("KL(p_t || q) in nats (± standard error) after n steps:")
    header = "".join(f"{'n = ' + str(c):>15}" for c in checkpoints)
    print(f"{'mobility':<24}{'h':>8}{'accept':>8}{header}")
    for name, matrix in mobilities.items():
        stiffness = np.max(np.linalg.eigvals(matrix @ precision).real)
        step_size = 0.25 / stiffness
        start = time.perf_counter()
        xs, es, accept = run_chains(
            key_run,
            x0,
            jnp.asarray(precision, jnp.float32),
            jnp.asarray(matrix, jnp.float32),
            jnp.float32(step_size),
            segments,
        )
        fe = jax.block_until_ready(diagnostics.free_energy(xs, es, log_normalizer=-free_energy_eq))
        elapsed = time.perf_counter() - start
        results[name] = fe
        kl, kl_se = np.asarray(fe.kl), np.asarray(fe.kl_stderr)
        cells = "".join(
            f"{kl[steps == c][0]:>8.3f} ± {kl_se[steps == c][0]:.2f}"
            if np.any(steps == c)
            else f"{'':>15}"
            for c in checkpoints
        )
        rises = int(np.sum(diagnostics.significant_increases(fe)))
        print(f"{name:<24}{step_size:8.4f}{float(np.mean(accept)):8.3f}{cells}")
        print(f"{'':<24}({elapsed:.1f} s; significant rises of F: {rises})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_f, ax_kl) = plt.subplots(1, 2, figsize=(11, 4))
    x_axis = np.maximum(steps, 0.5)  # step 0 shown at 0.5 on the log axis
    for name, fe in results.items():
        value = np.asarray(fe.value)
        (line,) = ax_f.plot(x_axis, value - free_energy_eq, label=f"K = {name}")
        kl, kl_se = np.asarray(fe.kl), np.asarray(fe.kl_stderr)
        ax_kl.plot(x_axis, kl, color=line.get_color(), label=f"K = {name}")
        ax_kl.fill_between(
            x_axis, kl - 2 * kl_se, kl + 2 * kl_se, color=line.get_color(), alpha=0.25, lw=0
        )
    ax_f.set(
        xscale="log",
        yscale="log",
        xlabel="step",
        ylabel=r"$F - (-T\ln Z) = T\,\mathrm{KL}$",
        title="free energy above its minimum",
    )
    ax_f.set_ylim(bottom=0.03)  # the estimation noise is about 0.03 nats: hide what lies below
    ax_kl.axhline(0.0, color="k", lw=0.8)
    ax_kl.set(
        xscale="log",
        yscale="symlog",
        xlabel="step",
        ylabel=r"$\mathrm{KL}(p_t\,\|\,q)$ (nats)",
        title="the same, symlog scale, ±2 standard errors",
    )
    ax_kl.set_yscale("symlog", linthresh=0.1)
    ax_f.legend()
    fig.suptitle("Relaxation to an ill-conditioned 2-D Gaussian (condition number 100)")
    fig.tight_layout()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = args.output_dir / "relaxation.png"
    fig.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
