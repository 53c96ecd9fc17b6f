"""The TransformerLens backend: a ``TransformerBridge`` runs the model (booting, hook points, capture, hooks).

The Hugging Face backend registers aura-stream's hooks directly on the ``transformers`` modules.
This one goes through TransformerLens 4's ``TransformerBridge`` instead: hook names resolve to the
bridge's own hook points, activations are read with ``bridge.hooks(...)`` during ``bridge(...)``
forward passes, and an :class:`~aura_stream.interventions.Intervention` becomes
``(hook_name, hook_fn)`` pairs (:func:`fwd_hooks`) for ``run_with_hooks`` / ``hooks``::

    bridge = TransformerBridge.boot_transformers("./gpt2")
    iv = aura_stream.load_intervention("gpt2-aura.safetensors")
    logits = bridge.run_with_hooks(tokens, fwd_hooks=iv.fwd_hooks())
    with aura_stream.dampened(bridge, iv):
        bridge.generate("I can't believe you", max_new_tokens=20, use_past_kv_cache=False)

Each hook multiplies one hook point's neurons by their alphas exactly as the Hugging Face
backend's module hooks do (:class:`~aura_stream.dampening.AlphaHook`), so a bridge run with these
hooks gives the logits of the Hugging Face model dampened by :func:`aura_stream.backends.hf.dampened`.

A bridge wraps the Hugging Face model in place (its modules keep their names), so
``transformers``' own ``generate`` still runs and fires the bridge's hooks;
``aura-stream generate --backend transformer-lens`` decodes that way, with the same seeded
sampler as the default backend, and with the KV cache only where the bridge keeps it exact
(:func:`kv_cache_exact`). TransformerLens is imported only when this backend is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from aura_stream.backends.base import Backend, Pooled
from aura_stream.dampening import AlphaHook, active_hooks, check_intervention, check_kinds, check_strength
from aura_stream.errors import ModelLoadError
from aura_stream.hookpoints import HOOK_KINDS, HookPoint
from aura_stream.interventions import Intervention
from aura_stream.model import FOLDED_ATTR, LoadedModel, check_fired, load_model
from aura_stream.pooling import Pooling, pool

INSTALL_HINT = "pip install 'aura-stream[tl]'"
_MLP_HOOK = re.compile(r"^blocks\.(\d+)\.(mlp\.hook_pre|mlp\.hook_pre_linear|mlp\.hook_post|hook_mlp_out)$")
TLHookFn = Callable[..., "torch.Tensor | None"]


def is_bridge(obj: object) -> bool:
    """Whether ``obj`` is a TransformerLens ``TransformerBridge`` (never imports TransformerLens)."""
    module = sys.modules.get("transformer_lens.model_bridge")
    return module is not None and isinstance(obj, module.TransformerBridge)


def require_transformer_lens() -> Any:
    """The ``TransformerBridge`` class, or one line saying how to install TransformerLens."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:
        raise ModelLoadError(
            f"`--backend transformer-lens` needs TransformerLens >= 4, which is not installed ({exc.name}); "
            f"{INSTALL_HINT}, or use the default Hugging Face backend (`--backend hf`)."
        ) from None
    return TransformerBridge


def _tl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformer-lens")
    except PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- booting


def unbootable_reason(config: Mapping[str, Any]) -> str | None:
    """Why TransformerLens 4.3's bridge fails on a model of this ``config.json``, or None.

    Measured: Falcon with ``new_decoder_architecture``, ``multi_query`` and several KV heads —
    Falcon-40B's shape — fails in the bridge's QKV split. ``tests/test_tl_backend.py`` checks
    that the bridge still fails there, so this rule goes when TransformerLens fixes it.
    """
    if (config.get("model_type") == "falcon" and config.get("new_decoder_architecture")
            and config.get("multi_query", True) and int(config.get("num_kv_heads") or 1) > 1):
        return (f"Falcon with new_decoder_architecture and {config.get('num_kv_heads')} KV heads "
                "(Falcon-40B's shape) fails in its QKV split")
    return None


