"""Perplexity on neutral text: chunking, summed next-token NLL, and the per-intervention cache of ``eval``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aura_stream.errors import DataFileError, InputError
from aura_stream.evaluation.arms import BASELINE, Arm
from aura_stream.evaluation.outdir import atomic_write_text, sha256_json
from aura_stream.model import LoadedModel

MAX_CHUNK_TOKENS = 2048  # perplexity chunk cap: eager attention is quadratic in it


def _max_positions(loaded: LoadedModel) -> int:
    config = loaded.model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not limit:
        tok_max = getattr(loaded.tokenizer, "model_max_length", 0) or 0
        limit = tok_max if 1 < tok_max <= 1_000_000 else 1024
    return int(min(limit, MAX_CHUNK_TOKENS))


def ppl_chunks(loaded: LoadedModel, texts: Sequence[str], *,
               max_length: int | None = None) -> list[list[int]]:
    """Token ids of neutral text cut into chunks for perplexity.

    Each text is tokenized on its own (with the tokenizer's special tokens) and cut into chunks
    of at most ``max_length`` tokens that overlap by one, so every token but a text's first is
    predicted exactly once. ``max_length`` defaults to the model's maximum positions, capped at
    2048.

    Raises
    ------
    DataFileError
        The texts hold fewer than two tokens in all.
    """
    length = max_length or _max_positions(loaded)
    if length < 2:
        raise InputError(f"`max_length` must be >= 2; got {length}.")
    chunks: list[list[int]] = []
    for ids in loaded.tokenizer(list(texts), verbose=False)["input_ids"]:
        chunks += [ids[s:s + length] for s in range(0, max(len(ids) - 1, 0), length - 1)]
    chunks = [c for c in chunks if len(c) >= 2]
    if not chunks:
        raise DataFileError("perplexity text must hold at least two tokens; got fewer. "
                            "Use longer passages.")
    return chunks


def chunk_nll(loaded: LoadedModel, chunks: Sequence[Sequence[int]], *,
              batch_size: int = 16) -> np.ndarray:
    """Summed next-token NLL (nats) of each chunk, ``[n_chunks]`` float64.

    Chunks run right-padded, ``batch_size`` at a time, longest first; chunk ``i`` predicts
    ``len(chunks[i]) - 1`` tokens.
    """
    order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i]))
    nll = np.zeros(len(chunks))
    pad = loaded.tokenizer.pad_token_id or 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = len(chunks[batch[0]])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # [batch, pos]
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, :len(chunks[i])] = torch.tensor(chunks[i])
                mask[row, :len(chunks[i])] = 1
            logits = loaded.model(input_ids=ids.to(loaded.device),
                                  attention_mask=mask.to(loaded.device), use_cache=False).logits
            for row, i in enumerate(batch):  # one row at a time: float32 copy of [pos, vocab] only
                n = len(chunks[i])
                target = ids[row, 1:n].to(logits.device)
                loss = torch.nn.functional.cross_entropy(logits[row, :n - 1].float(), target,
                                                         reduction="sum")
                nll[i] = float(loss)
    return nll


def text_nll(loaded: LoadedModel, texts: Sequence[str], *, batch_size: int = 16,
             max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Summed next-token NLL of neutral text, chunk by chunk (:func:`ppl_chunks`).

    Parameters
    ----------
    loaded : LoadedModel
    texts : sequence of str
    batch_size : int
        Chunks per forward pass.
    max_length : int, optional
        Chunk length; default the model's maximum positions, capped at 2048.

    Returns
    -------
    nll : np.ndarray of shape [n_chunks], float64
        Sum over the chunk's predicted tokens of ``-log p(token | preceding tokens)``, nats.
    n_tokens : np.ndarray of shape [n_chunks], int64
        Predicted tokens per chunk.

    Notes
    -----
    Perplexity is ``exp(nll.sum() / n_tokens.sum())`` (:func:`aura_stream.evaluation.metrics.perplexity`).
    """
    chunks = ppl_chunks(loaded, texts, max_length=max_length)
    return chunk_nll(loaded, chunks, batch_size=batch_size), \
        np.array([len(c) - 1 for c in chunks], dtype=np.int64)


def _ppl_key(arm: Arm) -> str:
    iv = arm.intervention
    return BASELINE if iv is None else f"{iv.fingerprint}:{arm.strength}"


def perplexities(loaded: LoadedModel, arms: Sequence[Arm], chunks: list[list[int]], path: Path,
                  batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-chunk NLL per distinct intervention (cached in ``path``) and the chunks' token counts."""
    fingerprint = sha256_json(chunks)
    try:
        cache = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        cache = {}
    if cache.get("text_fingerprint") != fingerprint:
        cache = {"text_fingerprint": fingerprint, "n_tokens": None, "nll": {}}
    for arm in arms:
        key = _ppl_key(arm)
        if key in cache["nll"]:
            continue
        ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if arm.intervention is not None:
            ctx = loaded.backend.dampened(arm.intervention, strength=arm.strength)
        with ctx:
            nll = chunk_nll(loaded, chunks, batch_size=batch_size)
        cache["nll"][key] = nll.tolist()
        cache["n_tokens"] = [len(c) - 1 for c in chunks]
        atomic_write_text(path, json.dumps(cache) + "\n")
    nlls = {a.name: np.asarray(cache["nll"][_ppl_key(a)], dtype=np.float64) for a in arms}
    return nlls, np.asarray(cache["n_tokens"], dtype=np.int64)
