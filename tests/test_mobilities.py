"""Built-in position-dependent mobilities: factors and divergence against autodiff, the
Daleckii–Krein derivative at repeated eigenvalues, invariance of 10,000 chains on Neal's funnel."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import run_chains, z_scores
from jax.flatten_util import ravel_pytree
from numpyro.infer import MCMC

from numpyro_langevin import Langevin, mobilities
from numpyro_langevin import mobility as mob

Z_MAX = 4.0
V_SCALE = 3.0


def funnel(z):
    """Neal's funnel, v ~ N(0, 3^2), x_i | v ~ N(0, e^v), on the flat position (v, x)."""
    v, x = z[0], z[1:]
    return v**2 / (2 * V_SCALE**2) + 0.5 * jnp.sum(x**2) * jnp.exp(-v) + 0.5 * x.shape[0] * v


def quartic(z):
    """A non-convex, non-separable energy (negative curvature near the origin along z1)."""
    return (
        0.5 * jnp.sum(z**2)
        + 0.25 * jnp.sum(z**4)
        + z[0] * z[1] * z[2]
        - 1.5 * jnp.cos(z[1])
        + 0.3 * z[3] * z[0] ** 2
    )


# Reference mobilities written the naive way (autodiff through eigh / inv), fine at generic points.
def softabs_reference(energy, alpha):
    def k(x):
        lam, q = jnp.linalg.eigh(jax.hessian(energy)(x))
        return (q * mobilities.inverse_softabs(lam, alpha)) @ q.T

    return k


def monge_reference(energy, alpha):
    def k(x):
        g = jax.grad(energy)(x)
        return jnp.linalg.inv(jnp.eye(x.shape[0]) + alpha**2 * jnp.outer(g, g))

    return k


def diagonal_reference(energy, alpha):
    return lambda x: mobilities.inverse_softabs(jnp.diagonal(jax.hessian(energy)(x)), alpha)


BUILTINS = {
    "softabs": (mobilities.SoftAbsHessian, softabs_reference),
    "monge": (mobilities.GradientOuterProduct, monge_reference),
    "diagonal": (mobilities.DiagonalSoftAbsHessian, diagonal_reference),
}


def _dense(a):
    return a if a.ndim == 2 else jnp.diag(a)