def _cannot_boot(name: str, reason: str) -> ModelLoadError:
    return ModelLoadError(
        f"the TransformerLens bridge (transformer-lens {_tl_version()}) cannot boot {name!r}: {reason}. "
        "Use the Hugging Face backend (`--backend hf`, the default), which supports this model."
    )


def check_bootable(model_id: str) -> None:
    """Refuse, from ``config.json`` alone, a local model the bridge is known not to boot."""
    config_path = Path(model_id) / "config.json"
    if not config_path.is_file():
        return  # hub ids and broken directories are load_model's to report
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    reason = unbootable_reason(config) if isinstance(config, dict) else None
    if reason is not None:
        raise _cannot_boot(model_id, reason)


class TLBackend(Backend):
    """Forward passes and hooks through a ``TransformerBridge`` wrapping the Hugging Face model in place.

    ``bridge`` is what hooks and forward passes go through; ``transformers``' ``generate`` on the
    wrapped model fires the bridge's hooks. ``kv_cache`` is False where the bridge breaks
    ``transformers``' KV cache (:func:`kv_cache_exact`).
    """

    name: ClassVar[str] = "transformer-lens"

    def __init__(self, bridge: Any, *, kv_cache: bool = True):
        self.bridge = bridge
        self.kv_cache = kv_cache

    @classmethod
    def check_ready(cls, model_id: str | None) -> None:
        """TransformerLens installed; a local model of a shape the bridge cannot boot refused."""
        require_transformer_lens()
        if model_id:
            check_bootable(str(model_id))

    @classmethod
    def accepts(cls, model: object) -> bool:
        return is_bridge(model)

    @classmethod
    def load(cls, model: Any, **load_kwargs: Any) -> LoadedModel:
        """A user's ``TransformerBridge`` as it is (:func:`from_bridge`), else :func:`load_bridge`."""
        return from_bridge(model) if is_bridge(model) else load_bridge(model, **load_kwargs)

    @classmethod
    def wrap(cls, loaded: LoadedModel) -> LoadedModel:
        return loaded if isinstance(loaded.backend, TLBackend) else boot(loaded)

    def hook_points(self) -> dict[str, HookPoint]:
        return bridge_hook_points(self.bridge)

    def capture(self, points: Sequence[HookPoint], poolings: Sequence[Pooling]) -> BridgeCapture:
        return BridgeCapture(self.bridge, points, poolings)

    def describe(self) -> dict[str, Any]:
        tokenizer = self.bridge.tokenizer
        ids, bos = tokenizer("a")["input_ids"], tokenizer.bos_token_id
        return {"backend": self.name, "transformer_lens": _tl_version(),
                "tokenizer_prepends_bos": bos is not None and len(ids) > 1 and ids[0] == bos}

    def check_intervention(self, intervention: Intervention, strength: float | None = None) -> Intervention:
        return check_for_bridge(self.bridge, intervention, strength=strength)

    @contextlib.contextmanager
    def dampened(self, intervention: Intervention, *, strength: float | None = None) -> Iterator[list[str]]:
        intervention = check_for_bridge(self.bridge, intervention, strength=strength)
        hooks = active_hooks(intervention)
        with self.bridge.hooks(fwd_hooks=hooks):
            yield [name for name, _ in hooks]

    @property
    def generation_model(self) -> Any:
        return self.bridge.original_model


def boot(loaded: LoadedModel) -> LoadedModel:
    """Wrap an already loaded Hugging Face model in a ``TransformerBridge`` (no second copy).

    Raises
    ------
    ModelLoadError
        TransformerLens is missing, or the bridge cannot boot this architecture; the message names
        the Hugging Face backend.
    """
    bridge_cls = require_transformer_lens()
    config = loaded.model.config
    reason = unbootable_reason(config.to_dict())
    if reason is not None:
        raise _cannot_boot(loaded.model_id, reason)
    try:
        bridge = bridge_cls.boot_transformers(
            loaded.model_id, hf_model=loaded.model, tokenizer=loaded.tokenizer,
            device=str(loaded.device), dtype=next(loaded.model.parameters()).dtype)
    except Exception as exc:  # the bridge raises many types; all mean "cannot boot"
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise _cannot_boot(loaded.model_id, f"{type(exc).__name__}: {first}") from exc
    bridge.eval()
    return dataclasses.replace(loaded, backend=TLBackend(bridge, kv_cache=kv_cache_exact(loaded.model)))


