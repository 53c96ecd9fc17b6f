"""``extract --stream-weights``: the store filled layer by layer, each weight read once per pass.

The rows this process owns (its shard's incomplete row blocks) form one pass: tokenized and
batched exactly as the in-memory ``extract`` batches them (per row block, longest first, padded on
the right), so the stored values are the same bits.  Each decoder block then runs over every
micro-batch (:func:`aura_stream.backends.streamed.run_pass`) and its hooks' pooled values are
written into their arrays block by block; a row block is flagged complete only after the last
hooked layer, so a killed pass resumes by redoing its row blocks.

The memory budget (``--max-memory``, default: what the process may allocate now, cgroup
included) pays for the runtime, the embeddings, two decoder blocks (the one computing, the one
being read), one batch's activations and the pooled buffers; what is left holds hidden states,
and hidden states beyond it spill to a scratch file.  :func:`plan` does that arithmetic for the
run and for ``--dry-run``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aura_stream.checkpoint import Checkpoint
from aura_stream.data import LabelledTexts
from aura_stream.errors import InputError
from aura_stream.hookpoints import HookPoint
from aura_stream.memory import available_memory, fmt_bytes
from aura_stream.pooling import Pooling
from aura_stream.store import ActivationStore

RUNTIME_BYTES = 480 << 20  # torch, transformers (config, model classes), tokenizer, zarr: ~450 MiB RSS measured


@dataclass(frozen=True)
class StreamPlan:
    """Bytes of a streamed pass, by what holds them."""

    budget: int
    runtime: int
    resident: int  # embeddings and what else runs before the first block
    blocks: int  # the block computing + the block being read
    workspace: int  # one micro-batch's activations inside a block
    pooled: int  # pooled values of one row block for one layer, x3 (filling + writer queue)
    hidden_total: int  # hidden states of every row of the pass
    weights_read: int  # bytes of weights the pass reads

    @property
    def fixed(self) -> int:
        """Everything but the hidden states."""
        return self.runtime + self.resident + self.blocks + self.workspace + self.pooled

    @property
    def hidden_in_memory(self) -> int:
        """Hidden-state bytes kept in memory."""
        return max(0, min(self.hidden_total, self.budget - self.fixed))

    @property
    def spilled(self) -> int:
        """Hidden-state bytes written to the scratch file."""
        return self.hidden_total - self.hidden_in_memory

    @property
    def peak(self) -> int:
        """Expected peak memory."""
        return self.fixed + self.hidden_in_memory

    def check(self) -> None:
        """Refuse a budget that cannot hold even the fixed part, in one line."""
        if self.fixed > self.budget:
            raise InputError(
                f"`--max-memory` must hold at least {fmt_bytes(self.fixed)} to stream this model (two decoder "
                f"blocks {fmt_bytes(self.blocks)}, embeddings {fmt_bytes(self.resident)}, one batch "
                f"{fmt_bytes(self.workspace)}, "
                f"pooled buffers {fmt_bytes(self.pooled)}, runtime {fmt_bytes(self.runtime)}); got "
                f"{fmt_bytes(self.budget)}. Raise --max-memory, or lower --batch-size / --row-block.")


def plan(*, budget: int, resident: int, block_compute: int, block_disk: int, weights_read: int, d_model: int,
         d_mlp: int, n_heads: int, batch_size: int, max_length: int, row_block: int, layer_neurons: int,
         n_poolings: int, hidden_tokens: int, itemsize: int) -> StreamPlan:
    """The :class:`StreamPlan` of a pass from the model's sizes (bytes) and the data's (tokens).

    ``hidden_tokens`` is the number of padded token positions of the pass (at most rows x max_length).
    """
    tokens = batch_size * max_length
    workspace = tokens * (4 * d_mlp + 8 * d_model) * itemsize + batch_size * n_heads * max_length ** 2 * 4
    return StreamPlan(
        budget=budget, runtime=RUNTIME_BYTES, resident=resident, blocks=block_compute + block_disk,
        workspace=workspace, pooled=3 * row_block * layer_neurons * n_poolings * 4,
        hidden_total=hidden_tokens * d_model * itemsize, weights_read=weights_read)


def default_budget() -> int:
    """90% of what this process may allocate now (the rest is headroom for the allocator)."""
    return int(available_memory() * 0.9)


def _micro_batches(tokenizer: Any, texts: list[str], *, batch_size: int, max_length: int) -> list[Any]:
    """The micro-batches of one row block, exactly as the in-memory ``extract`` forms them."""
    from aura_stream.backends.streamed import MicroBatch

    enc = tokenizer(texts, truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    if (lengths == 0).any():
        raise InputError(f"every text must have at least one token; {int((lengths == 0).sum())} have none.")
    order = np.argsort(-lengths, kind="stable")
    out = []
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [enc["input_ids"][i] for i in idx]}, padding_side="right",
                              return_tensors="pt")
        out.append(MicroBatch(idx, batch["input_ids"], batch["attention_mask"]))
    return out


@dataclass(frozen=True)
class StreamedRun:
    """What the streamed ``extract`` did, for the caller's summary."""

    blocks_written: int
    seconds: float
    plan: StreamPlan | None
    weight_bytes_read: int


