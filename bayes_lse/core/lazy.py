"""`LazyModule`: a module imported on first attribute access.

Why: a MAP fit on the kernel (`inference.fit_map_kernel`) needs neither PyMC nor
PyTensor, and needs xarray only once the optimiser is done; importing them up front
put ~45 MB (PyMC, PyTensor) and ~11 MB (xarray) of resident memory under the
optimiser's peak, against issue 7's 400 MB budget for MAP on ASSISTments.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module `name`; `lazy.attr` imports it (once) and returns its `attr`."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