@torch.inference_mode()
def kv_cache_exact(model: Any) -> bool:
    """Whether ``transformers``' KV cache still gives full-recompute logits on the bridged model.

    Measured with TransformerLens 4.3 and transformers 5.24: the bridge's attention wrappers of
    GPT-2 and Llama never write the cache, so cached decoding sees only the newest token (GPT-NeoX is
    fine). Three forward passes of at most 3 tokens decide; without a working cache, generation
    recomputes the whole sequence at every step (correct, slower).
    """
    device = model.get_input_embeddings().weight.device
    tokens = torch.tensor([[1, 2, 3]], device=device)  # [1, 3]
    full = model(tokens, use_cache=False).logits[0, -1].float()  # [vocab]
    first = model(tokens[:, :2], use_cache=True)
    step = model(tokens[:, 2:], past_key_values=first.past_key_values, use_cache=True).logits[0, -1].float()
    return bool((step - full).abs().max() <= 1e-2 * full.abs().max() + 1e-4)


def load_bridge(
    model_id: str | None,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    revision: str | None = None,
    device_map: str | None = None,
    max_memory: dict[int | str, str] | None = None,
) -> LoadedModel:
    """Load a Hugging Face causal LM with :func:`~aura_stream.model.load_model` and bridge it.

    The tokenizer is the model's own (as with the Hugging Face backend), so both backends see the
    same tokens. Known-unbootable shapes are refused from ``config.json`` before any weight loads.
    """
    require_transformer_lens()
    if model_id:
        check_bootable(str(model_id))
    loaded = load_model(model_id, dtype=dtype, device=device, revision=revision,  # type: ignore[arg-type]
                        device_map=device_map, max_memory=max_memory)
    return boot(loaded)


def from_bridge(bridge: Any) -> LoadedModel:
    """A user's own bridge as a :class:`~aura_stream.model.LoadedModel`; texts go through the bridge's tokenizer.

    That tokenizer prepends BOS where TransformerLens does (``bridge.to_tokens``), so activations
    are those the user's ``run_with_hooks("text")`` sees.
    """
    if bridge.tokenizer is None:
        raise ModelLoadError("the bridge has no tokenizer; boot it with one "
                             "(`TransformerBridge.boot_transformers(path)` loads the model's).")
    model = bridge.original_model
    name = str(getattr(bridge.cfg, "model_name", "") or getattr(model.config, "_name_or_path", ""))
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return LoadedModel(model, bridge.tokenizer, name, None, dtype, TLBackend(bridge, kv_cache=kv_cache_exact(model)))


# --------------------------------------------------------------------------- hook points


def bridge_hook_points(bridge: Any) -> dict[str, HookPoint]:
    """Every MLP hook point the bridge exposes, in forward order, keyed by TransformerLens name.

    Widths come from the bridge's config (``d_mlp`` for ``mlp.*``, ``d_model`` for
    ``hook_mlp_out``); ``module_path`` is the bridge's canonical name of that hook point.
    """
    d_mlp, d_model = getattr(bridge.cfg, "d_mlp", None), getattr(bridge.cfg, "d_model", None)
    if not d_mlp or not d_model:
        raise ModelLoadError("the bridge's config gives no d_mlp/d_model for this architecture; "
                             "use the Hugging Face backend (`--backend hf`).")
    found: list[tuple[int, int, HookPoint]] = []
    for name, point in bridge.hook_dict.items():
        m = _MLP_HOOK.match(name)
        if m is None:
            continue
        layer, kind = int(m.group(1)), m.group(2)
        width = int(d_model if kind == "hook_mlp_out" else d_mlp)
        found.append((layer, HOOK_KINDS.index(kind), HookPoint(name, layer, str(point.name or name), "output", width)))
    return {p.name: p for _, _, p in sorted(found, key=lambda t: (t[0], t[1]))}


