"""Seeded nucleus sampling, one generator per sequence: the same text whatever the batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["NUCLEUS_TOPK", "RowSampler", "nucleus_mask", "processor_list"]

NUCLEUS_TOPK = 1024  # candidates ranked with topk before a row falls back to a full sort


def nucleus_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The tokens nucleus (top-p) sampling keeps, ``[rows, vocab]`` bool.

    A token is kept when the probability of the tokens ranked above it is below ``top_p``: the
    most likely tokens up to and including the one that reaches ``top_p`` (the set that
    ``transformers``' ``TopPLogitsWarper`` keeps; sums here are float64, so the edge can differ
    from its float32 sums only by rounding). The ``NUCLEUS_TOPK`` most likely tokens are ranked
    with ``topk``; only rows whose nucleus is larger fall back to a full sort, which is what
    makes this ~3x cheaper than sorting the whole vocabulary at every step.

    Parameters
    ----------
    probs : torch.Tensor of shape [rows, vocab]
        Each row a probability distribution.
    top_p : float in (0, 1]

    Examples
    --------
    >>> nucleus_mask(torch.tensor([[0.5, 0.1, 0.3, 0.1]]), 0.7).tolist()
    [[True, False, True, False]]
    """
    if top_p >= 1.0:
        return torch.ones_like(probs, dtype=torch.bool)

    def ranked_keep(values: torch.Tensor) -> torch.Tensor:  # values sorted descending, [rows, k]
        v = values.double()
        return (v.cumsum(-1) - v) < top_p  # mass strictly above each token < top_p

    k = min(NUCLEUS_TOPK, probs.shape[-1])
    top, idx = probs.topk(k, dim=-1)  # [rows, k], descending
    keep = ranked_keep(top)
    mask = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, idx, keep)
    wide = keep[:, -1].nonzero().flatten() if k < probs.shape[-1] else keep.new_zeros(0, dtype=torch.long)
    if wide.numel():  # nucleus may extend past the k candidates: rank the whole row
        full, full_idx = probs[wide].sort(dim=-1, descending=True)
        mask[wide] = torch.zeros_like(full, dtype=torch.bool).scatter_(1, full_idx, ranked_keep(full))
    return mask


class RowSampler:
    """Logits processor: sample each row with its own generator and keep only that token.

    ``transformers`` then decodes greedily, so it picks the sampled token. Temperature and top-k
    use ``transformers``' own warpers, in its order, and top-p keeps the same nucleus as its
    ``TopPLogitsWarper`` (:func:`nucleus_mask`), so the distribution is the one
    ``model.generate(do_sample=True, ...)`` samples from. Each row draws one uniform from its
    own generator and takes the token where the cumulative probability (in vocabulary order)
    passes it: a row's draw does not depend on the other rows of the batch.
    """

    def __init__(self, rngs: list[np.random.Generator], temperature: float, top_k: int,
                 top_p: float):
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

        self.rngs = rngs
        self.top_p = top_p
        self.warpers = LogitsProcessorList()
        if temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if top_k != 0:
            self.warpers.append(TopKLogitsWarper(top_k))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = self.warpers(input_ids, scores.float())  # type: ignore[arg-type]  # [rows, vocab]
        probs = torch.softmax(scores, dim=-1)  # [rows, vocab]
        kept = probs.masked_fill(~nucleus_mask(probs, self.top_p), 0.0)
        cdf = kept.double().cumsum(-1)  # [rows, vocab]
        u = torch.tensor([r.random() for r in self.rngs], dtype=cdf.dtype, device=cdf.device)
        target = (u * cdf[:, -1]).unsqueeze(1)  # [rows, 1]
        # the first token whose cumulative probability exceeds the draw; zero-probability
        # tokens repeat their predecessor's cdf and can never be first
        tokens = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
        return torch.full_like(scores, -math.inf).scatter_(1, tokens, 0.0)


def processor_list(processors: list[Any]) -> Any:
    from transformers import LogitsProcessorList

    return LogitsProcessorList(processors)
