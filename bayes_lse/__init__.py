"""bayes-lse: Bayesian Latent Skill Embedding with PyMC.

The package is the pipeline a newcomer follows, one subpackage per stage:
data → model → inference → results → diagnostics → report → recommend → evaluate → cli,
with `api` (the public classes) on top of recommend; see ARCHITECTURE.md.

The public names are imported on first use (PEP 562): `import bayes_lse` itself
loads nothing heavy, so that a MAP fit on the compiled kernel, which needs neither
PyMC nor PyTensor, does not pay for them (about 45 MB of a 400 MB budget, issue 7).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> submodule that defines it
_LAZY: dict[str, str] = {
    "FittedLSE": "api",
    "InteractionLog": "data.log",
    "InteractionLogError": "core.errors",
    "LatentSkillEmbedding": "api",
    "ModelFolderError": "results.storage",
    "SimulatedCohort": "model.simulate",
    "load": "api",
    "read_interactions": "data.log",
    "simulate": "model.simulate",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:
    from bayes_lse.api import FittedLSE, LatentSkillEmbedding, load
    from bayes_lse.core.errors import InteractionLogError
    from bayes_lse.data.log import InteractionLog, read_interactions
    from bayes_lse.model.simulate import SimulatedCohort, simulate
    from bayes_lse.results.storage import ModelFolderError


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` and bind the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
