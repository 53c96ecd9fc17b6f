"""Kept for :meth:`Intervention.fwd_hooks` and older imports: see :mod:`aura_stream.backends.tl`."""

from __future__ import annotations

from aura_stream.backends import dampened
from aura_stream.backends.tl import check_for_bridge, fwd_hooks
from aura_stream.dampening import AlphaHook

__all__ = ["AlphaHook", "check_for_bridge", "dampened", "fwd_hooks"]
