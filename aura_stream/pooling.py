"""Attention-mask-aware pooling of one hook's activations over the tokens of each sentence."""

from __future__ import annotations

from typing import Literal, get_args

import torch

from aura_stream.errors import InputError

Pooling = Literal["max", "mean", "last"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


def parse_pooling(values: str | list[str] | tuple[str, ...]) -> list[Pooling]:
    """Validate pooling names (``"max"``, ``"mean"``, ``"last"``); a comma list is accepted."""
    items = values.split(",") if isinstance(values, str) else [v for s in values for v in s.split(",")]
    items = [v.strip() for v in items if v.strip()]
    bad = [v for v in items if v not in POOLINGS]
    if bad or not items:
        raise InputError(
            f"`--pooling` must be one of {', '.join(POOLINGS)}; got {', '.join(bad) or 'nothing'}."
        )
    return list(dict.fromkeys(items))  # type: ignore[arg-type]


def pool(act: torch.Tensor, mask: torch.Tensor, op: Pooling) -> torch.Tensor:
    """Pool ``act`` over positions where ``mask`` is true.

    Works for left and right padding alike: only the mask says which positions are tokens.

    Parameters
    ----------
    act : torch.Tensor of shape [batch, pos, d]
        Activations of one hook point, any float dtype, any device.
    mask : torch.Tensor of shape [batch, pos], bool
        True at real tokens; every row must have at least one.
    op : {"max", "mean", "last"}
        ``max`` and ``last`` are exact in the activation's dtype; ``mean`` sums in float32.

    Returns
    -------
    torch.Tensor of shape [batch, d], float32, on ``act``'s device.

    Examples
    --------
    >>> a = torch.tensor([[[1.0], [5.0], [9.0]]])
    >>> pool(a, torch.tensor([[True, True, False]]), "max").tolist()
    [[5.0]]
    """
    if op == "max":
        fill = torch.finfo(act.dtype).min if act.dtype.is_floating_point else 0
        return act.masked_fill(~mask[:, :, None], fill).amax(dim=1).float()
    if op == "mean":
        m = mask[:, :, None].to(torch.float32)
        return (act.float() * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
    if op == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask, positions, -1).amax(dim=1)  # [batch]
        return act[torch.arange(act.shape[0], device=act.device), last].float()
    raise InputError(f"`pooling` must be one of {', '.join(POOLINGS)}; got {op!r}.")
