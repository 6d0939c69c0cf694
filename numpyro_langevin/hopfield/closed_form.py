r"""Closed forms that the Hopfield model is checked against.

Identity Lagrangians: probabilistic PCA
---------------------------------------
With :math:`L_v = \tfrac12|v|^2`, :math:`L_h = \tfrac12|h|^2` the energy is
:math:`E = \tfrac12|v|^2 - I\cdot v + \tfrac12|h|^2 - v^\top U h`. Integrating :math:`h` out of
:math:`\exp(-E/T)` leaves :math:`v \sim N\big((1 - UU^\top)^{-1} I,\ T(1 - UU^\top)^{-1}\big)`, a
proper density iff :math:`\|U\|_2 < 1`. Probabilistic PCA (Tipping & Bishop 1999),
:math:`v \sim N(\mu, WW^\top + \sigma^2)`, is the same model with

.. math::

    T = \sigma^2, \qquad U = W(\sigma^2 + W^\top W)^{-1/2}, \qquad I = (1 - UU^\top)\mu,

because :math:`1 - UU^\top = 1 - W(\sigma^2 + W^\top W)^{-1}W^\top = \sigma^2 (WW^\top + \sigma^2)^{-1}`.
Its maximum-likelihood estimate is closed form: :math:`\mu` the data mean,
:math:`\sigma^2` the mean of the :math:`d - k` smallest eigenvalues of the sample covariance and
:math:`W = V_k(\Lambda_k - \sigma^2)^{1/2}`.

Leaky-ReLU hidden units with the visible units clamped
------------------------------------------------------
With :math:`L_h` a leaky ReLU of slope :math:`a` and :math:`c = U^\top g(v)`, the energy depends on
:math:`h_\mu` through :math:`\tfrac12 (h_\mu - c_\mu)^2` for :math:`h_\mu > 0` and
:math:`\tfrac a2 (h_\mu - c_\mu)^2` for :math:`h_\mu < 0` (up to constants :math:`-\tfrac12 c^2`,
:math:`-\tfrac a2 c^2`). So :math:`q(h\mid v)` is a product of *two-piece Gaussians*: :math:`N(c, T)`
truncated to :math:`h > 0` with mass :math:`Z_+ = e^{c^2/2T}\sqrt{2\pi T}\,\Phi(c/\sqrt T)`, and
:math:`N(c, T/a)` truncated to :math:`h < 0` with mass
:math:`Z_- = e^{a c^2/2T}\sqrt{2\pi T/a}\,\Phi(-c\sqrt{a/T})`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jax.scipy.stats import norm

Array = jax.Array

__all__ = [
    "PPCA",
    "ppca_mle",
    "ppca_log_likelihood",
    "ppca_to_hopfield",
    "linear_hopfield_log_likelihood",
    "TwoPieceMoments",
    "two_piece_moments",
    "two_piece_sample",
    "ula_kink_limit",
]


# ---------------------------------------------------------------------------- PPCA


class PPCA(NamedTuple):
    """Probabilistic PCA parameters: :math:`v \\sim N(\\mu, WW^\\top + \\sigma^2 I)`."""

    W: np.ndarray
    mu: np.ndarray
    sigma2: float


def ppca_mle(data: np.ndarray, num_components: int) -> PPCA:
    """The Tipping–Bishop maximum-likelihood PPCA (sample covariance with :math:`1/n`)."""
    x = np.asarray(data, dtype=np.float64)
    mu = x.mean(0)
    cov = np.cov(x, rowvar=False, bias=True)
    eigval, eigvec = np.linalg.eigh(cov)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    k = num_components
    sigma2 = float(eigval[k:].mean())
    w = eigvec[:, :k] * np.sqrt(np.maximum(eigval[:k] - sigma2, 0.0))
    return PPCA(w, mu, sigma2)


def _gaussian_log_likelihood(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """Mean log density of the rows of ``x`` under :math:`N(\\text{mean}, \\text{cov})`;
    ``-inf`` if ``cov`` is not positive definite."""
    x = np.asarray(x, dtype=np.float64)
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return -np.inf
    r = np.linalg.solve(chol, (x - mean).T)
    d = x.shape[1]
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    return float(-0.5 * (d * np.log(2 * np.pi) + log_det) - 0.5 * np.mean(np.sum(r**2, 0)))


def ppca_log_likelihood(ppca: PPCA, data: np.ndarray) -> float:
    """Mean log-likelihood per row of ``data`` (nats)."""
    d = ppca.W.shape[0]
    return _gaussian_log_likelihood(data, ppca.mu, ppca.W @ ppca.W.T + ppca.sigma2 * np.eye(d))


def ppca_to_hopfield(ppca: PPCA) -> dict[str, np.ndarray]:
    """Hopfield parameters with identity Lagrangians equal to ``ppca``:
    :math:`T = \\sigma^2`, :math:`U = W(\\sigma^2 + W^\\top W)^{-1/2}`, :math:`I = (1 - UU^\\top)\\mu`."""
    w, s2 = np.asarray(ppca.W, dtype=np.float64), ppca.sigma2
    eigval, eigvec = np.linalg.eigh(s2 * np.eye(w.shape[1]) + w.T @ w)
    u = w @ (eigvec / np.sqrt(eigval)) @ eigvec.T
    bias = (np.eye(w.shape[0]) - u @ u.T) @ ppca.mu
    return {"U": u, "I": bias, "temperature": np.asarray(s2)}


def linear_hopfield_log_likelihood(params: dict, data: np.ndarray, temperature=None) -> float:
    """Exact mean log-likelihood of ``data`` under the identity-Lagrangian Hopfield model:
    :math:`v \\sim N((1 - UU^\\top)^{-1}I, T(1 - UU^\\top)^{-1})`; ``-inf`` when
    :math:`\\|U\\|_2 \\ge 1` (the model is then not normalisable). ``params`` holds ``"U"``,
    or ``"V"`` with :math:`U = V L^{-\\top}`, :math:`LL^\\top = 1 + V^\\top V` (contractive
    coupling)."""
    if "U" in params:
        u = np.asarray(params["U"], dtype=np.float64)
    else:
        v = np.asarray(params["V"], dtype=np.float64)
        chol = np.linalg.cholesky(np.eye(v.shape[1]) + v.T @ v)
        u = np.linalg.solve(chol, v.T).T
    t = float(params["temperature"] if temperature is None else temperature)
    precision = (np.eye(u.shape[0]) - u @ u.T) / t
    try:
        np.linalg.cholesky(precision)
    except np.linalg.LinAlgError:
        return -np.inf
    cov = np.linalg.inv(precision)
    cov = 0.5 * (cov + cov.T)
    mean = cov @ np.asarray(params["I"], dtype=np.float64) / t
    return _gaussian_log_likelihood(data, mean, cov)


# ---------------------------------------------------------------------------- two-piece Gaussian


class TwoPieceMoments(NamedTuple):
    """Moments of one leaky-ReLU unit's conditional :math:`q(h_\\mu \\mid v)`."""

    prob_positive: Array
    mean: Array
    variance: Array
    mean_positive: Array
    mean_negative: Array