def plan_for(sm: Any, points: Sequence[HookPoint], *, poolings: Sequence[Pooling], batch_size: int,
             max_length: int, row_block: int, hidden_tokens: int, budget: int | None) -> StreamPlan:
    """The plan of a pass over ``sm`` (a :class:`~aura_stream.backends.streamed.StreamedModel`)."""
    last = max(p.layer for p in points)
    layers = range(last + 1)
    per_layer = [sm.layer_names(i) for i in layers]
    cfg = sm.model.config
    neurons = max(sum(p.width for p in points if p.layer == i) for i in layers)
    return plan(
        budget=default_budget() if budget is None else budget,
        resident=sm.nbytes(sm.resident_names),
        block_compute=max(sm.nbytes(n) for n in per_layer),
        block_disk=max(sm.nbytes(n, compute=False) for n in per_layer),
        weights_read=sm.nbytes(sm.resident_names, compute=False) + sum(sm.nbytes(n, compute=False)
                                                                       for n in per_layer),
        d_model=int(sm.model.get_input_embeddings().weight.shape[1]),
        d_mlp=max(p.width for p in sm.hook_points().values()),
        n_heads=int(getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None) or 1),
        batch_size=batch_size, max_length=max_length, row_block=row_block, layer_neurons=neurons,
        n_poolings=len(poolings), hidden_tokens=hidden_tokens,
        itemsize=torch.empty((), dtype=sm.torch_dtype).element_size())


def run_streamed(sm: Any, store: ActivationStore, texts: LabelledTexts, points: Sequence[HookPoint],
                 poolings: Sequence[Pooling], todo: Sequence[int], *, batch_size: int, max_length: int,
                 budget: int | None, scratch_dir: str | Path | None, progress: bool) -> StreamedRun:
    """Fill row blocks ``todo`` of ``store`` in one layer-major pass, then flag them complete."""
    from aura_stream.backends.streamed import PassBlock, run_pass
    from aura_stream.extract import _BackgroundWriter

    if not todo:
        return StreamedRun(0, 0.0, None, 0)
    start = time.perf_counter()
    blocks = []
    for b in todo:
        rows = store.block_rows(b)
        batches = _micro_batches(sm.tokenizer, texts.texts[rows], batch_size=batch_size, max_length=max_length)
        blocks.append(PassBlock(b, rows.stop - rows.start, batches))
    tokens = sum(math.prod(mb.input_ids.shape) for pb in blocks for mb in pb.batches)
    the_plan = plan_for(sm, points, poolings=poolings, batch_size=batch_size, max_length=max_length,
                        row_block=store.row_block, hidden_tokens=tokens, budget=budget)
    the_plan.check()
    writer = _BackgroundWriter(store, complete=False)
    try:
        stats = run_pass(sm, points, poolings, blocks, write=writer.put, hidden_budget=the_plan.hidden_in_memory,
                         scratch_dir=Path(scratch_dir) if scratch_dir else store.path.parent, progress=progress)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    for b in todo:
        store.mark_complete(b)
    return StreamedRun(len(todo), time.perf_counter() - start, the_plan, stats.weight_bytes_read)


def check_fits_in_memory(model_dir: str | Path | None, *, dtype: str, budget: int | None,
                         device: str, device_map: str | None) -> None:
    """Refuse, before loading, an in-memory run on CPU whose weights exceed the memory budget."""
    from aura_stream.checkpoint import has_safetensors

    if model_dir is None or device_map or device != "cpu" or not Path(model_dir).is_dir() \
            or not has_safetensors(model_dir):
        return
    ckpt = Checkpoint.open(model_dir)
    weights = ckpt.total_bytes * (2 if dtype == "float32" and _mostly_half(ckpt) else 1)
    limit = default_budget() if budget is None else budget
    if weights + RUNTIME_BYTES > limit:
        raise InputError(
            f"the weights ({fmt_bytes(weights)}) must fit in memory to load the model whole; "
            f"{fmt_bytes(limit)} is available. Pass --stream-weights to read them one decoder block at a time.")


def _mostly_half(ckpt: Checkpoint) -> bool:
    half = sum(e.nbytes for e in ckpt.entries.values() if e.dtype in ("F16", "BF16"))
    return half * 2 > ckpt.total_bytes
