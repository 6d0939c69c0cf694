"""Run the benchmark suite and write ``results.json``, ``RESULTS.md`` and the plots.

Usage::

    python benchmarks/run.py           # full run (about 20 min on a quiet 2-core machine)
    python benchmarks/run.py --quick   # smoke run, about 5 min

Options select targets (``--targets``), the posteriordb directory (``--posteriordb``, default
``../shared/posteriordb`` relative to the repository root), the output directory and the number
of timed repetitions. See ``benchmarks/RESULTS.md`` for the protocol.
"""

from __future__ import annotations

import os
import sys

# Chains run one per (virtual) CPU device with chain_method="parallel"; set before JAX starts.
_DEVICES = 4
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_DEVICES}"
    ).strip()

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpyro  # noqa: E402

from benchmarks import overhead, report  # noqa: E402
from benchmarks.protocol import Config, Runner, summarize  # noqa: E402
from benchmarks.samplers import samplers_for  # noqa: E402
from benchmarks.targets import build_targets  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent

PROTOCOL = """## Protocol

- **Same budget for all**: the same chains, warmup and draws; float64; initial points from
  NumPyro's `init_to_uniform` (BlackJAX MALA starts from the same distribution).
- **Two clocks.** *Time to result*: the wall time of the first `MCMC.run` of a freshly built
  kernel, tracing and XLA compilation included — what a user waits. *Sampling time*: the wall
  time of a repeated run (same `MCMC` object, same data, new key) minus the time JAX spent
  tracing, lowering and compiling or loading executables, measured with `jax.monitoring`
  (`benchmarks/clock.py`). NumPyro 0.22 re-lowers and recompiles its sampling loop on every
  `run` (its `fori_collect` wraps the loop body in a new `jit` each call; `jit_model_args=True`
  does not help on this JAX version, and it breaks models whose plate sizes are arguments), so
  the suite enables JAX's persistent compilation cache in a fresh temporary directory: the
  repeated runs load the executable instead of compiling it. The sampling time still contains
  NumPyro's per-run Python work (`init`, which re-runs `initialize_model`; for Langevin also the
  initial Hessian; result collection), measured separately below.
- **Metrics**: min bulk-ESS (`arviz.ess(method="bulk")`) over every scalar of every sampled and
  deterministic site; ESS/s on the sampling clock; ESS per gradient evaluation of the
  *sampling phase* (warmup not counted): 1 per iteration for Langevin, BarkerMH, one-step HMC
  and MALA, the sum of `num_steps` for NUTS (position-dependent mobilities cost more than one
  gradient per step; ESS/s accounts for that, ESS/grad does not); max |mean − reference mean| /
  reference sd over the reference parameters (analytic for the Gaussian and the funnel,
  posteriordb otherwise; the centred eight schools uses the non-centred reference, the same
  posterior), and the same error in Monte Carlo standard errors (above ~4 is bias);
  divergences (non-finite proposals for Langevin; NumPyro's energy-error criterion for
  NUTS/HMC; BarkerMH and BlackJAX MALA report none).
- **Samplers**: `Langevin` (defaults: step size by dual averaging to acceptance 0.574, constant
  mobility adapted to the posterior covariance, dense up to d = 50), `Langevin dense` (d > 50
  only, where it differs from the default), `Langevin Fisher` (`adapt_mobility="fisher"`,
  Titsias 2023), `Langevin <name>` with a built-in position-dependent mobility where one fits
  (funnel: the inverse expected Fisher `funnel_fisher` and `DiagonalSoftAbsHessian`; centred
  eight schools: `DiagonalSoftAbsHessian`); NumPyro `NUTS` and `BarkerMH` with defaults;
  `HMC 1-step (MALA)` = `HMC(num_steps=1, trajectory_length=None, target_accept_prob=0.574)`
  (one leapfrog step with fresh momentum is MALA preconditioned by the adapted diagonal mass
  matrix); `BlackJAX MALA` (identity preconditioner) with its step size tuned during the warmup
  budget: 10 rounds, after each the round's mean acceptance moves log h by ±log 4 until 0.574 is
  bracketed, then bisects the bracket (per chain).
- **Repetitions** are interleaved (repetition → target → sampler); the tables show medians.
- **Many-chain regime**: 64 chains with `chain_method="vectorized"` (BlackJAX: `vmap`), where a
  fixed-cost step runs in lockstep and NUTS pays for the longest tree in the batch. BarkerMH
  is absent there: NumPyro's BarkerMH asserts a single PRNG key and cannot be vectorized."""


def _configs(quick: bool) -> dict[str, Config]:
    if quick:
        return {
            "4 chains": Config(4, 300, 300, "parallel"),
            "64 vectorized chains": Config(64, 200, 100, "vectorized"),
        }
    return {
        "4 chains": Config(4, 1000, 1000, "parallel"),
        "64 vectorized chains": Config(64, 500, 250, "vectorized"),
    }


QUICK_TARGETS = ["gaussian_100d", "funnel_10d", "eight_schools_noncentered"]
OVERHEAD_TARGETS = ["eight_schools_noncentered", "logistic_breast_cancer", "gaussian_100d"]


