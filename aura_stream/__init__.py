"""aura-stream: find and quiet the neurons that whisper toxicity (AurA, Suau et al., ICML 2024).

The data flow is the module list: ``data`` -> ``model``/``hookpoints``/``pooling`` ->
``store`` (``extract``) -> ``auroc`` (``score``) -> ``interventions`` -> ``generate``/``fold`` ->
``evaluate``.  Heavy imports (torch, transformers, dask) happen inside those modules, so
``import aura_stream`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from aura_stream._version import __version__
from aura_stream.errors import AuraStreamError

__all__ = ["AuraStreamError", "__version__", "auroc"]


def auroc(activations: Any, labels: Any, **kwargs: Any) -> Any:
    """Exact per-neuron AUROC; see :func:`aura_stream.auroc.auroc`."""
    from aura_stream.auroc import auroc as _auroc

    return _auroc(activations, labels, **kwargs)
