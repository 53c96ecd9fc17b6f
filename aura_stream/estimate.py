"""``extract --dry-run``: sizes and resource estimates from a model's ``config.json`` alone."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aura_stream.errors import InputError, ModelLoadError
from aura_stream.hookpoints import ARCHITECTURES, DEFAULT_HOOK_KINDS, match_hooks

BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 2}


@dataclass(frozen=True)
class Shape:
    """The numbers of a causal LM that decide activation and memory sizes."""

    model_type: str
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    vocab: int
    gated: bool


def _get(cfg: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for key in keys:
        if cfg.get(key) is not None:
            return int(cfg[key])
    if default is None:
        raise ModelLoadError(f"config.json lacks {' / '.join(keys)}; cannot size this model.")
    return default


def read_shape(model: str | Path) -> Shape:
    """Read the numbers from ``<model>/config.json`` (or a config.json path) without any weights."""
    path = Path(model)
    path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise ModelLoadError(f"`--dry-run` needs a local config.json; {str(path)!r} does not exist.")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    model_type = str(cfg.get("model_type", ""))
    if model_type not in ARCHITECTURES:
        raise ModelLoadError(f"architecture `{model_type}` is not supported; "
                             f"supported: {', '.join(sorted(ARCHITECTURES))}.")
    d_model = _get(cfg, "hidden_size", "n_embd", "d_model")
    default_mlp = 4 * d_model
    d_mlp = _get(cfg, "intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim", default=default_mlp)
    return Shape(
        model_type=model_type, n_layers=_get(cfg, "num_hidden_layers", "n_layer"), d_model=d_model, d_mlp=d_mlp,
        n_heads=(heads := _get(cfg, "num_attention_heads", "n_head")),
        n_kv_heads=_kv_heads(cfg, heads), vocab=_get(cfg, "vocab_size"),
        gated=ARCHITECTURES[model_type].pre_linear is not None,
    )


def _kv_heads(cfg: dict[str, Any], heads: int) -> int:
    if cfg.get("multi_query") and not cfg.get("new_decoder_architecture"):
        return 1  # Falcon-7B style multi-query attention
    return _get(cfg, "num_key_value_heads", "num_kv_heads", default=heads)


def hook_widths(shape: Shape) -> dict[str, int]:
    """Every hook name with its width, as :func:`aura_stream.hookpoints.all_hook_points` would give."""
    out: dict[str, int] = {}
    for i in range(shape.n_layers):
        out[f"blocks.{i}.mlp.hook_pre"] = shape.d_mlp
        if shape.gated:
            out[f"blocks.{i}.mlp.hook_pre_linear"] = shape.d_mlp
        out[f"blocks.{i}.mlp.hook_post"] = shape.d_mlp
        out[f"blocks.{i}.hook_mlp_out"] = shape.d_model
    return out


def n_params(shape: Shape) -> int:
    """Approximate parameter count: tied embeddings + attention (q, o and grouped k, v) + MLP per layer."""
    d = shape.d_model
    attn = 2 * d * d + 2 * d * (shape.n_kv_heads * d // shape.n_heads)
    mlp = (3 if shape.gated else 2) * d * shape.d_mlp
    return shape.vocab * d + shape.n_layers * (attn + mlp)


@dataclass(frozen=True)
class Estimate:
    """What a dry run reports."""

    hooks: dict[str, int]
    n_samples: int
    n_forward: int
    store_bytes: int
    n_files: int
    host_bytes: int
    device_bytes: int
    weight_bytes: int


def estimate(shape: Shape, *, hooks: list[str] | None, n_poolings: int, n_samples: int, batch_size: int,
             max_length: int, dtype: str, store_dtype: str, row_block: int) -> Estimate:
    """Sizes of an extraction.

    ``store_bytes`` = samples x neurons x poolings x bytes per value (no compression).
    ``n_files`` = one shard per (array, row block) + one progress chunk per block + metadata.
    ``host_bytes``: three float32 row blocks (one filling, two queued for the writer).
    ``device_bytes``: weights + one batch's largest MLP tensors and eager attention scores.
    """
    all_widths = hook_widths(shape)
    patterns = hooks or [f"blocks.*.{k}" for k in DEFAULT_HOOK_KINDS if any(n.endswith(k) for n in all_widths)]
    chosen = {n: all_widths[n] for n in match_hooks(patterns, all_widths)}
    neurons = sum(chosen.values())
    n_blocks = math.ceil(n_samples / row_block)
    n_arrays = len(chosen) * n_poolings
    store_bytes = n_samples * neurons * n_poolings * BYTES[store_dtype]
    # data + meta, progress, labels/ids, groups
    n_files = n_arrays * (n_blocks + 1) + n_blocks + 1 + 2 * 2 + 1 + n_poolings + 1
    host = 3 * row_block * neurons * n_poolings * 4
    weight_bytes = n_params(shape) * BYTES[dtype]
    tokens = batch_size * max_length
    act = tokens * (3 * shape.d_mlp + 4 * shape.d_model) * BYTES[dtype]
    attn = batch_size * shape.n_heads * max_length**2 * BYTES[dtype]
    return Estimate(chosen, n_samples, math.ceil(n_samples / batch_size) + 1, store_bytes, n_files, host,
                    weight_bytes + act + attn, weight_bytes)


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError


def block_params(shape: Shape) -> int:
    """Parameters of one decoder block (attention and MLP; norms are negligible)."""
    d = shape.d_model
    attn = 2 * d * d + 2 * d * (shape.n_kv_heads * d // shape.n_heads)
    return attn + (3 if shape.gated else 2) * d * shape.d_mlp


def modes_lines(shape: Shape, est: Estimate, *, n_poolings: int, batch_size: int, max_length: int,
                row_block: int, dtype: str, budget: int | None, stream_weights: bool) -> list[str]:
    """Peak memory, bytes read and passes of the in-memory and the streamed run, and which one fits."""
    from aura_stream.extract_streamed import RUNTIME_BYTES, default_budget, plan

    size = BYTES[dtype]
    source = "--max-memory" if budget is not None else "free now, cgroup included; set it with --max-memory"
    budget = default_budget() if budget is None else budget
    last = max(int(n.split(".")[1]) for n in est.hooks)
    block = block_params(shape) * size
    resident = shape.vocab * shape.d_model * size
    layer_neurons = max(sum(w for n, w in est.hooks.items() if int(n.split(".")[1]) == i) for i in range(last + 1))
    sp = plan(budget=budget, resident=resident, block_compute=block, block_disk=block,
              weights_read=resident + (last + 1) * block, d_model=shape.d_model, d_mlp=shape.d_mlp,
              n_heads=shape.n_heads, batch_size=batch_size, max_length=max_length, row_block=row_block,
              layer_neurons=layer_neurons, n_poolings=n_poolings, hidden_tokens=est.n_samples * max_length,
              itemsize=size)
    in_memory_peak = est.weight_bytes + RUNTIME_BYTES + sp.workspace + est.host_bytes
    fits = in_memory_peak <= budget
    thrash = f"up to {_fmt(est.weight_bytes * est.n_forward)} (weights re-read every batch)"
    lines = [
        f"budget     {_fmt(budget)} ({source})",
        f"in memory  peak ~{_fmt(in_memory_peak)}; reads {_fmt(est.weight_bytes) if fits else thrash}; "
        f"{est.n_forward:,} batches; {'fits' if fits else 'DOES NOT FIT: pass --stream-weights'}",
        f"streamed   peak ~{_fmt(sp.peak)} (2 blocks {_fmt(sp.blocks)}, embeddings {_fmt(sp.resident)}, "
        f"hidden {_fmt(sp.hidden_in_memory)} in memory + {_fmt(sp.spilled)} spilled); reads "
        f"{_fmt(sp.weights_read)} of weights in 1 pass over {last + 1} blocks"
        + ("" if sp.fixed <= budget else f"; DOES NOT FIT: needs --max-memory >= {_fmt(sp.fixed)}"),
    ]
    if stream_weights:
        lines.append("mode       --stream-weights")
    return lines


def dry_run(*, model: str | None, hooks: list[str] | None, pooling: list[str], batch_size: int, max_length: int,
            data: str | None, per_class: int | None, dtype: str, store_dtype: str, row_block: int,
            n_shards: int = 1, n_samples: int | None = None, stream_weights: bool = False,
            budget: int | None = None) -> str:
    """The dry-run report as text (CLI ``extract --dry-run``)."""
    from aura_stream.model import demo_model_dir

    shape = read_shape(model or demo_model_dir())
    if n_samples is None:
        if data is not None:
            from aura_stream.data import load_labelled

            n_samples = len(load_labelled(data, per_class=per_class))
        elif per_class is not None:
            n_samples = 2 * per_class
        else:
            raise InputError("`--dry-run` needs the number of samples: pass `--data` or `--per-class`.")
    est = estimate(shape, hooks=hooks, n_poolings=len(pooling), n_samples=n_samples, batch_size=batch_size,
                   max_length=max_length, dtype=dtype, store_dtype=store_dtype, row_block=row_block)
    kinds: dict[str, list[int]] = {}
    for name, width in est.hooks.items():
        kinds.setdefault(name.split(".", 2)[2], []).append(width)
    lines = [f"model      {shape.model_type}: {shape.n_layers} layers, d_model {shape.d_model}, d_mlp {shape.d_mlp}, "
             f"~{n_params(shape) / 1e9:.2f}B parameters ({_fmt(est.weight_bytes)} in {dtype})"]
    lines += [f"hooks      {len(v)} x {k} of width {v[0]}" for k, v in kinds.items()]
    neurons = sum(est.hooks.values())
    lines += [
        f"neurons    {neurons:,} per pooling, {len(pooling)} pooling(s)",
        f"samples    {est.n_samples:,} in {math.ceil(est.n_samples / row_block)} row blocks of {row_block}"
        + (f", {n_shards} shards" if n_shards > 1 else ""),
        f"store      {_fmt(est.store_bytes)} ({est.store_bytes:,} bytes, {store_dtype}) in about {est.n_files:,} files",
        f"host RAM   {_fmt(est.host_bytes)} for row-block buffers (lower --row-block to shrink), "
        "plus the model if on CPU",
        f"device     {_fmt(est.device_bytes)} (weights + batch {batch_size} x {max_length} tokens)",
        f"forwards   {est.n_forward:,} passes of batch {batch_size} ({est.n_forward - 1} + 1 probe)",
    ]
    lines += modes_lines(shape, est, n_poolings=len(pooling), batch_size=batch_size, max_length=max_length,
                         row_block=row_block, dtype=dtype, budget=budget, stream_weights=stream_weights)
    return "\n".join(lines)
