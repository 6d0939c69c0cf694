r"""What a model holds, for EM: parameters :math:`\theta`, latents :math:`h`, subsampled plates.

:func:`inspect_model` traces the model once and sorts its sites: ``numpyro.param`` sites are the
parameters (with the bijection from the unconstrained space that their ``constraint`` implies, as
in NumPyro's SVI), unobserved ``numpyro.sample`` sites are the latents, observed ones the data.

Data subsampling (``numpyro.plate(name, size, subsample_size=b)``): the particles hold the latents
of *all* ``size`` data points. In each iteration a mini-batch of indices is drawn, the batch's
latents are gathered (:func:`gather`), moved, and written back (:func:`scatter`); the others are
kept. Inside a subsampled plate NumPyro multiplies every log-density term by ``size / b`` so that
:math:`E` is an unbiased estimate of the full-data energy, which is what the learning gradient
needs. The latents of distinct data points are conditionally independent given :math:`\theta`, so
the recall target of the batch's latents is :math:`\exp(-E/(sT))` with that scale :math:`s`
divided out. This is exact only when every latent site lies inside the subsampled plates (local
latents); a global latent under subsampling is refused with an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.distributions import biject_to, constraints
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.util import helpful_support_errors

__all__ = [
    "ModelSites",
    "inspect_model",
    "init_latents",
    "observed_values",
    "plate_dim",
    "gather",
    "scatter",
]


class ModelSites(NamedTuple):
    """The sites of a model, as EM needs them.

    Attributes
    ----------
    param_transforms
        ``{name: transform}`` from the unconstrained space to each ``numpyro.param`` site's
        constraint.
    param_values
        Initial (constrained) values of the parameters.
    latent_names
        Names of the latent (unobserved) continuous sample sites.
    latent_shapes
        Their unconstrained shapes over the *full* data set.
    plates
        ``{name: (size, subsample_size)}`` of the subsampled plates.
    latent_axes
        ``{latent: ((plate, axis), ...)}``: the axes (negative, of the unconstrained value) that
        each subsampled plate indexes.
    scale
        :math:`s = \\prod \\text{size}/\\text{subsample\\_size}` over the subsampled plates (1.0 without
        subsampling).
    block_plate
        The plate whose elements are independent chains (``None``: one chain for all latents;
        see :class:`~numpyro_langevin.RecallLearn`'s ``block_plate``).
    block_axes
        ``{latent: axis}``: the axis (negative, of the unconstrained value) that ``block_plate``
        indexes; empty without it.
    """

    param_transforms: dict
    param_values: dict
    latent_names: tuple
    latent_shapes: dict
    plates: dict
    latent_axes: dict
    scale: float
    block_plate: str | None = None
    block_axes: dict = {}


def _discrete(fn) -> bool:
    support = getattr(fn, "support", None)
    return bool(
        getattr(support, "is_discrete", False) or getattr(fn, "has_enumerate_support", False)
    )


@contextmanager
def _full_plates_quiet():
    """Silence NumPyro's warning that a substituted plate is not of ``subsample_size``: here the
    plates are given all their indices on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="subsample_size does not match len")
        yield


def full_plates(plates: dict) -> dict:
    """Plate substitutions that make every subsampled plate take all its indices."""
    return {name: jnp.arange(size) for name, (size, _) in plates.items()}


def inspect_model(
    model: Callable,
    rng_key: jax.Array,
    args: tuple,
    kwargs: dict,
    init_strategy: Callable,
    role: str = "model",
    block_plate: str | None = None,
) -> ModelSites:
    """Trace ``model`` and sort its sites; raise clear errors for what EM cannot handle.

    Latent values come from ``init_strategy`` (so improper latents, which cannot be sampled,
    work); ``role`` names the model in error messages (``"model"`` or ``"joint model"``).
    With ``block_plate``, every sample site must lie inside that plate (then the energy is a
    sum of one term per plate element and each element's latents can be their own chain).
    """
    seeded = substitute(seed(model, rng_key), substitute_fn=init_strategy)
    first = trace(seeded).get_trace(*args, **kwargs)
    plates = {}
    for name, site in first.items():
        if site["type"] == "plate":
            size, subsample_size = site["args"]
            if subsample_size is not None and subsample_size != size:
                plates[name] = (int(size), int(subsample_size))
    tr = first
    if plates:
        full = substitute(seed(model, rng_key), data=full_plates(plates))
        with _full_plates_quiet():
            tr = trace(substitute(full, substitute_fn=init_strategy)).get_trace(*args, **kwargs)

    param_transforms, param_values = {}, {}
    latent_names, latent_shapes, latent_axes = [], {}, {}
    scale = 1.0
    for size, subsample_size in plates.values():
        scale *= size / subsample_size
    for name, site in tr.items():
        if site["type"] == "param":
            constraint = site["kwargs"].get("constraint", constraints.real)
            with helpful_support_errors(site):
                param_transforms[name] = biject_to(constraint)
            param_values[name] = site["value"]
            if any(f.name in plates for f in site["cond_indep_stack"]):
                raise ValueError(
                    f"Parameter '{name}' lies inside the subsampled plate; RecallLearn learns "
                    "global parameters only. Move it out of the plate or do not subsample."
                )
        elif site["type"] == "sample" and not site["is_observed"]:
            if _discrete(site["fn"]) and role == "joint model":
                raise ValueError(
                    f"Site '{name}' is observed in the model but discrete: the negative phase "
                    "samples the joint with the observed sites unconditioned "
                    "(numpyro.handlers.uncondition), and Langevin recall moves continuous "
                    "variables only. Use negative_phase=False (fine for a normalised model), or "
                    "a continuous observation model."
                )
            if _discrete(site["fn"]):
                raise ValueError(
                    f"Site '{name}' of the {role} is a discrete latent variable; Langevin recall "
                    "moves continuous variables by their gradient. Marginalise it out (e.g. with "
                    "a mixture distribution) or make it observed."
                )
            with helpful_support_errors(site):
                transform = biject_to(site["fn"].support)
            shape = tuple(transform.inverse_shape(jnp.shape(site["value"])))
            latent_names.append(name)
            latent_shapes[name] = shape
            axes = tuple(
                (f.name, f.dim - transform.domain.event_dim)
                for f in site["cond_indep_stack"]
                if f.name in plates
            )
            if plates and {p for p, _ in axes} != set(plates):
                raise ValueError(
                    f"Latent site '{name}' of the {role} is not inside every subsampled plate "
                    f"({sorted(plates)}). With data subsampling RecallLearn supports local latents "
                    "only (one per data point, inside the subsampled plate): make global latents "
                    "numpyro.param sites, or do not subsample."
                )
            latent_axes[name] = axes
    block_axes = {} if block_plate is None else _block_axes(tr, block_plate, role)
    return ModelSites(
        param_transforms,
        param_values,
        tuple(latent_names),
        latent_shapes,
        plates,
        latent_axes,
        scale,
        block_plate,
        block_axes,
    )


