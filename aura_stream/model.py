"""Loading Hugging Face causal LMs and attaching hooks to them by TransformerLens name."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from aura_stream.errors import HookError, InputError, InterventionError, ModelLoadError
from aura_stream.hookpoints import HookPoint, block_module_path
from aura_stream.pooling import Pooling, pool

if TYPE_CHECKING:
    from aura_stream.backends.base import Backend

DType = Literal["auto", "float32", "float16", "bfloat16"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


FOLDED_ATTR = "_aura_stream_folded"  # set on a model whose weights hold a folded intervention
FOLD_RECORD = "aura_stream_fold.json"  # written by `fold` beside the checkpoint's weights


def folded_into(model_dir: str | Path | None) -> str | None:
    """What intervention the checkpoint in ``model_dir`` holds folded in, or None for none.

    Reads the record that ``fold`` writes; an unreadable record still counts as folded (the
    weights were changed by something that meant to write it).
    """
    if model_dir is None:
        return None
    path = Path(model_dir) / FOLD_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        fingerprint, method = record["intervention_fingerprint"], record.get("method")
        source = record.get("source_model")
        if not isinstance(fingerprint, str) or not isinstance(method, (str, type(None))):
            raise TypeError("bad types")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"an intervention (its record {FOLD_RECORD} is unreadable)"
    return f"intervention {fingerprint[:12]} ({method}), folded from {str(source)[:80]!r}"


def check_not_folded(model_dir: str | None, what: str) -> None:
    """Refuse ``what`` (e.g. "`--intervention`") on a checkpoint that already holds a folded one."""
    held = folded_into(model_dir)
    if held is not None:
        raise InterventionError(
            f"`--model` must not already hold a folded intervention for {what}; {model_dir!r} holds "
            f"{held}, so alphas would apply twice. Pass the original model instead."
        )


def demo_model_dir() -> Path:
    """Directory of the demo model shipped inside the package."""
    demo = Path(__file__).parent / "assets" / "demo"
    return demo / "model" if (demo / "model" / "config.json").is_file() else demo


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else must be a torch device here."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"`--device` must be cpu, cuda, cuda:N, mps or auto; got {device!r}.") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"`--device` must be available; got {device!r} but CUDA is not. Use cpu.")
    return device


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """Parse ``0:70GiB,1:70GiB,cpu:200GiB`` into the ``max_memory`` dict of ``from_pretrained``."""
    if not text:
        return None
    out: dict[int | str, str] = {}
    for item in text.split(","):
        key, sep, size = item.strip().partition(":")
        if not sep or not size or not (key.isdigit() or key in ("cpu", "disk")):
            raise InputError(
                f"`--max-memory` must look like 0:70GiB,1:70GiB,cpu:200GiB; got {text!r}."
            )
        out[int(key) if key.isdigit() else key] = size.strip()
    return out


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM, its tokenizer, the backend that runs it and the provenance needed to reproduce them.

    ``model`` is always the Hugging Face model; ``backend`` (:mod:`aura_stream.backends`) says where
    hooks go and which module generates (a TransformerLens bridge wraps ``model`` in place).
    """

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    model_id: str
    revision: str | None
    dtype: str
    backend: Backend

    @property
    def device(self) -> torch.device:
        """Device of the input embeddings (where token ids must go)."""
        return torch.device(self.model.get_input_embeddings().weight.device)