class BridgeCapture:
    """Pooled activations through the bridge: ``bridge.hooks(...)`` around ``bridge(...)``.

    A :class:`~aura_stream.backends.base.Capture`, like :class:`~aura_stream.model.PooledCapture`.
    Pooling happens inside each hook; once every hook has fired the forward pass stops (the
    bridge's own ``StopAtLayerException``), so no later block and no unembedding run.
    """

    def __init__(self, bridge: Any, points: Sequence[HookPoint], poolings: Sequence[Pooling]):
        from transformer_lens.model_bridge.exceptions import StopAtLayerException

        self.bridge = bridge
        self.points = list(points)
        self.poolings = list(poolings)
        self._stop_exc = StopAtLayerException
        self._stop = max(p.layer for p in self.points) + 1  # in case some hook never fires
        self._mask: torch.Tensor | None = None
        self._out: dict[tuple[str, str], torch.Tensor] = {}
        self._hooks = [(p.name, self._hook_for(p)) for p in self.points]

    def _hook_for(self, point: HookPoint) -> TLHookFn:
        def hook(act: torch.Tensor, hook: Any = None) -> None:
            assert self._mask is not None
            mask = self._mask.to(act.device)
            if act.dim() == 2:  # OPT runs its MLP on flattened [batch * pos, d]
                act = act.view(mask.shape[0], mask.shape[1], act.shape[-1])
            for op in self.poolings:
                self._out[(op, point.name)] = pool(act, mask, op)
            if len(self._out) == len(self.points) * len(self.poolings):
                raise self._stop_exc(act)  # caught by the bridge's forward, which cleans up

        return hook

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Pooled:
        """Pooled activations of one batch.

        Parameters
        ----------
        input_ids, attention_mask : torch.Tensor of shape [batch, pos]

        Returns
        -------
        dict of (pooling, hook_name) to np.ndarray of shape [batch, d_hook], float32
        """
        self._mask, self._out = attention_mask.bool(), {}
        # the bridge derives position ids from the mask, so left padding is handled too
        with self.bridge.hooks(fwd_hooks=self._hooks):
            self.bridge(input_ids, attention_mask=attention_mask, return_type=None,
                        stop_at_layer=self._stop)
        return {key: t.cpu().numpy() for key, t in self._out.items()}

    def check_first_batch(self, pooled: Pooled, batch: int) -> None:
        """Every hook fired once with its expected width (TransformerLens issues 1645-1648)."""
        check_fired(self.points, self.poolings, pooled, batch,
                    advice="Choose other hooks, or use the Hugging Face backend (`--backend hf`).")


# --------------------------------------------------------------------------- interventions as hooks


def fwd_hooks(intervention: Intervention, *, strength: float | None = None) -> list[tuple[str, AlphaHook]]:
    """``(hook_name, hook_fn)`` pairs for ``bridge.run_with_hooks(fwd_hooks=...)`` / ``bridge.hooks``.

    Hooks whose alphas are all 1 are left out (multiplying by 1 is exact).
    """
    if strength is not None:
        check_strength(strength)
        intervention = intervention.with_strength(strength)
    check_kinds(intervention.alphas)
    return active_hooks(intervention)


def check_for_bridge(bridge: Any, intervention: Intervention, *, strength: float | None = None) -> Intervention:
    """Validate ``intervention`` against the bridge's hook points and apply ``strength``.

    Raises
    ------
    InputError
        ``strength`` outside [0, 1].
    InterventionError
        A hook the bridge lacks, a width mismatch, alphas outside [0, 1] (NaN included) or not 1-D,
        or a model that already holds a folded intervention.
    HookError
        A hook kind without a dampening function.
    """
    widths = {n: p.width for n, p in bridge_hook_points(bridge).items()}
    return check_intervention(intervention, widths, strength=strength,
                              folded=getattr(bridge.original_model, FOLDED_ATTR, None))


__all__ = [
    "BridgeCapture", "TLBackend", "boot", "bridge_hook_points", "check_bootable", "check_for_bridge",
    "from_bridge", "fwd_hooks", "is_bridge", "kv_cache_exact", "load_bridge", "require_transformer_lens",
    "unbootable_reason",
]
