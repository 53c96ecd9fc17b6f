"""Fold an intervention into the weights: a standard Hugging Face checkpoint, zero overhead.

Scaling a Linear layer's outputs by ``alpha`` equals scaling its weight rows and bias by
``alpha``; scaling its inputs equals scaling its weight columns.  Per hook kind:

=================================  ==============================================================
hook kind                          folded into
=================================  ==============================================================
``mlp.hook_pre``                   output rows + bias of the up projection (``c_fc``, ``gate_proj``)
``mlp.hook_pre_linear``            output rows + bias of ``up_proj``
``mlp.hook_post``                  input columns of the down projection (``c_proj``, ``down_proj``)
``hook_mlp_out``                   output rows + bias of the down projection
=================================  ==============================================================

GPT-2's ``Conv1D`` stores its weight as ``[in, out]``: rows and columns swap there.  Only MLP
weights change; embeddings (tied or not) are never touched.
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
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn

from aura_stream._version import __version__
from aura_stream.backends.hf import resolve_intervention
from aura_stream.dampening import DAMPENERS, hook_kind, multiply
from aura_stream.errors import InputError, InterventionError, NumericalError
from aura_stream.hookpoints import HookPoint, arch_spec, block_module_path, model_type
from aura_stream.interventions import Intervention
from aura_stream.model import FOLD_RECORD, FOLDED_ATTR, LoadedModel

PROVENANCE_FILE = FOLD_RECORD
FOLD_FORMAT = "aura-stream-fold/1"
Axis = Literal["out", "in"]


@dataclass(frozen=True)
class FoldStep:
    """Scale one Linear's output features (rows + bias) or input features (columns) by ``alpha``."""

    hook_name: str
    module_path: str
    axis: Axis
    alpha: np.ndarray  # [d_hook], float32
    beta: np.ndarray | None = None  # [d_hook]: a transport's offset, added through the Linear's bias


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D, weight [in, out]


