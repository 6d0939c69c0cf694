"""Free-energy relaxation diagnostic (`numpyro_langevin.diagnostics`).

Ornstein–Uhlenbeck relaxation has a closed-form free energy: for E = |x|^2/2, T = 1 the diffusion
dx = -x dt + sqrt(2) dW started from N(m0, s0^2 I) stays Gaussian with mean m0 e^{-t} and variance
s_t^2 = s0^2 e^{-2t} + 1 - e^{-2t}, so F(t) = (|m_t|^2 + d s_t^2)/2 - (d/2) log(2 pi e s_t^2).
Chains are moved with the exact OU transition, so these tests check the estimator, not a
discretisation. Tolerances are 4 standard errors of the estimate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_langevin import core, diagnostics
from numpyro_langevin import mobility as mob

TIMES = np.array([0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
NUM_CHAINS = 2000
M0, S0 = 2.0, 0.3
# Measured bias of the nearest-neighbour free energy for Gaussians with 2000 chains (module
# docstring of `diagnostics`): ~0.005 nats in d = 2, ~0.05 nats in d = 5. The level test allows
# twice that; differences between draws have the same bias at every draw (isotropic Gaussians
# only change scale and location, to which the estimator is equivariant) and get no allowance.
BIAS_ALLOWANCE = {1: 0.0, 2: 0.0, 5: 0.1}


def ou_free_energy(t, d, m0=M0, s0=S0):
    mean_sq = (m0 * np.exp(-t)) ** 2
    var = s0**2 * np.exp(-2 * t) + 1 - np.exp(-2 * t)
    return 0.5 * (mean_sq + d * var) - 0.5 * d * np.log(2 * np.pi * np.e * var)


def simulate_ou(key, d, num_chains=NUM_CHAINS, times=TIMES):
    """Exact OU transitions between the given times; returns (chains, draws, d)."""
    key, sub = jax.random.split(key)
    x = S0 * jax.random.normal(sub, (num_chains, d))
    x = x.at[:, 0].add(M0)
    draws = [x]
    for dt in np.diff(times):
        key, sub = jax.random.split(key)
        decay = np.exp(-dt)
        x = decay * x + np.sqrt(1 - decay**2) * jax.random.normal(sub, x.shape)
        draws.append(x)
    return jnp.stack(draws, axis=1)


@pytest.fixture(scope="module", params=[1, 2, 5])
def ou_run(request):
    d = request.param
    x = simulate_ou(jax.random.PRNGKey(100 + d), d)
    energy = 0.5 * jnp.sum(x**2, axis=-1)
    log_z = 0.5 * d * np.log(2 * np.pi)
    return d, x, energy, diagnostics.free_energy(x, energy, log_normalizer=log_z)


def agrees(fe, exact, allowance):
    """The comparison with a closed form used below: level and differences within 4 se."""
    value, se = np.asarray(fe.value), np.asarray(fe.stderr)
    level = np.all(np.abs(value - exact) < 4 * se + allowance)
    # Differences from the last draw (the bias cancels); sd(a - b) <= sd(a) + sd(b).
    diff, exact_diff = value - value[-1], exact - exact[-1]
    differences = np.all(np.abs(diff - exact_diff)[:-1] < 4 * (se + se[-1])[:-1])
    return bool(level and differences)


def test_ou_free_energy_tracks_closed_form(ou_run):
    d, _, _, fe = ou_run
    assert fe.value.shape == fe.stderr.shape == (len(TIMES),)
    assert np.all(np.asarray(fe.stderr) > 0)
    assert agrees(fe, ou_free_energy(TIMES, d), BIAS_ALLOWANCE[d])
    # KL(p_t || q) = (F + ln Z) / T: positive early, near 0 at t = 3.2 (exact value 0.003).
    assert fe.kl[0] > 4 * fe.kl_stderr[0]
    np.testing.assert_allclose(np.asarray(fe.kl_stderr), np.asarray(fe.stderr))


def test_ou_detects_a_wrong_free_energy(ou_run):
    """The comparison above can fail: the closed form of a process 1.5 times too fast."""
    d, _, _, fe = ou_run
    assert not agrees(fe, ou_free_energy(1.5 * TIMES, d), BIAS_ALLOWANCE[d])


def test_relaxation_is_monotone_and_a_rise_is_detected(ou_run):
    d, x, energy, fe = ou_run
    assert not np.any(diagnostics.significant_increases(fe))
    assert np.all(np.diff(np.asarray(fe.value)[:5]) < 0)
    # The same ensembles in reverse time order: the free energy rises and is flagged.
    backwards = diagnostics.free_energy(x[:, ::-1], energy[:, ::-1])
    flags = np.asarray(diagnostics.significant_increases(backwards))
    assert flags.shape == (len(TIMES) - 1,)
    assert flags[-4:].all()


def test_stderr_matches_the_spread_of_the_estimate():
    """200 independent ensembles (one per draw) of 500 standard normals in d = 2.

    The standard deviation of 200 estimates is known to ~5% (1/sqrt(2*199)); the batch-means
    error is on average within ~5% of the truth; 4 sigma plus that gives [0.75, 1.25].
    """
    x = jax.random.normal(jax.random.PRNGKey(7), (500, 200, 2))
    fe = diagnostics.free_energy(x, 0.5 * jnp.sum(x**2, axis=-1))
    ratio = np.std(np.asarray(fe.value), ddof=1) / np.mean(np.asarray(fe.stderr))
    assert 0.75 < ratio < 1.25


def _kl_without_divergence_term():
    """KL(p || q) for q = N(0, 1), p ∝ q / (1 + x^2): where the chain without T div K goes."""
    x = np.linspace(-12, 12, 200_001)
    q = np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi)
    p = q / (1 + x**2)
    p /= np.trapezoid(p, x)
    mask = p > 0
    return np.trapezoid(p[mask] * np.log(p[mask] / q[mask]), x[mask])


@pytest.mark.parametrize("with_divergence", [True, False])
def test_free_energy_detects_a_missing_divergence_term(with_divergence):
    """E = x^2/2, K = 1 + x^2, T = 1, unadjusted core steps at h = 0.005 for t = 3.

    With T div K the chains stay at q (KL ~ 0); without it they relax to p ∝ q / K, whose
    KL(p || q) = 0.091 nats is computed by quadrature: the estimate finds it, and it is far
    from 0 (16000 chains: standard error ~0.012).
    """
    num_chains, num_steps, h = 16000, 600, 0.005

    def potential(x):
        return 0.5 * jnp.sum(x**2)

    mobility_fn = mob.position_dependent(lambda x: 1.0 + x**2)
    if not with_divergence:
        full = mobility_fn
        mobility_fn = lambda x: full(x)._replace(divergence=None)  # noqa: E731

    def run(key, x0):
        state = core.init(x0, potential, mobility_fn)

        def body(s, k):
            s, _ = core.step(k, s, potential, mobility_fn, h, metropolis=False)
            return s, None

        state, _ = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return state.position, state.potential_energy

    key_init, key_run = jax.random.split(jax.random.PRNGKey(3))
    x0 = jax.random.normal(key_init, (num_chains, 1))
    x, energy = jax.jit(jax.vmap(run))(jax.random.split(key_run, num_chains), x0)
    fe = diagnostics.free_energy(
        x[:, None], energy[:, None], log_normalizer=0.5 * np.log(2 * np.pi)
    )
    kl, se = float(fe.kl[0]), float(fe.kl_stderr[0])
    if with_divergence:
        assert abs(kl) < 4 * se
    else:
        expected = _kl_without_divergence_term()
        assert abs(expected - 0.091) < 0.001
        assert abs(kl - expected) < 4 * se
        assert kl > 4 * se


def test_shapes_pytrees_and_errors():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (100, 3, 2))
    energy = 0.5 * jnp.sum(x**2, axis=-1)
    as_array = diagnostics.free_energy(x, energy)
    as_tree = diagnostics.free_energy({"a": x[..., 0], "b": x[..., 1:]}, energy)
    np.testing.assert_allclose(as_array.value, as_tree.value, rtol=1e-6)
    assert as_array.kl is None and as_array.kl_stderr is None
    one_d = diagnostics.free_energy(x[..., 0], 0.5 * x[..., 0] ** 2)
    assert one_d.value.shape == (3,)
    with pytest.raises(ValueError, match="leading shape"):
        diagnostics.free_energy(x[:, :2], energy)
    with pytest.raises(ValueError, match=r"\(chains, draws\)"):
        diagnostics.free_energy(x, energy[:, 0])
    with pytest.raises(ValueError, match="temperature"):
        diagnostics.free_energy(x, energy, temperature=0.0)
    with pytest.raises(ValueError, match="too few"):
        diagnostics.free_energy(x[:8], energy[:8])
    with pytest.raises(ValueError, match="too few"):
        diagnostics.free_energy(x, energy, num_groups=30)


def test_temperature_scales_the_entropy_term():
    x = jax.random.normal(jax.random.PRNGKey(1), (400, 2, 3))
    energy = 0.5 * jnp.sum(x**2, axis=-1)
    cold = diagnostics.free_energy(x, energy, temperature=1.0)
    hot = diagnostics.free_energy(x, energy, temperature=2.0)
    np.testing.assert_allclose(hot.entropy, cold.entropy, rtol=1e-6)
    np.testing.assert_allclose(hot.value, hot.energy - 2.0 * hot.entropy, rtol=1e-5)