def load_model(
    model_id: str | None,
    *,
    dtype: DType = "auto",
    device: str = "cpu",
    revision: str | None = None,
    device_map: str | None = None,
    max_memory: dict[int | str, str] | None = None,
) -> LoadedModel:
    """Load a Hugging Face causal LM and its tokenizer, from a directory or a hub id.

    Parameters
    ----------
    model_id : str or None
        Local directory or hub id; ``None`` loads the demo model shipped with the package.
    dtype : {"auto", "float32", "float16", "bfloat16"}
        ``auto`` keeps the checkpoint's dtype (float32 when it says nothing).
    device : str
        ``cpu``, ``cuda``, ``cuda:1`` or ``auto``; ignored when ``device_map`` is given.
    device_map, max_memory
        Passed to ``from_pretrained`` to spread a large model over devices.

    Raises
    ------
    ModelLoadError
        One line saying why, e.g. a hub id that cannot be reached offline.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bars say what is happening

    name = str(model_id) if model_id else str(demo_model_dir())
    if model_id is None and not (Path(name) / "config.json").is_file():
        raise ModelLoadError("the demo model is missing from this installation; pass `--model`.")
    if dtype != "auto" and dtype not in DTYPES:
        raise InputError(f"`--dtype` must be auto, float32, float16 or bfloat16; got {dtype!r}.")
    local = Path(name).is_dir()
    if not local and (Path(name).exists() or name.startswith((".", "/", "~"))):
        raise ModelLoadError(f"`--model` must be a model directory or a hub id; {name!r} is not a directory.")
    kwargs: dict[str, Any] = {"revision": revision}
    if dtype != "auto":
        kwargs["dtype"] = DTYPES[dtype]
    if device_map:
        kwargs["device_map"] = device_map
        if max_memory:
            kwargs["max_memory"] = max_memory
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except Exception as exc:  # OSError, ValueError, and safetensors' own error for a truncated file
        if not isinstance(exc, (OSError, ValueError)) and type(exc).__name__ != "SafetensorError":
            raise
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not local
        hint = (
            "no such local directory, and the hub could not provide it (offline?); "
            "download it where there is network and pass its directory"
            if offline and not local
            else f"{type(exc).__name__}: {str(exc).splitlines()[0].rstrip('.') if str(exc) else ''}. `--model` "
            "must be a complete Hugging Face model directory (config.json, weights, tokenizer)"
        )
        if type(exc).__name__ == "SafetensorError":
            hint = (f"a weights file is damaged ({str(exc).splitlines()[0][:120]}); an interrupted download "
                    "leaves a truncated file: download it again")
        raise ModelLoadError(f"cannot load model {name!r}: {hint}.") from exc
    if not device_map:
        model.to(resolve_device(device))  # type: ignore[arg-type]
    model.eval()
    held = folded_into(name) if local else None
    if held is not None:  # generate/fold refuse to dampen it again
        setattr(model, FOLDED_ATTR, held)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    loaded_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    from aura_stream.backends.hf import HFBackend  # the backend module builds on this one

    return LoadedModel(model, tokenizer, name, revision, loaded_dtype, HFBackend(model))


LEARNED_POSITIONS = ("gpt2", "opt", "gpt_neo", "gpt_bigcode", "biogpt")  # a table that ends: IndexError past it


def learned_position_limit(config: Any) -> int | None:
    """Positions of a model with a learned absolute table (GPT-2, OPT, ...); None where none ends.

    Rotary and ALiBi models run past ``max_position_embeddings`` (with care); a learned table
    ends in an IndexError.
    """
    if getattr(config, "model_type", None) not in LEARNED_POSITIONS:
        return None
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return limit if isinstance(limit, int) else None


def check_max_length(model_id: str | None, max_length: int) -> None:
    """``--max-length`` must fit a model with learned absolute positions (read from config.json only)."""
    from transformers import AutoConfig

    name = str(model_id) if model_id else str(demo_model_dir())
    try:
        config = AutoConfig.from_pretrained(name)
    except Exception:  # unreadable config: load_model reports it in its own words
        return
    limit = learned_position_limit(config)
    if limit is not None and max_length > limit:
        raise InputError(f"`--max-length` must be <= {limit}, the positions of this {config.model_type} model; "
                         f"got {max_length}. Pass --max-length {limit}.")


HookFn = Callable[[HookPoint, torch.Tensor], "torch.Tensor | None"]


@contextlib.contextmanager
def attach(model: nn.Module, points: Sequence[HookPoint], fn: HookFn) -> Iterator[None]:
    """Call ``fn(point, tensor)`` at every hook point; a returned tensor replaces the original.

    Hooks are removed on exit, even when the body raises.
    """
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for point in points:
            module = model.get_submodule(point.module_path)
            if point.site == "output":
                def out_hook(_m: nn.Module, _a: Any, out: torch.Tensor, p: HookPoint = point) -> Any:
                    return fn(p, out)

                handles.append(module.register_forward_hook(out_hook))
            else:
                def in_hook(_m: nn.Module, args: tuple[Any, ...], p: HookPoint = point) -> Any:
                    new = fn(p, args[0])
                    return None if new is None else (new, *args[1:])

                handles.append(module.register_forward_pre_hook(in_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def position_kwargs(model: nn.Module, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"position_ids": [batch, pos]}`` counted over real tokens only, where the model takes them.

    Without them a left-padded row would start at the position of its first pad token; with
    them every row's tokens sit at 0, 1, ... whatever the padding side (pads get 0: masked).
    """
    if not _takes_position_ids(type(model)):
        return {}  # e.g. ALiBi models (Bloom) have no positions to shift
    positions = attention_mask.long().cumsum(-1) - 1
    return {"position_ids": positions.clamp_min(0)}


