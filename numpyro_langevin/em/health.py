"""Checks of a :class:`~numpyro_langevin.RecallLearn` state: what is refused at ``init`` or on
resuming, and what is warned about after a run.

Every check runs on the host, outside ``jit``, on concrete arrays: the compiled updates carry no
extra work.
"""

from __future__ import annotations

import warnings

import numpy as np

from numpyro_langevin.em.phase import Phase

__all__ = ["check_finite", "check_particle_shapes", "warn_if_stuck", "warn_if_frozen"]


def check_finite(phase: Phase, particles: dict) -> None:
    """Refuse initial particles that are not finite (e.g. the joint started at observed values
    outside a site's support)."""
    for name, value in particles.items():
        if not np.all(np.isfinite(np.asarray(value))):
            raise ValueError(
                f"The initial particles of site '{name}' are not finite. For an observed site "
                "of the joint (started at the data, joint_init='data') this means an observed "
                "value outside the site's support (its unconstrained value is NaN or infinite):"
                " check the data, or pass joint_init='init_strategy'. Otherwise check "
                "`init_strategy` and `init_params`."
            )


def check_particle_shapes(phase: Phase, particles: dict | None, label: str) -> None:
    """Refuse a state whose particles do not fit the model with the current arguments (a state
    made for other data, or with another number of particles)."""
    if not phase.sites.latent_names:
        return
    expected = {
        name: (phase.num_particles, *phase.sites.latent_shapes[name])
        for name in phase.sites.latent_names
    }
    got = {} if particles is None else {k: tuple(np.shape(v)) for k, v in particles.items()}
    if got != expected:
        raise ValueError(
            f"The state's {label} particles have shapes {got}, but the model with these "
            f"arguments and num_particles needs {expected}. Was the state made for other data "
            "or with other particle numbers? Resume with the same data sizes and settings, or "
            "start afresh with `init`."
        )


def warn_if_stuck(phase: str, log_step_size, step_size: float) -> None:
    """Warn when the initial step-size search collapsed (every proposal rejected)."""
    h = float(np.exp(np.asarray(log_step_size)))
    if h < 1e-8 * step_size:
        warnings.warn(
            f"The initial step-size search of the {phase} phase ended at h = {h:.3g} "
            f"(from step_size={step_size}): almost every proposal from the initial "
            "particles is rejected. Check that the mobility is finite and positive "
            "definite there (a PhaseMobility included), and that the particles do not "
            "start exactly on a kink of a piecewise mobility (init_to_feasible puts "
            "improper latents at 0; init_to_uniform(radius=0.1) avoids it).",
            RuntimeWarning,
            stacklevel=3,
        )


def warn_if_frozen(phase: str, accept_prob) -> None:
    """Warn when a recall phase stopped moving (no proposal accepted in the last update)."""
    if float(accept_prob) == 0.0:
        warnings.warn(
            f"No proposal of the {phase} phase was accepted in the last update: its "
            "particles are frozen while the parameters move. Look for a mobility that "
            "became NaN or not positive definite (a PhaseMobility is evaluated anew "
            "at every update), or an energy that is not finite where the particles are.",
            RuntimeWarning,
            stacklevel=3,
        )
