"""Tests of RecallLearn: EM with Langevin recall of the latents and optax learning steps.

Tolerances are Monte Carlo standard errors: the stationary trace of a learned parameter under a
constant learning rate is averaged after burn-in, and its MCSE is the trace's standard deviation
over the square root of its effective sample size (NumPyro's ``effective_sample_size``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.distributions import constraints

from numpyro_langevin import RecallLearn
from numpyro_langevin import mobility as mob
from numpyro_langevin.em import load_state, save_state
from numpyro_langevin.recall_learn import (
    DivergingObjectiveWarning,
    RecallLearnRunResult,
    RecallLearnState,
    diverging_objective,
)

Z_MAX = 4.0  # |mean - target| / MCSE


# ---------------------------------------------------------------- models
def toy_model(y, subsample_size=None):
    """Kuntz, Lim & Johansen (2023), Ex. 1: x_d ~ N(theta, 1), y_d | x_d ~ N(x_d, 1)."""
    theta = numpyro.param("theta", 0.0)
    with numpyro.plate("d", y.shape[0], subsample_size=subsample_size) as idx:
        x = numpyro.sample("x", dist.Normal(theta, 1.0))
        numpyro.sample("y", dist.Normal(x, 1.0), obs=y[idx])


def ppca_model(X, q):
    """Probabilistic PCA: h ~ N(0, I_q), x | h ~ N(W h + mu, sigma^2 I)."""
    d = X.shape[1]
    W = numpyro.param("W", lambda key: 0.1 * jax.random.normal(key, (d, q)))
    mu = numpyro.param("mu", jnp.mean(X, 0))
    sigma = numpyro.param("sigma", 1.0, constraint=constraints.positive)
    with numpyro.plate("n", X.shape[0]):
        h = numpyro.sample("h", dist.Normal(0.0, 1.0).expand([q]).to_event(1))
        numpyro.sample("x", dist.Normal(h @ W.T + mu, sigma).to_event(1), obs=X)


def linear_hopfield(V, k=2):
    """E = |v|^2/2 + |h|^2/2 - v^T U h: unnormalised, positive phase alone is power iteration."""
    d = V.shape[1]
    U = numpyro.param("U", lambda key: 0.1 * jax.random.normal(key, (d, k)))
    with numpyro.plate("n", V.shape[0]):
        h = numpyro.sample("h", dist.ImproperUniform(constraints.real_vector, (), (k,)))
        v = numpyro.sample("v", dist.ImproperUniform(constraints.real_vector, (), (d,)), obs=V)
        energy = 0.5 * jnp.sum(v**2, -1) + 0.5 * jnp.sum(h**2, -1) - jnp.sum((v @ U) * h, -1)
        numpyro.factor("energy", -energy)


@pytest.fixture(scope="module")
def y():
    return jax.random.normal(jax.random.PRNGKey(1), (100,)) * np.sqrt(2.0) + 1.0


def theta_trace(em, key, num_burn, num_keep, *args):
    """Learned theta after each update (``update`` inside ``lax.scan``: one compilation), and
    the data particles of the last two iterations."""
    state = em.init(key, *args)

    def body(s, _):
        s, _ = em.update(s, *args)
        return s, (s.params["theta"], s.particles)

    state, (trace, particles) = jax.lax.scan(body, state, None, length=num_burn + num_keep)
    last_two = jax.tree.map(lambda x: x[-2:], particles)
    return np.asarray(trace[num_burn:]), state, last_two


def z_score(trace, target):
    ess = float(effective_sample_size(trace[None]))
    mcse = trace.std() / np.sqrt(ess)
    return (trace.mean() - target) / mcse


# ---------------------------------------------------------------- 1. toy hierarchical model
@pytest.fixture(scope="module")
def toy_em():
    return RecallLearn(toy_model, optax.sgd(0.01), num_particles=4, recall_steps=5)


@pytest.fixture(scope="module")
def toy_run(toy_em, y):
    return theta_trace(toy_em, jax.random.PRNGKey(0), 200, 400, y)


def test_toy_theta_is_mean_y(toy_run, y):
    trace, state, _ = toy_run
    z = z_score(trace, float(jnp.mean(y)))
    assert abs(z) < Z_MAX, (trace.mean(), float(jnp.mean(y)), z)
    # the recall tracks q(x | y, theta) = N((y + theta)/2, 1/2): check its mean over particles
    x = np.asarray(state.particles["x"])
    assert x.shape == (4, 100)
    resid = x - (np.asarray(y) + trace[-1]) / 2.0
    assert abs(resid.mean()) < 4.0 * np.sqrt(0.5 / resid.size) + 4.0 * trace.std()


def test_toy_negative_phase_same_optimum(y):
    # the joint's variances are 1 (x) and 2 (y): a constant diagonal mobility matching them
    joint_mobility = np.concatenate([np.ones(100), np.full(100, 2.0)])
    em = RecallLearn(
        toy_model,
        optax.sgd(0.002),
        num_particles=4,
        recall_steps=5,
        negative_phase=True,
        joint_mobility=joint_mobility,
    )
    trace, state, _ = theta_trace(em, jax.random.PRNGKey(0), 200, 600, y)
    z = z_score(trace, float(jnp.mean(y)))
    assert abs(z) < Z_MAX, (trace.mean(), float(jnp.mean(y)), z)
    assert set(state.joint_particles) == {"x", "y"}
    assert state.joint_particles["y"].shape == (4, 100)


def test_toy_subsampled(y):
    em = RecallLearn(toy_model, optax.sgd(0.01), num_particles=4, recall_steps=5)
    trace, state, last_two = theta_trace(em, jax.random.PRNGKey(0), 200, 400, y, 20)
    z = z_score(trace, float(jnp.mean(y)))
    assert abs(z) < Z_MAX, (trace.mean(), float(jnp.mean(y)), z)
    assert state.particles["x"].shape == (4, 100)  # particles of all points are kept
    # one update moves the particles of the 20 subsampled points only
    before, after = np.asarray(last_two["x"])
    moved = np.any(after != before, axis=0)
    assert moved.sum() == 20


# ---------------------------------------------------------------- 2. PPCA on digits
def ppca_closed_form(X, q):
    """Tipping & Bishop (1999): mu = mean, sigma^2 = mean of the d - q smallest eigenvalues of
    S (1/n), W = U_q (Lambda_q - sigma^2 I)^(1/2); and the mean log-likelihood per image."""
    X = np.asarray(X, dtype=np.float64)
    S = np.cov(X.T, bias=True)
    lam, vec = np.linalg.eigh(S)
    lam, vec = lam[::-1], vec[:, ::-1]
    s2 = lam[q:].mean()
    W = vec[:, :q] * np.sqrt(lam[:q] - s2)
    return W, X.mean(0), s2


def ppca_loglik(X, W, mu, s2):
    X, W, mu = (np.asarray(a, dtype=np.float64) for a in (X, W, mu))
    C = W @ W.T + float(s2) * np.eye(X.shape[1])
    r = X - mu
    _, logdet = np.linalg.slogdet(C)
    quad = np.einsum("ni,ij,nj->n", r, np.linalg.inv(C), r)
    return float(np.mean(-0.5 * (X.shape[1] * np.log(2 * np.pi) + logdet + quad)))


@pytest.fixture(scope="module")
def ppca():
    from sklearn.datasets import load_digits

    X = jnp.asarray(load_digits().data[:300] / 16.0, dtype=jnp.float32)
    q, steps = 5, 400
    em = RecallLearn(
        ppca_model,
        optax.adam(optax.cosine_decay_schedule(0.03, steps, alpha=0.01)),
        num_particles=2,
        recall_steps=5,
    )
    result = em.run(jax.random.PRNGKey(0), steps, X, q, progress_bar=False)
    return em, X, q, result


def test_ppca_matches_tipping_bishop(ppca):
    em, X, q, result = ppca
    W, mu, s2 = ppca_closed_form(X, q)
    best = ppca_loglik(X, W, mu, s2)
    p = result.params
    learned = ppca_loglik(X, p["W"], p["mu"], p["sigma"] ** 2)
    assert learned <= best + 1e-3  # the closed form is the maximum
    assert (best - learned) / abs(best) < 0.01, (learned, best)
    assert abs(float(p["sigma"]) ** 2 - s2) / s2 < 0.05, (float(p["sigma"]) ** 2, s2)


def test_api_shapes(ppca):
    em, X, q, result = ppca
    assert isinstance(result, RecallLearnRunResult)
    assert isinstance(result.state, RecallLearnState)
    assert result.losses.shape == (400,)
    assert np.all(np.isfinite(np.asarray(result.losses)))
    # params are constrained; the state holds the unconstrained values (as in SVI)
    assert float(result.params["sigma"]) > 0
    np.testing.assert_allclose(
        np.log(float(result.params["sigma"])), float(result.state.params["sigma"]), rtol=1e-6
    )
    assert set(em.get_params(result.state)) == {"W", "mu", "sigma"}
    assert result.state.particles["h"].shape == (2, 300, q)
    assert result.state.joint_particles is None
    assert 0.3 < float(result.state.accept_prob) < 0.85


def test_update_api(toy_em, toy_run, y):
    _, state, _ = toy_run
    new, loss = toy_em.update(state, y)
    assert jnp.shape(loss) == ()
    assert int(new.iteration) == int(state.iteration) + 1
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert set(toy_em.get_params(new)) == {"theta"}


# ---------------------------------------------------------------- 4. divergence
def test_positive_phase_on_unnormalised_energy_warns():
    V = jax.random.normal(jax.random.PRNGKey(3), (50, 4))
    em = RecallLearn(
        linear_hopfield,
        optax.adam(0.05),
        num_particles=2,
        recall_steps=3,
        adapt_step_size=False,
        step_size=0.2,
    )
    with pytest.warns(DivergingObjectiveWarning, match="negative_phase=True"):
        result = em.run(jax.random.PRNGKey(0), 200, V, progress_bar=False)
    # power iteration: the coupling's norm has grown far beyond the normalisable |U| < 1
    assert np.linalg.norm(np.asarray(result.params["U"]), 2) > 5.0


def test_diverging_objective_criterion():
    t = np.arange(400.0)
    noise = np.random.default_rng(0).normal(size=400)
    converging = 100.0 * np.exp(-t / 30.0) + noise
    assert diverging_objective(converging) is None
    assert diverging_objective(noise) is None
    assert "faster" in diverging_objective(-0.5 * t**2 + noise)
    assert "faster" in diverging_objective(-np.exp(t / 50.0))
    bad = converging.copy()
    bad[300:] = np.nan
    assert "iteration 301" in diverging_objective(bad)


# ---------------------------------------------------------------- resume
def test_resume_is_bit_identical(toy_em, y, tmp_path):
    key = jax.random.PRNGKey(7)
    full = toy_em.run(key, 20, y, progress_bar=False)
    half = toy_em.run(key, 10, y, progress_bar=False)
    path = tmp_path / "state.npz"
    save_state(path, half.state)
    loaded = load_state(path, like=toy_em.init(jax.random.PRNGKey(99), y))
    rest = toy_em.run(jax.random.PRNGKey(123), 10, y, progress_bar=False, init_state=loaded)
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(rest.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(full.losses[10:]), np.asarray(rest.losses))
    # the progress-bar loop (jitted update per step) gives the same path
    bar = toy_em.run(key, 20, y, progress_bar=True)
    np.testing.assert_allclose(np.asarray(bar.losses), np.asarray(full.losses), rtol=1e-6)
    # a state of another configuration (here 3 particles) is refused
    other = loaded._replace(particles={"x": jnp.zeros((3, 100))})
    with pytest.raises(ValueError, match="Leaf"):
        load_state(path, like=other)


# ---------------------------------------------------------------- mobility options
@pytest.mark.parametrize(
    "mobility",
    [
        lambda z: 0.5 + 0.1 * jnp.tanh(z["x"]) ** 2,
        lambda z: mob.constant(jnp.full(10, 0.5))(None),
    ],
    ids=["callable", "callable-Mobility"],
)
def test_mobility_options(mobility, y):
    em = RecallLearn(
        toy_model,
        optax.sgd(0.01),
        num_particles=2,
        recall_steps=3,
        mobility=mobility,
        adapt_step_size=False,
        step_size=0.3,
    )
    state = em.init(jax.random.PRNGKey(0), y[:10])
    new, loss = em.update(state, y[:10])
    assert np.isfinite(float(loss))
    assert 0.0 < float(new.accept_prob) <= 1.0
    assert np.any(np.asarray(new.particles["x"]) != np.asarray(state.particles["x"]))


def test_bad_mobility(y):
    em = RecallLearn(toy_model, optax.sgd(0.01), mobility=np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        em.init(jax.random.PRNGKey(0), y[:10])
    em = RecallLearn(
        toy_model, optax.sgd(0.01), mobility=lambda z: -jnp.ones(10), adapt_step_size=False
    )
    with pytest.raises(ValueError, match="> 0"):
        em.init(jax.random.PRNGKey(0), y[:10])


# ---------------------------------------------------------------- block plate


def test_toy_block_plate_same_optimum(y):
    """One chain and Metropolis test per data point: same fixed point, and the step size is
    that of a 1-D chain (not shrunk by the 100 latents)."""
    em = RecallLearn(toy_model, optax.sgd(0.01), num_particles=4, recall_steps=5, block_plate="d")
    trace, state, _ = theta_trace(em, jax.random.PRNGKey(0), 200, 400, y)
    z = z_score(trace, float(jnp.mean(y)))
    assert abs(z) < Z_MAX, (trace.mean(), float(jnp.mean(y)), z)
    # q(x_d | y_d, theta) = N((y_d + theta)/2, 1/2): MALA's step in 1-D is about 1 (units of
    # the variance: h ~ 2 * 0.5); with one test over all 100 latents it was several times less
    assert float(jnp.exp(state.log_step_size)) > 0.5
    x = np.asarray(state.particles["x"])
    resid = x - (np.asarray(y) + trace[-1]) / 2.0
    assert abs(resid.mean()) < 4.0 * np.sqrt(0.5 / resid.size) + 4.0 * trace.std()
    assert abs(resid.var() / 0.5 - 1.0) < 4.0 * np.sqrt(2.0 / resid.size) + 0.05


def test_block_plate_negative_phase_and_joint_init(y):
    joint_mobility = np.array([1.0, 2.0])  # one data point's (x, y): variances 1 and 2
    em = RecallLearn(
        toy_model,
        optax.sgd(0.002),
        num_particles=4,
        recall_steps=5,
        negative_phase=True,
        joint_recall_steps=8,
        joint_mobility=joint_mobility,
        block_plate="d",
    )
    state = em.init(jax.random.PRNGKey(0), y)
    # the joint starts at the data, with the data particles' latents
    np.testing.assert_array_equal(np.asarray(state.joint_particles["y"]), np.tile(y, (4, 1)))
    np.testing.assert_array_equal(
        np.asarray(state.joint_particles["x"]), np.asarray(state.particles["x"])
    )
    trace, state, _ = theta_trace(em, jax.random.PRNGKey(0), 200, 600, y)
    z = z_score(trace, float(jnp.mean(y)))
    assert abs(z) < Z_MAX, (trace.mean(), float(jnp.mean(y)), z)


def test_block_energy_sums_to_the_energy(ppca):
    """Per-data-point energies of a model with a vector latent and observed site."""
    from numpyro.handlers import uncondition
    from numpyro.infer.initialization import init_to_uniform

    from numpyro_langevin.em import phase as ph
    from numpyro_langevin.em import sites as st

    args = (ppca[1][:50], 2)
    for model in (ppca_model, uncondition(ppca_model)):
        sites = st.inspect_model(
            model, jax.random.PRNGKey(0), args, {}, init_to_uniform, block_plate="n"
        )
        phase = ph.Phase(model, sites, 1, None)
        latents = st.init_latents(
            model, jax.random.PRNGKey(1), args, {}, sites, init_to_uniform, sites.param_values
        )
        e = ph.block_energy(phase, {}, latents, sites.param_values, args, {})
        assert e.shape == (50,)
        total = ph.energy(phase, {}, latents, sites.param_values, args, {})
        np.testing.assert_allclose(float(jnp.sum(e)), float(total), rtol=1e-5)


def test_block_plate_errors(y):
    key, opt = jax.random.PRNGKey(0), optax.sgd(0.1)

    def global_latent(y):
        m = numpyro.sample("m", dist.Normal(0.0, 1.0))
        s = numpyro.param("s", 1.0, constraint=constraints.positive)
        with numpyro.plate("d", y.shape[0]):
            numpyro.sample("y", dist.Normal(m, s), obs=y)

    with pytest.raises(ValueError, match="not a plate of the model.*'d'"):
        RecallLearn(toy_model, opt, block_plate="data").init(key, y)
    with pytest.raises(ValueError, match="'m' of the model lies outside the plate 'd'"):
        RecallLearn(global_latent, opt, block_plate="d").init(key, y)
    with pytest.raises(TypeError, match="block_plate"):
        RecallLearn(toy_model, opt, block_plate=1)
    with pytest.raises(ValueError, match="joint_init"):
        RecallLearn(toy_model, opt, joint_init="prior")
    with pytest.raises(ValueError, match="joint_recall_steps"):
        RecallLearn(toy_model, opt, joint_recall_steps=0)
    em = RecallLearn(toy_model, opt, mobility=np.ones(3), block_plate="d")
    with pytest.raises(ValueError, match="shape"):
        em.init(key, y)


def test_block_plate_refuses_coupled_elements():
    """y_d depends on x_{d-1}: per-element tests would sample the prior; refused at init."""

    def coupled(y):
        theta = numpyro.param("theta", 0.0)
        with numpyro.plate("d", y.shape[0]):
            x = numpyro.sample("x", dist.Normal(theta, 1.0))
            numpyro.sample("y", dist.Normal(jnp.roll(x, 1), 1.0), obs=y)

    em = RecallLearn(coupled, optax.sgd(0.1), block_plate="d")
    with pytest.raises(ValueError, match="must be independent"):
        em.init(jax.random.PRNGKey(0), jnp.arange(6.0))


def test_bad_mobilities_are_reported_at_init(y):
    from numpyro_langevin.em import PhaseMobility

    key, opt = jax.random.PRNGKey(0), optax.sgd(0.1)
    # a callable of the wrong shape, with the step-size search inside the compiled init
    em = RecallLearn(toy_model, opt, block_plate="d", mobility=lambda z: jnp.ones(3))
    with pytest.raises(ValueError, match=r"must return shape \(1,\)"):
        em.init(key, y)
    for bad, match in [
        (lambda p, x: jnp.full(1, jnp.nan), "finite|> 0"),
        (lambda p, x: -jnp.ones(1), "> 0"),
        (lambda p, x: jnp.ones(2), "shape"),
    ]:
        em = RecallLearn(toy_model, opt, block_plate="d", mobility=PhaseMobility(bad))
        with pytest.raises(ValueError, match=match):
            em.init(key, y)
    with pytest.raises(TypeError, match="PhaseMobility"):
        PhaseMobility(3.0)


def test_joint_started_outside_the_support_is_refused():
    def positive_obs(y):
        theta = numpyro.param("theta", 0.0)
        with numpyro.plate("d", y.shape[0]):
            x = numpyro.sample("x", dist.Normal(theta, 1.0))
            numpyro.sample("y", dist.LogNormal(x, 1.0), obs=y)

    em = RecallLearn(positive_obs, optax.sgd(0.1), negative_phase=True)
    with pytest.raises(ValueError, match="'y' are not finite.*support"):
        em.init(jax.random.PRNGKey(0), jnp.array([1.0, 2.0, -1.0]))


# ---------------------------------------------------------------- errors
def test_bad_arguments():
    opt = optax.sgd(0.1)
    with pytest.raises(ValueError, match="num_particles"):
        RecallLearn(toy_model, opt, num_particles=0)
    with pytest.raises(ValueError, match="recall_steps"):
        RecallLearn(toy_model, opt, recall_steps=2.5)
    with pytest.raises(ValueError, match="num_joint_particles"):
        RecallLearn(toy_model, opt, negative_phase=True, num_joint_particles=-1)
    with pytest.raises(TypeError, match="optax"):
        RecallLearn(toy_model, "adam")
    with pytest.raises(ValueError, match="step_size"):
        RecallLearn(toy_model, opt, step_size=0.0)
    with pytest.raises(ValueError, match="temperature"):
        RecallLearn(toy_model, opt, temperature=-1.0)
    with pytest.raises(ValueError, match="target_accept_prob"):
        RecallLearn(toy_model, opt, target_accept_prob=1.0)
    with pytest.raises(TypeError, match="callable"):
        RecallLearn(None, opt)
    with pytest.raises(RuntimeError, match="init"):
        RecallLearn(toy_model, opt).get_params(None)


def test_model_errors(y):
    key, opt = jax.random.PRNGKey(0), optax.sgd(0.1)

    def no_params(y):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(x, 1.0), obs=y)

    def no_latents(y):
        m = numpyro.param("m", 0.0)
        numpyro.sample("y", dist.Normal(m, 1.0), obs=y)

    def discrete(y):
        p = numpyro.param("p", 0.5, constraint=constraints.unit_interval)
        z = numpyro.sample("z", dist.Bernoulli(p))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y)

    def discrete_visible(y):
        p = numpyro.param("p", 0.0)
        x = numpyro.sample("x", dist.Normal(p, 1.0))
        numpyro.sample("y", dist.Bernoulli(logits=x), obs=y)

    def global_latent(y, subsample_size=10):
        m = numpyro.sample("m", dist.Normal(0.0, 1.0))
        s = numpyro.param("s", 1.0, constraint=constraints.positive)
        with numpyro.plate("d", y.shape[0], subsample_size=subsample_size) as idx:
            numpyro.sample("y", dist.Normal(m, s), obs=y[idx])

    with pytest.raises(ValueError, match="no numpyro.param"):
        RecallLearn(no_params, opt).init(key, 1.0)
    with pytest.raises(ValueError, match="no latent"):
        RecallLearn(no_latents, opt).init(key, 1.0)
    with pytest.raises(ValueError, match="'z'.*discrete"):
        RecallLearn(discrete, opt).init(key, 1.0)
    with pytest.raises(ValueError, match="'y' is observed in the model but discrete"):
        RecallLearn(discrete_visible, opt, negative_phase=True).init(key, 1.0)
    with pytest.raises(ValueError, match="'m'.*subsampled"):
        RecallLearn(global_latent, opt).init(key, y)
    with pytest.raises(ValueError, match="init_params"):
        RecallLearn(toy_model, opt).init(key, y, init_params={"nope": 1.0})
    with pytest.raises(RuntimeError, match="init"):
        RecallLearn(toy_model, opt).update(None, y)


def test_resuming_with_other_data_sizes_is_refused(y):
    em = RecallLearn(toy_model, optax.sgd(0.01), num_particles=2, recall_steps=2)
    state = em.init(jax.random.PRNGKey(0), y)
    with pytest.raises(ValueError, match="made for other data"):
        em.run(jax.random.PRNGKey(1), 2, y[:50], init_state=state, progress_bar=False)
    other = RecallLearn(toy_model, optax.sgd(0.01), num_particles=3)
    with pytest.raises(ValueError, match="particle numbers"):
        other.run(jax.random.PRNGKey(1), 2, y, init_state=state, progress_bar=False)
