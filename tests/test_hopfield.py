"""Tests of the continuous Hopfield latent model (issue 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_chains
from numpyro.distributions import constraints
from numpyro.handlers import substitute, uncondition
from numpyro.infer.util import potential_energy
from scipy import integrate

from numpyro_langevin import hopfield as hf
from numpyro_langevin import mobility as mob
from numpyro_langevin.hopfield import closed_form as cf

Z_MAX = 4.0

SMOOTH = hf.custom(lambda x: jnp.sum(jnp.logaddexp(0.0, 2.0 * x)) + 0.05 * jnp.sum(x**2))
A = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.5, 0.3], [0.0, 0.3, 1.0]])
DENSE = hf.custom(lambda x: 0.5 * x @ A @ x + 0.25 * jnp.sum(x**4), separable=False)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    train, test = train_test_split(x / 16.0, test_size=0.2, random_state=0, stratify=y)
    return train, test


def random_point(model, key, scale=1.0):
    k1, k2, k3 = jax.random.split(key, 3)
    params = {
        "U": scale * jax.random.normal(k1, (model.num_visible, model.num_hidden)),
        "I": jax.random.normal(k2, (model.num_visible,)),
    }
    x = jax.random.normal(k3, (model.dim,))
    return params, x


# ---------------------------------------------------------------- Lagrangians


@pytest.mark.parametrize(
    "lag", [hf.identity(), hf.leaky_relu(0.3), SMOOTH], ids=["identity", "leaky", "smooth"]
)
def test_lagrangian_activation_and_hessian_are_its_derivatives(lag):
    x = jnp.array([-1.3, -0.2, 0.4, 2.1])

    @jax.jit
    def derivatives(x):
        return (
            lag.activation(x), jax.grad(lag.value)(x), lag.hessian(x),
            jnp.diag(jax.hessian(lag.value)(x)), lag.mobility(x),
        )  # fmt: skip

    act, grad, hess, auto_hess, k = derivatives(x)
    np.testing.assert_allclose(act, grad, rtol=1e-6)
    np.testing.assert_allclose(hess, auto_hess, rtol=1e-5)
    np.testing.assert_allclose(k, 1.0 / hess, rtol=1e-6)


def test_leaky_relu_values():
    lag = hf.leaky_relu(0.25)
    x = jnp.array([-2.0, 3.0])
    np.testing.assert_allclose(lag.value(x), 0.5 * 0.25 * 4 + 0.5 * 9)
    np.testing.assert_allclose(lag.activation(x), [-0.5, 3.0])
    np.testing.assert_allclose(lag.mobility(x), [4.0, 1.0])
    # for a quadratic-per-piece Lagrangian the Legendre term equals L itself
    np.testing.assert_allclose(lag.legendre(x), lag.value(x), rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: hf.leaky_relu(0.0), hf.relu, lambda: hf.leaky_relu(0)])
def test_plain_relu_is_rejected_with_an_explanation(make):
    with pytest.raises(ValueError, match="flat") as err:
        make()
    assert "leaky_relu(slope=0.1)" in str(err.value)
    assert "normalised" in str(err.value)


def test_negative_slope_and_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="slope"):
        hf.leaky_relu(-0.1)
    with pytest.raises(TypeError, match="Lagrangian"):
        hf.Hopfield(3, 2, visible="identity")
    with pytest.raises(ValueError, match="coupling"):
        hf.Hopfield(3, 2, coupling="tied")
    with pytest.raises(ValueError, match="num_hidden"):
        hf.Hopfield(3, 0)


# ---------------------------------------------------------------- energy, mobility, dynamics


@pytest.mark.parametrize(
    "visible, hidden",
    [
        (hf.identity(), hf.identity()),
        (hf.identity(), hf.leaky_relu(0.1)),
        (hf.leaky_relu(0.5), hf.leaky_relu(0.2)),
        (SMOOTH, hf.leaky_relu(0.1)),
        (hf.identity(), DENSE),
    ],
    ids=["identity", "leaky_hidden", "leaky_both", "smooth_visible", "dense_hidden"],
)
def test_mobility_times_gradient_is_the_classic_hopfield_dynamics(visible, hidden):
    """-K grad E = (U f(h) - v + I, U^T g(v) - h) exactly, with K = (d^2 L)^-1."""
    model = hf.Hopfield(4, 3, visible, hidden, coupling="free")

    @jax.jit
    def both(key):
        params, x = random_point(model, key)
        grad = jax.grad(model.potential_fn(params))(x)
        k = model.mobility(x)
        flow = -(k @ grad if k.ndim == 2 else k * grad)
        return flow, jnp.concatenate(model.dynamics(params, *model.split(x)))

    flow, classic = jax.vmap(both)(jax.random.split(jax.random.PRNGKey(0), 8))
    np.testing.assert_allclose(flow, classic, rtol=2e-5, atol=2e-5)


def test_fast_mobility_function_matches_autodiff_away_from_kinks():
    model = hf.Hopfield(4, 3, hf.leaky_relu(0.5), hf.leaky_relu(0.2))
    x = jnp.array([0.3, -0.7, 1.1, -2.0, 0.4, -0.1, 0.9])
    fast = jax.jit(model.mobility_fn())(x)
    slow = jax.jit(mob.position_dependent(model.mobility))(x)
    np.testing.assert_allclose(fast.matrix, slow.matrix)
    np.testing.assert_allclose(fast.log_det, slow.log_det, rtol=1e-6)
    np.testing.assert_allclose(fast.divergence, slow.divergence, atol=1e-7)
    np.testing.assert_allclose(fast.divergence, 0.0)
    clamped = model.mobility_fn(clamped=True)(x[4:])
    np.testing.assert_allclose(clamped.matrix, [1.0, 5.0, 1.0])
    # a smooth Lagrangian takes the divergence by autodiff, and it is not zero
    smooth = jax.jit(hf.Hopfield(4, 3, SMOOTH, hf.identity()).mobility_fn())(x)
    assert np.abs(smooth.divergence[:4]).max() > 1e-3


def test_hebbian_gradient_matches_autodiff():
    """-dE/dU = g(v) f(h)^T, also averaged over particles."""
    model = hf.Hopfield(5, 3, hf.leaky_relu(0.5), hf.leaky_relu(0.1), coupling="free")
    params, _ = random_point(model, jax.random.PRNGKey(0))
    xs = jax.random.normal(jax.random.PRNGKey(1), (16, model.dim))

    def mean_energy(u, b):
        p = {"U": u, "I": b}
        return jnp.mean(jax.vmap(lambda x: model.energy(p, *model.split(x)))(xs))

    @jax.jit
    def both():
        grad_u, grad_i = jax.grad(mean_energy, (0, 1))(params["U"], params["I"])
        hebb = jnp.mean(jax.vmap(lambda x: model.hebbian(*model.split(x)))(xs), 0)
        g = jnp.mean(jax.vmap(lambda x: model.visible.activation(model.split(x)[0]))(xs), 0)
        return grad_u, grad_i, hebb, g

    grad_u, grad_i, hebb, g = both()
    np.testing.assert_allclose(-grad_u, hebb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(-grad_i, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hidden", [hf.identity(), hf.leaky_relu(0.2)], ids=["identity", "leaky"])
def test_mean_hessian_is_the_average_autodiff_hessian(hidden):
    """Identity visible units: the closed-form mean Hessian equals the average of autodiff
    Hessians over configurations (away from kinks), and is positive definite for |U| < 1."""
    model = hf.Hopfield(6, 4, hf.identity(), hidden)
    params = model.resolve(model.init_params(jax.random.PRNGKey(0)))
    params["U"] = 0.95 * params["U"] / jnp.linalg.norm(params["U"], 2)
    xs = jax.random.normal(jax.random.PRNGKey(1), (64, model.dim))
    auto = jnp.mean(
        jax.vmap(jax.hessian(lambda x: model.energy(params, *model.split(x))))(xs), axis=0
    )
    closed = model.mean_hessian(params, xs)
    np.testing.assert_allclose(closed, auto, rtol=1e-5, atol=1e-6)
    assert np.linalg.eigvalsh(np.asarray(closed)).min() > 0


def test_contractive_coupling_is_inside_the_unit_ball():
    v = 10.0 * jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    u = hf.Hopfield.contract(v)
    assert np.linalg.norm(np.asarray(u), 2) < 1.0
    chol = np.linalg.cholesky(np.eye(4) + np.asarray(v).T @ np.asarray(v))
    np.testing.assert_allclose(
        np.asarray(u).T @ np.asarray(u), np.eye(4) - np.linalg.inv(chol.T @ chol), atol=1e-5
    )


# ---------------------------------------------------------------- NumPyro model form


def test_numpyro_model_potential_is_energy_over_temperature():
    model = hf.Hopfield(4, 3, hf.identity(), hf.leaky_relu(0.2), temperature=0.7)
    params = {"V": 0.5 * jnp.ones((4, 3)), "I": jnp.arange(4.0) / 4}
    v = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
    h = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    joint = uncondition(substitute(model.model, params))

    @jax.jit
    def energies(v, h):
        expected = jnp.sum(jax.vmap(model.energy, (None, 0, 0))(params, v, h)) / 0.7
        pe = potential_energy(substitute(model.model, params), (v,), {}, {"h": h})
        pe_joint = potential_energy(joint, (v,), {}, {"h": h, "v": v})
        return expected, pe, pe_joint, model.site_mobility({"h": h, "v": v})

    expected, pe, pe_joint, k = energies(v, h)
    np.testing.assert_allclose(pe, expected, rtol=1e-5)
    np.testing.assert_allclose(pe_joint, expected, rtol=1e-5)
    np.testing.assert_allclose(k[:15], jax.vmap(model.hidden.mobility)(h).ravel())
    np.testing.assert_allclose(k[15:], 1.0)


def test_learned_temperature_is_a_positive_param_site():
    from numpyro.handlers import seed, trace

    model = hf.Hopfield(3, 2, learn_temperature=True, temperature=0.3)
    seeded = substitute(seed(model.model, 0), data={"h": jnp.zeros((2, 2))})
    tr = trace(seeded).get_trace(jnp.zeros((2, 3)))
    assert tr["temperature"]["type"] == "param"
    assert isinstance(tr["temperature"]["kwargs"]["constraint"], type(constraints.positive))
    np.testing.assert_allclose(tr["temperature"]["value"], 0.3)
    assert tr["V"]["value"].shape == (3, 2)


# ---------------------------------------------------------------- closed forms


def test_ppca_maps_exactly_onto_the_linear_hopfield_model(digits):
    train, _ = digits
    ppca = cf.ppca_mle(train, 10)
    params = cf.ppca_to_hopfield(ppca)
    assert np.linalg.norm(params["U"], 2) < 1.0
    u, t = params["U"], float(params["temperature"])
    cov = t * np.linalg.inv(np.eye(64) - u @ u.T)
    np.testing.assert_allclose(cov, ppca.W @ ppca.W.T + ppca.sigma2 * np.eye(64), atol=1e-10)
    np.testing.assert_allclose(
        cf.linear_hopfield_log_likelihood(params, train), cf.ppca_log_likelihood(ppca, train)
    )
    # the Tipping-Bishop optimum (value measured independently in the research notes)
    np.testing.assert_allclose(cf.ppca_log_likelihood(ppca, train), 17.5874, atol=1e-4)


@pytest.mark.parametrize("c", [-1.0, 0.5, 2.0])
def test_two_piece_moments_match_quadrature(c):
    a, t = 0.1, 0.8

    def energy(h):
        return 0.5 * h**2 - c * h if h > 0 else a * (0.5 * h**2 - c * h)

    def moment(k, lo, hi):
        return integrate.quad(lambda h: h**k * np.exp(-(energy(h) - 0.0) / t), lo, hi)[0]

    z = moment(0, -np.inf, 0) + moment(0, 0, np.inf)
    mean = (moment(1, -np.inf, 0) + moment(1, 0, np.inf)) / z
    second = (moment(2, -np.inf, 0) + moment(2, 0, np.inf)) / z
    ours = cf.two_piece_moments(jnp.asarray(c), a, t)
    np.testing.assert_allclose(ours.prob_positive, moment(0, 0, np.inf) / z, rtol=1e-4)
    np.testing.assert_allclose(ours.mean, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.variance, second - mean**2, rtol=1e-4)


# ---------------------------------------------------------------- sampling q(h | v)

SLOPE, TEMP = 0.2, 1.0
C = jnp.array([-1.0, -0.3, 0.5, 1.5])


@pytest.fixture(scope="module")
def clamped():
    """v clamped, leaky-ReLU hidden units with inputs c = U^T g(v) = C; exact start."""
    model = hf.Hopfield(1, 4, hidden=hf.leaky_relu(SLOPE), temperature=TEMP, coupling="free")
    params = {"U": C[None, :], "I": jnp.zeros(1)}
    potential = model.conditional_potential_fn(params, jnp.ones(1))
    x0 = cf.two_piece_sample(jax.random.PRNGKey(0), jnp.broadcast_to(C, (20000, 4)), SLOPE, TEMP)
    return potential, model.mobility_fn(clamped=True), x0


def _z(values, expected):
    return (values.mean(0) - expected) / (values.std(0, ddof=1) / np.sqrt(values.shape[0]))


def test_exact_sampler_of_the_two_piece_gaussian(clamped):
    x0 = np.asarray(clamped[2])
    exact = cf.two_piece_moments(C, SLOPE, TEMP)
    assert np.all(np.abs(_z(x0 > 0, exact.prob_positive)) < Z_MAX)
    assert np.all(np.abs(_z(x0, exact.mean)) < Z_MAX)


def test_adjusted_chain_with_hopfield_mobility_keeps_q_h_given_v(clamped):
    """Invariance: 20,000 MALA chains with K = (d^2 L_h)^-1 started at q(h|v) stay there."""
    potential, mobility_fn, x0 = clamped
    pos, acc, div = run_chains(jax.random.PRNGKey(1), x0, potential, mobility_fn, 0.7, 40, TEMP)
    assert not div and 0.3 < acc < 0.8
    exact = cf.two_piece_moments(C, SLOPE, TEMP)
    second = exact.variance + exact.mean**2
    for stat, expected in ((pos > 0, exact.prob_positive), (pos, exact.mean), (pos**2, second)):
        z = _z(stat, expected)
        assert np.all(np.abs(z) < Z_MAX), z


def test_unadjusted_chain_with_hopfield_mobility_is_biased_at_the_kinks(clamped):
    """ULA misses the Dirac part of T div K at the kink: its small-step limit puts mass ratio
    a Z_- : Z_+ on the two sides instead of Z_- : Z_+, whatever the step size."""
    potential, mobility_fn, x0 = clamped
    exact = cf.two_piece_moments(C, SLOPE, TEMP)
    limit = cf.ula_kink_limit(C, SLOPE, TEMP)
    errors = []
    for h in (0.1, 0.03):
        pos, _, _ = run_chains(
            jax.random.PRNGKey(2), x0, potential, mobility_fn, h, int(6 / h), TEMP, False
        )
        p = (pos > 0).mean(0)
        errors.append(np.abs(p - exact.prob_positive))
        # far from the target, much nearer the predicted limit
        assert np.all(np.abs(_z(pos > 0, exact.prob_positive)) > 20)
        assert np.all(np.abs(p - limit.prob_positive) < 0.5 * np.abs(p - exact.prob_positive))
    # the error does not shrink with the step size
    assert np.all(errors[1] > 0.9 * errors[0])


# ---------------------------------------------------------------- recall


@pytest.fixture(scope="module")
def ppca_model(digits):
    train, test = digits
    ppca = cf.ppca_mle(train, 2)  # ||U|| = 0.96: the chains mix in a few hundred steps
    params = {k: jnp.asarray(v, jnp.float32) for k, v in cf.ppca_to_hopfield(ppca).items()}
    model = hf.Hopfield(64, 2, hf.identity(), hf.identity(), temperature=ppca.sigma2)
    v = jnp.asarray(test[:4], jnp.float32)
    mask = jax.random.bernoulli(jax.random.PRNGKey(0), 0.5, v.shape)
    cov = ppca.W @ ppca.W.T + ppca.sigma2 * np.eye(64)
    expected = []
    for x, m in zip(np.asarray(v), np.asarray(mask), strict=True):
        o = ~m
        fill = ppca.mu[m] + cov[np.ix_(m, o)] @ np.linalg.solve(
            cov[np.ix_(o, o)], x[o] - ppca.mu[o]
        )
        full = x.copy()
        full[m] = fill
        expected.append(full)
    return model, params, v, mask, np.array(expected)


@pytest.mark.parametrize("mobility", ["hopfield", "curvature"])
def test_recall_by_sampling_gives_the_gaussian_conditional_mean(ppca_model, mobility):
    """Identity Lagrangians = PPCA, where E[v_m | v_o] is closed form."""
    model, params, v, mask, expected = ppca_model
    reps = 8  # independent runs, batched into one call, for the Monte Carlo standard error
    out = hf.recall(
        jax.random.PRNGKey(0), model, params, jnp.tile(v, (reps, 1)), jnp.tile(mask, (reps, 1)),
        num_steps=400, num_chains=1, mobility=mobility,
    )  # fmt: skip
    runs = np.asarray(out.visible).reshape(reps, *v.shape)
    mean, se = runs.mean(0), runs.std(0, ddof=1) / np.sqrt(runs.shape[0])
    m = np.asarray(mask)
    z = (mean[m] - expected[m]) / np.maximum(se[m], 1e-6)
    assert np.mean(np.abs(z) > 3.5) < 0.01, np.sort(np.abs(z))[-5:]
    np.testing.assert_array_equal(mean[~m], np.asarray(v)[~m])


def test_recall_by_annealing_reaches_the_energy_minimum(ppca_model):
    """As T -> 0 the fill is the conditional mode, which for a Gaussian is the mean."""
    model, params, v, mask, expected = ppca_model
    out = hf.recall(
        jax.random.PRNGKey(0), model, params, v, mask, method="anneal", num_steps=600,
        num_chains=1, final_temperature=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(out.visible), expected, atol=5e-3)


def test_recall_argument_errors(ppca_model):
    model, params, v, mask, _ = ppca_model
    with pytest.raises(ValueError, match="method"):
        hf.recall(jax.random.PRNGKey(0), model, params, v, mask, method="gibbs")
    with pytest.raises(ValueError, match="shape"):
        hf.recall(jax.random.PRNGKey(0), model, params, v, mask[:, :10])
    with pytest.raises(ValueError, match="mobility"):
        hf.recall(jax.random.PRNGKey(0), model, params, v, mask, mobility="dense")
    for bad in [{"num_chains": 0}, {"num_steps": 2.5}, {"step_size": 0.0}, {"temperature": -1.0}]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            hf.recall(jax.random.PRNGKey(0), model, params, v, mask, **bad)


def test_recall_ignores_nan_under_the_mask(ppca_model):
    model, params, v, mask, _ = ppca_model
    key = jax.random.PRNGKey(0)
    clean = hf.recall(key, model, params, v, mask, num_steps=100, num_chains=1)
    nans = hf.recall(key, model, params, jnp.where(mask, jnp.nan, v), mask, num_steps=100,
                     num_chains=1)  # fmt: skip
    np.testing.assert_allclose(np.asarray(nans.visible), np.asarray(clean.visible), rtol=1e-5)
    assert float(nans.accept_prob.min()) > 0.2


# ---------------------------------------------------------------- learning


def test_recall_learn_gradient_matches_the_exact_likelihood_gradient(digits):
    """Identity Lagrangians: RecallLearn's persistent-particle estimate of the log-likelihood
    gradient in (V, I) (one chain per digit, curvature mobility for the joint) agrees with
    autodiff of the exact PPCA log-likelihood (Hebbian minus anti-Hebbian)."""
    import optax
    from numpyro.infer.initialization import init_to_uniform

    from numpyro_langevin import RecallLearn
    from numpyro_langevin.em import PhaseMobility

    train, _ = digits
    x = jnp.asarray(train, jnp.float32)
    ppca = cf.ppca_mle(train, 5)
    model = hf.Hopfield(64, 5, hf.identity(), hf.identity(), temperature=ppca.sigma2)
    start = {
        "V": jnp.asarray(0.5 * ppca.W / np.sqrt(ppca.sigma2), jnp.float32),
        "I": jnp.asarray(0.5 * train.mean(0), jnp.float32),
    }
    s, mu = jnp.cov(x.T, bias=True), x.mean(0)

    def nll(p):
        p = model.resolve(p)
        prec = (jnp.eye(64) - p["U"] @ p["U"].T) / ppca.sigma2
        mean = jnp.linalg.solve(prec, p["I"]) / ppca.sigma2
        r = mu - mean
        return -0.5 * (jnp.linalg.slogdet(prec)[1] - jnp.trace(prec @ s) - r @ prec @ r)

    exact = jax.grad(nll)(start)
    em = RecallLearn(
        model.model, optax.sgd(0.0), num_particles=1, recall_steps=3, negative_phase=True,
        num_joint_particles=1, joint_recall_steps=5, mobility=model.recall_mobility,
        joint_mobility=PhaseMobility(model.curvature_mobility), block_plate="data",
        init_strategy=init_to_uniform(radius=0.1), step_size=0.1,
    )  # fmt: skip
    energy = jax.vmap(model.energy, (None, 0, 0))

    @jax.jit
    def step_and_grad(state):
        state, _ = em.update(state, x)
        h = state.particles["h"][0]
        vj, hj = state.joint_particles["v"][0], state.joint_particles["h"][0]

        def objective(p):
            return (energy(p, x, h).mean() - energy(p, vj, hj).mean()) / ppca.sigma2

        return state, jax.grad(objective)(start)

    state = em.init(jax.random.PRNGKey(0), x, init_params=start)
    grads = []
    for i in range(50):
        state, g = step_and_grad(state)
        if i >= 30:
            grads.append(g)
    for name in ("V", "I"):
        est = np.mean([np.ravel(g[name]) for g in grads], 0)
        ref = np.ravel(exact[name])
        assert np.corrcoef(est, ref)[0, 1] > 0.995, name
        np.testing.assert_allclose(np.linalg.norm(est), np.linalg.norm(ref), rtol=0.05)


def test_curvature_mobility_is_the_inverse_hessian_of_the_potential():
    """For identity Lagrangians E/T is quadratic: the curvature mobility is the inverse of its
    autodiff Hessian, in the site order of the joint's blocks (h, then v)."""
    model = hf.Hopfield(4, 3, hf.identity(), hf.identity(), temperature=0.3)
    params, _ = random_point(model, jax.random.PRNGKey(5), scale=0.2)
    params = {"U": model.contract(params["U"]), "I": params["I"]}
    rows = jax.random.normal(jax.random.PRNGKey(6), (2, 10, model.dim))
    k = model.curvature_mobility(params, rows)

    def potential(z):  # z = (h, v)
        return model.energy(params, z[3:], z[:3]) / 0.3

    hess = jax.hessian(potential)(jnp.zeros(model.dim))
    np.testing.assert_allclose(np.asarray(k), np.linalg.inv(np.asarray(hess)), rtol=1e-4)
    with pytest.raises(ValueError, match="block_plate"):
        model.curvature_mobility(params, jnp.zeros((2, 70)))


@pytest.mark.parametrize("hidden", [hf.leaky_relu(0.4), SMOOTH], ids=["leaky", "smooth"])
def test_recall_mobility_matches_site_mobility(hidden):
    model = hf.Hopfield(3, 2, hf.identity(), hidden)
    sites = {"h": jnp.array([0.3, -0.8]), "v": jnp.array([0.1, -0.2, 0.5])}
    m = model.recall_mobility(sites)
    np.testing.assert_allclose(np.asarray(m.matrix), np.asarray(model.site_mobility(sites)))
    expected = mob.position_dependent(lambda x: model.site_mobility({"h": x[:2], "v": x[2:]}))(
        jnp.concatenate([sites["h"], sites["v"]])
    )
    np.testing.assert_allclose(np.asarray(m.divergence), np.asarray(expected.divergence))
    np.testing.assert_allclose(float(m.log_det), float(expected.log_det), rtol=1e-6)
    with pytest.raises(ValueError, match="3 units"):
        model.recall_mobility({"h": jnp.ones(2), "v": jnp.ones(4)})
