"""Unit, exactness and invariance tests of the functional core."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gaussian_moments, run_chains, standard_normal_energy, z_scores
from scipy.stats import multivariate_normal

from numpyro_langevin import core
from numpyro_langevin import mobility as mob

Z_MAX = 4.0  # |z| bound for a handful of Monte Carlo statistics per test


def dense_k(x):
    """K(x) = I + x x^T: dense, position dependent, (div K)_a = (d + 1) x_a."""
    return jnp.eye(x.shape[0]) + jnp.outer(x, x)


def diagonal_k(x):
    """k_a(x) = 1 + |x|^2: each entry depends on every coordinate; (div K)_a = 2 x_a."""
    return 1.0 + jnp.sum(x**2) * jnp.ones_like(x)


def energy(x):
    return 0.5 * jnp.sum(x**2) + 0.25 * jnp.sum(x**4) + x[0] * x[1]


X = jnp.array([0.3, -1.2, 0.7])


@pytest.mark.parametrize(
    "k_fn, div_closed_form",
    [(dense_k, lambda x: (x.shape[0] + 1) * x), (diagonal_k, lambda x: 2 * x)],
    ids=["dense", "diagonal"],
)
def test_divergence_and_drift_match_closed_form(k_fn, div_closed_form):
    temperature = 0.7
    state = core.init(X, energy, mob.position_dependent(k_fn), temperature)
    np.testing.assert_allclose(state.mobility.divergence, div_closed_form(X), rtol=1e-6)
    grad = X + X**3 + jnp.array([X[1], X[0], 0.0])
    k = k_fn(X) if k_fn is dense_k else jnp.diag(k_fn(X))
    expected = temperature * div_closed_form(X) - k @ grad
    np.testing.assert_allclose(state.drift, expected, rtol=1e-5)
    np.testing.assert_allclose(state.mobility.log_det, np.linalg.slogdet(k)[1], rtol=1e-5)


def test_constant_mobility_spends_no_work_on_divergence():
    state = core.init(X, energy, mob.constant(jnp.array([1.0, 2.0, 3.0])))
    assert state.mobility.divergence is None
    np.testing.assert_allclose(state.drift, -jnp.array([1.0, 2.0, 3.0]) * jax.grad(energy)(X))


@pytest.mark.parametrize("k_fn", [dense_k, diagonal_k], ids=["dense", "diagonal"])
def test_proposal_log_density_is_the_gaussian(k_fn):
    temperature, h = 1.7, 0.05
    state = core.init(X, energy, mob.position_dependent(k_fn), temperature)
    k = k_fn(X) if k_fn is dense_k else jnp.diag(k_fn(X))
    mean = X + h * state.drift
    for y in (X + 0.1, X - jnp.array([0.2, 0.0, 0.5])):
        direct = multivariate_normal(mean, 2 * temperature * h * k).logpdf(y)
        const = 0.5 * X.shape[0] * np.log(4 * np.pi * temperature * h)
        ours = core.proposal_log_density(y, state, h, temperature)
        np.testing.assert_allclose(ours - const, direct, rtol=1e-5)


def test_acceptance_uses_both_proposal_densities():
    temperature, h = 1.3, 0.2
    mobility_fn = mob.position_dependent(dense_k)
    state = core.init(X, energy, mobility_fn, temperature)
    for seed in range(5):
        _, info = core.step(jax.random.PRNGKey(seed), state, energy, mobility_fn, h, temperature)
        y = info.proposal
        log_ratio = (
            -(y.potential_energy - state.potential_energy) / temperature
            + core.proposal_log_density(X, y, h, temperature)
            - core.proposal_log_density(y.position, state, h, temperature)
        )
        np.testing.assert_allclose(
            info.accept_prob, min(1.0, float(jnp.exp(log_ratio))), rtol=1e-4
        )


def test_identity_mobility_is_plain_mala():
    """Same key, same path as BlackJAX's MALA (x' = x + h grad log p + sqrt(2h) xi)."""
    h = 0.3
    mobility_fn = mob.constant(jnp.ones(3))
    ours = core.init(X, energy, mobility_fn)
    mala = blackjax.mala(lambda x: -energy(x), h)
    theirs = mala.init(X)
    for key in jax.random.split(jax.random.PRNGKey(1), 30):
        ours, info = core.step(key, ours, energy, mobility_fn, h)
        theirs, their_info = mala.step(key, theirs)
        assert bool(info.is_accepted) == bool(their_info.is_accepted)
        np.testing.assert_allclose(ours.position, theirs.position, rtol=1e-5, atol=1e-6)


def test_constant_dense_mobility_is_a_linear_change_of_variables():
    """K = L L^T on x is identity-K sampling of u with x = L u, for the same key."""
    k = jnp.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    chol = jnp.linalg.cholesky(k)
    h = 0.4
    x_state = core.init(X, energy, mob.constant(k))
    u_energy = lambda u: energy(chol @ u)  # noqa: E731
    u_state = core.init(jnp.linalg.solve(chol, X), u_energy, mob.constant(jnp.ones(3)))
    for key in jax.random.split(jax.random.PRNGKey(2), 30):
        x_state, x_info = core.step(key, x_state, energy, mob.constant(k), h)
        u_state, u_info = core.step(key, u_state, u_energy, mob.constant(jnp.ones(3)), h)
        assert bool(x_info.is_accepted) == bool(u_info.is_accepted)
        np.testing.assert_allclose(x_state.position, chol @ u_state.position, rtol=1e-4, atol=1e-5)


def test_non_finite_proposal_is_rejected_and_flagged():
    """A potential that is NaN for x_0 > 1 and a K that loses positive definiteness for
    |x_1| > 1: those proposals are rejected, the chain stays finite."""

    def bad_energy(x):
        return jnp.where(x[0] > 1.0, jnp.nan, 0.5 * jnp.sum(x**2))

    def bad_k(x):
        return jnp.array([1.0, 1.0 - x[1] ** 2])

    mobility_fn = mob.position_dependent(bad_k)
    state = core.init(jnp.zeros(2), bad_energy, mobility_fn)
    step = jax.jit(
        lambda key, s: core.step(key, s, bad_energy, mobility_fn, 0.5, metropolis=False)
    )
    diverged = 0
    for key in jax.random.split(jax.random.PRNGKey(3), 200):
        state, info = step(key, state)
        diverged += int(info.diverging)
        assert not bool(info.diverging & info.is_accepted)
        assert np.all(np.isfinite(state.position)) and np.isfinite(state.potential_energy)
        assert state.position[0] <= 1.0 and abs(state.position[1]) < 1.0
    assert diverged > 10


def _without_divergence(mobility_fn):
    """The same K with the T div K drift term dropped (what a naive implementation does)."""

    def wrapped(x):
        m = mobility_fn(x)
        return m._replace(divergence=jnp.zeros_like(x))

    return wrapped


# ------------------------------------------------------------------ the T div K term matters


@pytest.fixture(scope="module")
def one_d_ula():
    """E = x^2/2, K(x) = 1 + x^2, T = 1, unadjusted at h = 0.005: chains start at the target."""
    n = 10_000
    x0 = jax.random.normal(jax.random.PRNGKey(10), (n, 1))
    k_fn = mob.position_dependent(lambda x: 1.0 + x**2)
    out = {}
    for name, fn in (("with", k_fn), ("without", _without_divergence(k_fn))):
        pos, _, _ = run_chains(
            jax.random.PRNGKey(11), x0, standard_normal_energy, fn, 0.005, 1000, metropolis=False
        )
        out[name] = pos[:, 0]
    return out


def test_divergence_term_gives_the_right_law(one_d_ula):
    x2 = one_d_ula["with"] ** 2
    z = (x2.mean() - 1.0) / (x2.std(ddof=1) / np.sqrt(x2.size))
    assert abs(z) < Z_MAX, f"E[x^2] = {x2.mean():.3f}, z = {z:.1f}"


def test_missing_divergence_term_is_detected(one_d_ula):
    """Without T div K the unadjusted chain relaxes to E[x^2] ~ 0.5, far outside the error."""
    x2 = one_d_ula["without"] ** 2
    mcse = x2.std(ddof=1) / np.sqrt(x2.size)
    assert abs(x2.mean() - 0.5) < 0.1
    assert (1.0 - x2.mean()) / mcse > 10 * Z_MAX


# ------------------------------------------------------------------ invariance, 2-D dense K(x)


def dense_k_2d(x):
    """Dense, position dependent, with off-diagonal terms and a non-zero divergence."""
    s = jnp.tanh(x[0] - 0.5 * x[1])
    return jnp.array([[1.0 + 0.5 * x[1] ** 2, 0.4 * s], [0.4 * s, 0.6 + 0.3 * x[0] ** 2]])


CASES = {
    # name: (metropolis, step size, steps)
    "adjusted": (True, 0.6, 40),
    "unadjusted": (False, 0.01, 300),
}


@pytest.fixture(scope="module", params=list(CASES))
def invariance_run(request):
    metropolis, h, steps = CASES[request.param]
    x0 = jax.random.normal(jax.random.PRNGKey(20), (10_000, 2))
    fn = mob.position_dependent(dense_k_2d)
    pos, acc, div = run_chains(
        jax.random.PRNGKey(21), x0, standard_normal_energy, fn, h, steps, metropolis=metropolis
    )
    return request.param, pos, acc, div


def test_invariance_with_dense_position_dependent_mobility(invariance_run):
    name, pos, acc, div = invariance_run
    assert not div
    if name == "adjusted":
        assert 0.3 < acc < 0.99  # the chain really moves
    z = z_scores(pos, *gaussian_moments(2))
    assert max(abs(v) for v in z.values()) < Z_MAX, z


def test_invariance_detects_a_wrong_proposal_density(monkeypatch):
    """Power check: drop the log det K terms from the MH ratio and the same test fails."""
    real = core.proposal_log_density

    def no_log_det(to, origin, step_size, temperature):
        return real(to, origin, step_size, temperature) + 0.5 * origin.mobility.log_det

    monkeypatch.setattr(core, "proposal_log_density", no_log_det)
    x0 = jax.random.normal(jax.random.PRNGKey(20), (10_000, 2))
    fn = mob.position_dependent(lambda x: (1.0 + x**2)[::-1])
    pos, _, _ = run_chains(jax.random.PRNGKey(21), x0, standard_normal_energy, fn, 0.6, 40)
    z = z_scores(pos, *gaussian_moments(2))
    assert max(abs(v) for v in z.values()) > 3 * Z_MAX, z


def test_missing_divergence_breaks_2d_unadjusted_chain():
    x0 = jax.random.normal(jax.random.PRNGKey(22), (10_000, 2))
    fn = _without_divergence(mob.position_dependent(dense_k_2d))
    pos, _, _ = run_chains(
        jax.random.PRNGKey(23), x0, standard_normal_energy, fn, 0.01, 300, metropolis=False
    )
    z = z_scores(pos, *gaussian_moments(2))
    assert max(abs(v) for v in z.values()) > 3 * Z_MAX, z


@pytest.mark.parametrize("temperature", [0.5, 3.0])
def test_temperature_scales_the_variance(temperature):
    """exp(-E/T) with E = |x|^2/2 is N(0, T I); chains started there stay there."""
    x0 = np.sqrt(temperature) * jax.random.normal(jax.random.PRNGKey(30), (10_000, 2))
    fn = mob.position_dependent(dense_k_2d)
    pos, acc, _ = run_chains(
        jax.random.PRNGKey(31), x0, standard_normal_energy, fn, 0.5, 40, temperature=temperature
    )
    assert acc > 0.3
    z = z_scores(pos, *gaussian_moments(2, variance=temperature))
    assert max(abs(v) for v in z.values()) < Z_MAX, z


def test_step_defaults_to_the_temperature_the_state_was_built_with():
    """init at T = 2, step without a temperature: the chains stay at N(0, 2)."""
    mobility_fn = mob.constant(jnp.ones(1))

    def chain(key, x):
        state = core.init(x, standard_normal_energy, mobility_fn, temperature=2.0)

        def body(state, key):
            return core.step(key, state, standard_normal_energy, mobility_fn, 0.5)[0], None

        return jax.lax.scan(body, state, jax.random.split(key, 30))[0].position

    x0 = np.sqrt(2.0) * jax.random.normal(jax.random.PRNGKey(40), (10_000, 1))
    pos = np.asarray(
        jax.jit(jax.vmap(chain))(jax.random.split(jax.random.PRNGKey(41), 10_000), x0)
    )
    z = z_scores(pos, *gaussian_moments(1, variance=2.0))
    assert max(abs(v) for v in z.values()) < Z_MAX, z


# ---------------------------------------------------------------- block chains


def _run_blocks(key, x0, block_energy, mobility_fn, step_size, num_steps, metropolis=True):
    state = core.block_init(x0, block_energy, mobility_fn)

    def body(state, key):
        state, info = core.block_step(
            key, state, block_energy, mobility_fn, step_size, metropolis=metropolis
        )
        return state, (info.accept_prob, info.diverging)

    state, (acc, div) = jax.jit(
        lambda s, k: jax.lax.scan(body, s, jax.random.split(k, num_steps))
    )(state, key)
    return state, np.asarray(acc), np.asarray(div)


def _block_gaussian(x):
    return 0.5 * jnp.sum(x**2, axis=1)


BLOCK_MOBILITIES = {
    "dense_position_dependent": mob.position_dependent(dense_k_2d),
    "constant_dense": mob.constant(jnp.array([[1.5, 0.4], [0.4, 0.8]])),
}


@pytest.mark.parametrize("kind", list(BLOCK_MOBILITIES))
def test_block_chains_keep_the_target_invariant(kind):
    """10,000 blocks of a 2-D standard normal, started at the target, all energies from one
    call per step: every block is an exact chain of its own (moments within MCSE)."""
    x0 = jax.random.normal(jax.random.PRNGKey(30), (10_000, 2))
    state, acc, div = _run_blocks(
        jax.random.PRNGKey(31), x0, _block_gaussian, BLOCK_MOBILITIES[kind], 0.6, 40
    )
    assert not div.any()
    assert acc.shape == (40, 10_000) and 0.3 < acc.mean() < 0.99
    z = z_scores(np.asarray(state.position), *gaussian_moments(2))
    assert max(abs(v) for v in z.values()) < Z_MAX, z
    if kind == "constant_dense":  # one shared copy, not one per block
        assert state.mobility.matrix.shape == (2, 2)


def test_block_acceptance_is_per_block():
    """A block whose energy is NaN beyond x_0 > 1 rejects (and flags) only its own proposals;
    the same step size with one test for all 1,000 blocks would accept almost nothing."""

    def energies(x):
        e = 0.5 * jnp.sum(x**2, axis=1)
        return e.at[0].set(jnp.where(x[0, 0] > 1.0, jnp.nan, e[0]))

    x0 = jax.random.normal(jax.random.PRNGKey(32), (1_000, 2)).at[0].set(0.0)
    state, acc, div = _run_blocks(
        jax.random.PRNGKey(33), x0, energies, mob.constant(jnp.ones(2)), 1.0, 200
    )
    assert div[:, 0].any() and not div[:, 1:].any()
    assert 0.4 < acc[:, 1:].mean() < 0.95  # one block at h = 1 accepts about 60%
    assert float(state.position[0, 0]) <= 1.0 and np.isfinite(np.asarray(state.position)).all()


def test_block_init_checks_the_energy_shape():
    with pytest.raises(ValueError, match="block"):
        core.block_init(jnp.zeros((3, 2)), lambda x: jnp.sum(x), mob.constant(jnp.ones(2)))
