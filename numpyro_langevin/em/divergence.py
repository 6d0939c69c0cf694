r"""Detecting a diverging learning objective.

On an unnormalised energy (its normalising constant depends on :math:`\theta`) the positive phase
alone follows :math:`\langle\nabla_\theta E\rangle_{\text{data}}`, which can lower :math:`E`
without bound: for the linear Hopfield energy
:math:`E = \tfrac12|v|^2 + \tfrac12|h|^2 - v^\top U h` it is power iteration on :math:`U`, whose
norm grows geometrically (under SGD) or linearly (under Adam), while the loss falls geometrically
or quadratically. :func:`diverging_objective` recognises such a loss curve;
:func:`warn_if_diverging` turns it into a :class:`DivergingObjectiveWarning` that names the
remedy (``negative_phase=True``).
"""

from __future__ import annotations

import warnings

import jax
import numpy as np

__all__ = ["DivergingObjectiveWarning", "diverging_objective", "warn_if_diverging"]


class DivergingObjectiveWarning(UserWarning):
    """The learning objective went to :math:`-\\infty` or became non-finite."""


def _slope(y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``y`` against its index, and its standard error."""
    t = np.arange(y.shape[0], dtype=np.float64)
    t = t - t.mean()
    s = float(t @ (y - y.mean()) / (t @ t))
    resid = y - y.mean() - s * t
    se = float(np.sqrt(resid @ resid / max(y.shape[0] - 2, 1) / (t @ t)))
    return s, se


def diverging_objective(losses) -> str | None:
    r"""Say why a loss curve looks divergent, or return ``None``.

    Two symptoms: a non-finite loss, or a loss that falls ever faster. For the latter the run is
    cut in quarters; with :math:`s_2, s_4` the least-squares slopes of the loss over the second
    and the last quarter and :math:`\sigma_4` the standard error of :math:`s_4` (from its
    residuals), the objective is flagged when :math:`s_4 < -5\sigma_4` (still falling, well beyond
    noise) and :math:`s_4 < 1.5\,\min(s_2, 0)` (falling faster than before). A converging loss
    flattens out (:math:`|s_4| \ll |s_2|`); an energy unbounded below falls ever faster
    (quadratically under Adam, geometrically under SGD). Needs 16 iterations or more; a loss that
    falls at a constant rate is not flagged.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if not np.all(np.isfinite(losses)):
        first = int(np.argmin(np.isfinite(losses)))
        return f"the loss is not finite from iteration {first + 1} on"
    n = losses.shape[0]
    if n < 16:
        return None
    q = n // 4
    s2, _ = _slope(losses[q : 2 * q])
    s4, se4 = _slope(losses[n - q :])
    if s4 < -5.0 * se4 and s4 < 1.5 * min(s2, 0.0):
        return (
            f"the loss keeps falling ever faster: slope {s4:.3g} per iteration over the last "
            f"quarter against {s2:.3g} over the second"
        )
    return None


def warn_if_diverging(losses, params, negative_phase: bool, stacklevel: int = 3) -> None:
    """Warn (:class:`DivergingObjectiveWarning`) when the losses or the parameters diverge."""
    finite = all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(params))
    reason = diverging_objective(losses)
    if finite and reason is None:
        return
    reason = reason or "the parameters became non-finite"
    if negative_phase:
        advice = (
            "Lower the learning rate, add recall_steps or particles, or check that exp(-E/T) is "
            "normalisable over the visible and latent sites."
        )
    else:
        advice = (
            "If the energy is unnormalised (the model does not integrate to one over the "
            "observed sites), the positive phase alone drives it to -inf: pass "
            "negative_phase=True. Otherwise lower the learning rate."
        )
    warnings.warn(
        f"RecallLearn: the objective is diverging ({reason}). {advice}",
        DivergingObjectiveWarning,
        stacklevel=stacklevel,
    )
