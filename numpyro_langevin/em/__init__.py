"""Building blocks of :class:`numpyro_langevin.RecallLearn` (EM with Langevin recall).

* :mod:`~numpyro_langevin.em.sites`: what the model holds (parameters, latents, subsampled plates)
  and how latent particles of the full data set are gathered for a mini-batch and written back;
* :mod:`~numpyro_langevin.em.recall`: the recall phase, persistent particles moved by
  :func:`numpyro_langevin.core.step` (or, one chain per data point,
  :func:`numpyro_langevin.core.block_step`) with an adapted step size;
* :mod:`~numpyro_langevin.em.phase`: one set of particles (data or joint) of a model: its
  energy, per-data-point energies, mobility (:class:`PhaseMobility`) and recall;
* :mod:`~numpyro_langevin.em.state_io`: saving and loading a state as ``.npz`` (no pickle).
"""

from numpyro_langevin.em.phase import PhaseMobility
from numpyro_langevin.em.state_io import load_state, save_state

__all__ = ["PhaseMobility", "load_state", "save_state"]
