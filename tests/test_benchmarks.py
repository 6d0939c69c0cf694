"""Smoke test of the benchmark harness (``benchmarks/``): one tiny target, a few draws.

No timings are checked (speed is measured by ``benchmarks/run.py``, never asserted); this only
keeps the harness from rotting: runs, metrics, the JSON schema and the report.
"""

import json
import pathlib
import sys

import jax
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import clock, metrics, report  # noqa: E402
from benchmarks.protocol import Config, Runner, summarize  # noqa: E402
from benchmarks.samplers import SamplerSpec, samplers_for  # noqa: E402
from benchmarks.targets import Target, gaussian  # noqa: E402
from numpyro_langevin import Langevin  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    scales = np.array([0.5, 2.0])
    reference = {"x[1]": (0.0, 0.5), "x[2]": (0.0, 2.0)}
    return Target("tiny_gaussian", gaussian, {"scales": scales}, 2, reference)


@pytest.fixture(scope="module")
def rows(tiny):
    config = Config(num_chains=1, num_warmup=30, num_samples=30, chain_method="sequential")
    specs = [SamplerSpec("Langevin", lambda m: Langevin(m)), SamplerSpec("BlackJAX MALA", None)]
    out = []
    for spec, runs in zip(specs, (1, 2), strict=True):  # a NumPyro re-run recompiles: skip it
        runner = Runner(tiny, spec, config)
        records = [runner.run(jax.random.key(i)) for i in range(runs)]
        assert records[0].fresh and not any(r.fresh for r in records[1:])
        row = {"target": tiny.name, "sampler": spec.name, "regime": "1 chain"}
        row.update(summarize(records))
        out.append(row)
    return out


def test_summary_fields(rows):
    for row in rows:
        assert row["min_ess"] > 0
        assert row["ess_per_s"] > 0 and row["ess_per_grad"] > 0
        assert row["time_to_result_s"] >= row["sampling_s"] >= 0
        assert row["max_err_sd"] is not None
    assert rows[0]["divergences"] == 0  # Langevin reports divergences; MALA does not
    assert rows[1]["divergences"] is None


def test_report_schema(rows, tmp_path):
    meta = {
        "overhead_ratio": 1.5,
        "quick": True,
        "date": "today",
        "total_s": 1.0,
        "reps": 1,
        "machine": report.machine(),
        "configs": {
            "1 chain": {
                "num_chains": 1,
                "num_warmup": 30,
                "num_samples": 30,
                "chain_method": "sequential",
            }
        },
    }
    report.plot(tmp_path / "p.png", rows, "1 chain")
    report.write_json(tmp_path / "results.json", rows, meta)
    report.write_markdown(tmp_path / "RESULTS.md", rows, meta, {"1 chain": "p.png"}, "protocol")
    payload = json.loads((tmp_path / "results.json").read_text())
    assert isinstance(payload["overhead_ratio"], float)
    keys = {
        "target",
        "sampler",
        "min_ess",
        "ess_per_s",
        "ess_per_grad",
        "max_err_sd",
        "divergences",
    }
    for row in payload["results"]:
        assert keys <= set(row)
    assert "tiny_gaussian" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "p.png").stat().st_size > 0


def test_sampler_list(tiny):
    names = [s.name for s in samplers_for(tiny)]
    assert names[0] == "Langevin" and "NUTS" in names and "BlackJAX MALA" in names
    assert "BarkerMH" not in [s.name for s in samplers_for(tiny, many_chains=True)]


def test_quality_flags_a_biased_mean(tiny):
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(2, 500, 2)) * np.array([0.5, 2.0])
    good = metrics.quality(tiny, {"x": draws})
    bad = metrics.quality(tiny, {"x": draws + np.array([0.5, 0.0])})  # one sd off
    assert good["max_err_mcse"] < 4.5 and bad["max_err_mcse"] > 10
    assert bad["max_err_sd"] == pytest.approx(1.0, abs=0.2)


def test_clock_union_counts_nested_intervals_once():
    assert clock._union_length([(0.0, 2.0), (0.5, 1.0), (3.0, 4.0)]) == pytest.approx(3.0)
