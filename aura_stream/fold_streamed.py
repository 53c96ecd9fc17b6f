"""``fold --stream-weights``: fold an intervention into a checkpoint shard by shard.

:func:`aura_stream.fold.fold` scales the MLP weights of a model held in memory and saves it, so it
needs the whole model in RAM (and a little more). :func:`fold_streamed` never loads the model:

1. the model is built from its ``config.json`` on the meta device (no weights), which gives the hook
   points, their widths and the module types; :func:`aura_stream.fold.plan_fold` says which
   Linear's weight (and bias) is scaled along which axis (GPT-2's ``Conv1D`` stores ``[in, out]``);
2. each safetensors shard is read (:class:`aura_stream.checkpoint.Checkpoint`, without the page
   cache), the tensors a fold step names are scaled (and a transport's bias shifted) exactly as
   :func:`aura_stream.fold.apply_fold` does it (float32 arithmetic, stored in the tensor's dtype; an
   input-side shift ``W @ beta`` reads its weight on its own first), checked finite, and the shard is
   written under its own file name; then it is freed before the next one is read. A shard that
   holds no tensor to scale is copied byte for byte.

Memory is about one shard. The index (same keys in the same files), ``config.json``, the tokenizer
and every other non-weight file are copied unchanged; the output tensors are identical to those of
the in-memory ``fold`` (tested for every supported architecture). Everything is written into a
hidden sibling directory renamed into place at the end, so ``out_dir`` never holds half a
checkpoint. Tied embeddings are never touched: only MLP weights change.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn

from aura_stream._version import __version__
from aura_stream.backends.hf import resolve_intervention
from aura_stream.checkpoint import DTYPES as CKPT_DTYPES
from aura_stream.checkpoint import Checkpoint
from aura_stream.errors import AuraStreamError, InputError, InterventionError, ModelLoadError, NumericalError
from aura_stream.fold import FOLD_FORMAT, PROVENANCE_FILE, FoldStep, check_out_dir, folded_steps, input_shift, plan_fold
from aura_stream.interventions import Intervention
from aura_stream.model import check_not_folded

FLOAT_CODES = ("F64", "F32", "F16", "BF16")
# other weight formats beside the safetensors: copying them would ship the unfolded weights
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx",
                   ".npz", ".pkl")


@dataclass(frozen=True)
class TensorScale:
    """One fold step on checkpoint tensor ``key``: scale along ``dim`` by ``alpha``, then add ``add``.

    A weight is only scaled; a bias may be scaled and shifted (``omega * b + beta``, the output side of
    a transport) or only shifted (``b + W beta``, the input side: ``alpha`` is None).
    """

    key: str
    dim: int
    alpha: np.ndarray | None  # [d_hook], float32
    add: np.ndarray | None = None  # a bias shift, float32


def build_skeleton(model_dir: Path) -> nn.Module:
    """The model of ``model_dir/config.json`` on the meta device: shapes and module types, no weights.

    Raises
    ------
    ModelLoadError
        No readable ``config.json``, or an architecture ``transformers`` does not know.
    """
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_dir)
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelLoadError(f"cannot build model {str(model_dir)!r} from its config.json: {type(exc).__name__}: "
                             f"{first}. `--model` must be a complete Hugging Face model directory.") from exc
    return model.eval()  # type: ignore[no-any-return]


def _renames(model: nn.Module, checkpoint: Checkpoint) -> dict[str, str]:
    """Renamed key -> file key, by the pure renames ``from_pretrained`` applies (e.g. NeoX's ``embed_out``)."""
    import re

    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming

    aliases: dict[str, str] = {}
    for transform in get_model_conversion_mapping(model):  # type: ignore[arg-type]
        sources, targets = list(transform.source_patterns), list(transform.target_patterns)
        if not isinstance(transform, WeightRenaming) or len(targets) != 1:
            continue  # a key converted otherwise is not found below, and refused by name
        for k in checkpoint.entries:
            if any(re.search(s, k) for s in sources):
                new = k
                for s in sources:
                    new = re.sub(s, targets[0], new)
                aliases[new] = k
    return aliases


def plan_tensors(model: nn.Module, checkpoint: Checkpoint, steps: list[FoldStep]) -> dict[str, list[TensorScale]]:
    """The checkpoint tensors each fold step scales, grouped by shard file name, in step order.

    Parameters
    ----------
    model : nn.Module
        The meta skeleton the steps were planned on.
    checkpoint : Checkpoint
    steps : list of FoldStep

    Returns
    -------
    dict of str to list of TensorScale
        Shard file name -> scalings of its tensors (a tensor scaled twice is listed twice, in order).

    Raises
    ------
    ModelLoadError
        A tensor the steps need that the checkpoint lacks, or holds with another shape or a
        non-float dtype (quantized).
    """
    # (tensor name, dim, alpha, add, shape, shift); shift = (weight name, beta, conv1d) of an input-side
    # offset, whose add W @ beta is computed below, once the keys are resolved
    Shift = tuple[str, np.ndarray, bool]
    wanted: list[tuple[str, int, np.ndarray | None, np.ndarray | None, tuple[int, ...], Shift | None]] = []
    for step in steps:
        module = model.get_submodule(step.module_path)
        weight = module.weight
        assert isinstance(weight, torch.Tensor)  # checked by plan_fold
        conv1d = type(module).__name__ == "Conv1D"
        out_dim = 1 if conv1d else 0  # Conv1D's weight is [in, out]
        dim = out_dim if step.axis == "out" else 1 - out_dim
        bias = getattr(module, "bias", None)
        if step.axis == "in" and step.beta is not None:  # W (omega z + beta) + b: the bias first, from this W
            assert isinstance(bias, torch.Tensor)  # checked by plan_fold
            wanted.append((f"{step.module_path}.bias", 0, None, None, tuple(bias.shape),
                           (f"{step.module_path}.weight", step.beta, conv1d)))
        wanted.append((f"{step.module_path}.weight", dim, step.alpha, None, tuple(weight.shape), None))
        if step.axis == "out" and isinstance(bias, torch.Tensor):  # omega (W z + b) + beta
            wanted.append((f"{step.module_path}.bias", 0, step.alpha, step.beta, tuple(bias.shape), None))
    names = list(dict.fromkeys(n for n, *_ in wanted))
    keys, missing = checkpoint.resolve(names, str(getattr(model, "base_model_prefix", "")),
                                       _renames(model, checkpoint))
    if missing:
        raise ModelLoadError(f"the checkpoint in {str(checkpoint.directory)!r} must hold every MLP tensor its "
                             f"config.json names; it lacks {len(missing)} (e.g. {missing[0]!r}). Download the "
                             "complete checkpoint, or save it again with transformers' save_pretrained.")
    for name, *_, shape, _shift in wanted:
        key = keys[name]
        entry = checkpoint.entries[key]
        if entry.shape != shape:
            raise ModelLoadError(f"tensor {key!r} must have the shape config.json gives it, {list(shape)}; got "
                                 f"{list(entry.shape)} in {entry.file.name}. The checkpoint does not match its "
                                 "config.")
        if entry.dtype not in FLOAT_CODES:
            raise InterventionError(f"every hook must fold into a float Linear; {key!r} is {entry.dtype} "
                                    "(quantized?). Fold the unquantized checkpoint, or use `generate` (hooks).")
    ops: list[TensorScale] = []  # in step order: an input-side shift sees the weight as the steps before it left it
    for name, dim, alpha, add, _shape, shift in wanted:
        if shift is not None:
            add = _input_shift(checkpoint, keys[shift[0]], shift[1], shift[2], ops)
        ops.append(TensorScale(keys[name], dim, alpha, add))
    by_file: dict[str, list[TensorScale]] = {}
    for op in ops:
        by_file.setdefault(checkpoint.entries[op.key].file.name, []).append(op)
    return by_file


@torch.no_grad()
def _input_shift(checkpoint: Checkpoint, key: str, beta: np.ndarray, conv1d: bool,
                 earlier: list[TensorScale]) -> np.ndarray:
    """``W @ beta`` (Conv1D: ``beta @ W``) for weight ``key`` as the in-memory fold sees it at this step.

    The weight is read alone (it may lie in another shard than its bias), the steps before this one
    that scale it are applied first, and the arithmetic is :func:`aura_stream.fold.apply_fold`'s, so
    the shifted bias is bit-equal to the in-memory fold's.
    """
    tensors = checkpoint.read([key])
    scale_tensors(tensors, [op for op in earlier if op.key == key], check=False)
    return input_shift(tensors.pop(key), beta, conv1d=conv1d).numpy()


@torch.no_grad()
def scale_tensors(tensors: dict[str, torch.Tensor], scales: list[TensorScale], *, check: bool = True) -> None:
    """Apply ``scales`` to ``tensors`` in the dict, as :func:`aura_stream.fold.apply_fold` does (float32
    arithmetic, scale then shift, stored in the tensor's dtype).

    Raises
    ------
    NumericalError
        ``check`` and a changed tensor holds NaN or inf (nothing of the checkpoint is kept).
    """
    for s in scales:
        tensor = tensors[s.key]
        shape = (-1,) if tensor.dim() == 1 else ((-1, 1) if s.dim == 0 else (1, -1))
        work = tensor.float()  # the buffer itself when float32: it is ours, freshly read
        if s.alpha is not None:
            work.mul_(torch.from_numpy(s.alpha).view(shape))
        if s.add is not None:
            work.add_(torch.from_numpy(s.add))
        tensors[s.key] = work.to(tensor.dtype)
        del tensor, work
    if not check:
        return
    bad = [s.key for s in scales if not bool(torch.isfinite(tensors[s.key]).all())]
    if bad:
        raise NumericalError(f"folded weights must be finite; {', '.join(sorted(set(bad))[:5])} hold NaN or inf. "
                             "The checkpoint was not written: check the model's weights and the alphas.")


def _skipped(path: Path) -> bool:
    """Files not copied: hidden ones, other weight formats and their indexes, an old fold record."""
    name = path.name
    return (name.startswith(".") or name.endswith(WEIGHT_SUFFIXES) or name == PROVENANCE_FILE
            or (name.endswith(".index.json") and not name.endswith(".safetensors.index.json")))


def _copy_other_files(src: Path, dst: Path, shards: set[str]) -> list[str]:
    """Copy everything but the weight shards (written by the caller); return what was left out."""
    left_out: list[str] = []
    for path in sorted(src.iterdir()):
        if path.name in shards:
            continue
        if _skipped(path):
            left_out.append(path.name)
        elif path.is_dir():
            shutil.copytree(path, dst / path.name,
                            ignore=lambda _d, names: [n for n in names if _skipped(Path(n))])
        elif path.is_file():
            shutil.copy2(path, dst / path.name)
    return left_out


def fold_streamed(
    model_dir: str | Path,
    intervention: Intervention,
    out_dir: str | Path,
    *,
    strength: float | None = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Fold ``intervention`` into the checkpoint of ``model_dir`` one shard at a time.

    The result equals :func:`aura_stream.fold.fold`'s tensor for tensor; the model is never loaded,
    so memory is about one shard (plus a float32 copy of its largest half-precision tensor).

    Parameters
    ----------
    model_dir : path
        Local Hugging Face model directory with safetensors weights (one file, or shards and
        ``model.safetensors.index.json``).
    intervention : Intervention
        Alphas of shape ``[d_hook]`` per hook; must match the model's hooks and widths.
    out_dir : path
        New or empty directory. Written into a temporary sibling and renamed, so it never
        holds half a checkpoint.
    strength : float in [0, 1], optional
        Fold ``1 - strength * (1 - alpha)`` instead of alpha.
    config : mapping, optional
        Resolved options, recorded in the provenance file.
    progress : bool
        Show a tqdm bar over the shards.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        ``out_dir`` is a file or a non-empty directory, ``strength`` is outside [0, 1], or the
        checkpoint cannot be written.
    ModelLoadError
        ``model_dir`` is not a local directory, holds pickle weights only, misses a shard, or its
        tensors do not match its config.
    InterventionError
        The intervention does not match the model, a hook cannot be folded, or ``model_dir``
        already holds a folded intervention.
    NumericalError
        A folded tensor is not finite (nothing is written).
    """
    from tqdm.auto import tqdm

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_out_dir(out_dir)
    checkpoint = Checkpoint.open(model_dir)  # not a directory, pickle-only, a missing shard: refused here
    check_not_folded(str(model_dir), "`fold`")
    model = build_skeleton(model_dir)
    intervention, points = resolve_intervention(model, intervention, strength=strength)
    steps = plan_fold(model, intervention, points, skeleton=True)
    scales = plan_tensors(model, checkpoint, steps)
    del model
    dtypes = sorted({str(CKPT_DTYPES[checkpoint.entries[s.key].dtype]).removeprefix("torch.")
                     for group in scales.values() for s in group})
    provenance = {
        "format": FOLD_FORMAT,
        "source_model": str(model_dir),
        "source_revision": None,
        "dtype": ",".join(dtypes),
        "intervention_fingerprint": intervention.fingerprint,
        "method": intervention.metadata.get("method"),
        "strength": strength,
        "intervention_metadata": intervention.metadata,
        "folded": folded_steps(steps),
        "config": dict(config or {}),
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "streamed": True,
    }
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        from safetensors.torch import save_file

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        shard_names = {f.name for f in checkpoint.files}
        provenance["not_copied"] = _copy_other_files(model_dir, tmp, shard_names)
        for path in tqdm(checkpoint.files, unit="shard", desc="fold", disable=not progress,
                         dynamic_ncols=True):
            if path.name not in scales:  # no MLP tensor here (embeddings, ...): the same bytes
                shutil.copyfile(path, tmp / path.name)
                continue
            keys = [k for k, e in checkpoint.entries.items() if e.file == path]
            tensors = checkpoint.read(keys)
            scale_tensors(tensors, scales.get(path.name, []))
            save_file(tensors, str(tmp / path.name), metadata={"format": "pt"})
            del tensors  # before the next shard is read: one shard in memory at a time
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str) + "\n",
                                           encoding="utf-8")
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); Windows cannot rename onto a directory
        os.replace(tmp, out_dir)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as SafetensorError
        if isinstance(exc, AuraStreamError):  # ModelLoadError (an OSError): a shard that shrank while read
            raise
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"cannot write the checkpoint to {str(out_dir)!r}: {reason}. "
                         "Choose a writable `--out` with room for the weights.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