def _linear_like(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    linear = isinstance(module, nn.Linear) or _is_conv1d(module)
    return linear and isinstance(weight, torch.Tensor) and weight.dim() == 2


def plan_fold(
    model: nn.Module, intervention: Intervention, points: list[HookPoint], *, skeleton: bool = False
) -> list[FoldStep]:
    """Where each hook's alphas go: the Linear to scale and along which axis.

    An ``output`` hook on a Linear scales its rows; an ``input`` hook scales the hooked
    Linear's columns; the output of an activation module (GPT-2's ``mlp.act``, ``hook_post``)
    scales the columns of the block's down projection, found through the architecture spec.

    ``skeleton=True`` plans on a model built on the meta device (``fold --stream-weights``, which
    scales the tensors in the checkpoint's files); otherwise a meta weight is offloaded, refused.

    Raises
    ------
    InterventionError
        A hook whose dampening is not a multiplication, or whose module is not a float Linear.
    """
    if intervention.bounds:
        raise InterventionError(
            "a source-range transport must not be folded: it maps each activation only inside the toxic range "
            "[lo, hi], which no weight can express. Use `generate`/`eval` (hooks), or score with --support all.")
    spec = arch_spec(model_type(model))
    steps: list[FoldStep] = []
    problems: list[str] = []
    for p in points:
        axis: Axis
        if DAMPENERS[hook_kind(p.name)] is not multiply:
            problems.append(f"{p.name} (its dampening is not a multiplication)")
            continue
        module = model.get_submodule(p.module_path)
        if p.site == "input":
            path, axis = p.module_path, "in"
        elif _linear_like(module):
            path, axis = p.module_path, "out"
        elif hook_kind(p.name) == "mlp.hook_post":
            path, axis = f"{block_module_path(model, p.layer)}.{spec.mlp_out}", "in"
        else:
            problems.append(f"{p.name} ({type(module).__name__} is not a Linear)")
            continue
        target = model.get_submodule(path)
        weight = getattr(target, "weight", None)
        if not _linear_like(target) or weight is None or not weight.is_floating_point():
            problems.append(f"{p.name} ({path} is not a float Linear; quantized?)")
        elif weight.device.type == "meta" and not skeleton:
            problems.append(f"{p.name} ({path} is offloaded to disk)")
        else:
            alpha = np.asarray(intervention.alphas[p.name], dtype=np.float32)
            beta = intervention.betas.get(p.name)
            beta = None if beta is None or not np.any(beta) else np.asarray(beta, dtype=np.float32)
            if beta is not None and not isinstance(getattr(target, "bias", None), torch.Tensor):
                problems.append(f"{p.name} (a transport offset beta needs a bias, and {path} has none)")
                continue
            steps.append(FoldStep(p.name, path, axis, alpha, beta))
    if problems:
        raise InterventionError(
            f"every hook must fold into a float Linear held in memory; cannot fold "
            f"{', '.join(problems[:5])}. Use `generate` (hooks) instead, or load without offload."
        )
    return steps


@torch.no_grad()
def input_shift(weight: torch.Tensor, beta: np.ndarray, *, conv1d: bool) -> torch.Tensor:
    """``W @ beta`` (GPT-2's Conv1D, weight ``[in, out]``: ``beta @ W``) in float64, returned as float32.

    The weight is copied into a fresh buffer first, so the result depends on its values only, not on
    where they lie in memory (a matrix-vector product's rounding can follow the buffer's alignment):
    ``fold`` and ``fold --stream-weights`` get the same bits.
    """
    w = weight.detach().to(device="cpu", dtype=torch.float64, copy=True)
    b = torch.from_numpy(np.asarray(beta, dtype=np.float64).copy())
    return (b @ w if conv1d else w @ b).to(torch.float32)


@torch.no_grad()
def apply_fold(model: nn.Module, steps: list[FoldStep]) -> None:
    """Scale the weights in place (computed in float32, stored in the weight's dtype)."""
    for step in steps:
        module = model.get_submodule(step.module_path)
        weight = module.weight
        assert isinstance(weight, torch.Tensor)  # checked by plan_fold
        # Linear weight is [out, in]; Conv1D's is [in, out]
        out_dim = 1 if _is_conv1d(module) else 0
        dim = out_dim if step.axis == "out" else 1 - out_dim
        alpha = torch.from_numpy(step.alpha).to(weight.device)
        shape = (-1, 1) if dim == 0 else (1, -1)
        bias = getattr(module, "bias", None)
        if step.axis == "in" and step.beta is not None:  # W (omega z + beta) + b = (W omega) z + (b + W beta)
            assert isinstance(bias, torch.Tensor)  # checked by plan_fold
            shift = input_shift(weight, step.beta, conv1d=_is_conv1d(module))
            bias.copy_((bias.float() + shift.to(bias.device)).to(bias.dtype))
        weight.copy_((weight.float() * alpha.view(shape)).to(weight.dtype))
        if step.axis == "out" and isinstance(bias, torch.Tensor):
            new = bias.float() * alpha
            if step.beta is not None:  # omega (W z + b) + beta
                new = new + torch.from_numpy(step.beta).to(weight.device)
            bias.copy_(new.to(bias.dtype))


def folded_steps(steps: list[FoldStep]) -> list[dict[str, Any]]:
    """The provenance record's ``folded`` list: per step, what was scaled and how the bias was shifted."""
    return [
        {"hook": s.hook_name, "module": s.module_path,
         "scaled": "output rows and bias" if s.axis == "out" else "input columns",
         "shifted": None if s.beta is None else ("bias + beta" if s.axis == "out" else "bias + W beta"),
         "n_dampened": int((s.alpha < 1).sum())}
        for s in steps
    ]


def check_folded_finite(model: nn.Module, steps: list[FoldStep]) -> None:
    """Every scaled weight and bias is finite (else nothing is written)."""
    bad = []
    for step in steps:
        module = model.get_submodule(step.module_path)
        for kind in ("weight", "bias"):
            tensor = getattr(module, kind, None)
            if isinstance(tensor, torch.Tensor) and not bool(torch.isfinite(tensor).all()):
                bad.append(f"{step.module_path}.{kind}")
    if bad:
        raise NumericalError(f"folded weights must be finite; {', '.join(bad[:5])} hold NaN or inf. "
                             "The checkpoint was not written: check the model's weights and the alphas.")


def check_out_dir(out_dir: Path) -> None:
    """``out_dir`` must not exist, or be an empty directory."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"`--out` must be a directory; {str(out_dir)!r} is a file. "
                         "Choose another --out.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        n = sum(1 for _ in out_dir.iterdir())
        raise InputError(f"`--out` must be a new or empty directory; {str(out_dir)!r} holds {n} "
                         "entries. Choose another --out or remove it.")


def fold(
    loaded: LoadedModel,
    intervention: Intervention,
    out_dir: str | Path,
    *,
    strength: float | None = None,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a Hugging Face checkpoint whose MLP weights hold the intervention's alphas.

    The checkpoint (weights, config, generation config, tokenizer) loads anywhere with
    ``AutoModelForCausalLM.from_pretrained(out_dir)`` and computes what the hooked model
    computes; ``aura_stream_fold.json`` records the source model and the intervention.

    The weights of ``loaded.model`` are changed **in place** (no copy, so a 40B model folds in
    its own memory); the model is then marked, and :func:`~aura_stream.generate.dampened`
    refuses it. Reload it to use the unmodified model.

    Parameters
    ----------
    loaded : LoadedModel
    intervention : Intervention
        Alphas of shape ``[d_hook]`` per hook; must match the model's hooks and widths.
    out_dir : path
        New or empty directory. Written into a temporary sibling and renamed, so it never
        holds half a checkpoint.
    strength : float in [0, 1], optional
        Fold ``1 - strength * (1 - alpha)`` instead of alpha.
    config : mapping, optional
        Resolved options, recorded in the provenance file.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    InputError
        ``out_dir`` is a file or a non-empty directory, or ``strength`` is outside [0, 1].
    InterventionError
        The intervention does not match the model, or a hook cannot be folded.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    model = loaded.model
    intervention, points = resolve_intervention(model, intervention, strength=strength)
    steps = plan_fold(model, intervention, points)
    # before the first weight changes
    setattr(model, FOLDED_ATTR, f"intervention {intervention.fingerprint[:12]} "
                                f"({intervention.metadata.get('method')}), folded in place by `fold`")
    apply_fold(model, steps)
    check_folded_finite(model, steps)
    provenance = {
        "format": FOLD_FORMAT,
        "source_model": loaded.model_id,
        "source_revision": loaded.revision,
        "dtype": loaded.dtype,
        "intervention_fingerprint": intervention.fingerprint,
        "method": intervention.metadata.get("method"),
        "strength": strength,
        "intervention_metadata": intervention.metadata,
        "folded": folded_steps(steps),
        "config": dict(config or {}),
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, default=str) + "\n",
                                           encoding="utf-8")
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); Windows cannot rename onto a directory
        os.replace(tmp, out_dir)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as SafetensorError
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"cannot write the checkpoint to {str(out_dir)!r}: {reason}. "
                         "Choose a writable `--out` with room for the weights.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
