"""The streamed backend: ``extract --stream-weights`` for models larger than memory.

Layer-major execution.  The model is built from its ``config.json`` on the meta device (no
weights; buffers such as rotary tables are computed as usual), only the embeddings are read in,
and then, for each decoder block up to the last hooked one:

1. the block's tensors are read from the safetensors shards (:mod:`aura_stream.checkpoint`, by the
   shard index) into the block module of ``transformers`` itself, so every architecture computes
   exactly what its in-memory forward computes;
2. the hidden states of every row of the pass go through it, micro-batch by micro-batch, and the
   hooks of that block pool their activations into the store;
3. the block is freed while the next one is already being read on a background thread.

So each weight is read once per pass, not once per batch.  What a block receives besides the
hidden states (causal mask, rotary embeddings, ALiBi, per-layer sliding-window masks) is taken
from the model's own forward: the embedding part of ``model(...)`` runs for real and every block
up to the one wanted is replaced by a stub that passes the hidden states on; the stub of the
wanted block records its arguments and stops the forward.  The hidden states of the pass live in
memory up to the budget; the rest spill to an unlinked scratch file.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aura_stream.backends.base import Backend, Capture
from aura_stream.checkpoint import DTYPES as CKPT_DTYPES
from aura_stream.checkpoint import Checkpoint
from aura_stream.errors import HookError, InputError, ModelLoadError
from aura_stream.hookpoints import HookPoint, all_hook_points, arch_spec, model_type
from aura_stream.identity import FINGERPRINT_V2, config_bytes, sample_runs, widen
from aura_stream.memory import fmt_bytes
from aura_stream.pooling import Pooling, pool

RUNTIME_BYTES = 700 << 20  # torch, transformers, tokenizer, zarr and dask loaded: measured RSS ~600 MiB here
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PoolFn = Callable[[int, dict[tuple[str, str], np.ndarray]], None]


class _StopForward(Exception):
    """Raised by the stub of the wanted block: nothing past it runs in the skeleton."""


def _config_dtype(config: Any) -> torch.dtype:
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, torch.dtype):
        return value
    return _TORCH_DTYPES.get(str(value).removeprefix("torch."), torch.float32)


@dataclass(frozen=True)
class MicroBatch:
    """One forward batch of a pass: rows of one store block, padded on the right."""

    rows: np.ndarray  # [batch] positions inside the store block
    input_ids: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos]


@dataclass(frozen=True)
class PassBlock:
    """One store row block of a pass and its micro-batches."""

    block: int
    n_rows: int
    batches: list[MicroBatch]


class StreamedModel:
    """A causal LM whose weights stay on disk until a block needs them.

    Attributes
    ----------
    model : transformers.PreTrainedModel
        The skeleton: parameters on the meta device except the embeddings (and whatever else
        runs before the first block); one decoder block at a time is real.
    checkpoint : Checkpoint
    keys : dict of str to str
        Model tensor name -> checkpoint key, for every tensor that is read.
    """

    name = "streamed"
    backend: Backend | None = None  # set by StreamedBackend.load

    def __init__(self, model_dir: str | Path, *, dtype: str = "auto", device: str = "cpu"):
        from accelerate import init_empty_weights
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.model_dir = Path(model_dir)
        self.checkpoint = Checkpoint.open(self.model_dir)  # pickle-only, missing shards: refused here
        try:
            config = AutoConfig.from_pretrained(self.model_dir)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load model {str(self.model_dir)!r}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}. `--model` must be a complete "
                                 "Hugging Face model directory (config.json, weights, tokenizer).") from exc
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.torch_dtype = _config_dtype(config) if dtype == "auto" else _TORCH_DTYPES[dtype]
        self.device = torch.device(device)
        spec = arch_spec(str(getattr(config, "model_type", "")))
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, dtype=self.torch_dtype)
        self.model = model.eval()
        self.model_id, self.revision = str(self.model_dir), None
        self.dtype = str(self.torch_dtype).removeprefix("torch.")
        self.blocks_path = spec.blocks
        self.blocks: nn.ModuleList = model.get_submodule(spec.blocks)
        self._shapes = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict(keep_vars=True).items()}
        self._param_names = [n for n, _ in model.named_parameters()]  # tied weights once, before any is replaced
        self.keys = self._resolve_keys()
        if getattr(config, "tie_word_embeddings", False):  # a tied LM head is the embedding: listed once
            tied = getattr(model, "_tied_weights_keys", None) or {}
            self._param_names = [n for n in self._param_names if not (n in tied and n not in self.keys)]
        for name, buf in list(self._buffers()):  # computed buffers go where the compute is
            self._set(name, buf.to(self.device))
        self._resident_loaded = False

    def load_resident(self) -> None:
        """Read the embeddings (and whatever else runs before the first block), once."""
        if not self._resident_loaded:
            self._set_many(self._cast(self.checkpoint.read(self._key_list(self.resident_names))))
            self._resident_loaded = True

    # ------------------------------------------------------------------ tensors

    def _buffers(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, buf in self.model.named_buffers():
            if buf.device.type != "meta":
                yield name, buf

    def _out_embedding_prefix(self) -> str | None:
        out = self.model.get_output_embeddings()
        inp = self.model.get_input_embeddings()
        if out is None or (getattr(out, "weight", None) is getattr(inp, "weight", object())):
            return None
        return next((n + "." for n, m in self.model.named_modules() if m is out), None)

    def _resolve_keys(self) -> dict[str, str]:
        """Checkpoint key of every tensor to read; tensors the config needs but the files lack are refused."""
        params = set(self._param_names)
        wanted = [n for n in self._shapes if n in params or n in self.checkpoint.entries]
        keys, missing = self.checkpoint.resolve(wanted, self.model.base_model_prefix, self._renames())
        skip = self._out_embedding_prefix()
        missing = [n for n in missing if n in params and not (skip and n.startswith(skip))]
        if missing:
            raise ModelLoadError(f"the checkpoint in {str(self.model_dir)!r} lacks {len(missing)} tensor(s) its "
                                 f"config.json needs (e.g. {missing[0]!r}); it does not match its config. "
                                 "Download the complete checkpoint.")
        bad = [n for n, k in keys.items() if tuple(self.checkpoint.entries[k].shape) != self._shapes[n][0]]
        if bad:
            raise ModelLoadError(f"tensor {bad[0]!r} has shape {self.checkpoint.entries[keys[bad[0]]].shape} in the "
                                 f"checkpoint but {self._shapes[bad[0]][0]} in config.json; they do not match.")
        return keys

    def _renames(self) -> dict[str, str]:
        """Renamed key -> file key, by the renames ``from_pretrained`` applies; other conversions are refused."""
        import re

        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming

        aliases: dict[str, str] = {}
        for transform in get_model_conversion_mapping(self.model):
            sources, targets = list(transform.source_patterns), list(transform.target_patterns)
            hits = [k for k in self.checkpoint.entries if any(re.search(s, k) for s in sources)]
            if not hits:
                continue
            if not isinstance(transform, WeightRenaming) or len(targets) != 1:
                raise ModelLoadError(f"this checkpoint's tensors (e.g. {hits[0]!r}) are converted while loading, "
                                     "which streaming cannot do block by block; drop --stream-weights, or save "
                                     "the model again with transformers' save_pretrained.")
            for k in hits:
                new = k
                for s in sources:
                    new = re.sub(s, targets[0], new)
                aliases[new] = k
        return aliases

    def layer_names(self, layer: int) -> list[str]:
        """Model tensor names of decoder block ``layer``."""
        prefix = f"{self.blocks_path}.{layer}."
        return [n for n in self.keys if n.startswith(prefix)]

    @property
    def resident_names(self) -> list[str]:
        """Tensors outside the blocks that run before them (embeddings, ...); never the LM head."""
        skip = self._out_embedding_prefix()
        return [n for n in self.keys if not n.startswith(self.blocks_path + ".")
                and not (skip and n.startswith(skip))]

    def _key_list(self, names: Sequence[str]) -> list[str]:
        return [self.keys[n] for n in names]

    def nbytes(self, names: Sequence[str], *, compute: bool = True) -> int:
        """Bytes of the named tensors on disk, or (``compute``) in the dtype they are computed in."""
        total = 0
        for n in names:
            entry = self.checkpoint.entries[self.keys[n]]
            if compute and CKPT_DTYPES[entry.dtype].is_floating_point:
                total += math.prod(entry.shape) * torch.empty((), dtype=self.torch_dtype).element_size()
            else:
                total += entry.nbytes
        return total

    def read_layer(self, layer: int) -> dict[str, torch.Tensor]:
        """Block ``layer``'s tensors as read from disk (runs on the prefetch thread)."""
        names = self.layer_names(layer)
        raw = self.checkpoint.read(self._key_list(names), pin_memory=self.device.type == "cuda")
        return {n: raw[self.keys[n]] for n in names}

    def _cast(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        by_key = {v: k for k, v in self.keys.items()}
        out = {}
        for key, t in tensors.items():
            name = by_key.get(key, key)
            t = t.to(self.device, non_blocking=True)
            out[name] = t.to(self.torch_dtype) if t.is_floating_point() else t
        return out

    def _set(self, name: str, tensor: torch.Tensor) -> None:
        path, _, leaf = name.rpartition(".")
        module = self.model.get_submodule(path)
        if leaf in module._parameters:
            module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
        else:
            module._buffers[leaf] = tensor

    def _set_many(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, t in tensors.items():
            self._set(name, t)

    def materialize(self, tensors: dict[str, torch.Tensor]) -> None:
        """Put a block's tensors (from :meth:`read_layer`) into the model, cast and on the device."""
        for name, t in tensors.items():
            t = t.to(self.device, non_blocking=True)
            self._set(name, t.to(self.torch_dtype) if t.is_floating_point() else t)

    def release(self, layer: int) -> None:
        """Send block ``layer``'s tensors back to the meta device (frees them)."""
        for name in self.layer_names(layer):
            shape, dtype = self._shapes[name]
            self._set(name, torch.empty(shape, dtype=dtype, device="meta"))

    # ------------------------------------------------------------------ hooks and forward

    def hook_points(self) -> dict[str, HookPoint]:
        """Every MLP hook point, read from the skeleton (no weight needed)."""
        return all_hook_points(self.model)

    def weights_fingerprint(self) -> str:
        """The fingerprint :func:`aura_stream.identity.weights_fingerprint_v2` gives the in-memory model.

        The same 16 runs of 256 values per tensor, read from the shards (16 small reads per
        tensor), cast to the compute dtype as loading would.
        """
        digest = hashlib.sha256(config_bytes(self.model))
        for name in self._param_names:
            digest.update(f"{name}:{self._shapes[name][0]}:{self.torch_dtype}".encode())
            key = self.keys.get(name)
            if key is not None:
                digest.update(self._sample(key))
        return FINGERPRINT_V2 + digest.hexdigest()

    def _sample(self, key: str) -> bytes:
        entry = self.checkpoint.entries[key]
        dtype = CKPT_DTYPES[entry.dtype]
        size = torch.empty((), dtype=dtype).element_size()
        out = []
        fd = os.open(entry.file, os.O_RDONLY)
        try:
            for start, stop in sample_runs(math.prod(entry.shape)):
                raw = os.pread(fd, (stop - start) * size, entry.start + start * size)
                values = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
                out.append(widen(values.to(self.torch_dtype) if values.is_floating_point() else values))
            os.posix_fadvise(fd, entry.start, entry.nbytes, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return b"".join(out)

    def layer_inputs(self, batch: MicroBatch, layer: int) -> tuple[torch.Tensor, tuple[Any, ...], dict[str, Any]]:
        """(hidden states into block 0, positional and keyword arguments of block ``layer``) for a batch."""
        from aura_stream.model import position_kwargs

        record: dict[str, Any] = {}

        def stub_for(i: int) -> Callable[..., Any]:
            def stub(*args: Any, **kwargs: Any) -> Any:
                hidden = args[0] if args else kwargs.pop("hidden_states")
                if i == layer:
                    record.update(hidden=hidden, args=args[1:], kwargs=kwargs)
                    raise _StopForward
                return hidden
            return stub

        ids = batch.input_ids.to(self.device)
        mask = batch.attention_mask.to(self.device)
        for i in range(layer + 1):
            self.blocks[i].forward = stub_for(i)
        try:
            with contextlib.suppress(_StopForward):
                self.model(input_ids=ids, attention_mask=mask, use_cache=False, **position_kwargs(self.model, mask))
        finally:
            for i in range(layer + 1):
                self.blocks[i].__dict__.pop("forward", None)
        if "hidden" not in record:
            raise ModelLoadError(f"block {layer} of this {model_type(self.model)} model was never called by its "
                                 "forward; streaming does not support this architecture. Drop --stream-weights.")
        return record["hidden"], record["args"], record["kwargs"]


class HiddenStates:
    """The hidden states of every micro-batch of a pass: in memory up to a budget, the rest in a scratch file.

    The scratch file is unlinked as soon as it is mapped, so a killed run leaves nothing behind.
    """

    def __init__(self, shapes: Sequence[tuple[int, int]], d_model: int, dtype: torch.dtype, device: torch.device,
                 *, in_memory_bytes: int, scratch_dir: Path | None):
        itemsize = torch.empty((), dtype=dtype).element_size()
        self.tensors: list[torch.Tensor | None] = [None] * len(shapes)
        self.spilled: dict[int, tuple[int, tuple[int, int, int]]] = {}
        used = offset = 0
        for j, (b, pos) in enumerate(shapes):
            n = b * pos * d_model
            if used + n * itemsize <= in_memory_bytes:
                used += n * itemsize
            else:
                self.spilled[j] = (offset, (b, pos, d_model))
                offset += n
        self.in_memory_bytes, self.spilled_bytes = used, offset * itemsize
        self._flat: torch.Tensor | None = None
        if offset:
            directory = scratch_dir or Path(tempfile.gettempdir())
            try:
                directory.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix="aura-stream-hidden-", dir=directory)
                os.close(fd)
                self._flat = torch.from_file(name, shared=True, size=offset, dtype=dtype)
                os.unlink(name)
            except (OSError, RuntimeError) as exc:
                raise InputError(f"`--scratch-dir` must have room for {fmt_bytes(self.spilled_bytes)} of hidden "
                                 f"states that do not fit --max-memory; {str(directory)!r} failed ({exc}). Choose "
                                 "another --scratch-dir or raise --max-memory.") from exc
        self.device = device

    def get(self, j: int) -> torch.Tensor:
        """Hidden states ``[batch, pos, d_model]`` of micro-batch ``j``, on the compute device."""
        if j in self.spilled:
            assert self._flat is not None
            offset, shape = self.spilled[j]
            return self._flat[offset:offset + math.prod(shape)].view(shape).to(self.device)
        tensor = self.tensors[j]
        assert tensor is not None, "hidden states read before they were written"
        return tensor

    def put(self, j: int, value: torch.Tensor) -> None:
        """Keep ``value`` as micro-batch ``j``'s hidden states."""
        if j in self.spilled:
            assert self._flat is not None
            offset, shape = self.spilled[j]
            self._flat[offset:offset + math.prod(shape)].view(shape).copy_(value)
        else:
            self.tensors[j] = value


class _LayerCapture:
    """Forward hooks on one block's hooked modules, pooling each activation of the current batch."""

    def __init__(self, model: nn.Module, points: Sequence[HookPoint], poolings: Sequence[Pooling]):
        self.points, self.poolings = list(points), list(poolings)
        self.mask: torch.Tensor | None = None
        self.out: dict[tuple[str, str], torch.Tensor] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        for p in self.points:
            module = model.get_submodule(p.module_path)
            if p.site == "output":
                self.handles.append(module.register_forward_hook(
                    lambda _m, _a, out, p=p: self._pool(p, out)))
            else:
                self.handles.append(module.register_forward_pre_hook(
                    lambda _m, args, p=p: self._pool(p, args[0])))

    def _pool(self, point: HookPoint, act: torch.Tensor) -> None:
        assert self.mask is not None
        if act.dim() == 2:  # OPT runs its MLP on flattened [batch * pos, d]
            act = act.view(self.mask.shape[0], self.mask.shape[1], act.shape[-1])
        for op in self.poolings:  # inside the hook: Falcon adds attention into the MLP output afterwards
            self.out[(op, point.name)] = pool(act, self.mask, op)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def check_layer_fired(points: Sequence[HookPoint], poolings: Sequence[str],
                      pooled: dict[tuple[str, str], np.ndarray], batch: int) -> None:
    """Every hook of a block fired once with its width (checked on the block's first batch)."""
    problems = [f"{p.name} never fired" if (op, p.name) not in pooled else
                f"{p.name} gave shape {pooled[(op, p.name)].shape}, expected {(batch, p.width)}"
                for p in points for op in poolings
                if (op, p.name) not in pooled or pooled[(op, p.name)].shape != (batch, p.width)]
    if problems:
        raise HookError(f"hooks must fire once with their width; {'; '.join(sorted(set(problems)))}. "
                        "Choose other hooks or drop --stream-weights.")


def _return_freed_memory() -> None:
    """Make glibc serve allocations of 1 MiB and more from mmap, so a freed block goes back to the system.

    By default glibc raises its mmap threshold after the first large free (up to 32 MiB), and
    the tensors of one block (a few MiB to hundreds) then come from heap arenas that do not
    shrink: measured here, a streamed pass then peaked at 1.27 GB for 108 MB of blocks in flight.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD


@dataclass(frozen=True)
class PassStats:
    """What one streamed pass did."""

    n_layers: int
    weight_bytes_read: int
    hidden_in_memory: int
    hidden_spilled: int


@torch.inference_mode()
def run_pass(sm: StreamedModel, points: Sequence[HookPoint], poolings: Sequence[Pooling],
             blocks: Sequence[PassBlock], *, write: PoolFn, hidden_budget: int,
             scratch_dir: Path | None = None, progress: bool = True) -> PassStats:
    """Run every row of ``blocks`` through the model block by block, pooling the hooks into ``write``.

    ``write(store_block, {(pooling, hook): [rows, d_hook] float32})`` is called once per store
    block per decoder block that holds hooks; the caller marks a store block complete after the
    pass returns.
    """
    from tqdm.auto import tqdm

    last = max(p.layer for p in points)
    flat = [mb for pb in blocks for mb in pb.batches]
    d_model = int(sm.model.get_input_embeddings().weight.shape[1])
    hidden = HiddenStates([tuple(mb.input_ids.shape) for mb in flat], d_model, sm.torch_dtype, sm.device,  # type: ignore[misc]
                          in_memory_bytes=hidden_budget, scratch_dir=scratch_dir)
    n_rows = sum(pb.n_rows for pb in blocks)
    bar = tqdm(total=n_rows * (last + 1), unit="row", desc="extract (streamed)", disable=not progress,
               dynamic_ncols=True)
    _return_freed_memory()
    read = 0 if sm._resident_loaded else sm.nbytes(sm.resident_names, compute=False)
    sm.load_resident()
    with ThreadPoolExecutor(1, thread_name_prefix="aura-stream-prefetch") as pool_:
        future: Future[dict[str, torch.Tensor]] = pool_.submit(sm.read_layer, 0)
        try:
            for layer in range(last + 1):
                tensors = future.result()
                read += sum(t.numel() * t.element_size() for t in tensors.values())
                sm.materialize(tensors)
                del tensors
                if layer < last:
                    future = pool_.submit(sm.read_layer, layer + 1)
                bar.set_description(f"extract (streamed) block {layer + 1}/{last + 1}")
                _run_layer(sm, layer, [p for p in points if p.layer == layer], poolings, blocks, hidden,
                           write=write, keep=layer < last, bar=bar)
                sm.release(layer)
        finally:
            bar.close()
            future.cancel()
    return PassStats(last + 1, read, hidden.in_memory_bytes, hidden.spilled_bytes)


def _run_layer(sm: StreamedModel, layer: int, points: list[HookPoint], poolings: Sequence[Pooling],
               blocks: Sequence[PassBlock], hidden: HiddenStates, *, write: PoolFn, keep: bool, bar: Any) -> None:
    """One decoder block over every micro-batch of the pass."""
    block_module = sm.blocks[layer]
    capture = _LayerCapture(sm.model, points, poolings)
    j = 0
    checked = False
    try:
        for pb in blocks:
            out: dict[tuple[str, str], np.ndarray] = {
                (op, p.name): np.empty((pb.n_rows, p.width), dtype=np.float32) for p in points for op in poolings}
            for mb in pb.batches:
                first, args, kwargs = sm.layer_inputs(mb, layer)
                states = first if layer == 0 else hidden.get(j)
                capture.mask, capture.out = mb.attention_mask.to(sm.device).bool(), {}
                result = block_module(states, *args, **kwargs)
                result = result[0] if isinstance(result, tuple) else result
                if keep:
                    hidden.put(j, result)
                pooled = {k: t.cpu().numpy() for k, t in capture.out.items()}
                if not checked:
                    check_layer_fired(points, poolings, pooled, len(mb.rows))
                    checked = True
                for key, values in pooled.items():
                    out[key][mb.rows] = values
                bar.update(len(mb.rows))
                j += 1
            if points:
                write(pb.block, out)
    finally:
        capture.remove()


class StreamedBackend(Backend):
    """The streamed runner behind the :class:`~aura_stream.backends.base.Backend` interface.

    Extract only, and layer-major: :func:`run_pass` drives it, not a per-batch :class:`Capture`
    (a per-batch capture would read every weight for every batch, what streaming exists to avoid).
    """

    name = "streamed"
    kv_cache = False

    def __init__(self, streamed: StreamedModel):
        self.streamed = streamed

    @classmethod
    def load(cls, model: Any, **load_kwargs: Any) -> Any:
        """A :class:`StreamedModel` of the directory ``model`` (``dtype`` and ``device`` only)."""
        from aura_stream.model import demo_model_dir

        unknown = sorted(k for k, v in load_kwargs.items() if k not in ("dtype", "device") and v)
        if unknown:
            flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
            raise InputError(f"`--stream-weights` must not come with {flags}; it reads one decoder block at a "
                             "time onto --device itself. Drop them.")
        sm = StreamedModel(model or demo_model_dir(), dtype=load_kwargs.get("dtype") or "auto",
                           device=load_kwargs.get("device") or "cpu")
        sm.backend = cls(sm)
        return sm

    def hook_points(self) -> dict[str, HookPoint]:
        return self.streamed.hook_points()

    def capture(self, points: Sequence[HookPoint], poolings: Sequence[Pooling]) -> Capture:
        raise InputError("the streamed backend must run whole passes (`run_pass`), not batch by batch: a batch "
                         "capture would read every weight per batch. Use `extract --stream-weights`.")

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "shards": len(self.streamed.checkpoint.files),
                "weight_bytes": self.streamed.checkpoint.total_bytes}