def _write(out, results, meta, regimes, failures, start, complete) -> None:
    """Write the outputs (after each regime too, so a crash leaves what was measured)."""
    meta["total_s"] = time.perf_counter() - start
    notes = []
    if not complete:
        notes.append("**Partial**: the run has not finished (or did not); later sections missing.")
    if failures:
        notes.append(
            "Failed runs (left out of the medians):\n\n" + "\n".join(f"- {f}" for f in failures)
        )
    meta["notes"] = "\n\n".join(notes)
    meta.setdefault("overhead_ratio", None)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for regime in regimes:
        png = f"ess_per_s_{'many' if 'vectorized' in regime else 'main'}.png"
        report.plot(out / png, results, regime)
        plots[regime] = png
    report.write_json(out / "results.json", results, meta)
    report.write_markdown(out / "RESULTS.md", results, meta, plots, PROTOCOL)
    print(
        f"wrote {out / 'results.json'}, {out / 'RESULTS.md'} ({meta['total_s']:.0f} s)", flush=True
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budgets, few targets")
    parser.add_argument("--targets", nargs="*", help="subset of target names")
    parser.add_argument(
        "--posteriordb",
        type=pathlib.Path,
        default=None,
        help="directory of posteriordb reference JSON files",
    )
    parser.add_argument("--out", type=pathlib.Path, default=HERE, help="output directory")
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed repetitions after the fresh run (default 2; quick 1)",
    )
    parser.add_argument("--no-many-chains", action="store_true")
    parser.add_argument("--no-overhead", action="store_true")
    args = parser.parse_args(argv)

    numpyro.enable_x64()
    cache_dir = tempfile.mkdtemp(prefix="nl_bench_jaxcache_")
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    start = time.perf_counter()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": report.machine(),
    }
    reps = args.reps if args.reps is not None else (1 if args.quick else 2)
    meta["reps"] = reps
    targets = build_targets(args.posteriordb)
    names = args.targets or (QUICK_TARGETS if args.quick else [t.name for t in targets])
    unknown = set(names) - {t.name for t in targets}
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {[t.name for t in targets]}")
    targets = [t for t in targets if t.name in names]
    configs = _configs(args.quick)
    if args.no_many_chains:
        configs.pop("64 vectorized chains")
    meta["configs"] = {k: vars(c) for k, c in configs.items()}

    results, failures = [], []
    try:
        for regime, config in configs.items():
            many = config.vectorized
            runners = [
                (t, s, Runner(t, s, config))
                for t in targets
                for s in samplers_for(t, many_chains=many)
                if not many or s.vectorizable
            ]
            records = {id(r): [] for _, _, r in runners}
            # The many-chain regime is long for NUTS (lockstep trees): one timed repetition.
            regime_reps = min(reps, 1) if many else reps
            meta["configs"][regime]["reps"] = regime_reps
            for rep in range(1 + regime_reps):
                for t, s, runner in runners:
                    key = jax.random.key(1000 * rep + 7)
                    try:
                        records[id(runner)].append(runner.run(key))
                    except Exception as err:  # report, keep going
                        print(f"  FAILED {t.name} / {s.name}: {err!r}", flush=True)
                        failures.append(f"{regime}, {t.name}, {s.name}, repetition {rep}: {err!r}")
                        continue
                    # Loaded executables pile up (NumPyro reloads its loop on every run) until
                    # LLVM runs out of mappable code memory: drop JAX's in-memory caches (the
                    # persistent cache on disk stays, reloads are on the compile clock).
                    jax.clear_caches()
                    gc.collect()
                    rec = records[id(runner)][-1]
                    print(
                        f"[{regime}] rep {rep} {t.name:26s} {s.name:22s} "
                        f"wall {rec.seconds:7.2f}s sampling {rec.sampling:7.2f}s "
                        f"ESS {rec.quality['min_ess']:8.1f}",
                        flush=True,
                    )
            for t, s, runner in runners:
                if not records[id(runner)]:
                    continue
                name = t.name if not many else f"{t.name} [{config.num_chains} chains]"
                row = {"target": name, "sampler": s.name, "regime": regime}
                row.update(summarize(records[id(runner)]))
                results.append(row)
            done = [r for r in configs if any(x["regime"] == r for x in results)]
            _write(args.out, results, meta, done, failures, start, complete=False)
        meta["overhead_ratio"] = None
        if not args.no_overhead:
            sizes = dict(num_warmup=200, n_short=300, n_long=1500, reps=3) if args.quick else {}
            by_name = {t.name: t for t in build_targets(args.posteriordb)}
            chosen = [by_name[n] for n in OVERHEAD_TARGETS if n in by_name]
            if args.quick:
                chosen = chosen[:1]
            per_step, fixed = [], []
            for t in chosen:
                per_step.append(overhead.per_step_overhead(t, **sizes))
                fixed.append(overhead.fixed_run_cost(t))
                jax.clear_caches()
            meta["overhead"] = {"per_step": per_step, "fixed": fixed}
            meta["overhead_ratio"] = max(o["ratio"] for o in per_step)
            meta["overhead_text"] = overhead.EXPLANATION
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    _write(args.out, results, meta, list(configs), failures, start, complete=True)
    return meta


if __name__ == "__main__":
    main()