def _log_masses(c: Array, slope: float, temperature: float) -> tuple[Array, Array]:
    t, a = temperature, slope
    log_pos = c**2 / (2 * t) + 0.5 * jnp.log(2 * jnp.pi * t) + log_ndtr(c / jnp.sqrt(t))
    log_neg = (
        a * c**2 / (2 * t) + 0.5 * jnp.log(2 * jnp.pi * t / a) + log_ndtr(-c * jnp.sqrt(a / t))
    )
    return log_pos, log_neg


def _truncated_pieces(c: Array, slope: float, temperature: float):
    """Mean and second moment of :math:`N(c, T)` on :math:`(0, \\infty)` and of
    :math:`N(c, T/a)` on :math:`(-\\infty, 0)`."""
    s_pos, s_neg = jnp.sqrt(temperature), jnp.sqrt(temperature / slope)
    # Inverse Mills ratios phi(z)/Phi(z), computed in log space.
    z_pos, z_neg = c / s_pos, -c / s_neg
    mills_pos = jnp.exp(norm.logpdf(z_pos) - log_ndtr(z_pos))
    mills_neg = jnp.exp(norm.logpdf(z_neg) - log_ndtr(z_neg))
    mean_pos = c + s_pos * mills_pos
    var_pos = s_pos**2 * (1 - z_pos * mills_pos - mills_pos**2)
    mean_neg = c - s_neg * mills_neg
    var_neg = s_neg**2 * (1 - z_neg * mills_neg - mills_neg**2)
    return mean_pos, var_pos + mean_pos**2, mean_neg, var_neg + mean_neg**2


def _mix(p, mean_pos, m2_pos, mean_neg, m2_neg) -> TwoPieceMoments:
    mean = p * mean_pos + (1 - p) * mean_neg
    second = p * m2_pos + (1 - p) * m2_neg
    return TwoPieceMoments(p, mean, second - mean**2, mean_pos, mean_neg)


def two_piece_moments(c: Array, slope: float, temperature: float) -> TwoPieceMoments:
    """Exact :math:`P(h_\\mu > 0)`, mean and variance of :math:`q(h_\\mu \\mid v)` for a
    leaky-ReLU unit with input :math:`c_\\mu = (U^\\top g(v))_\\mu`."""
    log_pos, log_neg = _log_masses(c, slope, temperature)
    p = jax.nn.sigmoid(log_pos - log_neg)
    return _mix(p, *_truncated_pieces(c, slope, temperature))


def ula_kink_limit(c: Array, slope: float, temperature: float) -> TwoPieceMoments:
    """Moments of the small-step limit of the *unadjusted* chain with :math:`K = (\\partial^2L)^{-1}`.

    The Euler–Maruyama chain drifts by :math:`-K\\nabla E` and misses the Dirac mass of
    :math:`T\\nabla\\cdot K` at the kink, so as :math:`h\\to 0` it converges to the diffusion with
    generator :math:`-K E'\\partial + T K\\partial^2`, whose stationary density is
    :math:`\\exp(-E/T)/K`: each half keeps its shape, but the negative half's mass is
    multiplied by :math:`a`. This bias does not vanish with the step size.
    """
    log_pos, log_neg = _log_masses(c, slope, temperature)
    p = jax.nn.sigmoid(log_pos - log_neg - jnp.log(slope))
    return _mix(p, *_truncated_pieces(c, slope, temperature))


def two_piece_sample(rng_key: Array, c: Array, slope: float, temperature: float) -> Array:
    """Exact draws from :math:`q(h \\mid v) = \\prod_\\mu` two-piece Gaussians (shape of ``c``)."""
    key_side, key_pos, key_neg = jax.random.split(rng_key, 3)
    c = jnp.asarray(c)
    log_pos, log_neg = _log_masses(c, slope, temperature)
    positive = jax.random.uniform(key_side, c.shape) < jax.nn.sigmoid(log_pos - log_neg)
    s_pos, s_neg = jnp.sqrt(temperature), jnp.sqrt(temperature / slope)
    z_pos = jax.random.truncated_normal(key_pos, -c / s_pos, jnp.inf, c.shape)
    z_neg = jax.random.truncated_normal(key_neg, -jnp.inf, -c / s_neg, c.shape)
    return jnp.where(positive, c + s_pos * z_pos, c + s_neg * z_neg)
