"""The Hugging Face backend: aura-stream's hooks registered on the ``transformers`` modules themselves.

Hook names resolve to modules (:mod:`aura_stream.hookpoints`); capture is
:class:`~aura_stream.model.PooledCapture`. Dampening puts an
:class:`~aura_stream.dampening.AlphaHook` on each hooked module, so ``transformers``' own forward and
``generate`` do the work, KV cache included: at each decoding step a hook sees the new positions
only and dampens them, which equals dampening a full recompute.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from aura_stream.backends.base import Backend
from aura_stream.dampening import active_hooks, check_intervention
from aura_stream.hookpoints import HookPoint, all_hook_points
from aura_stream.interventions import Intervention
from aura_stream.model import FOLDED_ATTR, LoadedModel, PooledCapture, attach, load_model
from aura_stream.pooling import Pooling

__all__ = ["HFBackend", "dampened", "resolve_intervention"]


class HFBackend(Backend):
    """Hooks on the modules of a ``transformers.PreTrainedModel`` (the default backend)."""

    name: ClassVar[str] = "hf"

    def __init__(self, model: nn.Module):
        self.model = model

    @classmethod
    def load(cls, model: Any, **load_kwargs: Any) -> LoadedModel:
        """:func:`aura_stream.model.load_model` (its ``backend`` is already this one)."""
        return load_model(model, **load_kwargs)

    @classmethod
    def wrap(cls, loaded: LoadedModel) -> LoadedModel:
        """``loaded`` with module hooks on its Hugging Face model."""
        if isinstance(loaded.backend, HFBackend):
            return loaded
        return dataclasses.replace(loaded, backend=cls(loaded.model))

    def hook_points(self) -> dict[str, HookPoint]:
        return all_hook_points(self.model)

    def capture(self, points: Sequence[HookPoint], poolings: Sequence[Pooling]) -> PooledCapture:
        return PooledCapture(self.model, points, poolings)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def check_intervention(self, intervention: Intervention, strength: float | None = None) -> Intervention:
        return resolve_intervention(self.model, intervention, strength=strength)[0]

    @contextlib.contextmanager
    def dampened(self, intervention: Intervention, *, strength: float | None = None) -> Iterator[list[str]]:
        with dampened(self.model, intervention, strength=strength) as points:
            yield [p.name for p in points]

    @property
    def generation_model(self) -> nn.Module:
        return self.model


def resolve_intervention(
    model: nn.Module, intervention: Intervention, *, strength: float | None = None
) -> tuple[Intervention, list[HookPoint]]:
    """Validate ``intervention`` against ``model`` and apply ``strength``.

    Returns the intervention to use and the hook points it names, in forward order.

    Raises
    ------
    InputError
        ``strength`` outside [0, 1].
    InterventionError
        A hook missing from the model, a width mismatch, a NaN/inf or non-1-D alpha, or a
        model that already holds a folded intervention.
    HookError
        A hook kind without a dampening function.
    """
    points = all_hook_points(model)
    intervention = check_intervention(intervention, {n: p.width for n, p in points.items()}, strength=strength,
                                      folded=getattr(model, FOLDED_ATTR, None))
    return intervention, [p for n, p in points.items() if n in intervention.alphas]


@contextlib.contextmanager
def dampened(
    model: nn.Module, intervention: Intervention, *, strength: float | None = None
) -> Iterator[list[HookPoint]]:
    """Dampen the model's neurons while the ``with`` block runs.

    Each hooked activation ``[batch, pos, d_hook]`` is replaced by ``DAMPENERS[kind](act, alpha)``,
    at every position of every forward pass (with a KV cache: each step's new positions). Alpha
    is moved to the activation's device and cast to its dtype once per (device, dtype), so
    float16/bfloat16 activations stay in their dtype. Hooks whose alphas are all 1 are skipped
    (multiplying by 1 is exact). Hooks are removed on exit, even when the body raises.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    intervention : Intervention
        Alphas keyed by hook name, each ``[d_hook]``.
    strength : float in [0, 1], optional
        Use ``1 - strength * (1 - alpha)``; None keeps the alphas as they are.

    Yields
    ------
    list of HookPoint
        The hooks attached.

    Raises
    ------
    InputError, InterventionError, HookError
        See :func:`resolve_intervention`; raised before any hook is attached.
    """
    intervention, points = resolve_intervention(model, intervention, strength=strength)
    hooks = dict(active_hooks(intervention))
    active = [p for p in points if p.name in hooks]

    def hook(point: HookPoint, act: torch.Tensor) -> torch.Tensor:
        return hooks[point.name](act)

    with attach(model, active, hook):
        yield active
