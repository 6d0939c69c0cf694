r"""The continuous Hopfield latent model (Lagrangian form) and its Langevin recall.

* :mod:`~numpyro_langevin.hopfield.lagrangians`: neuron Lagrangians (identity, leaky ReLU, custom);
* :mod:`~numpyro_langevin.hopfield.energy`: :class:`Hopfield`, the energy
  :math:`E(v, h)`, its mobility :math:`K = (\partial^2 L)^{-1}`, the classic dynamics and the
  NumPyro model;
* :mod:`~numpyro_langevin.hopfield.recall`: :func:`recall`, pattern completion;
* :mod:`~numpyro_langevin.hopfield.closed_form`: PPCA and two-piece-Gaussian closed forms used to
  verify the model.

Learning is :class:`numpyro_langevin.RecallLearn` on :meth:`Hopfield.model` with the negative
phase, one chain per data point (``block_plate="data"``), ``mobility=model.recall_mobility``
and ``joint_mobility=PhaseMobility(model.curvature_mobility)`` (see
``examples/hopfield_digits.py``).
"""

from numpyro_langevin.hopfield import closed_form
from numpyro_langevin.hopfield.energy import Hopfield
from numpyro_langevin.hopfield.lagrangians import Lagrangian, custom, identity, leaky_relu, relu
from numpyro_langevin.hopfield.recall import RecallResult, recall

__all__ = [
    "Hopfield",
    "Lagrangian",
    "RecallResult",
    "closed_form",
    "custom",
    "identity",
    "leaky_relu",
    "recall",
    "relu",
]
