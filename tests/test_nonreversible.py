"""The antisymmetric (non-reversible) part A(x): validation, the optimal constant A, invariance and
the speed-up on an ill-conditioned Gaussian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from helpers import gaussian_moments, standard_normal_energy, z_scores
from numpyro.infer import MCMC

from numpyro_langevin import Langevin, core
from numpyro_langevin import mobility as mob
from numpyro_langevin import nonreversible as nonrev

Z_MAX = 4.0
J01 = jnp.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
J12 = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def a_field(x):
    """A position-dependent antisymmetric field with a non-zero divergence."""
    return (1.0 + x[1] ** 2) * J01 + 2.0 * jnp.sin(x[1]) * J12


def a_field_divergence(x):
    # (div A)_a = sum_b d_b A_ab: d_1 A_01 = 2 x1, d_1 A_21 = -2 cos x1, the rest vanish.
    return jnp.array([2.0 * x[1], 0.0, -2.0 * jnp.cos(x[1])])


def run(key, x0, potential_fn, mobility_fn, anti_fn, step_size, num_steps, metropolis):
    """Vectorised chains of the core; final positions and whether any step diverged."""

    def one(key, x):
        state = core.init(x, potential_fn, mobility_fn, 1.0, anti_fn)

        def body(state, key):
            state, info = core.step(
                key, state, potential_fn, mobility_fn, step_size, 1.0, metropolis, anti_fn
            )
            return state, info.diverging

        state, div = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return state.position, div.any()

    pos, div = jax.jit(jax.vmap(one))(jax.random.split(key, x0.shape[0]), x0)
    return np.asarray(pos), bool(div.any())


# ------------------------------------------------------------------------ validation


def test_check_matrix_accepts_antisymmetric():
    a = nonrev.check_matrix(np.array([[0.0, 2.0], [-2.0, 0.0]]), 2)
    assert a.shape == (2, 2)


@pytest.mark.parametrize(
    "matrix, dim, match",
    [
        (np.array([[0.0, 1.0], [1.0, 0.0]]), 2, "not antisymmetric"),
        (np.eye(2), 2, "not antisymmetric"),
        (np.zeros((2, 3)), 2, r"shape \(2, 2\)"),
        (np.zeros(2), 2, r"shape \(2, 2\)"),
        (np.zeros((3, 3)), 2, r"shape \(2, 2\)"),
        (np.array([[0.0, np.nan], [-np.nan, 0.0]]), 2, "non-finite"),
    ],
)
def test_check_matrix_errors(matrix, dim, match):
    with pytest.raises(ValueError, match=match):
        nonrev.check_matrix(matrix, dim)


def test_check_callable_errors():
    x = jnp.zeros(3)
    nonrev.check_callable(a_field, x)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        nonrev.check_callable(lambda x: jnp.zeros(3), x)
    with pytest.raises(ValueError, match="not antisymmetric"):
        nonrev.check_callable(lambda x: jnp.eye(3) * (1.0 + x[0]), x)
    with pytest.raises(TypeError, match="failed"):
        nonrev.check_callable(lambda x: x["missing"], x)


# ------------------------------------------------------------------------ drift and densities


def test_divergence_and_drift():
    x = jnp.array([0.4, -0.3, 1.1])
    a = nonrev.position_dependent(a_field)(x)
    np.testing.assert_allclose(a.divergence, a_field_divergence(x), rtol=1e-6, atol=1e-7)
    assert np.abs(a.divergence).max() > 0.1  # the test field really has a divergence
    state = core.init(
        x,
        standard_normal_energy,
        mob.constant(jnp.ones(3)),
        0.7,
        nonrev.position_dependent(a_field),
    )
    expected = -x + 0.7 * a_field_divergence(x) - a_field(x) @ x
    np.testing.assert_allclose(state.drift, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.antisymmetric_drift, expected + x, rtol=1e-5, atol=1e-6)
    # set_mobility keeps the antisymmetric part of the drift
    new = core.set_mobility(state, mob.constant(2.0 * jnp.ones(3))(x), 0.7)
    np.testing.assert_allclose(new.drift, expected - x, rtol=1e-5, atol=1e-6)


def test_no_antisymmetric_part_adds_nothing():
    x = jnp.array([0.4, -0.3, 1.1])
    state = core.init(x, standard_normal_energy, mob.constant(jnp.ones(3)))
    assert state.antisymmetric_drift is None
    zero = core.init(
        x,
        standard_normal_energy,
        mob.constant(jnp.ones(3)),
        1.0,
        nonrev.constant(jnp.zeros((3, 3))),
    )
    np.testing.assert_allclose(zero.drift, state.drift)


def test_noise_from_symmetric_part_only():
    """The proposal is N(x + h b, 2h S): its density uses S alone, b includes A."""
    x, h = jnp.array([0.4, -0.3, 1.1]), 0.05
    s = jnp.array([1.0, 2.0, 0.5])
    anti = nonrev.position_dependent(a_field)
    state = core.init(x, standard_normal_energy, mob.constant(s), 1.0, anti)
    key = jax.random.PRNGKey(3)
    _, info = core.step(key, state, standard_normal_energy, mob.constant(s), h, 1.0, True, anti)
    xi = jax.random.normal(jax.random.split(key)[0], (3,))
    np.testing.assert_allclose(
        info.proposal.position, x + h * state.drift + jnp.sqrt(2 * h * s) * xi, rtol=1e-5
    )


# ------------------------------------------------------------------------ invariance


@pytest.fixture(scope="module")
def gaussian_draws():
    return jax.random.normal(jax.random.PRNGKey(0), (10_000, 3))


@pytest.mark.parametrize(
    "metropolis, step_size, num_steps", [(True, 0.3, 30), (False, 0.005, 60)], ids=["MALA", "ULA"]
)
def test_invariance_position_dependent_antisymmetric(
    gaussian_draws, metropolis, step_size, num_steps
):
    """10,000 chains started at N(0, I) stay there with a position-dependent A(x) and a
    position-dependent S(x)."""
    s_fn = mob.position_dependent(lambda x: 1.0 + 0.5 * jnp.tanh(x[::-1]))
    pos, div = run(
        jax.random.PRNGKey(1),
        gaussian_draws,
        standard_normal_energy,
        s_fn,
        nonrev.position_dependent(a_field),
        step_size,
        num_steps,
        metropolis,
    )
    assert not div
    stats, expected = gaussian_moments(3)
    z = z_scores(pos, stats, expected)
    assert max(abs(v) for v in z.values()) < Z_MAX, z


def test_invariance_test_detects_a_missing_divergence(gaussian_draws):
    """Control: dropping T div A from the unadjusted drift visibly breaks invariance."""

    def no_divergence(x):
        a = nonrev.position_dependent(a_field)(x)
        return a._replace(divergence=None)

    pos, _ = run(
        jax.random.PRNGKey(1),
        gaussian_draws,
        standard_normal_energy,
        mob.constant(jnp.ones(3)),
        no_divergence,
        0.005,
        60,
        False,
    )
    stats, expected = gaussian_moments(3)
    z = z_scores(pos, stats, expected)
    print("control z", z)
    assert max(abs(v) for v in z.values()) > 2 * Z_MAX, z


# ------------------------------------------------------------------------ optimal constant A


@pytest.mark.parametrize("d", [2, 3, 6])
@pytest.mark.parametrize("mobility_kind", ["identity", "diagonal", "dense"])
def test_optimal_constant_reaches_mean_rate(d, mobility_kind):
    """Lelièvre, Nier & Pavliotis (2013): every rate of (S + A)P has real part tr(SP)/d."""
    rng = np.random.default_rng(d)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    precision = q @ np.diag(np.logspace(0, 2, d)) @ q.T
    covariance = np.linalg.inv(precision)
    s = {
        "identity": None,
        "diagonal": np.exp(rng.normal(size=d)),
        "dense": np.cov(rng.normal(size=(d, 3 * d))),
    }[mobility_kind]
    a = nonrev.optimal_constant(covariance, s)
    np.testing.assert_allclose(a, -a.T, atol=1e-12)
    s_mat = np.eye(d) if s is None else (np.diag(s) if s.ndim == 1 else s)
    mean_rate = np.trace(s_mat @ precision) / d
    rates = np.linalg.eigvals((s_mat + a) @ precision).real
    np.testing.assert_allclose(rates, mean_rate, rtol=1e-8)
    assert nonrev.slowest_rate(covariance, s) < 0.5 * mean_rate  # a real improvement
    np.testing.assert_allclose(nonrev.slowest_rate(covariance, s, a), mean_rate, rtol=1e-8)


def _exact_variance_of_mean(m, cov, v, n):
    """Var of (1/n) sum_{k=1..n} v.x_k for the stationary AR(1) x' = M x + noise."""
    c, mk = [], np.eye(m.shape[0])
    for _ in range(n):
        c.append(v @ mk @ cov @ v)
        mk = m @ mk
    c = np.asarray(c)
    k = np.arange(1, n)
    return (n * c[0] + 2.0 * np.sum((n - k) * c[1:])) / n**2, c[0]


