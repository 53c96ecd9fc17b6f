"""Backends by name: ``hf`` (default), ``transformer-lens`` and, for ``extract --stream-weights``, ``streamed``.

The interface is :class:`~aura_stream.backends.base.Backend`. Importing this package is cheap: a
backend's module (and torch, and TransformerLens) loads when :func:`get_backend` first asks for it.

>>> from aura_stream.backends import BACKENDS, check_backend
>>> BACKENDS, check_backend(None)
(('hf', 'transformer-lens'), 'hf')
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aura_stream.errors import InputError

if TYPE_CHECKING:
    from aura_stream.backends.base import Backend
    from aura_stream.interventions import Intervention

_REGISTRY: dict[str, tuple[str, str]] = {
    "hf": ("aura_stream.backends.hf", "HFBackend"),
    "transformer-lens": ("aura_stream.backends.tl", "TLBackend"),
    "streamed": ("aura_stream.backends.streamed", "StreamedBackend"),  # extract only: `extract --stream-weights`
}
"""Backend name -> (module, class), imported on first use."""

DEFAULT_BACKEND = "hf"
BACKENDS: tuple[str, ...] = ("hf", "transformer-lens")
"""The choices of ``--backend``. A backend chosen another way (``streamed``, by ``--stream-weights``)
is registered in ``_REGISTRY`` only: :func:`get_backend` finds it, ``--backend`` does not offer it."""


def check_backend(value: str | None) -> str:
    """``None`` -> ``"hf"``; a name outside :data:`BACKENDS` is one clear error."""
    if value is None:
        return DEFAULT_BACKEND
    if value not in BACKENDS and value not in _REGISTRY:
        raise InputError(f"`--backend` must be one of {', '.join(BACKENDS)}; got {value!r}. "
                         "E.g. --backend transformer-lens.")
    return value


def get_backend(name: str | None) -> type[Backend]:
    """The backend class registered as ``name`` (None: ``hf``).

    Raises
    ------
    InputError
        ``name`` is not a registered backend.
    """
    module, cls = _REGISTRY[check_backend(name)]
    backend: type[Backend] = getattr(importlib.import_module(module), cls)
    return backend


def backend_for(model: object, name: str | None) -> type[Backend]:
    """The backend for ``model``: the one that takes a live model object as it is, else ``name``'s.

    Raises
    ------
    InputError
        ``name`` is unknown, or names another backend than the one a live model object needs.
    """
    if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
        return get_backend(name)
    for known in list(_REGISTRY):
        backend = get_backend(known)
        if backend.accepts(model):
            if name not in (None, known):
                raise InputError(f"`backend` must be {known} for a {type(model).__name__} model; got {name!r}. "
                                 "Drop `backend`, or pass the model directory to use the Hugging Face backend.")
            return backend
    return get_backend(name)


@contextlib.contextmanager
def dampened(model: Any, intervention: Intervention, *, strength: float | None = None) -> Iterator[list[str]]:
    """Dampen the intervention's neurons while the ``with`` block runs (``aura_stream.dampened``).

    Parameters
    ----------
    model : TransformerBridge or transformers.PreTrainedModel
        A bridge gets TransformerLens hooks (``bridge.hooks``): ``bridge(...)``,
        ``bridge.run_with_hooks`` and ``bridge.generate`` run dampened. A Hugging Face model gets
        module hooks (:func:`aura_stream.backends.hf.dampened`).
    intervention : Intervention
        Alphas keyed by hook name, each ``[d_hook]``.
    strength : float in [0, 1], optional
        Use ``1 - strength * (1 - alpha)``; None keeps the alphas.

    Yields
    ------
    list of str
        The hook names attached.

    Raises
    ------
    InputError, InterventionError, HookError
        Raised before any hook is attached. Hooks are removed on exit, even when the body raises.
    """
    from aura_stream.backends.tl import TLBackend, is_bridge

    if is_bridge(model):
        backend: Backend = TLBackend(model)
    else:
        from aura_stream.backends.hf import HFBackend

        backend = HFBackend(model)
    with backend.dampened(intervention, strength=strength) as names:
        yield names


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "backend_for", "check_backend", "dampened", "get_backend"]
