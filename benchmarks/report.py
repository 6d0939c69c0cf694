"""Write ``results.json``, ``RESULTS.md`` and the PNG plot from the collected numbers."""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform

__all__ = ["write_json", "write_markdown", "plot", "machine"]

_KEYS = ("target", "sampler", "min_ess", "ess_per_s", "ess_per_grad", "max_err_sd", "divergences")


def machine() -> dict:
    """CPU, cores, memory, OS and library versions."""
    import blackjax
    import jax
    import numpyro

    cpu = platform.processor() or "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages * size / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "numpyro": numpyro.__version__,
        "blackjax": blackjax.__version__,
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def write_json(path: pathlib.Path, results: list[dict], meta: dict) -> None:
    """``{"results": [...], "overhead_ratio": float, ...}`` (extra keys after the schema's)."""
    rows = [
        {k: r[k] for k in _KEYS} | {k: v for k, v in r.items() if k not in _KEYS} for r in results
    ]
    payload = {"results": rows, "overhead_ratio": meta["overhead_ratio"]}
    payload.update({k: v for k, v in meta.items() if k != "overhead_ratio"})
    path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")


def _jsonable(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def _fmt(x, digits=3) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return str(x)
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.{digits}g}"


def plot(path: pathlib.Path, results: list[dict], regime: str) -> None:
    """Grouped bars of min-ESS/s per target (log scale), one colour per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results if r["regime"] == regime]
    targets = list(dict.fromkeys(r["target"] for r in rows))
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    width = 0.8 / len(samplers)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(targets)), 4.5))
    cmap = plt.get_cmap("tab10")
    for j, s in enumerate(samplers):
        xs, ys = [], []
        for i, t in enumerate(targets):
            for r in rows:
                if r["target"] == t and r["sampler"] == s and r["ess_per_s"]:
                    xs.append(i + (j - (len(samplers) - 1) / 2) * width)
                    ys.append(r["ess_per_s"])
        ax.bar(xs, ys, width, label=s, color=cmap(j % 10))
    ax.set_yscale("log")
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels([t.split(" [")[0] for t in targets], rotation=25, ha="right")
    ax.set_ylabel("min bulk-ESS per second (sampling clock)")
    ax.set_title(f"Effective samples per second, {regime}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(rows: list[dict]) -> list[str]:
    head = (
        "| sampler | min ESS | ESS/s | ESS/grad | time to result (s) | sampling (s) | "
        "max err/sd | max err/MCSE | div |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {_fmt(r['min_ess'])} | {_fmt(r['ess_per_s'])} | "
            f"{_fmt(r['ess_per_grad'])} | {_fmt(r['time_to_result_s'])} | "
            f"{_fmt(r['sampling_s'])} | {_fmt(r['max_err_sd'], 2)} | "
            f"{_fmt(r.get('max_err_mcse'), 2)} | {_fmt(r['divergences'])} |"
        )
    return lines


def _goal_lines(results: list[dict], regime: str) -> list[str]:
    rows = [r for r in results if r["regime"] == regime]
    lines = []
    for t in dict.fromkeys(r["target"] for r in rows):
        here = [r for r in rows if r["target"] == t]
        nuts = next((r for r in here if "NUTS" in r["sampler"]), None)
        ours = [r for r in here if r["sampler"].startswith("Langevin") and r["ess_per_s"]]
        if nuts is None or not ours or not nuts["ess_per_s"]:
            continue
        default = next((r for r in ours if r["sampler"] == "Langevin"), ours[0])
        best = max(ours, key=lambda r: r["ess_per_s"])
        lines.append(
            f"| {t} | {_fmt(default['ess_per_s'] / nuts['ess_per_s'], 2)} | "
            f"{best['sampler']} | {_fmt(best['ess_per_s'] / nuts['ess_per_s'], 2)} |"
        )
    return [
        "| target | Langevin / NUTS (ESS/s) | best Langevin variant | best / NUTS |",
        "|---|---|---|---|",
        *lines,
    ]


def write_markdown(
    path: pathlib.Path,
    results: list[dict],
    meta: dict,
    plots: dict[str, str],
    protocol_text: str,
) -> None:
    """The human-readable report."""
    m = meta["machine"]
    out = [
        "# Benchmarks: Langevin against NUTS, BarkerMH, one-step HMC and BlackJAX MALA",
        "",
        f"Generated by `python benchmarks/run.py{' --quick' if meta['quick'] else ''}` "
        f"on {meta['date']} (total {meta['total_s']:.0f} s). "
        "Regenerate with the same command; `--quick` is a smoke run with small budgets.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM; {m['os']}",
        f"- Python {m['python']}, JAX {m['jax']} ({m['jax_backend']}), NumPyro {m['numpyro']}, "
        f"BlackJAX {m['blackjax']}; float64",
        f"- Load average when the run started: {_fmt(m['load_average_at_start'], 2)} "
        "(above the core count means other work shared the machine and timings are noisy).",
        "",
        protocol_text,
        "",
    ]
    for regime, png in plots.items():
        cfg = meta["configs"][regime]
        out += [
            f"## Results: {regime}",
            "",
            f'{cfg["num_chains"]} chains (`chain_method="{cfg["chain_method"]}"`), '
            f"{cfg['num_warmup']} warmup and {cfg['num_samples']} draws per chain, "
            f"{cfg.get('reps', meta['reps'])} timed repetition(s) after the fresh run; medians.",
            "",
            f"![ESS per second]({png})",
            "",
            "Langevin against NUTS, min-ESS/s ratio (> 1: Langevin wins):",
            "",
            *_goal_lines(results, regime),
            "",
        ]
        rows = [r for r in results if r["regime"] == regime]
        for t in dict.fromkeys(r["target"] for r in rows):
            here = [r for r in rows if r["target"] == t]
            out += [f"### {t}", ""]
            extra = here[0]
            if "v_q05" in extra:
                out += [
                    "Funnel check (truth: mean of v 0, 5% quantile −4.93): "
                    + "; ".join(
                        f"{r['sampler']} {_fmt(r['v_mean'], 2)} / {_fmt(r['v_q05'], 3)}"
                        for r in here
                        if r.get("v_q05") is not None
                    ),
                    "",
                ]
            out += [*_table(here), ""]
    ov = meta.get("overhead")
    if ov:
        out += [
            "## Overhead: Langevin inside `MCMC` against a bare jitted loop",
            "",
            meta["overhead_text"],
            "",
            "| target | d | bare `lax.scan` of `core.step` (µs/step) | `Langevin.sample` in "
            "`lax.scan` (µs/step) | + `postprocess_fn` per draw (µs/step) | inside `MCMC` "
            "(µs/step) | MCMC / bare | `MCMC`, 10 steps per draw (µs/step) | its ratio | "
            "driver fixed cost, warm state (ms) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for o in ov["per_step"]:
            out.append(
                f"| {o['target']} | {o['dim']} | {_fmt(o['bare_us'])} | {_fmt(o['kernel_us'])} | "
                f"{_fmt(o['postprocess_us'])} | "
                f"{_fmt(o['mcmc_us'])} | {_fmt(o['ratio'], 2)} | "
                f"{_fmt(o.get('mcmc_steps10_us'))} | {_fmt(o.get('ratio_steps10'), 2)} | "
                f"{_fmt(1e3 * o['mcmc_fixed_warm_s'])} |"
            )
        out += [
            "",
            f"`overhead_ratio` in `results.json`: **{_fmt(meta['overhead_ratio'], 3)}** "
            "(the largest MCMC / bare ratio above, one Langevin step per collected draw: "
            "the default). What `MCMC` adds per draw — the model's `postprocess_fn` and the "
            "collection — is NumPyro's driver, paid per draw by every kernel; with "
            "`steps_per_sample=10` it is paid once per 10 steps (the column before last).",
            "",
            "Fixed cost of a repeated `MCMC.run` (10 warmup + 10 draws, one chain; sampling "
            "clock, i.e. without tracing/compiling; wall clock in parentheses):",
            "",
            "| target | Langevin (s) | NUTS (s) | HMC 1-step (s) |",
            "|---|---|---|---|",
        ]
        for f in ov["fixed"]:
            out.append(
                f"| {f['target']} | {_fmt(f['Langevin'])} ({_fmt(f['Langevin (wall)'])}) | "
                f"{_fmt(f['NUTS'])} ({_fmt(f['NUTS (wall)'])}) | "
                f"{_fmt(f['HMC 1-step (MALA)'])} ({_fmt(f['HMC 1-step (MALA) (wall)'])}) |"
            )
        out.append("")
    if meta.get("notes"):
        out += ["## Notes", "", meta["notes"], ""]
    path.write_text("\n".join(out))
