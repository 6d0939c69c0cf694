"""numpyro-langevin: Langevin MCMC with exact position-dependent preconditioning for NumPyro.

``Langevin`` is a drop-in ``numpyro.infer.MCMC`` kernel; :mod:`numpyro_langevin.core` is the
functional core it is built on (pure ``init``/``step`` functions on flat positions).
"""

from numpyro_langevin import core, fisher, hopfield, mobilities, mobility, nonreversible
from numpyro_langevin.core import LangevinInfo, LangevinState
from numpyro_langevin.kernel import Langevin, LangevinMCMCState
from numpyro_langevin.recall_learn import RecallLearn

__all__ = [
    "Langevin",
    "LangevinMCMCState",
    "RecallLearn",
    "LangevinState",
    "LangevinInfo",
    "core",
    "mobility",
    "mobilities",
    "nonreversible",
    "fisher",
    "hopfield",
]

__version__ = "0.1.0"
