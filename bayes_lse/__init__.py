"""bayes-lse: Bayesian Latent Skill Embedding with PyMC.

data → model → inference → diagnostics → report → recommend; see ARCHITECTURE.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .data import InteractionLog, read_interactions
from .errors import InteractionLogError
from .fitted import FittedLSE, load
from .model import LatentSkillEmbedding
from .simulate import SimulatedCohort, simulate
from .storage import ModelFolderError

__all__ = [
    "FittedLSE",
    "InteractionLog",
    "InteractionLogError",
    "LatentSkillEmbedding",
    "ModelFolderError",
    "SimulatedCohort",
    "__version__",
    "load",
    "read_interactions",
    "simulate",
]
