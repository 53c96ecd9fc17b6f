"""aura-stream: find and quiet the neurons that whisper toxicity (AurA, Suau et al., ICML 2024).

The data flow is the module list: ``data`` -> ``model``/``hookpoints``/``pooling`` ->
``store`` (``extract``) -> ``auroc`` (``score``) -> ``interventions`` -> ``generate``/``fold`` ->
``evaluate``; ``backends`` holds what runs the model (Hugging Face, TransformerLens, streamed).

Public API: ``auroc``, ``auroc_dask``, ``extract``, ``load_intervention`` and ``dampened`` (the last
three load torch on first use, so ``import aura_stream`` stays light).

>>> import numpy as np, aura_stream
>>> aura_stream.auroc(np.array([[0.1], [0.9], [0.4]]), np.array([0, 1, 1])).tolist()
[1.0]
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from aura_stream._version import __version__

# Importing the function binds the name after the submodule is loaded, so ``aura_stream.auroc``
# is the callable of the issue (``aura_stream.auroc(activations, labels)``), not the module.
from aura_stream.auroc import auroc, auroc_dask
from aura_stream.errors import AuraStreamError

# name -> (module, attribute), imported on first access (PEP 562)
_LAZY: dict[str, tuple[str, str]] = {
    "extract": ("aura_stream.extract", "extract"),
    "load_intervention": ("aura_stream.interventions", "load_intervention"),
    "dampened": ("aura_stream.backends", "dampened"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'aura_stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


class _Package(types.ModuleType):
    """Keeps ``aura_stream.extract`` the function once the submodule of that name is imported.

    Importing ``aura_stream.extract`` binds the submodule on the package; that binding is dropped
    here so that the attribute resolves (lazily) to the function, whatever was imported first.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["AuraStreamError", "__version__", "auroc", "auroc_dask", "dampened", "extract", "load_intervention"]
