"""aura-stream: find and quiet the neurons that whisper toxicity (AurA, Suau et al., ICML 2024).

The data flow is the module list: ``data`` -> ``model``/``hookpoints``/``pooling`` ->
``store`` (``extract``) -> ``auroc`` (``score``) -> ``interventions`` -> ``generate``/``fold`` ->
``evaluate``.

>>> import numpy as np, aura_stream
>>> aura_stream.auroc(np.array([[0.1], [0.9], [0.4]]), np.array([0, 1, 1])).tolist()
[1.0]
"""

from __future__ import annotations

from aura_stream._version import __version__

# Importing the function binds the name after the submodule is loaded, so ``aura_stream.auroc``
# is the callable of the issue (``aura_stream.auroc(activations, labels)``), not the module.
from aura_stream.auroc import auroc, auroc_dask
from aura_stream.errors import AuraStreamError

__all__ = ["AuraStreamError", "__version__", "auroc", "auroc_dask"]
