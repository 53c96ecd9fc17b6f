"""Dampening primitives shared by every backend: functions, alpha hooks and the checks before them.

This module imports no model code (no ``transformers``, no :mod:`aura_stream.model`, no backend):
the backends (:mod:`aura_stream.backends`) attach :class:`AlphaHook` objects where their hook
points are, Hugging Face module hooks or TransformerLens hook points, after
:func:`check_intervention` has validated the intervention against their hook widths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aura_stream.errors import HookError, InputError, InterventionError
from aura_stream.hookpoints import HOOK_KINDS
from aura_stream.transport_fn import transport

if TYPE_CHECKING:
    from aura_stream.interventions import Intervention

__all__ = ["DAMPENERS", "AlphaHook", "DampenFn", "active_hooks", "check_alphas", "check_intervention",
           "check_kinds", "check_not_folded", "check_strength", "hook_kind", "multiply"]

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


def check_strength(strength: float) -> float:
    """``strength`` must lie in [0, 1] (NaN fails too)."""
    if not (0.0 <= strength <= 1.0):
        raise InputError(f"`--strength` must be in [0, 1]; got {strength}. Use 1 for the file's "
                         "alphas, 0 to disable them, or a value between to scale them towards 1.")
    return strength


def check_alphas(alphas: Mapping[str, Any]) -> None:
    """Every alpha must be a 1-D array of finite values in [0, 1] (NaN fails the range test)."""
    bad = [n for n, a in alphas.items()
           if np.ndim(a) != 1 or not ((np.asarray(a, dtype=np.float64) >= 0) & (np.asarray(a) <= 1)).all()]
    if bad:
        raise InterventionError(
            f"alphas must be 1-D arrays of finite values in [0, 1]; {', '.join(bad[:5])} hold(s) NaN/inf, "
            "values outside [0, 1] or have the wrong shape. Recreate the intervention with `aura-stream score`."
        )


def check_transport(intervention: Intervention) -> None:
    """A transport's omega, beta (and lo <= hi) must be finite 1-D arrays of one width per hook."""
    bad = []
    for name in intervention.alphas:
        parts = [p for p in intervention.affine(name) if p is not None]
        malformed = any(np.ndim(p) != 1 or np.shape(p) != np.shape(parts[0]) or not np.isfinite(p).all()
                        for p in parts)
        if malformed or (len(parts) == 4 and not (np.asarray(parts[2]) <= np.asarray(parts[3])).all()):
            bad.append(name)
    if bad:
        raise InterventionError(f"a transport's omega/beta/lo/hi must be finite 1-D arrays of one width with "
                                f"lo <= hi; {', '.join(bad[:5])} are not. Recreate it with `aura-stream score`.")


def check_kinds(names: Mapping[str, Any]) -> None:
    """Every hook name must be of a kind with a dampening function in :data:`DAMPENERS`."""
    unknown = sorted({hook_kind(n) for n in names} - set(DAMPENERS))
    if unknown:
        raise HookError(f"hook kind(s) {', '.join(unknown)} have no dampening function; "
                        f"known: {', '.join(DAMPENERS)}.")


def check_not_folded(folded: str | None) -> None:
    """``folded`` (what the model's weights already hold, or None) must be None."""
    if folded is not None:
        raise InterventionError(
            f"the model's weights must not already hold an intervention; they hold {folded}, and "
            "dampening again would apply the alphas twice. Load the original model."
        )


def check_intervention(intervention: Intervention, widths: Mapping[str, int], *, strength: float | None = None,
                       folded: str | None = None) -> Intervention:
    """Validate ``intervention`` against a model's hook ``widths`` and apply ``strength``.

    Parameters
    ----------
    intervention : Intervention
        Alphas keyed by hook name, each ``[d_hook]``.
    widths : mapping of str to int
        Every hook point of the model, by name, with its width.
    strength : float in [0, 1], optional
        Use ``1 - strength * (1 - alpha)``; None keeps the alphas.
    folded : str, optional
        What the model's weights already hold folded in (None: nothing).

    Returns
    -------
    Intervention
        With ``strength`` applied.

    Raises
    ------
    InputError
        ``strength`` outside [0, 1].
    InterventionError
        A hook the model lacks, a width mismatch, a NaN/inf or non-1-D alpha, or a model that
        already holds a folded intervention.
    HookError
        A hook kind without a dampening function.
    """
    from aura_stream.interventions import check_matches_model

    if strength is not None:
        check_strength(strength)
        intervention = intervention.with_strength(strength)
    check_not_folded(folded)
    if intervention.is_transport:
        check_transport(intervention)
    else:
        check_alphas(intervention.alphas)
    check_matches_model(intervention, dict(widths))
    check_kinds(intervention.alphas)
    return intervention


class AlphaHook:
    """Multiplies one hook point's neurons by their alphas (``DAMPENERS[kind](activation, alpha)``).

    Called as ``hook_fn(activation, hook=None)`` with ``activation`` of shape ``[..., d_hook]``
    (TransformerLens' hook signature; the Hugging Face backend calls it from module hooks); returns
    a new tensor in the activation's own dtype (no promotion). Alpha is moved and cast once per
    (device, dtype).
    """

    def __init__(self, hook_name: str, alpha: np.ndarray, beta: np.ndarray | None = None,
                 lo: np.ndarray | None = None, hi: np.ndarray | None = None):
        self.hook_name = hook_name
        self.fn = DAMPENERS[hook_kind(hook_name)]
        self.alpha = torch.from_numpy(np.array(alpha, dtype=np.float32))  # [d_hook]
        # a transport (Linear-AcT): z -> alpha * z + beta, inside [lo, hi] when given
        self.rest = [None if t is None else torch.from_numpy(np.array(t, dtype=np.float32)) for t in (beta, lo, hi)]
        self._cast: dict[tuple[torch.device, torch.dtype], list[torch.Tensor | None]] = {}

    def __call__(self, activation: torch.Tensor, hook: Any = None) -> torch.Tensor:
        key = (activation.device, activation.dtype)
        cast = self._cast.get(key)
        if cast is None:
            cast = self._cast[key] = [None if t is None else t.to(device=activation.device, dtype=activation.dtype)
                                      for t in (self.alpha, *self.rest)]
        alpha, beta, lo, hi = cast
        assert alpha is not None
        if beta is None:
            return self.fn(activation, alpha)
        return transport(activation, alpha, beta, lo, hi)

    def __repr__(self) -> str:
        return f"AlphaHook({self.hook_name!r}, d={self.alpha.shape[0]})"


def active_hooks(intervention: Intervention) -> list[tuple[str, AlphaHook]]:
    """``(hook_name, AlphaHook)`` for every hook whose map is not the identity (alphas all 1, betas all 0)."""
    out = []
    for name, alpha in intervention.alphas.items():
        if not intervention.is_transport:
            if not bool(np.all(alpha == 1.0)):
                out.append((name, AlphaHook(name, alpha)))
            continue
        omega, beta, lo, hi = intervention.affine(name)
        if not (bool(np.all(omega == 1.0)) and bool(np.all(beta == 0.0))):
            out.append((name, AlphaHook(name, omega, beta, lo, hi)))
    return out
