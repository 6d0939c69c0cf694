"""Bad input fails early, with a message naming the problem and the fix."""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

from numpyro_langevin import Langevin

KEY = jax.random.PRNGKey(0)


def model():
    numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))


def potential(x):
    return 0.5 * jnp.sum(x**2)


def init(kernel, init_params=None, args=()):
    return kernel.init(KEY, 10, init_params, args, {})


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({}, ValueError, ["exactly one of `model`", "potential_fn"]),
        ({"model": model, "potential_fn": potential}, ValueError, ["exactly one"]),
        ({"model": 3}, TypeError, ["`model` must be callable"]),
        ({"model": model, "temperature": 0.0}, ValueError, ["temperature", "> 0"]),
        ({"model": model, "temperature": -1.0}, ValueError, ["temperature"]),
        ({"model": model, "temperature": float("nan")}, ValueError, ["temperature"]),
        ({"model": model, "step_size": 0.0}, ValueError, ["step_size", "> 0"]),
        ({"model": model, "step_size": "big"}, TypeError, ["step_size"]),
        ({"model": model, "target_accept_prob": 1.5}, ValueError, ["target_accept_prob"]),
        ({"model": model, "dense_mobility": "yes"}, TypeError, ["dense_mobility"]),
        ({"model": model, "mobility": jnp.ones((2, 2, 2))}, ValueError, ["(d,) or (d, d)"]),
        ({"model": model, "metropolis": "False"}, TypeError, ["`metropolis`", "True or False"]),
        ({"model": model, "target_accept_prob": "high"}, TypeError, ["target_accept_prob"]),
        ({"model": model, "steps_per_sample": 0}, ValueError, ["steps_per_sample"]),
    ],
)
def test_construction_errors(kwargs, error, words):
    with pytest.raises(error) as info:
        Langevin(**kwargs)
    for word in words:
        assert word in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "mobility, words",
    [
        (jnp.ones(3), ["shape (2,)", "(2, 2)", "ravel_pytree", "got shape (3,)"]),
        (jnp.array([1.0, -1.0]), ["must be > 0", "-1"]),
        (jnp.array([[1.0, 2.0], [2.0, 1.0]]), ["not positive definite"]),
        (jnp.array([[1.0, 0.5], [0.0, 1.0]]), ["not symmetric"]),
        (jnp.array([1.0, jnp.nan]), ["non-finite"]),
        (lambda p: jnp.ones(3), ["must return shape (2,)", "returned (3,)"]),
        (
            lambda p: jnp.array([[1.0, 2.0], [2.0, 1.0]]),
            ["not positive definite", "initial position"],
        ),
        (lambda p: p["nope"], ["`mobility` callable", "dict of unconstrained sites"]),
    ],
)
def test_mobility_errors_at_init(mobility, words):
    kernel = Langevin(model, mobility=mobility)
    with pytest.raises((ValueError, TypeError)) as info:
        init(kernel)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_discrete_latent_site_is_rejected_with_alternatives():
    def mixture(y):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(3.0 * z, 1.0), obs=y)

    with pytest.raises(ValueError) as info:
        init(Langevin(mixture), args=(1.0,))
    assert "'z' is a discrete latent" in str(info.value)
    assert "DiscreteHMCGibbs" in str(info.value) and "Marginalise" in str(info.value)


def test_potential_fn_needs_init_params():
    with pytest.raises(ValueError, match="pass `init_params`"):
        init(Langevin(potential_fn=potential))


def test_potential_fn_must_be_finite_at_the_start():
    with pytest.raises(ValueError, match="not finite at `init_params`"):
        init(Langevin(potential_fn=lambda x: jnp.log(x[0])), init_params=jnp.array([-1.0, 0.0]))


@pytest.mark.parametrize("params", [{"x": jnp.zeros(3)}, {"y": jnp.zeros(2)}])
def test_init_params_must_match_the_model_sites(params):
    with pytest.raises(ValueError) as info:
        init(Langevin(model), init_params=params)
    assert "init_params" in str(info.value) and "'x': (2,)" in str(info.value)
