"""The backend interface: hook points, capture, dampening and the model that generates.

A backend is what runs a model's forward passes and where aura-stream's hooks go. Every
:class:`~aura_stream.model.LoadedModel` carries its backend (``loaded.backend``), and the rest of
the package calls it only through this interface; no code outside :mod:`aura_stream.backends`
asks which backend it has.

Implementations, registered by name in :mod:`aura_stream.backends`:

``hf`` (:mod:`aura_stream.backends.hf`)
    Module hooks on the Hugging Face modules themselves; ``transformers``' own forward and
    ``generate`` do the work, KV cache included. The default.
``transformer-lens`` (:mod:`aura_stream.backends.tl`)
    Forward passes and hooks through TransformerLens 4's ``TransformerBridge`` (an optional extra).
``streamed`` (:mod:`aura_stream.backends.streamed`)
    Extract only: layer-major execution from the safetensors shards, one decoder block in memory
    at a time, for models larger than memory (``extract --stream-weights``). It provides
    :meth:`Backend.hook_points`, :meth:`Backend.capture` and :meth:`Backend.describe`; the dampening
    and generation methods keep the defaults below, which refuse in one line. It is chosen by
    ``--stream-weights``, not by ``--backend``, so it is registered without being one of
    :data:`aura_stream.backends.BACKENDS`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from aura_stream.errors import InputError

if TYPE_CHECKING:
    import torch

    from aura_stream.hookpoints import HookPoint
    from aura_stream.interventions import Intervention
    from aura_stream.model import LoadedModel
    from aura_stream.pooling import Pooling

Pooled = dict[tuple[str, str], np.ndarray]
"""(pooling, hook_name) -> ``[batch, d_hook]`` float32 activations of one batch."""


class Capture(Protocol):
    """Forward passes that return pooled activations instead of logits."""

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Pooled:
        """Pooled activations of one batch; ``input_ids``, ``attention_mask`` are ``[batch, pos]``."""

    def check_first_batch(self, pooled: Pooled, batch: int) -> None:
        """Raise a ``HookError`` unless every hook fired once with its width on a first batch."""


class Backend(ABC):
    """One way of running a model: where its hook points are and how hooks attach to them.

    Class level (cheap, no model): :attr:`name`, :meth:`check_ready`, :meth:`load`, :meth:`wrap`.
    Instance level (the loaded model's state): :meth:`hook_points`, :meth:`resolve_hooks`,
    :meth:`capture`, :meth:`check_intervention`, :meth:`dampened`, :attr:`generation_model`,
    :attr:`kv_cache`, :meth:`describe`.
    """

    name: ClassVar[str]
    kv_cache: bool = True  # whether ``generation_model.generate`` may use its KV cache

    # ----------------------------------------------------------------- class level

    @classmethod
    def check_ready(cls, model_id: str | None) -> None:
        """Cheap checks before a model loads (an optional dependency installed, a bootable shape)."""
        return None

    @classmethod
    def accepts(cls, model: object) -> bool:
        """Whether ``model`` is a live model object this backend takes as it is (e.g. a bridge)."""
        return False

    @classmethod
    @abstractmethod
    def load(cls, model: Any, **load_kwargs: Any) -> LoadedModel:
        """Load ``model`` (a directory, a hub id, None for the demo model) behind this backend.

        ``load_kwargs`` are those of :func:`aura_stream.model.load_model` (``dtype``, ``device``,
        ``revision``, ``device_map``, ``max_memory``).
        """

    @classmethod
    def wrap(cls, loaded: LoadedModel) -> LoadedModel:
        """An already loaded Hugging Face model behind this backend (no second copy of the weights)."""
        raise InputError(f"the {cls.name} backend must load the model itself; got an already loaded one. "
                         f"Use {cls.name}'s own loading (`{cls.__name__}.load`).")

    # ----------------------------------------------------------------- hook points and capture

    @abstractmethod
    def hook_points(self) -> dict[str, HookPoint]:
        """Every hook point, in forward order, keyed by TransformerLens name."""

    def resolve_hooks(self, patterns: Sequence[str] | None) -> list[HookPoint]:
        """Hook points named by glob ``patterns`` (None -> the paper's default set), in forward order."""
        from aura_stream.hookpoints import default_patterns, match_hooks

        points = self.hook_points()
        names = match_hooks(list(patterns) if patterns else default_patterns(points), points)
        return [points[n] for n in names]

    @abstractmethod
    def capture(self, points: Sequence[HookPoint], poolings: Sequence[Pooling]) -> Capture:
        """A :class:`Capture` pooling ``points`` with each of ``poolings``."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance of this backend, written into stores (``{"backend": name, ...}``)."""

    # ----------------------------------------------------------------- dampening and generation

    def _refuse(self, what: str) -> InputError:
        return InputError(f"the {self.name} backend must not be used for {what}: it extracts only. "
                          "Use the Hugging Face backend (`--backend hf`).")

    def check_intervention(self, intervention: Intervention, strength: float | None = None) -> Intervention:
        """Validate ``intervention`` against :meth:`hook_points` and apply ``strength``.

        Raises
        ------
        InputError
            ``strength`` outside [0, 1].
        InterventionError
            A hook the model lacks, a width mismatch, a bad alpha, or a folded model.
        HookError
            A hook kind without a dampening function.
        """
        raise self._refuse("dampening")

    def dampened(self, intervention: Intervention, *,
                 strength: float | None = None) -> contextlib.AbstractContextManager[list[str]]:
        """Context manager dampening the model while it runs; yields the names of the hooks attached.

        Validates first (:meth:`check_intervention`); hooks are removed on exit, even on error.
        """
        raise self._refuse("dampening")

    @property
    def generation_model(self) -> Any:
        """The ``nn.Module`` whose ``generate`` (and forward) runs with :meth:`dampened` hooks."""
        raise self._refuse("generation")


__all__ = ["Backend", "Capture", "Pooled"]