@pytest.fixture(scope="module")
def ill_conditioned_runs():
    """Unadjusted chains (h = 0.002, 4,000 steps, 1,000 chains) on N(0, diag(1, 1/10)), with and
    without the optimal A; chains start in the discrete chain's stationary law."""
    precision = np.diag([1.0, 10.0])
    covariance = np.linalg.inv(precision)
    h, n, chains = 0.002, 4000, 1000
    a_opt = nonrev.optimal_constant(covariance)
    mobility_fn = mob.constant(jnp.ones(2))

    def energy(x):
        return 0.5 * x @ (jnp.asarray(precision, dtype=x.dtype) @ x)

    out = {}
    for name, a in (("reversible", np.zeros((2, 2))), ("optimal", a_opt)):
        m = np.eye(2) - h * (np.eye(2) + a) @ precision
        stationary = scipy.linalg.solve_discrete_lyapunov(m, 2 * h * np.eye(2))
        exact_var, c0 = _exact_variance_of_mean(m, stationary, np.array([1.0, 0.0]), n)
        key0, key1 = jax.random.split(jax.random.PRNGKey(7 if name == "optimal" else 8))
        x0 = jax.random.normal(key0, (chains, 2)) @ jnp.asarray(
            np.linalg.cholesky(stationary).T, dtype=jnp.float32
        )
        anti = nonrev.constant(jnp.asarray(a, dtype=jnp.float32))

        def one(key, x, anti=anti):
            state = core.init(x, energy, mobility_fn, 1.0, anti)

            def body(carry, key):
                state, total = carry
                state, _ = core.step(key, state, energy, mobility_fn, h, 1.0, False, anti)
                return (state, total + state.position[0]), None

            (_, total), _ = jax.lax.scan(body, (state, 0.0), jax.random.split(key, n))
            return total / n

        means = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key1, chains), x0))
        out[name] = dict(var=means.var(ddof=1), exact=exact_var, c0=c0, n=n, chains=chains)
    return out, covariance, a_opt, h


