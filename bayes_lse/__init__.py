"""bayes-lse: Bayesian Latent Skill Embedding with PyMC.

data → model → inference → diagnostics → report → recommend; see ARCHITECTURE.md.

The public names are imported on first use (PEP 562): `import bayes_lse` itself
loads nothing heavy, so that a MAP fit on the compiled kernel, which needs neither
PyMC nor PyTensor, does not pay for them (about 45 MB of a 400 MB budget, issue 7).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> submodule that defines it
_LAZY: dict[str, str] = {
    "FittedLSE": "fitted",
    "InteractionLog": "data",
    "InteractionLogError": "errors",
    "LatentSkillEmbedding": "model",
    "ModelFolderError": "storage",
    "SimulatedCohort": "simulate",
    "load": "fitted",
    "read_interactions": "data",
    "simulate": "simulate",
}

__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:
    from .data import InteractionLog, read_interactions
    from .errors import InteractionLogError
    from .fitted import FittedLSE, load
    from .model import LatentSkillEmbedding
    from .simulate import SimulatedCohort, simulate
    from .storage import ModelFolderError


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


class _Package(types.ModuleType):
    """Keeps `bayes_lse.simulate` the function once it is bound.

    Importing the submodule `bayes_lse.simulate` makes Python set the package
    attribute `simulate` to the module; with the eager imports this package used to
    have, the function always won (it was bound after the submodule loaded), and it
    still does: the submodule stays reachable through `sys.modules`."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            return  # the function (bound now or on first access) wins over its module
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
