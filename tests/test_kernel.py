"""The NumPyro adapter: MCMC contract, closed-form posteriors, resume, new data, ArviZ."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC, NUTS, init_to_value

from numpyro_langevin import Langevin

Z_MAX = 4.0


def z_mean_and_var(draws, mean, var):
    """z-scores of the posterior mean and variance estimates; MCSE from the bulk ESS of the
    statistic itself. ``draws`` is (chains, draws)."""
    draws = np.asarray(draws, dtype=np.float64)
    out = []
    for stat, expected in ((draws, mean), ((draws - mean) ** 2, var)):
        ess = effective_sample_size(stat)
        out.append((stat.mean() - expected) / (stat.std() / np.sqrt(ess)))
    return out


def normal_model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def normal_posterior(y):
    precision = 1 / 100 + y.shape[0]
    return y.sum() / precision, 1 / precision


Y = jnp.asarray(np.random.default_rng(0).normal(1.5, 1.0, 40))


def run(
    kernel,
    *args,
    num_chains=2,
    chain_method="vectorized",
    num_warmup=500,
    num_samples=1500,
    key=0,
    init_params=None,
):
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(key), *args, init_params=init_params)
    return mcmc


# ------------------------------------------------------------------ closed-form posteriors


def beta_bernoulli(x=None):
    p = numpyro.sample("p", dist.Beta(2.0, 2.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("x", dist.Bernoulli(p), obs=x)


def dirichlet_categorical(x=None):
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("x", dist.Categorical(p), obs=x)


FLIPS = jnp.asarray(np.random.default_rng(1).random(60) < 0.3, dtype=jnp.int32)
CATEGORIES = jnp.asarray(np.random.default_rng(2).choice(3, 80, p=[0.2, 0.5, 0.3]))


def _beta_moments(a, b):
    return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))


def _closed_form_cases():
    k = int(FLIPS.sum())
    counts = np.bincount(np.asarray(CATEGORIES), minlength=3)
    alpha = 1 + counts
    dir_moments = [_beta_moments(alpha[j], alpha.sum() - alpha[j]) for j in range(3)]
    return {
        "normal": (normal_model, (Y,), {"mu": normal_posterior(Y)}),
        "beta_bernoulli": (
            beta_bernoulli,
            (FLIPS,),
            {"p": _beta_moments(2 + k, 2 + FLIPS.shape[0] - k)},
        ),
        "dirichlet_categorical": (
            dirichlet_categorical,
            (CATEGORIES,),
            {f"p[{j}]": dir_moments[j] for j in range(3)},
        ),
    }


@pytest.mark.parametrize("case", ["normal", "beta_bernoulli", "dirichlet_categorical"])
def test_closed_form_posteriors(case):
    model, args, moments = _closed_form_cases()[case]
    mcmc = run(Langevin(model), *args, num_chains=4)
    samples = mcmc.get_samples(group_by_chain=True)
    for name, (mean, var) in moments.items():
        site, _, index = name.partition("[")
        draws = samples[site] if not index else samples[site][..., int(index[:-1])]
        z = z_mean_and_var(draws, mean, var)
        assert max(map(abs, z)) < Z_MAX, (name, z)
    assert not mcmc.get_extra_fields()["diverging"].any()


def logistic_regression(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def test_logistic_regression_agrees_with_nuts():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(200, 3)))
    y = jnp.asarray(rng.random(200) < 1 / (1 + np.exp(-(x @ np.array([1.0, -2.0, 0.5]) + 0.3))))
    ours = run(Langevin(logistic_regression), x, y, num_chains=4, num_samples=2000)
    nuts = run(NUTS(logistic_regression), x, y, num_chains=4, num_samples=1000)
    a, b = (m.get_samples(group_by_chain=True) for m in (ours, nuts))
    for site in ("w", "b"):
        da, db = (np.asarray(s[site]).reshape(4, s[site].shape[1], -1) for s in (a, b))
        for j in range(da.shape[-1]):
            mcse = [x[..., j].std() / np.sqrt(effective_sample_size(x[..., j])) for x in (da, db)]
            z = (da[..., j].mean() - db[..., j].mean()) / np.hypot(*mcse)
            assert abs(z) < Z_MAX, (site, j, z)
            assert abs(da[..., j].std() / db[..., j].std() - 1) < 0.1


# ------------------------------------------------------------------ the MCMC contract


@pytest.fixture(scope="module")
def normal_runs():
    return {
        method: run(Langevin(normal_model), Y, chain_method=method, num_samples=1000)
        for method in ("sequential", "parallel", "vectorized")
    }


@pytest.mark.parametrize("method", ["sequential", "parallel", "vectorized"])
def test_chain_methods_sample_the_posterior(normal_runs, method):
    mcmc = normal_runs[method]
    draws = mcmc.get_samples(group_by_chain=True)["mu"]
    assert draws.shape == (2, 1000)
    z = z_mean_and_var(draws, *normal_posterior(Y))
    assert max(map(abs, z)) < Z_MAX, z
    fields = mcmc.get_extra_fields(group_by_chain=True)
    assert set(fields) == {"diverging", "potential_energy", "accept_prob", "adapt_state.step_size"}
    assert fields["diverging"].dtype == bool


def test_chain_methods_give_the_same_chains():
    """Same key per chain: sequential, parallel and vectorized run the same chains (a short
    run at a fixed step, so float rounding cannot flip an accept decision)."""
    draws = []
    for method in ("sequential", "parallel", "vectorized"):
        kernel = Langevin(normal_model, step_size=0.01, adapt_step_size=False)
        mcmc = run(kernel, Y, chain_method=method, num_warmup=0, num_samples=20)
        draws.append(np.asarray(mcmc.get_samples(group_by_chain=True)["mu"]))
    np.testing.assert_allclose(draws[0], draws[1], rtol=1e-4)
    np.testing.assert_allclose(draws[0], draws[2], rtol=1e-4)


def test_arviz_groups_and_sample_stats(normal_runs):
    import arviz as az

    mcmc = normal_runs["vectorized"]
    idata = az.from_numpyro(mcmc, log_likelihood=True)
    groups = set(
        idata.groups() if hasattr(idata, "groups") and callable(idata.groups) else idata.children
    )
    groups = {g.strip("/") for g in groups}
    assert {"posterior", "sample_stats", "log_likelihood"} <= groups
    stats = idata["sample_stats"]
    assert {"diverging", "lp", "acceptance_rate", "step_size"} <= set(stats.data_vars)
    np.testing.assert_allclose(
        np.asarray(stats["lp"]),
        -np.asarray(mcmc.get_extra_fields(group_by_chain=True)["potential_energy"]),
        rtol=1e-6,
    )
    assert np.asarray(idata["log_likelihood"]["y"]).shape == (2, 1000, Y.shape[0])
    assert "step size" in mcmc.sampler.get_diagnostics_str(
        jax.tree.map(lambda x: x[0], mcmc.last_state)
    )


def test_init_params_are_honoured():
    kernel = Langevin(normal_model, step_size=1e-12, adapt_step_size=False)
    mcmc = run(
        kernel, Y, num_chains=1, num_warmup=0, num_samples=3, init_params={"mu": jnp.array(7.0)}
    )
    np.testing.assert_allclose(mcmc.get_samples()["mu"], 7.0, atol=1e-4)


def test_init_strategy_is_honoured():
    kernel = Langevin(
        normal_model,
        step_size=1e-12,
        adapt_step_size=False,
        init_strategy=init_to_value(values={"mu": -3.0}),
    )
    mcmc = run(kernel, Y, num_chains=1, num_warmup=0, num_samples=2)
    np.testing.assert_allclose(mcmc.get_samples()["mu"], -3.0, atol=1e-4)


@pytest.mark.parametrize("jit_model_args", [False, True])
def test_second_run_on_new_data_samples_the_new_posterior(jit_model_args):
    mcmc = MCMC(
        Langevin(normal_model),
        num_warmup=300,
        num_samples=1000,
        progress_bar=False,
        jit_model_args=jit_model_args,
    )
    for y in (Y, Y + 100.0):
        mcmc.run(jax.random.PRNGKey(4), y)
        draws = mcmc.get_samples(group_by_chain=True)["mu"]
        z = z_mean_and_var(draws, *normal_posterior(y))
        assert max(map(abs, z)) < Z_MAX, (float(y.mean()), z)


def test_no_retracing_on_new_data_of_the_same_shape(monkeypatch):
    """With jit_model_args=True a second run on new data reuses the compiled step."""
    traces = []
    move = Langevin._move

    def counting_move(self, *args):
        traces.append(1)
        return move(self, *args)

    monkeypatch.setattr(Langevin, "_move", counting_move)
    mcmc = MCMC(
        Langevin(normal_model),
        num_warmup=20,
        num_samples=20,
        progress_bar=False,
        jit_model_args=True,
    )
    mcmc.run(jax.random.PRNGKey(8), Y)
    first = len(traces)
    mcmc.run(jax.random.PRNGKey(9), Y + 1.0)
    assert first >= 1 and len(traces) == first


def test_resume_from_post_warmup_state_keeps_adaptation_frozen():
    mcmc = MCMC(Langevin(normal_model), num_warmup=300, num_samples=200, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(5), Y)
    adapted = mcmc.last_state.adapt_state
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(mcmc.post_warmup_state.rng_key, Y)
    after = mcmc.last_state.adapt_state
    np.testing.assert_array_equal(after.step_size, adapted.step_size)
    np.testing.assert_array_equal(after.inverse_mass_matrix, adapted.inverse_mass_matrix)
    assert np.all(mcmc.get_extra_fields()["adapt_state.step_size"] == adapted.step_size)
    assert int(mcmc.last_state.i) == 700


def test_several_steps_per_sample():
    """Each draw is 4 Langevin steps; warmup counts steps; the posterior is unchanged."""
    mcmc = run(
        Langevin(normal_model, steps_per_sample=4),
        Y,
        num_chains=2,
        num_warmup=200,
        num_samples=500,
    )
    assert np.all(np.asarray(mcmc.last_state.i) == 4 * 700)
    z = z_mean_and_var(mcmc.get_samples(group_by_chain=True)["mu"], *normal_posterior(Y))
    assert max(map(abs, z)) < Z_MAX, z
    accept = mcmc.get_extra_fields()["accept_prob"]
    assert 0.3 < float(accept.mean()) < 0.95


def test_refresh_recomputes_the_cached_energy():
    kernel = Langevin(normal_model)
    state = kernel.init(jax.random.PRNGKey(6), 10, None, (Y,), {})
    new = kernel.refresh(state, (Y + 5.0,), {})
    pe = kernel._flat_potential((Y + 5.0,), {})(new.core.position)
    np.testing.assert_allclose(new.potential_energy, pe, rtol=1e-6)
    np.testing.assert_allclose(
        new.core.potential_grad,
        jax.grad(kernel._flat_potential((Y + 5.0,), {}))(new.core.position),
        rtol=1e-5,
    )
    assert not np.allclose(new.potential_energy, state.potential_energy)


def test_pickle_round_trip_then_run():
    mcmc = run(Langevin(normal_model), Y, num_chains=1, num_warmup=50, num_samples=50)
    again = pickle.loads(pickle.dumps(mcmc))
    again.run(jax.random.PRNGKey(7), Y)
    assert again.get_samples()["mu"].shape == (50,)


# ------------------------------------------------------------------ potential_fn and mobility


def test_potential_fn_with_position_dependent_mobility():
    """An array potential with a dense K(x) callable on arrays: N(0, diag(1, 4))."""

    def potential(x):
        return 0.5 * (x[0] ** 2 + x[1] ** 2 / 4.0)

    def k(x):
        return jnp.array([[1.0 + 0.1 * x[1] ** 2, 0.2], [0.2, 2.0 + jnp.tanh(x[0])]])

    mcmc = run(
        Langevin(potential_fn=potential, mobility=k),
        num_chains=4,
        num_samples=2000,
        init_params=jnp.zeros((4, 2)),
    )
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    for j, var in enumerate((1.0, 4.0)):
        z = z_mean_and_var(draws[..., j], 0.0, var)
        assert max(map(abs, z)) < Z_MAX, (j, z)


def test_model_with_callable_mobility_on_sites():
    """The callable takes the dict of unconstrained sites, as the potential does."""
    calls = []

    def k(params):
        calls.append(set(params))
        return jnp.exp(0.1 * jnp.tanh(params["mu"])) * jnp.ones(1)

    mcmc = run(Langevin(normal_model, mobility=k), Y, num_chains=4)
    assert calls and calls[0] == {"mu"}
    z = z_mean_and_var(mcmc.get_samples(group_by_chain=True)["mu"], *normal_posterior(Y))
    assert max(map(abs, z)) < Z_MAX, z


def test_nan_region_is_rejected_and_reported_diverging():
    """A potential that is NaN for x > 1 (a half-normal on x <= 1, written carelessly)."""

    def potential(x):
        return jnp.where(x[0] > 1.0, jnp.nan, 0.5 * x[0] ** 2)

    mcmc = run(
        Langevin(potential_fn=potential, step_size=0.5),
        num_chains=2,
        init_params=jnp.zeros((2, 1)),
    )
    draws = np.asarray(mcmc.get_samples())
    assert np.all(np.isfinite(draws)) and draws.max() <= 1.0
    assert mcmc.get_extra_fields()["diverging"].sum() > 0


@pytest.mark.parametrize("dense", [False, True])
def test_constant_mobility_array(dense):
    mobility = jnp.array([[0.02]]) if dense else jnp.array([0.02])
    mcmc = run(Langevin(normal_model, mobility=mobility), Y, num_chains=4)
    assert mcmc.last_state.adapt_state.inverse_mass_matrix.shape[-1] == 1
    z = z_mean_and_var(mcmc.get_samples(group_by_chain=True)["mu"], *normal_posterior(Y))
    assert max(map(abs, z)) < Z_MAX, z


def test_init_is_compiled_once_per_kernel(monkeypatch):
    """A repeated run, or new data of the same shape, reuses the compiled initial state."""
    traces = []
    init_one = Langevin._init_one

    def counting_init_one(self, *args, **kwargs):
        traces.append(1)
        return init_one(self, *args, **kwargs)

    monkeypatch.setattr(Langevin, "_init_one", counting_init_one)
    mcmc = MCMC(Langevin(normal_model), num_warmup=20, num_samples=20, progress_bar=False)
    for key, y in ((10, Y), (11, Y), (12, Y + 1.0)):
        mcmc.run(jax.random.PRNGKey(key), y)
    assert len(traces) == 1


def test_dense_adaptation_keeps_every_direction():
    """Short first windows (25 draws < d) must not collapse the dense mobility.

    Regression: the window estimate has rank < d; regularised towards a tiny identity, the
    missing directions got ~1e-4 of their variance and never recovered.
    """
    d = 40
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (q * np.logspace(-1, 1, d)) @ q.T
    precision = jnp.asarray(np.linalg.inv(cov))

    def potential(x):
        return 0.5 * x @ precision @ x

    kernel = Langevin(potential_fn=potential, dense_mobility=True)
    mcmc = MCMC(kernel, num_warmup=500, num_samples=10, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(13), init_params=jnp.ones(d))
    mobility = np.asarray(mcmc.last_state.core.mobility.matrix)
    chol = np.linalg.cholesky(np.linalg.inv(cov))
    relative = np.linalg.eigvalsh(chol.T @ mobility @ chol)  # K in units of the covariance
    assert relative.min() > 0.2 and relative.max() < 5.0, (relative.min(), relative.max())