def test_optimal_antisymmetric_matches_theory_on_ill_conditioned_gaussian(ill_conditioned_runs):
    """Variance of the chain mean of the slowest coordinate agrees with the exact AR(1) theory
    with and without A, and A cuts the integrated autocorrelation time as theory says."""
    runs, covariance, a_opt, h = ill_conditioned_runs
    for r in runs.values():
        # the sample variance of 1,000 Gaussian chain means has relative sd sqrt(2/999)
        rel_sd = np.sqrt(2.0 / (r["chains"] - 1))
        assert abs(r["var"] / r["exact"] - 1.0) < Z_MAX * rel_sd, r
    iact = {k: r["n"] * r["var"] / r["c0"] for k, r in runs.items()}
    iact_exact = {k: r["n"] * r["exact"] / r["c0"] for k, r in runs.items()}
    # continuous time: IACT(v.x) = 2 v.B^{-1} Sigma v / v.Sigma v, B = (I + A) P
    precision = np.linalg.inv(covariance)
    cont = {
        k: 2.0
        * np.linalg.solve((np.eye(2) + a) @ precision, covariance)[0, 0]
        / covariance[0, 0]
        / h
        for k, a in (("reversible", np.zeros((2, 2))), ("optimal", a_opt))
    }
    assert cont["reversible"] / cont["optimal"] > 10  # theory: 1000 vs 52 steps
    assert iact_exact["reversible"] / iact_exact["optimal"] > 10
    assert iact["reversible"] / iact["optimal"] > 10, iact
    print(f"IACT measured {iact}, exact {iact_exact}, continuous {cont}")
    # rates: the slowest goes from lambda_min(P) = 1 to mean(P) = 5.5
    assert nonrev.slowest_rate(covariance) == pytest.approx(1.0)
    assert nonrev.slowest_rate(covariance, None, a_opt) == pytest.approx(5.5)


# ------------------------------------------------------------------------ through the kernel


def test_kernel_validates_antisymmetric():
    with pytest.raises(ValueError, match="antisymmetric"):
        Langevin(
            potential_fn=standard_normal_energy, antisymmetric=jnp.zeros(3), adapt_mobility=False
        )
    with pytest.raises(ValueError, match="adapted mobility"):
        Langevin(potential_fn=standard_normal_energy, antisymmetric=J01)
    for bad, match in ((jnp.eye(3), "not antisymmetric"), (jnp.zeros((2, 2)), r"\(3, 3\)")):
        mcmc = MCMC(
            Langevin(potential_fn=standard_normal_energy, antisymmetric=bad, mobility=jnp.ones(3)),
            num_warmup=2,
            num_samples=2,
            progress_bar=False,
        )
        with pytest.raises(ValueError, match=match):
            mcmc.run(jax.random.PRNGKey(0), init_params=jnp.zeros(3))


@pytest.mark.parametrize("antisymmetric", [3.0 * J01, a_field], ids=["constant", "callable"])
def test_kernel_with_antisymmetric_samples_the_target(antisymmetric):
    """MALA through MCMC with A: 4 vectorised chains on N(0, I) give means within MCSE."""
    kernel = Langevin(
        potential_fn=standard_normal_energy, antisymmetric=antisymmetric, adapt_mobility=False
    )
    mcmc = MCMC(
        kernel,
        num_warmup=300,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(2), init_params=jnp.zeros((4, 3)))
    state = mcmc.last_state
    expected = nonrev.drift(
        (
            nonrev.constant(antisymmetric)
            if not callable(antisymmetric)
            else nonrev.position_dependent(antisymmetric)
        )(state.core.position[0]),
        state.core.potential_grad[0],
        1.0,
    )
    np.testing.assert_allclose(state.core.antisymmetric_drift[0], expected, rtol=1e-5, atol=1e-6)
    x = np.asarray(mcmc.get_samples()).reshape(4, 10, -1, 3).mean(axis=2).reshape(40, 3)
    z = x.mean(axis=0) / (x.std(axis=0, ddof=1) / np.sqrt(40))
    assert np.all(np.abs(z) < Z_MAX), z
