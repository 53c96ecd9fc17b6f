"""``extract``: stream pooled activations of labelled sentences into a resumable zarr store."""

from __future__ import annotations

import datetime as dt
import os
import platform
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from aura_stream._version import __version__
from aura_stream.backends import backend_for
from aura_stream.backends.base import Capture
from aura_stream.data import LabelledTexts, load_labelled
from aura_stream.errors import AuraStreamError, InputError, StoreError
from aura_stream.hookpoints import HookPoint, default_patterns, match_hooks
from aura_stream.identity import FINGERPRINT_V2, weights_fingerprint, weights_fingerprint_v2
from aura_stream.model import LoadedModel, check_max_length, resolve_device
from aura_stream.pooling import Pooling, parse_pooling
from aura_stream.store import ActivationStore, StoreSpec

DEFAULT_ROW_BLOCK = 256


@dataclass(frozen=True)
class ExtractResult:
    """What one ``extract`` call did."""

    path: Path
    n_samples: int
    blocks_written: int
    blocks_skipped: int
    hooks: dict[str, int]
    seconds: float  # wall time of the forward passes and writes (model loading excluded)


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)``; None falls back to SLURM array variables, else ``(0, 1)``.

    ``SLURM_ARRAY_TASK_ID`` is offset by ``SLURM_ARRAY_TASK_MIN`` so arrays may start at 1.
    """
    env = os.environ if env is None else env
    if text is None and "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        try:
            index = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            text = f"{index}/{int(env['SLURM_ARRAY_TASK_COUNT'])}"
        except ValueError:
            raise InputError("SLURM_ARRAY_TASK_ID/COUNT/MIN must be integers; check the job script.") from None
    if text is None:
        return 0, 1
    index_s, sep, count_s = text.partition("/")
    if not sep or not index_s.strip().isdigit() or not count_s.strip().isdigit():
        raise InputError(f"`--shard` must look like i/N (e.g. 3/16); got {text!r}.")
    index, count = int(index_s), int(count_s)
    if count < 1 or index >= count:
        raise InputError(f"`--shard` index must be in 0..N-1 with N >= 1; got {index}/{count}.")
    return index, count


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InputError(f"`--{name}` must be >= 1; got {value}.")


def resolve_hooks(loaded: LoadedModel, patterns: Sequence[str] | None) -> list[HookPoint]:
    """Hook points of ``loaded``'s backend named by glob ``patterns`` (None -> the paper's default set)."""
    return loaded.backend.resolve_hooks(patterns)


def extract(
    *,
    model: str | Any | None,
    data: str | Path | None,
    out: str | Path,
    hooks: Sequence[str] | None = None,
    pooling: Sequence[str] | str = ("max",),
    batch_size: int = 32,
    max_length: int = 128,
    per_class: int | None = None,
    seed: int = 42,
    dtype: str = "auto",
    device: str = "cpu",
    store_dtype: str = "float16",
    text_column: str | None = None,
    label_column: str | None = None,
    overwrite: bool = False,
    shard: tuple[int, int] = (0, 1),
    row_block: int = DEFAULT_ROW_BLOCK,
    device_map: str | None = None,
    max_memory: dict[int | str, str] | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    backend: str | None = None,
    stream_weights: bool = False,
    memory_budget: int | None = None,
    scratch_dir: str | Path | None = None,
) -> ExtractResult:
    """Run labelled sentences through a model and store pooled activations per hook.

    Parameters
    ----------
    model : str, TransformerBridge or None
        Model directory or hub id (None: the demo model), or a TransformerLens ``TransformerBridge``
        (implies ``backend="transformer-lens"``; texts go through the bridge's tokenizer).
    data : path or None
        Jigsaw ``train.csv``, a generic CSV/JSONL (with ``text_column``/``label_column``), or
        None for the demo set.
    out : path
        Store directory (``.zarr``); an existing store of the same run is resumed.
    hooks : sequence of str, optional
        Glob patterns over hook names; default: every MLP Linear output.
    pooling : sequence of {"max", "mean", "last"}
    shard : (i, N)
        This process writes row blocks ``b`` with ``b % N == i``.
    backend : {"hf", "transformer-lens"}, optional
        ``hf`` (default): hooks on the Hugging Face modules. ``transformer-lens``: forward passes and
        hooks through a ``TransformerBridge`` (see :mod:`aura_stream.backends.tl`); same stored values.
    stream_weights : bool
        Read the weights one decoder block at a time from the safetensors shards (layer-major,
        :mod:`aura_stream.extract_streamed`): for models larger than memory; same stored values.
    memory_budget : int, optional
        Bytes the run may use (default: what the process may allocate now, cgroup included). With
        ``stream_weights`` it sizes the hidden states kept in memory (the rest spill to
        ``scratch_dir``); without, a model whose weights exceed it is refused before loading.
    scratch_dir : path, optional
        Where hidden states that do not fit spill (default: beside the store).

    Returns
    -------
    ExtractResult

    Raises
    ------
    AuraStreamError
        Bad options, data, model or store; nothing is written before validation passes.
    """
    for name, value in (("batch-size", batch_size), ("max-length", max_length), ("row-block", row_block)):
        _positive(name, value)
    if per_class is not None:
        _positive("per-class", per_class)
    backend_cls = backend_for(model, backend)  # a TransformerBridge model implies transformer-lens
    backend = backend_cls.name
    if store_dtype not in ("float16", "float32"):
        raise InputError(f"`--store-dtype` must be float16 or float32; got {store_dtype!r}.")
    poolings = parse_pooling(list(pooling) if not isinstance(pooling, str) else pooling)
    out = Path(out)
    if out.is_file():
        raise StoreError(f"`--out` must be a directory for the store; {str(out)!r} is a file.")
    if not device_map:
        resolve_device(device)
    check_max_length(model, max_length)
    if stream_weights:
        _check_streamable(model, backend, device_map, device)
    else:
        from aura_stream.extract_streamed import check_fits_in_memory

        check_fits_in_memory(model if isinstance(model, (str, Path)) else None, dtype=dtype, budget=memory_budget,
                             device=device, device_map=device_map)
    texts = load_labelled(data, text_column=text_column, label_column=label_column,
                          per_class=per_class, seed=seed)
    if stream_weights:
        return _extract_streamed(model, texts, out, hooks=hooks, poolings=poolings, batch_size=batch_size,
                                 max_length=max_length, dtype=dtype, device=device, store_dtype=store_dtype,
                                 overwrite=overwrite, shard=shard, row_block=row_block, progress=progress,
                                 config=config, memory_budget=memory_budget, scratch_dir=scratch_dir)
    loaded = backend_cls.load(model, dtype=dtype, device=device, device_map=device_map, max_memory=max_memory)
    points = loaded.backend.resolve_hooks(hooks)
    capture = loaded.backend.capture(points, poolings)
    _probe(capture, loaded, texts.texts[:2], max_length)
    # a row block larger than the data would be padded on disk to its full height
    spec = _spec(loaded, texts, points, poolings, max_length=max_length, store_dtype=store_dtype,
                 row_block=min(row_block, len(texts)), n_shards=shard[1], config=config,
                 out=None if overwrite else out)
    store = ActivationStore.create_or_open(out, spec, overwrite=overwrite)
    done = store.completed()
    mine = [b for b in range(store.n_blocks) if b % shard[1] == shard[0]]
    todo = [b for b in mine if not done[b]]
    n_todo = sum(store.block_rows(b).stop - store.block_rows(b).start for b in todo)
    start = time.perf_counter()
    writer = _BackgroundWriter(store)
    bar = tqdm(total=n_todo, unit="sample", desc=f"extract {out.name}", disable=not progress,
               dynamic_ncols=True)
    try:
        for block in todo:
            rows = store.block_rows(block)
            pooled = _run_block(capture, loaded, texts.texts[rows], batch_size=batch_size,
                                max_length=max_length, bar=bar)
            writer.put(block, pooled)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return ExtractResult(out, len(texts), len(todo), len(mine) - len(todo), dict(store.hooks),
                         time.perf_counter() - start)


def _check_streamable(model: Any, backend: str, device_map: str | None, device: str) -> None:
    """``--stream-weights`` runs its own backend on one device, from a local directory."""
    if backend != "hf":
        raise InputError(f"`--stream-weights` runs its own streamed backend; got --backend {backend}. "
                         "Drop --backend (or --stream-weights).")
    if device_map:
        raise InputError(f"`--stream-weights` must not come with `--device-map` (got {device_map!r}): it moves one "
                         "decoder block at a time to --device itself. Drop --device-map.")
    if model is not None and not Path(str(model)).is_dir():
        raise InputError(f"`--stream-weights` needs `--model` to be a local directory of safetensors shards; "
                         f"got {str(model)!r}. Download the model first.")


def _extract_streamed(model: Any, texts: LabelledTexts, out: Path, *, hooks: Sequence[str] | None,
                      poolings: list[Pooling], batch_size: int, max_length: int, dtype: str, device: str,
                      store_dtype: str, overwrite: bool, shard: tuple[int, int], row_block: int, progress: bool,
                      config: Mapping[str, Any] | None, memory_budget: int | None,
                      scratch_dir: str | Path | None) -> ExtractResult:
    """The layer-major ``extract`` (:mod:`aura_stream.extract_streamed`)."""
    from aura_stream.backends import get_backend
    from aura_stream.extract_streamed import run_streamed

    stored = None if overwrite else stored_fingerprint(out)
    if stored is not None and not stored.startswith(FINGERPRINT_V2):
        raise InputError(f"store {str(out)!r} was started by an aura-stream older than --stream-weights and records "
                         "a weights fingerprint only the in-memory run computes; resume it without --stream-weights, "
                         "or start a new `--out`.")
    sm: Any = get_backend("streamed").load(model, dtype=dtype, device=resolve_device(device))
    available = sm.hook_points()
    points = [available[n] for n in match_hooks(list(hooks) if hooks else default_patterns(available), available)]
    spec = _spec(sm, texts, points, poolings, max_length=max_length, store_dtype=store_dtype,
                 row_block=min(row_block, len(texts)), n_shards=shard[1], config=config, out=out,
                 weights=sm.weights_fingerprint(), backend_info=sm.backend.describe())
    store = ActivationStore.create_or_open(out, spec, overwrite=overwrite)
    done = store.completed()
    mine = [b for b in range(store.n_blocks) if b % shard[1] == shard[0]]
    todo = [b for b in mine if not done[b]]
    run = run_streamed(sm, store, texts, points, poolings, todo, batch_size=batch_size, max_length=max_length,
                       budget=memory_budget, scratch_dir=scratch_dir, progress=progress)
    return ExtractResult(out, len(texts), len(todo), len(mine) - len(todo), dict(store.hooks), run.seconds)


def _probe(capture: Capture, loaded: LoadedModel, texts: list[str], max_length: int) -> None:
    """Run one tiny batch and check every hook fired with its width before anything is written."""
    enc = loaded.tokenizer(texts, padding=True, padding_side="right", truncation=True, max_length=max_length,
                           return_tensors="pt")
    pooled = capture.run(enc["input_ids"].to(loaded.device), enc["attention_mask"].to(loaded.device))
    capture.check_first_batch(pooled, len(texts))


def _run_block(capture: Capture, loaded: LoadedModel, texts: list[str], *, batch_size: int,
               max_length: int, bar: Any) -> dict[tuple[str, str], np.ndarray]:
    """Pooled activations of one row block, ``[rows, d]`` per (pooling, hook), in row order.

    Rows are batched by token length (less padding, same pooled values) and put back in order.
    Padding goes on the right whatever the tokenizer's ``padding_side``: in a causal model a
    token never sees what follows it, so a right-padded row computes exactly what the sentence
    alone computes (left padding would shift GPT-2's absolute positions).
    """
    enc = loaded.tokenizer(texts, truncation=True, max_length=max_length)
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    if (lengths == 0).any():
        raise InputError(f"every text must have at least one token; {int((lengths == 0).sum())} have none.")
    order = np.argsort(-lengths, kind="stable")
    out: dict[tuple[str, str], np.ndarray] = {}
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        batch = loaded.tokenizer.pad({"input_ids": [enc["input_ids"][i] for i in idx]},
                                     padding_side="right", return_tensors="pt")
        pooled = capture.run(batch["input_ids"].to(loaded.device),
                             batch["attention_mask"].to(loaded.device))
        for key, values in pooled.items():
            if key not in out:
                out[key] = np.empty((len(texts), values.shape[1]), dtype=np.float32)
            out[key][idx] = values
        bar.update(len(idx))
    return out


def stored_fingerprint(out: Path) -> str | None:
    """The weights fingerprint an existing store at ``out`` recorded, or None (no store, or none recorded)."""
    if out.is_file() or not (out / "zarr.json").is_file():
        return None
    try:
        value = ActivationStore.open(out).attrs.get("identity", {}).get("weights")
    except AuraStreamError:
        return None  # create_or_open reports a damaged store in its own words
    return value if isinstance(value, str) else None


def _fingerprint(loaded: LoadedModel, out: Path | None) -> str:
    """v2 for a new store; the store's own (older) kind when resuming one made before v2."""
    stored = None if out is None else stored_fingerprint(out)
    if stored is not None and not stored.startswith(FINGERPRINT_V2):
        return weights_fingerprint(loaded.model)
    return weights_fingerprint_v2(loaded.model)


def _spec(loaded: LoadedModel, texts: LabelledTexts, points: list[HookPoint], poolings: list[Pooling], *,
          max_length: int, store_dtype: str, row_block: int, n_shards: int,
          config: Mapping[str, Any] | None, out: Path | None, weights: str | None = None,
          backend_info: Mapping[str, Any] | None = None) -> StoreSpec:
    import transformers
    import zarr

    hooks = {p.name: p.width for p in points}
    identity = {
        "model": loaded.model_id, "revision": loaded.revision, "model_dtype": loaded.dtype,
        "tokenizer": str(getattr(loaded.tokenizer, "name_or_path", "")), "max_length": max_length,
        "poolings": list(poolings), "hooks": hooks, "dataset_fingerprint": texts.fingerprint,
        "n_samples": len(texts), "store_dtype": store_dtype, "row_block": row_block, "n_shards": n_shards,
        "weights": weights or _fingerprint(loaded, out),
    }
    provenance = {
        "model_type": str(getattr(loaded.model.config, "model_type", "")),
        "selection": texts.selection, "config": dict(config or {}),
        **(loaded.backend.describe() if backend_info is None else backend_info),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"aura_stream": __version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "zarr": zarr.__version__,
                     "python": platform.python_version()},
    }
    return StoreSpec(n_samples=len(texts), row_block=row_block, hooks=hooks, poolings=list(poolings),
                     store_dtype=store_dtype, identity=identity, provenance=provenance,
                     labels=texts.labels, sample_ids=texts.sample_ids)


class _BackgroundWriter:
    """Writes finished row blocks on a thread, so disk overlaps with the next forward passes."""

    def __init__(self, store: ActivationStore, depth: int = 2, *, complete: bool = True):
        self.store = store
        self.complete = complete  # False: the streamed backend flags blocks itself after the last layer
        self.queue: queue.Queue[tuple[int, dict[tuple[str, str], np.ndarray]] | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="aura-stream-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.store.write_block(*item, complete=self.complete)
                except BaseException as exc:  # handed to the main thread
                    self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            if isinstance(self.error, AuraStreamError):
                raise self.error
            raise StoreError(
                f"writing the store failed: {type(self.error).__name__}: {self.error}. "
                "Free space or fix permissions, then rerun the same command to resume."
            ) from self.error

    def put(self, block: int, data: dict[tuple[str, str], np.ndarray]) -> None:
        """Queue a block (blocks while the writer is two blocks behind)."""
        self._raise()
        self.queue.put((block, data))

    def close(self) -> None:
        """Wait for every queued block, then re-raise a writer error."""
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop after the block being written; unfinished blocks stay incomplete (resumable)."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.queue.put(None)
        self.thread.join()
