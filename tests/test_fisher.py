"""Fisher-adaptive constant mobility (adapt_mobility="fisher"): the adapter's inverse is right, it
recovers the inverse Fisher matrix (not the covariance) during warmup, and samples correctly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC
from numpyro.infer.hmc_util import welford_covariance

from numpyro_langevin import Langevin, fisher

T_DOF, T_SCALE, N_SCALE = 3.0, 10.0, 0.1


def t_normal_energy(x):
    """x0 ~ 10 * Student-t(3), x1 ~ N(0, 0.1^2). The t score is bounded, and the inverse Fisher
    information scale^2 (dof + 3) / (dof + 1) = 150 is half the variance, 300: the two
    adaptations must land a factor 2 apart."""
    t = x[0] / T_SCALE
    return 0.5 * (T_DOF + 1.0) * jnp.log1p(t**2 / T_DOF) + 0.5 * (x[1] / N_SCALE) ** 2


INVERSE_FISHER = np.array([T_SCALE**2 * (T_DOF + 3.0) / (T_DOF + 1.0), N_SCALE**2])
COVARIANCE = np.array([T_SCALE**2 * T_DOF / (T_DOF - 2.0), N_SCALE**2])
MEAN = np.zeros(2)
CHAINS = 16


@pytest.mark.parametrize("dense", [False, True])
def test_from_adapt_state_is_the_inverse(dense):
    """The adapter's square roots of its matrix M, swapped, factor K = M^{-1}."""
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(50, 3)) @ np.array([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0, 1, 3]])
    init, update, final = welford_covariance(diagonal=not dense)
    state = init(3)
    for s in samples:
        state = update(jnp.asarray(s), state)
    m, m_sqrt, m_sqrt_inv = final(state, regularize=True)
    k = fisher.from_adapt_state(m, m_sqrt, m_sqrt_inv)
    m_dense = m if dense else jnp.diag(m)
    k_dense = k.matrix if dense else jnp.diag(k.matrix)
    f = k.sqrt if dense else jnp.diag(k.sqrt)
    f_inv = k.inv_sqrt if dense else jnp.diag(k.inv_sqrt)
    np.testing.assert_allclose(k_dense @ m_dense, np.eye(3), atol=1e-4)
    np.testing.assert_allclose(f @ f.T, k_dense, rtol=1e-4)
    np.testing.assert_allclose(f_inv @ f, np.eye(3), atol=1e-4)
    np.testing.assert_allclose(k.log_det, -np.linalg.slogdet(m_dense)[1], rtol=1e-4)


def test_initial_fisher_inverts_the_initial_covariance():
    c = jnp.array([[2.0, 0.3], [0.3, 1.0]])
    np.testing.assert_allclose(fisher.initial_fisher(c) @ c, np.eye(2), atol=1e-5)
    np.testing.assert_allclose(fisher.initial_fisher(jnp.array([2.0, 4.0])), [0.5, 0.25])


def test_invalid_adapt_mobility():
    with pytest.raises(ValueError, match="adapt_mobility"):
        Langevin(potential_fn=t_normal_energy, adapt_mobility="hessian")


@pytest.fixture(scope="module")
def adapted_runs():
    """16 vectorised chains, 2,000 warmup steps, on the Student-t x Normal target, per
    adaptation."""
    out = {}
    for mode in ("fisher", "covariance"):
        kernel = Langevin(potential_fn=t_normal_energy, adapt_mobility=mode, dense_mobility=False)
        mcmc = MCMC(
            kernel,
            num_warmup=2000,
            num_samples=2000,
            num_chains=CHAINS,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(0), init_params=jnp.array([[1.0, 0.05]] * CHAINS))
        k = np.asarray(mcmc.last_state.core.mobility.matrix)  # (chains, d)
        out[mode] = (k, np.asarray(mcmc.get_samples()), mcmc.get_extra_fields())
    return out


def test_fisher_warmup_recovers_the_inverse_fisher_matrix(adapted_runs):
    """Over 6 orders of magnitude of scale, the Fisher warmup lands on the inverse Fisher
    information (150, 0.01), and the Welford warmup on something about twice as large (the
    variance, 300, estimated badly: a t(3) has no fourth moment).

    The adapter averages squared scores over its last window (~1,000 correlated draws), so 1/K
    is the unbiased quantity to pool; the t(3) score is bounded, and over 16 chains the pooled
    estimate is good to a few percent: 20% bounds. Single chains get a looser factor 1.5."""
    k_fisher, k_cov = adapted_runs["fisher"][0], adapted_runs["covariance"][0]
    pooled = (1.0 / k_fisher).mean(axis=0) * INVERSE_FISHER
    assert np.all((pooled > 0.8) & (pooled < 1.25)), pooled
    per_chain = k_fisher / INVERSE_FISHER
    assert np.all((per_chain > 2 / 3) & (per_chain < 1.5)), per_chain
    assert np.median(k_cov[:, 0]) / np.median(k_fisher[:, 0]) > 1.3, (k_cov, k_fisher)
    cov_gaussian = k_cov[:, 1] / N_SCALE**2  # on the Gaussian coordinate both agree
    assert np.all((cov_gaussian > 2 / 3) & (cov_gaussian < 1.5)), cov_gaussian


def test_fisher_adapted_chain_samples_the_target(adapted_runs):
    """Means and the Gaussian coordinate's variance within a few MCSE (batch-means MCSE)."""
    _, samples, extra = adapted_runs["fisher"]
    assert not np.any(np.asarray(extra["diverging"]))
    x = samples.reshape(CHAINS, -1, 2)  # (chains, draws, d)
    batches = x.reshape(CHAINS, 10, -1, 2).mean(axis=2).reshape(-1, 2)  # 160 batch means
    mcse = batches.std(axis=0, ddof=1) / np.sqrt(batches.shape[0])
    z_mean = (x.reshape(-1, 2).mean(axis=0) - MEAN) / mcse
    assert np.all(np.abs(z_mean) < 4.0), z_mean
    sq = (x[..., 1] ** 2).reshape(CHAINS, 10, -1).mean(axis=2).ravel()
    z_var = (sq.mean() - N_SCALE**2) / (sq.std(ddof=1) / np.sqrt(sq.shape[0]))
    assert abs(z_var) < 4.0, z_var


def test_dense_fisher_warmup_on_a_correlated_gaussian():
    """For a Gaussian the inverse Fisher matrix is the covariance: the dense Fisher warmup
    recovers a correlation of 0.95 and scales 1 and 10. The pooled Fisher estimate from 8
    chains' last windows (~500 draws each) is good to a few percent; we allow 15% on the
    precision matrix entries relative to their scale."""
    cov = np.array([[1.0, 0.95 * 10.0], [0.95 * 10.0, 100.0]])
    precision = jnp.asarray(np.linalg.inv(cov), dtype=jnp.float32)
    kernel = Langevin(
        potential_fn=lambda x: 0.5 * x @ precision @ x,
        adapt_mobility="fisher",
        dense_mobility=True,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=1000,
        num_samples=10,
        num_chains=8,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1), init_params=jnp.ones((8, 2)))
    k = np.asarray(mcmc.last_state.core.mobility.matrix)  # (chains, 2, 2)
    fisher_pooled = np.linalg.inv(k).mean(axis=0)
    scale = np.sqrt(np.outer(np.diag(np.asarray(precision)), np.diag(np.asarray(precision))))
    np.testing.assert_allclose(fisher_pooled / scale, np.asarray(precision) / scale, atol=0.15)
