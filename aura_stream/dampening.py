"""Dampening at generation: every hooked neuron's output multiplied by its alpha.

The hooks sit on the Hugging Face modules (see :mod:`aura_stream.hookpoints`), so ``transformers``'
own forward and ``generate`` do the work, KV cache included: at each decoding step a hook sees the
new positions only and dampens them, which equals dampening a full recompute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from aura_stream.errors import HookError, InputError, InterventionError
from aura_stream.hookpoints import HOOK_KINDS, HookPoint, all_hook_points
from aura_stream.interventions import Intervention, check_matches_model
from aura_stream.model import FOLDED_ATTR, attach

__all__ = ["DAMPENERS", "FOLDED_ATTR", "DampenFn", "check_strength", "dampened", "hook_kind", "multiply",
           "resolve_intervention"]

DampenFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(activation [..., d], alpha [d]) -> tensor`` of the same shape and dtype; a new tensor,
never the input modified in place (Falcon adds attention into the MLP output after the hook)."""


def multiply(activation: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """AurA's dampening: ``activation * alpha``, broadcast over every leading dimension.

    Works for ``[batch, pos, d]`` and for OPT's flattened ``[batch * pos, d]`` alike.

    Examples
    --------
    >>> multiply(torch.ones(1, 2, 3), torch.tensor([1.0, 0.5, 0.0])).tolist()
    [[[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]]]
    """
    return activation * alpha


DAMPENERS: dict[str, DampenFn] = dict.fromkeys(HOOK_KINDS, multiply)
"""Hook kind (``mlp.hook_pre``, ...) -> dampening function. Only :func:`multiply` can be folded."""



def hook_kind(name: str) -> str:
    """``blocks.3.mlp.hook_pre`` -> ``mlp.hook_pre``."""
    parts = name.split(".", 2)
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit():
        raise HookError(f"hook name must look like blocks.<layer>.<kind>; got {name!r}.")
    return parts[2]


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
    if strength is not None:
        check_strength(strength)
        intervention = intervention.with_strength(strength)
    folded = getattr(model, FOLDED_ATTR, None)
    if folded is not None:
        raise InterventionError(
            f"the model's weights must not already hold an intervention; they hold {folded}, and "
            "dampening again would apply the alphas twice. Load the original model."
        )
    bad = [n for n, a in intervention.alphas.items()
           if np.ndim(a) != 1 or not ((np.asarray(a, dtype=np.float64) >= 0) & (np.asarray(a) <= 1)).all()]
    if bad:
        raise InterventionError(
            f"alphas must be 1-D arrays of finite values in [0, 1]; {', '.join(bad[:5])} hold(s) NaN/inf, "
            "values outside [0, 1] or have the wrong shape. Recreate the intervention with `aura-stream score`."
        )
    points = all_hook_points(model)
    check_matches_model(intervention, {n: p.width for n, p in points.items()})
    unknown = sorted({hook_kind(n) for n in intervention.alphas} - set(DAMPENERS))
    if unknown:
        raise HookError(f"hook kind(s) {', '.join(unknown)} have no dampening function; "
                        f"known: {', '.join(DAMPENERS)}.")
    return intervention, [p for n, p in points.items() if n in intervention.alphas]


def check_strength(strength: float) -> float:
    """``strength`` must lie in [0, 1] (NaN fails too)."""
    if not (0.0 <= strength <= 1.0):
        raise InputError(f"`--strength` must be in [0, 1]; got {strength}. Use 1 for the file's "
                         "alphas, 0 to disable them, or a value between to scale them towards 1.")
    return strength


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
    active = [p for p in points if not bool(np.all(intervention.alphas[p.name] == 1.0))]
    alphas = {p.name: torch.from_numpy(np.array(intervention.alphas[p.name], dtype=np.float32))
              for p in active}
    fns = {p.name: DAMPENERS[hook_kind(p.name)] for p in active}
    cache: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def hook(point: HookPoint, act: torch.Tensor) -> torch.Tensor:
        key = (point.name, act.device, act.dtype)
        alpha = cache.get(key)
        if alpha is None:
            alpha = cache[key] = alphas[point.name].to(device=act.device, dtype=act.dtype)
        return fns[point.name](act, alpha)

    with attach(model, active, hook):
        yield active