@pytest.mark.parametrize("name", list(BUILTINS))
@pytest.mark.parametrize(
    "energy, alpha, dim", [(funnel, 5.0, 3), (quartic, 0.7, 4)], ids=["funnel", "quartic"]
)
def test_matrix_factors_and_divergence_match_autodiff(name, energy, alpha, dim):
    """At generic points (the 3-d funnel's Hessian has distinct eigenvalues; from 4-d on it
    always has a repeated one, where autodiff through eigh is NaN) the closed forms match the
    naive autodiff of K."""
    cls, reference = BUILTINS[name]
    with jax.enable_x64(True):
        xs = jnp.asarray(np.random.default_rng(0).normal(size=(3, dim)))
        m = jax.jit(jax.vmap(cls(alpha).bind(energy)))(xs)
        ref = jax.jit(jax.vmap(mob.position_dependent(reference(energy, alpha))))(xs)
        for i in range(xs.shape[0]):
            k, f, f_inv = (_dense(a[i]) for a in (m.matrix, m.sqrt, m.inv_sqrt))
            np.testing.assert_allclose(k, _dense(ref.matrix[i]), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(m.divergence[i], ref.divergence[i], rtol=1e-8, atol=1e-10)
            assert np.abs(m.divergence[i]).max() > 1e-3  # a non-trivial divergence is compared
            np.testing.assert_allclose(f @ f.T, k, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(f_inv @ f, jnp.eye(dim), atol=1e-10)
            np.testing.assert_allclose(m.log_det[i], jnp.linalg.slogdet(k)[1], rtol=1e-10)


def _finite_difference_divergence(mobility_fn, x, eps=1e-5):
    cols = []
    for b in range(x.shape[0]):
        e = jnp.zeros_like(x).at[b].set(eps)
        dk = _dense(mobility_fn(x + e).matrix) - _dense(mobility_fn(x - e).matrix)
        cols.append(dk[:, b] / (2 * eps))
    return jnp.sum(jnp.stack(cols, axis=1), axis=1)


@pytest.mark.parametrize("name", ["softabs", "diagonal"])
def test_divergence_at_repeated_eigenvalues(name):
    """The 4-d funnel's Hessian has the eigenvalue e^{-v} twice at every point, three times at
    x = 0. The Daleckii–Krein divergence stays finite there (autodiff through eigh gives NaN) and
    matches central finite differences of K (eigh forward only)."""
    cls, reference = BUILTINS[name]
    with jax.enable_x64(True):
        fn = jax.jit(cls(2.0).bind(funnel))
        for x, multiplicity in (
            (jnp.array([0.5, 0.0, 0.0, 0.0]), 3),
            (jnp.array([0.5, 0.3, -0.8, 1.1]), 2),
        ):
            lam = jnp.linalg.eigvalsh(jax.hessian(funnel)(x))
            assert np.sum(np.isclose(lam, np.exp(-0.5), rtol=1e-12)) == multiplicity
            div = fn(x).divergence
            assert np.all(np.isfinite(div))
            np.testing.assert_allclose(div, _finite_difference_divergence(fn, x), atol=1e-6)
        # nearly repeated (gap ~ 1e-9): continuous with the exact case
        x = jnp.array([0.5, 0.0, 0.0, 0.0])
        np.testing.assert_allclose(fn(x.at[1].set(1e-9)).divergence, fn(x).divergence, atol=1e-6)
        if name == "softabs":  # the naive route really fails here
            naive = jax.jit(mob.position_dependent(reference(funnel, 2.0)))(x).divergence
            assert not np.all(np.isfinite(naive))


def test_inverse_softabs_map():
    with jax.enable_x64(True):
        lam = jnp.array([-50.0, -1.0, -1e-4, 0.0, 1e-4, 1.0, 50.0])
        phi = mobilities.inverse_softabs(lam, 3.0)
        np.testing.assert_allclose(phi, phi[::-1])  # even
        assert phi[3] == pytest.approx(3.0)  # phi(0) = alpha
        np.testing.assert_allclose(
            phi[jnp.array([0, -1])], 1 / 50.0, rtol=1e-12
        )  # 1/|lambda| far out
        # series and closed form agree on both sides of the switch at |alpha lambda| = 1e-2
        t = jnp.array([0.99e-2, 1.01e-2]) / 3.0
        np.testing.assert_allclose(
            mobilities.inverse_softabs(t, 3.0), jnp.tanh(3.0 * t) / t, rtol=1e-12
        )
        d_ad = jax.vmap(jax.grad(lambda s: jnp.tanh(3.0 * s) / s))(t)
        np.testing.assert_allclose(mobilities._inverse_softabs_derivative(t, 3.0), d_ad, rtol=1e-9)


@pytest.mark.parametrize("cls", [mobilities.SoftAbsHessian, mobilities.DiagonalSoftAbsHessian])
@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_alpha(cls, alpha):
    with pytest.raises(ValueError, match="alpha"):
        cls(alpha)


def test_monge_alpha_zero_is_identity():
    m = jax.jit(mobilities.GradientOuterProduct(0.0).bind(quartic))(jnp.ones(4))
    np.testing.assert_allclose(m.matrix, jnp.eye(4))
    np.testing.assert_allclose(m.divergence, 0.0)


def test_funnel_fisher_values_and_order():
    k = mobilities.funnel_fisher()
    position = {"v": jnp.asarray(1.2), "x": jnp.arange(9.0)}
    expected = jnp.concatenate([jnp.array([1.0 / (1.0 / 9.0 + 4.5)]), jnp.full(9, jnp.exp(1.2))])
    np.testing.assert_allclose(k(position), expected, rtol=1e-6)
    # follows ravel_pytree's site order whatever the names
    k2 = mobilities.funnel_fisher(v_site="z_scale", x_site="a_latent")
    flat, _ = ravel_pytree({"z_scale": 1.0, "a_latent": jnp.zeros(9)})
    out = k2({"z_scale": jnp.asarray(1.2), "a_latent": jnp.zeros(9)})
    assert out.shape == flat.shape
    np.testing.assert_allclose(out[:9], jnp.exp(1.2), rtol=1e-6)


# ------------------------------------------------------------------------ invariance

FUNNEL_STATS = {
    "v": lambda s: s[:, 0],
    "v^2": lambda s: s[:, 0] ** 2,
    "u1": lambda s: s[:, 1] * np.exp(-s[:, 0] / 2),
    "u1^2": lambda s: (s[:, 1] * np.exp(-s[:, 0] / 2)) ** 2,
    "u1*u2": lambda s: s[:, 1] * s[:, 2] * np.exp(-s[:, 0]),
}
FUNNEL_EXPECTED = {"v": 0.0, "v^2": V_SCALE**2, "u1": 0.0, "u1^2": 1.0, "u1*u2": 0.0}


@pytest.fixture(scope="module")
def funnel_draws():
    """10,000 exact draws of the 3-d funnel (v, x1, x2)."""
    key_v, key_x = jax.random.split(jax.random.PRNGKey(0))
    v = V_SCALE * jax.random.normal(key_v, (10_000,))
    x = jax.random.normal(key_x, (10_000, 2)) * jnp.exp(v / 2)[:, None]
    return jnp.column_stack([v, x])


def _funnel_fisher_flat(z):
    k = mobilities.funnel_fisher()
    return k({"v": z[0], "x": z[1:]})


INVARIANCE_CASES = {
    # name: (mobility function, MALA step, ULA step); ULA steps small enough that the O(h)
    # bias is far below the Monte Carlo error after 30 steps.
    "softabs": (mobilities.SoftAbsHessian(100.0).bind(funnel), 0.2, 0.001),
    "monge": (mobilities.GradientOuterProduct(1.0).bind(funnel), 0.5, 0.01),
    "diagonal": (mobilities.DiagonalSoftAbsHessian().bind(funnel), 0.5, 0.01),
    "funnel_fisher": (mob.position_dependent(_funnel_fisher_flat), 0.5, 0.01),
}


@pytest.mark.parametrize(
    "name, metropolis",
    [
        (name, metropolis)
        for name in INVARIANCE_CASES
        for metropolis in (True, False)
        if not (name == "funnel_fisher" and metropolis)
    ],
    ids=lambda p: p if isinstance(p, str) else ("MALA" if p else "ULA"),
)
def test_invariance_on_funnel(funnel_draws, name, metropolis):
    """10,000 chains started at the funnel stay there (30 steps; MALA, and ULA at a small h)."""
    mobility_fn, h_mala, h_ula = INVARIANCE_CASES[name]
    step_size = h_mala if metropolis else h_ula
    pos, accept, _ = run_chains(
        jax.random.PRNGKey(1), funnel_draws, funnel, mobility_fn, step_size, 30, 1.0, metropolis
    )
    assert np.all(np.isfinite(pos))
    moved = np.mean(np.any(pos != np.asarray(funnel_draws), axis=1))
    assert moved > 0.7, moved  # the chains really moved
    z = z_scores(pos, FUNNEL_STATS, FUNNEL_EXPECTED)
    assert max(abs(v) for v in z.values()) < Z_MAX, (z, accept)


# ------------------------------------------------------------------------ through the kernel


def _normal_mean_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_builtin_binds_to_the_current_data():
    """Through MCMC: the mobility follows new data on a second run (nothing bound at init).
    The binding is the same for every built-in; the cheapest one is used."""
    field = mobilities.DiagonalSoftAbsHessian()
    mcmc = MCMC(
        Langevin(_normal_mean_model, mobility=field),
        num_warmup=30,
        num_samples=30,
        progress_bar=False,
    )
    for n in (4, 100):
        y = jnp.linspace(-1.0, 3.0, n)
        mcmc.run(jax.random.PRNGKey(n), y)
        state = mcmc.last_state
        mu = state.z["mu"]
        potential = partial(_potential_normal_mean, y=y)
        expected = jax.jit(field.bind(potential))(jnp.atleast_1d(mu))
        np.testing.assert_allclose(state.core.mobility.matrix, expected.matrix, rtol=1e-5)
        assert np.all(np.isfinite(np.asarray(mcmc.get_samples()["mu"])))
    # K = 1 / curvature = 1 / (n + 1/100) for the last data set
    np.testing.assert_allclose(np.ravel(state.core.mobility.matrix), 1 / 100.01, rtol=1e-4)


def _potential_normal_mean(flat, y):
    mu = flat[0]
    return -dist.Normal(0.0, 10.0).log_prob(mu) - jnp.sum(dist.Normal(mu, 1.0).log_prob(y))


def test_funnel_fisher_through_mcmc():
    def model():
        v = numpyro.sample("v", dist.Normal(0.0, V_SCALE))
        numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([9]))

    mcmc = MCMC(
        Langevin(model, mobility=mobilities.funnel_fisher()),
        num_warmup=50,
        num_samples=50,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0))
    state = mcmc.last_state
    k = state.core.mobility.matrix
    np.testing.assert_allclose(k[0], 1 / (1 / 9 + 4.5), rtol=1e-5)
    np.testing.assert_allclose(k[1:], np.exp(state.z["v"]), rtol=1e-4)