def plate_dim(site: dict, plate: str) -> int | None:
    """The batch dimension (negative) that ``plate`` indexes at ``site``, or ``None``."""
    for frame in site["cond_indep_stack"]:
        if frame.name == plate:
            return frame.dim
    return None


def _block_axes(tr, block_plate: str, role: str) -> dict:
    """``{latent: axis of its unconstrained value}`` for the block plate; checks that every
    sample site lies inside it."""
    if not any(site["type"] == "plate" and name == block_plate for name, site in tr.items()):
        plates = sorted(name for name, site in tr.items() if site["type"] == "plate")
        raise ValueError(
            f"`block_plate={block_plate!r}` is not a plate of the {role}; its plates are "
            f"{plates}. Name the plate over the data points (the one inside which each data "
            "point's latents live)."
        )
    axes = {}
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        dim = plate_dim(site, block_plate)
        if dim is None:
            raise ValueError(
                f"Site '{name}' of the {role} lies outside the plate '{block_plate}'. With "
                "`block_plate` every sample site (observed, latent or factor) must be inside "
                "that plate, so that the energy is a sum of one term per plate element and "
                "each element's latents can be moved as a chain of their own. Move the site "
                "into the plate, make it a numpyro.param, or leave `block_plate=None`."
            )
        if not site["is_observed"]:
            # count the event dims of the unconstrained value from its shape: a factor's
            # Unit site has an empty event (0,) under a support of event_dim 0
            shape = biject_to(site["fn"].support).inverse_shape(jnp.shape(site["value"]))
            axes[name] = dim - (len(shape) - len(site["fn"].batch_shape))
    return axes


def _full_trace(model, rng_key, args, kwargs, sites: ModelSites, init_strategy, params):
    """A trace over the full data set (subsampled plates at full size), ``params`` substituted
    and latents drawn by ``init_strategy``."""
    m = substitute(model, data={**full_plates(sites.plates), **params})
    with _full_plates_quiet():
        return trace(substitute(seed(m, rng_key), substitute_fn=init_strategy)).get_trace(
            *args, **kwargs
        )


def init_latents(
    model: Callable,
    rng_key: jax.Array,
    args: tuple,
    kwargs: dict,
    sites: ModelSites,
    init_strategy: Callable,
    params: dict,
) -> dict:
    """Unconstrained initial values of the latents over the full data set (one particle).

    ``params`` (constrained) are substituted so that latents whose distribution depends on them
    start where the init strategy puts them for those parameter values.
    """
    tr = _full_trace(model, rng_key, args, kwargs, sites, init_strategy, params)
    out = {}
    for name in sites.latent_names:
        site = tr[name]
        out[name] = biject_to(site["fn"].support).inv(site["value"])
    return out


def observed_values(
    model: Callable,
    rng_key: jax.Array,
    args: tuple,
    kwargs: dict,
    sites: ModelSites,
    init_strategy: Callable,
    params: dict,
) -> dict:
    """Unconstrained values of the observed sample sites over the full data set (e.g. to start
    the joint's particles at the data); latents are drawn by ``init_strategy`` on the way."""
    tr = _full_trace(model, rng_key, args, kwargs, sites, init_strategy, params)
    return {
        name: biject_to(site["fn"].support).inv(site["value"])
        for name, site in tr.items()
        if site["type"] == "sample" and site["is_observed"]
    }


def gather(values: dict[str, Any], indices: dict, axes: dict) -> dict:
    """The mini-batch part of one particle's latents (indices taken along each plate's axis)."""
    out = {}
    for name, v in values.items():
        for plate, axis in axes[name]:
            v = jnp.take(v, indices[plate], axis=axis)
        out[name] = v
    return out


def scatter(values: dict, batch: dict, indices: dict, axes: dict) -> dict:
    """Write one particle's mini-batch latents back into its full-data latents."""
    out = {}
    for name, full in values.items():
        site_axes = axes[name]
        if not site_axes:
            out[name] = batch[name]
            continue
        positions = [axis % full.ndim for _, axis in site_axes]
        k = len(positions)
        front = list(range(k))
        f = jnp.moveaxis(full, positions, front)
        b = jnp.moveaxis(batch[name], [axis % batch[name].ndim for _, axis in site_axes], front)
        index = tuple(
            jnp.reshape(indices[plate], (-1,) + (1,) * (k - 1 - j))
            for j, (plate, _) in enumerate(site_axes)
        )
        out[name] = jnp.moveaxis(f.at[index].set(b), front, positions)
    return out
