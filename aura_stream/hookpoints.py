"""TransformerLens hook names, resolved to the Hugging Face modules they denote.

aura-stream speaks TransformerLens' vocabulary (``blocks.3.mlp.hook_pre``) everywhere — in the
store, the intervention file, configs and the CLI — but registers its hooks directly on the
Hugging Face modules, so that ``transformers``' own forward pass and ``generate`` (with KV cache)
do the work and no second model wrapper exists.  ``tests/test_hookpoints.py`` checks that these
hooks see the same tensors as TransformerLens' ``TransformerBridge`` hooks of the same name.

=================================  =================  ====================  ==================
hook name                          GPT-2              Llama-style (gated)   Falcon / GPT-NeoX
=================================  =================  ====================  ==================
``blocks.{i}.mlp.hook_pre``        ``c_fc`` out       ``gate_proj`` out     ``dense_h_to_4h``
``blocks.{i}.mlp.hook_pre_linear`` --                 ``up_proj`` out       --
``blocks.{i}.mlp.hook_post``       ``act`` out        ``down_proj`` input   ``act`` out
``blocks.{i}.hook_mlp_out``        ``c_proj`` out     ``down_proj`` out     ``dense_4h_to_h``
=================================  =================  ====================  ==================
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from aura_stream.errors import HookError, ModelLoadError

HookSite = Literal["output", "input"]
HOOK_KINDS = ("mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post", "hook_mlp_out")
DEFAULT_HOOK_KINDS = ("mlp.hook_pre", "mlp.hook_pre_linear", "hook_mlp_out")


@dataclass(frozen=True)
class ArchSpec:
    """Where one architecture family keeps its blocks and MLP Linear layers.

    Module paths are relative to a block; ``post`` is ``(path, site)``: the output of an
    activation module, or the input of the down projection for gated MLPs.
    """

    blocks: str
    pre: str
    pre_linear: str | None
    post: tuple[str, HookSite]
    mlp_out: str


_GPT2 = ArchSpec("transformer.h", "mlp.c_fc", None, ("mlp.act", "output"), "mlp.c_proj")
_GATED = ArchSpec(
    "model.layers", "mlp.gate_proj", "mlp.up_proj", ("mlp.down_proj", "input"), "mlp.down_proj"
)
_FALCON = ArchSpec(
    "transformer.h", "mlp.dense_h_to_4h", None, ("mlp.act", "output"), "mlp.dense_4h_to_h"
)
_NEOX = ArchSpec(
    "gpt_neox.layers", "mlp.dense_h_to_4h", None, ("mlp.act", "output"), "mlp.dense_4h_to_h"
)
_OPT = ArchSpec(
    "model.decoder.layers", "fc1", None, ("fc2", "input"), "fc2"
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "gpt2": _GPT2,
    "llama": _GATED,
    "mistral": _GATED,
    "qwen2": _GATED,
    "qwen3": _GATED,
    "gemma": _GATED,
    "gemma2": _GATED,
    "olmo": _GATED,
    "falcon": _FALCON,
    "gpt_neox": _NEOX,
    "opt": _OPT,
}


@dataclass(frozen=True)
class HookPoint:
    """One resolved hook: its TransformerLens name and the Hugging Face module behind it.

    Attributes
    ----------
    name : str
        TransformerLens hook name, e.g. ``blocks.3.mlp.hook_pre``.
    layer : int
        Block index.
    module_path : str
        Dotted path of the Hugging Face module (``transformer.h.3.mlp.c_fc``).
    site : {"output", "input"}
        Whether the hook sees the module's output or its (first) input.
    width : int
        Number of neurons, the last dimension of the hooked tensor.
    """

    name: str
    layer: int
    module_path: str
    site: HookSite
    width: int


def model_type(model: nn.Module) -> str:
    """Return the Hugging Face ``config.model_type`` of ``model``."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", type(model).__name__))


def arch_spec(model_type_name: str) -> ArchSpec:
    """Return the :class:`ArchSpec` of a model type, or raise a clear error listing the supported."""
    spec = ARCHITECTURES.get(model_type_name)
    if spec is None:
        raise ModelLoadError(
            f"architecture `{model_type_name}` is not supported; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}. Open an issue with the model's config.json."
        )
    return spec