_TAKES_POSITION_IDS: dict[type[nn.Module], bool] = {}


def _takes_position_ids(model_class: type[nn.Module]) -> bool:
    """Whether the class's forward takes ``position_ids`` (read once per class, not per batch)."""
    if model_class not in _TAKES_POSITION_IDS:
        _TAKES_POSITION_IDS[model_class] = "position_ids" in inspect.signature(model_class.forward).parameters
    return _TAKES_POSITION_IDS[model_class]


class _StopForward(Exception):
    """Raised after the last hooked block: nothing past it is needed for extraction."""


class PooledCapture:
    """Run forward passes that return pooled activations instead of logits.

    Pooling happens inside each hook, so the ``[batch, pos, d]`` tensor is freed at once; the
    forward pass stops after the last hooked block.
    """

    def __init__(self, model: nn.Module, points: Sequence[HookPoint], poolings: Sequence[Pooling]):
        self.model = model
        self.points = list(points)
        self.poolings = list(poolings)
        self._mask: torch.Tensor | None = None
        self._masks_by_device: dict[torch.device, torch.Tensor] = {}
        self._out: dict[tuple[str, str], torch.Tensor] = {}
        self._last_block = block_module_path(model, max(p.layer for p in self.points))

    def _mask_on(self, device: torch.device) -> torch.Tensor:
        assert self._mask is not None
        mask = self._masks_by_device.get(device)
        if mask is None:
            mask = self._masks_by_device[device] = self._mask.to(device)
        return mask

    def _hook(self, point: HookPoint, act: torch.Tensor) -> None:
        mask = self._mask_on(act.device)
        if act.dim() == 2:  # OPT runs its MLP on flattened [batch * pos, d]
            act = act.view(mask.shape[0], mask.shape[1], act.shape[-1])
        for op in self.poolings:
            self._out[(op, point.name)] = pool(act, mask, op)

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[tuple[str, str], np.ndarray]:
        """Pooled activations of one batch.

        Parameters
        ----------
        input_ids, attention_mask : torch.Tensor of shape [batch, pos]

        Returns
        -------
        dict of (pooling, hook_name) to np.ndarray of shape [batch, d_hook], float32
        """
        self._mask = attention_mask.bool()
        self._masks_by_device = {}
        self._out = {}

        def stop(_m: nn.Module, _a: Any, _o: Any) -> None:
            raise _StopForward

        kwargs = position_kwargs(self.model, attention_mask)
        handle = self.model.get_submodule(self._last_block).register_forward_hook(stop)
        try:
            with attach(self.model, self.points, self._hook), contextlib.suppress(_StopForward):
                self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        finally:
            handle.remove()
        return {key: t.cpu().numpy() for key, t in self._out.items()}

    def check_first_batch(self, pooled: dict[tuple[str, str], np.ndarray], batch: int) -> None:
        """Every hook fired once with its expected width (TransformerLens issues 1645-1648)."""
        check_fired(self.points, self.poolings, pooled, batch, advice="Choose other hooks or report the architecture.")


def check_fired(points: Sequence[HookPoint], poolings: Sequence[str], pooled: dict[tuple[str, str], np.ndarray],
                batch: int, *, advice: str) -> None:
    """Raise one HookError naming every hook that did not fire once with its width on a batch."""
    problems = []
    for p in points:
        for op in poolings:
            arr = pooled.get((op, p.name))
            if arr is None:
                problems.append(f"{p.name} never fired")
            elif arr.shape != (batch, p.width):
                problems.append(f"{p.name} gave shape {arr.shape}, expected {(batch, p.width)}")
    if problems:
        raise HookError(f"hooks must fire once with their width on the first batch; {'; '.join(problems)}. {advice}")
