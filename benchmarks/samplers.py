r"""The samplers under comparison, each built fresh for a target.

NumPyro kernels (run by ``numpyro.infer.MCMC``):

* ``Langevin`` — our kernel with its defaults (step size by dual averaging to acceptance 0.574, a
  constant mobility adapted to the posterior covariance; dense up to 50 dimensions).
* ``Langevin dense`` — the same with ``dense_mobility=True`` (only listed where it differs from
  the default, i.e. above 50 dimensions).
* ``Langevin Fisher`` — ``adapt_mobility="fisher"``: the inverse Fisher (score outer product)
  constant mobility of Titsias (2023).
* ``Langevin <name>`` — a built-in position-dependent mobility, where the target lists one.
* ``NUTS`` — NumPyro's defaults (diagonal mass matrix, target acceptance 0.8).
* ``BarkerMH`` — NumPyro's defaults (Livingstone & Zanella 2022).
* ``HMC 1-step (MALA)`` — ``HMC(num_steps=1, trajectory_length=None, target_accept_prob=0.574)``:
  one leapfrog step with a fresh momentum is MALA preconditioned by the adapted diagonal mass
  matrix; step size adapted by NumPyro's dual averaging.

BlackJAX (:mod:`benchmarks.blackjax_mala`): ``BlackJAX MALA`` — identity preconditioner; its step
size is tuned during the warmup budget by bisection on the acceptance rate (BlackJAX's MALA has no
adaptation of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from numpyro.infer import HMC, NUTS, BarkerMH

from benchmarks.targets import Target
from numpyro_langevin import Langevin
from numpyro_langevin.kernel import DENSE_AUTO_MAX_DIM

__all__ = ["SamplerSpec", "samplers_for"]


@dataclass
class SamplerSpec:
    """How to build one sampler for one target.

    Attributes
    ----------
    name
        Table label ("Langevin..." for ours, "NUTS" for NUTS).
    build
        ``model -> MCMCKernel``, or ``None`` for the BlackJAX sampler.
    gradients
        ``"one"`` (one gradient of the potential per iteration) or ``"num_steps"`` (read from
        NUTS's ``num_steps`` field).
    vectorizable
        Whether the kernel runs with ``chain_method="vectorized"`` (BarkerMH does not).
    """

    name: str
    build: Callable | None
    gradients: str = "one"
    vectorizable: bool = True


def _has_fisher() -> bool:
    try:
        Langevin(potential_fn=lambda x: 0.0, adapt_mobility="fisher")
    except (TypeError, ValueError):
        return False
    return True


def samplers_for(target: Target, many_chains: bool = False) -> list[SamplerSpec]:
    """The samplers run on ``target`` (the many-chain regime runs a subset)."""
    specs = [SamplerSpec("Langevin", lambda m: Langevin(m))]
    if not many_chains:
        if target.dim > DENSE_AUTO_MAX_DIM:
            specs.append(SamplerSpec("Langevin dense", lambda m: Langevin(m, dense_mobility=True)))
        if _has_fisher():
            specs.append(
                SamplerSpec("Langevin Fisher", lambda m: Langevin(m, adapt_mobility="fisher"))
            )
        for label, mobility in target.position_dependent.items():
            specs.append(
                SamplerSpec(f"Langevin {label}", lambda m, k=mobility: Langevin(m, mobility=k))
            )
    specs.append(SamplerSpec("NUTS", lambda m: NUTS(m), gradients="num_steps"))
    if not many_chains:
        specs.append(SamplerSpec("BarkerMH", lambda m: BarkerMH(m), vectorizable=False))
    specs.append(
        SamplerSpec(
            "HMC 1-step (MALA)",
            lambda m: HMC(m, num_steps=1, trajectory_length=None, target_accept_prob=0.574),
        )
    )
    specs.append(SamplerSpec("BlackJAX MALA", None))
    return specs