def _width_of(module: nn.Module, site: HookSite) -> int:
    module = getattr(module, "original_component", None) or module  # a TransformerLens bridge wraps it in place
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ModelLoadError(f"module {type(module).__name__} has no weight to read a width from")
    if type(module).__name__ == "Conv1D":  # GPT-2 stores weights as [in, out]
        return int(weight.shape[0] if site == "input" else weight.shape[1])
    return int(weight.shape[1] if site == "input" else weight.shape[0])


def all_hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Every MLP hook point of ``model``, in forward order.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal LM of a supported architecture.

    Returns
    -------
    dict of str to HookPoint
        Keyed by TransformerLens hook name.
    """
    spec = arch_spec(model_type(model))
    blocks = model.get_submodule(spec.blocks)
    points: dict[str, HookPoint] = {}
    for i in range(len(blocks)):  # type: ignore[arg-type]
        prefix = f"{spec.blocks}.{i}"
        pre = model.get_submodule(f"{prefix}.{spec.pre}")
        d_mlp = _width_of(pre, "output")
        entries: list[tuple[str, str, HookSite, int]] = [
            (f"blocks.{i}.mlp.hook_pre", spec.pre, "output", d_mlp)
        ]
        if spec.pre_linear is not None:
            up = model.get_submodule(f"{prefix}.{spec.pre_linear}")
            entries.append(
                (f"blocks.{i}.mlp.hook_pre_linear", spec.pre_linear, "output",
                 _width_of(up, "output"))
            )
        post_path, post_site = spec.post
        entries.append((f"blocks.{i}.mlp.hook_post", post_path, post_site, d_mlp))
        down = model.get_submodule(f"{prefix}.{spec.mlp_out}")
        entries.append((f"blocks.{i}.hook_mlp_out", spec.mlp_out, "output",
                        _width_of(down, "output")))
        for name, rel, site, width in entries:
            points[name] = HookPoint(name, i, f"{prefix}.{rel}", site, width)
    return points


def block_module_path(model: nn.Module, layer: int) -> str:
    """Dotted path of block ``layer`` (used to stop the forward pass after the last hook)."""
    return f"{arch_spec(model_type(model)).blocks}.{layer}"


def match_hooks(patterns: Sequence[str], available: Iterable[str]) -> list[str]:
    """Expand glob ``patterns`` over hook names, keeping forward order and dropping repeats.

    Parameters
    ----------
    patterns : sequence of str
        Globs over TransformerLens hook names, e.g. ``blocks.*.mlp.hook_pre``.
    available : iterable of str
        The hook names that exist, in forward order.

    Returns
    -------
    list of str
        The matched names in the order of ``available``.

    Raises
    ------
    HookError
        If any pattern matches nothing; the message lists every failed pattern and the names.

    Examples
    --------
    >>> match_hooks(["blocks.1.*"], ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"])
    ['blocks.1.hook_mlp_out']
    """
    names = list(available)
    if not patterns:
        raise HookError("`--hooks` must name at least one hook pattern; got none.")
    failed = [p for p in patterns if not fnmatch.filter(names, p)]
    if failed:
        raise HookError(
            f"hook pattern(s) {', '.join(repr(p) for p in failed)} match nothing; available: "
            f"{_summarise(names)}. Run `aura-stream hooks --model ...` to list them."
        )
    chosen = {n for p in patterns for n in fnmatch.filter(names, p)}
    return [n for n in names if n in chosen]


def default_patterns(available: Iterable[str]) -> list[str]:
    """The paper's default: every MLP Linear output that the model has."""
    names = set(available)
    kinds = [k for k in DEFAULT_HOOK_KINDS if any(n.endswith("." + k) for n in names)]
    return [f"blocks.*.{k}" for k in kinds]


def _summarise(names: list[str]) -> str:
    """Name list compressed by kind, e.g. ``blocks.{0..11}.mlp.hook_pre``."""
    by_kind: dict[str, list[int]] = {}
    for n in names:
        _, layer, kind = n.split(".", 2)
        by_kind.setdefault(kind, []).append(int(layer))
    return ", ".join(
        f"blocks.{{{min(v)}..{max(v)}}}.{k}" if len(v) > 1 else f"blocks.{v[0]}.{k}"
        for k, v in by_kind.items()
    )
