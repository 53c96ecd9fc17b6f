"""Interventions as TransformerLens hooks: ``(hook_name, hook_fn)`` pairs, and ``dampened(bridge, iv)``.

Each hook multiplies one hook point's neurons by their alphas, exactly as the default backend's
module hooks do (:data:`aura_stream.generate.DAMPENERS`), so a bridge run with these hooks gives the
logits of the Hugging Face model dampened by :func:`aura_stream.generate.dampened`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from aura_stream.errors import HookError, InterventionError
from aura_stream.generate import DAMPENERS, check_strength, hook_kind
from aura_stream.interventions import Intervention, check_matches_model
from aura_stream.model import FOLDED_ATTR
from aura_stream.tl import bridge_hook_points, is_bridge


class AlphaHook:
    """A TransformerLens forward hook that multiplies one hook point's neurons by their alphas.

    Called as ``hook_fn(activation, hook=hook_point)`` with ``activation`` of shape
    ``[..., d_hook]``; returns a new tensor in the activation's own dtype (no promotion).
    Alpha is moved and cast once per (device, dtype).
    """

    def __init__(self, hook_name: str, alpha: np.ndarray):
        self.hook_name = hook_name
        self.fn = DAMPENERS[hook_kind(hook_name)]
        self.alpha = torch.from_numpy(np.array(alpha, dtype=np.float32))  # [d_hook]
        self._cast: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
        key = (activation.device, activation.dtype)
        alpha = self._cast.get(key)
        if alpha is None:
            alpha = self._cast[key] = self.alpha.to(device=activation.device, dtype=activation.dtype)
        return self.fn(activation, alpha)

    def __repr__(self) -> str:
        return f"AlphaHook({self.hook_name!r}, d={self.alpha.shape[0]})"


def fwd_hooks(intervention: Intervention, *, strength: float | None = None) -> list[tuple[str, AlphaHook]]:
    """``(hook_name, hook_fn)`` pairs for ``bridge.run_with_hooks(fwd_hooks=...)`` / ``bridge.hooks``.

    Hooks whose alphas are all 1 are left out (multiplying by 1 is exact).
    """
    if strength is not None:
        check_strength(strength)
        intervention = intervention.with_strength(strength)
    unknown = sorted({hook_kind(n) for n in intervention.alphas} - set(DAMPENERS))
    if unknown:
        raise HookError(f"hook kind(s) {', '.join(unknown)} have no dampening function; "
                        f"known: {', '.join(DAMPENERS)}.")
    return [(name, AlphaHook(name, alpha)) for name, alpha in intervention.alphas.items()
            if not bool(np.all(alpha == 1.0))]


def check_for_bridge(bridge: Any, intervention: Intervention, *, strength: float | None = None) -> Intervention:
    """Validate ``intervention`` against the bridge's hook points and apply ``strength``.

    Raises
    ------
    InputError
        ``strength`` outside [0, 1].
    InterventionError
        A hook the bridge lacks, a width mismatch, alphas outside [0, 1] (NaN included) or not 1-D,
        or a model that already holds a folded intervention.
    """
    if strength is not None:
        check_strength(strength)
        intervention = intervention.with_strength(strength)
    folded = getattr(bridge.original_model, FOLDED_ATTR, None)
    if folded is not None:
        raise InterventionError(f"the model's weights already hold intervention {str(folded)[:12]} (folded in "
                                "place by `fold`); reload the model before dampening it again.")
    bad = [n for n, a in intervention.alphas.items()  # NaN fails the range test too
           if np.ndim(a) != 1 or not ((np.asarray(a, dtype=np.float64) >= 0) & (np.asarray(a) <= 1)).all()]
    if bad:
        raise InterventionError(f"alphas must be 1-D arrays of finite values in [0, 1]; {', '.join(bad[:5])} "
                                "hold(s) NaN/inf, values outside [0, 1] or have the wrong shape. Recreate the "
                                "intervention with `aura-stream score`.")
    check_matches_model(intervention, {n: p.width for n, p in bridge_hook_points(bridge).items()})
    return intervention


@contextlib.contextmanager
def dampened(model: Any, intervention: Intervention, *, strength: float | None = None) -> Iterator[list[str]]:
    """Dampen the intervention's neurons while the ``with`` block runs.

    Parameters
    ----------
    model : TransformerBridge or transformers.PreTrainedModel
        A bridge gets TransformerLens hooks (``bridge.hooks``): ``bridge(...)``,
        ``bridge.run_with_hooks`` and ``bridge.generate`` run dampened. A Hugging Face model gets
        the default backend's module hooks (:func:`aura_stream.generate.dampened`).
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
    if not is_bridge(model):
        from aura_stream.generate import dampened as hf_dampened

        with hf_dampened(model, intervention, strength=strength) as points:
            yield [p.name for p in points]
        return
    intervention = check_for_bridge(model, intervention, strength=strength)
    hooks = fwd_hooks(intervention)
    with model.hooks(fwd_hooks=hooks):
        yield [name for name, _ in hooks]
