"""End to end through MCMC with default settings on the posteriordb reference posteriors:
every mean within 4 MCSE of the reference (ours from the bulk ESS, combined with the
reference's own), every sd within 10%.

The sd check is a fixed tolerance, so the run must be long enough for it to have power and no
false alarms: eight schools' tau is heavy tailed (the relative error of its sd estimate is about
1.5 / sqrt(ESS)), so each stored draw is 10 Langevin steps (``steps_per_sample``), which gives
ESS(tau) in the thousands at little cost."""

import jax
import pytest
from conftest import SHARED
from numpyro.infer import MCMC

from numpyro_langevin import Langevin, posteriordb

CASES = sorted(p.stem for p in (SHARED / "posteriordb").glob("*.json"))
pytestmark = pytest.mark.skipif(not CASES, reason=f"no reference posteriors in {SHARED}")


@pytest.mark.parametrize("name", CASES)
def test_reference_posterior(name):
    case = posteriordb.load(SHARED / "posteriordb" / f"{name}.json")
    mcmc = MCMC(
        Langevin(case.model, steps_per_sample=10),
        num_warmup=200,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), **case.data)
    rows = posteriordb.reference_table(case, mcmc.get_samples(group_by_chain=True))
    table = "\n".join(
        f"{r['parameter']:>10} z={r['z']:+.2f} sd_ratio={r['sd_ratio']:.3f} ess={r['ess']:.0f}"
        for r in rows
    )
    print(f"{name}\n{table}")
    for row in rows:
        assert abs(row["z"]) < 4.0, table
        assert abs(row["sd_ratio"] - 1.0) < 0.1, table
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
