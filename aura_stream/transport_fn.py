"""The activation-transport map applied at generation time: a pure torch function, no model code.

``transport(z, omega, beta, lo, hi)`` is Linear-AcT's per-neuron affine map ``omega * z + beta``,
applied where ``lo <= z <= hi`` (``support = "source-range"``) or everywhere (``lo = hi = None``,
``support = "all"``). Strength is folded into ``omega`` and ``beta`` beforehand by
:meth:`aura_stream.interventions.Intervention.with_strength` (``omega -> 1 - s + s * omega``,
``beta -> s * beta``), so this function has no strength argument. AurA/Det0/Damp are the case
``beta = 0``, ``omega = alpha``, ``lo = hi = None``.
"""

from __future__ import annotations

import torch

__all__ = ["transport"]


def transport(z: torch.Tensor, omega: torch.Tensor, beta: torch.Tensor,
              lo: torch.Tensor | None = None, hi: torch.Tensor | None = None) -> torch.Tensor:
    """Per-neuron affine transport of activations, ``omega * z + beta`` (inside ``[lo, hi]``).

    Parameters
    ----------
    z : torch.Tensor of shape [..., d]
        Activations of one hook point; any leading dimensions (``[batch, pos, d]``, OPT's
        ``[batch * pos, d]``).
    omega, beta : torch.Tensor of shape [d]
        Slope and offset per neuron; cast to ``z``'s dtype and device here if they differ
        (cast them once beforehand to avoid a copy per call).
    lo, hi : torch.Tensor of shape [d], optional
        The support: where ``lo <= z <= hi`` the map applies, elsewhere ``z`` is kept. Both or
        neither; None (``support = "all"``) applies the map everywhere. Compared in ``z``'s dtype.

    Returns
    -------
    torch.Tensor of shape [..., d]
        A new tensor in ``z``'s dtype and device; ``z`` is never modified in place.

    Raises
    ------
    ValueError
        ``omega``/``beta``/``lo``/``hi`` not of shape ``[d]``, or only one of ``lo``/``hi``.

    Examples
    --------
    >>> z = torch.tensor([[-2.0, 0.5, 3.0]])
    >>> transport(z, torch.tensor([2.0, 2.0, 2.0]), torch.tensor([1.0, 1.0, 1.0])).tolist()
    [[-3.0, 2.0, 7.0]]
    >>> lo, hi = torch.zeros(3), torch.ones(3)
    >>> transport(z, torch.full((3,), 2.0), torch.ones(3), lo, hi).tolist()  # only 0.5 is in [0, 1]
    [[-2.0, 2.0, 3.0]]
    """
    d = z.shape[-1] if z.dim() else 0
    if (lo is None) != (hi is None):
        raise ValueError("`lo` and `hi` must be given together (support source-range) or both be None (support all).")
    for name, t in (("omega", omega), ("beta", beta), ("lo", lo), ("hi", hi)):
        if t is not None and tuple(t.shape) != (d,):
            raise ValueError(f"`{name}` must have shape [{d}], one value per neuron of z [..., {d}]; "
                             f"got {list(t.shape)}.")
    omega, beta = (t.to(device=z.device, dtype=z.dtype) for t in (omega, beta))
    mapped = torch.addcmul(beta, z, omega)  # omega * z + beta, new tensor, z's dtype
    if lo is None or hi is None:
        return mapped
    lo, hi = (t.to(device=z.device, dtype=z.dtype) for t in (lo, hi))
    inside = (z >= lo) & (z <= hi)
    return torch.where(inside, mapped, z)
