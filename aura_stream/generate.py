"""Generation with an intervention: every hooked neuron's output multiplied by its alpha.

The hooks sit on the Hugging Face modules (see :mod:`aura_stream.hookpoints`), so ``transformers``'
own ``generate`` does the work, KV cache included: at each decoding step a hook sees the new
positions only and dampens them, which equals dampening a full recompute.

Sampling is reproducible and independent of how prompts are batched: each generated sequence
``(prompt_index, sample_index)`` draws its uniforms from its own generator seeded with
``(seed, prompt_index, sample_index)``, and ``transformers`` then picks that token greedily.
Batch size and ``num_return_sequences`` therefore do not change a sequence (up to float
rounding of padded batches, which could only move a draw sitting on a bin edge).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aura_stream._version import __version__
from aura_stream.errors import (
    DataFileError,
    HookError,
    InputError,
    InterventionError,
    MissingFileError,
)
from aura_stream.hookpoints import HOOK_KINDS, HookPoint, all_hook_points
from aura_stream.interventions import Intervention, check_matches_model
from aura_stream.model import FOLDED_ATTR, LoadedModel, attach

DampenFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(activation [..., d], alpha [d]) -> tensor`` of the same shape and dtype; a new tensor,
never the input modified in place (Falcon adds attention into the MLP output after the hook)."""


def multiply(activation: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """AurA's dampening: ``activation * alpha``, broadcast over every leading dimension.

    Works for ``[batch, pos, d]`` and for OPT's flattened ``[batch * pos, d]`` alike.

    Examples
    --------
    >>> multiply(torch.ones(1, 2, 3), torch.tensor([1.0, 0.5, 0.0])).tolist()
    [[[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]]]
    """
    return activation * alpha


DAMPENERS: dict[str, DampenFn] = dict.fromkeys(HOOK_KINDS, multiply)
"""Hook kind (``mlp.hook_pre``, ...) -> dampening function. Only :func:`multiply` can be folded."""



def hook_kind(name: str) -> str:
    """``blocks.3.mlp.hook_pre`` -> ``mlp.hook_pre``."""
    parts = name.split(".", 2)
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit():
        raise HookError(f"hook name must look like blocks.<layer>.<kind>; got {name!r}.")
    return parts[2]


def resolve_intervention(
    model: nn.Module, intervention: Intervention, *, strength: float | None = None
) -> tuple[Intervention, list[HookPoint]]:
    """Validate ``intervention`` against ``model`` and apply ``strength``.

    Returns the intervention to use and the hook points it names, in forward order.

    Raises
    ------
    InputError
        ``strength`` outside [0, 1].
    InterventionError
        A hook missing from the model, a width mismatch, a NaN/inf or non-1-D alpha, or a
        model that already holds a folded intervention.
    HookError
        A hook kind without a dampening function.
    """
    if strength is not None:
        check_strength(strength)
        intervention = intervention.with_strength(strength)
    folded = getattr(model, FOLDED_ATTR, None)
    if folded is not None:
        raise InterventionError(
            f"the model's weights must not already hold an intervention; they hold {folded}, and "
            "dampening again would apply the alphas twice. Load the original model."
        )
    bad = [n for n, a in intervention.alphas.items()
           if np.ndim(a) != 1 or not ((np.asarray(a, dtype=np.float64) >= 0) & (np.asarray(a) <= 1)).all()]
    if bad:
        raise InterventionError(
            f"alphas must be 1-D arrays of finite values in [0, 1]; {', '.join(bad[:5])} hold(s) NaN/inf, "
            "values outside [0, 1] or have the wrong shape. Recreate the intervention with `aura-stream score`."
        )
    points = all_hook_points(model)
    check_matches_model(intervention, {n: p.width for n, p in points.items()})
    unknown = sorted({hook_kind(n) for n in intervention.alphas} - set(DAMPENERS))
    if unknown:
        raise HookError(f"hook kind(s) {', '.join(unknown)} have no dampening function; "
                        f"known: {', '.join(DAMPENERS)}.")
    return intervention, [p for n, p in points.items() if n in intervention.alphas]


def check_strength(strength: float) -> float:
    """``strength`` must lie in [0, 1] (NaN fails too)."""
    if not (0.0 <= strength <= 1.0):
        raise InputError(f"`--strength` must be in [0, 1]; got {strength}. Use 1 for the file's "
                         "alphas, 0 to disable them, or a value between to scale them towards 1.")
    return strength


@contextlib.contextmanager
def dampened(
    model: nn.Module, intervention: Intervention, *, strength: float | None = None
) -> Iterator[list[HookPoint]]:
    """Dampen the model's neurons while the ``with`` block runs.

    Each hooked activation ``[batch, pos, d_hook]`` is replaced by ``DAMPENERS[kind](act, alpha)``,
    at every position of every forward pass (with a KV cache: each step's new positions). Alpha
    is moved to the activation's device and cast to its dtype once per (device, dtype), so
    float16/bfloat16 activations stay in their dtype. Hooks whose alphas are all 1 are skipped
    (multiplying by 1 is exact). Hooks are removed on exit, even when the body raises.

    Parameters
    ----------
    model : transformers.PreTrainedModel
    intervention : Intervention
        Alphas keyed by hook name, each ``[d_hook]``.
    strength : float in [0, 1], optional
        Use ``1 - strength * (1 - alpha)``; None keeps the alphas as they are.

    Yields
    ------
    list of HookPoint
        The hooks attached.

    Raises
    ------
    InputError, InterventionError, HookError
        See :func:`resolve_intervention`; raised before any hook is attached.
    """
    intervention, points = resolve_intervention(model, intervention, strength=strength)
    active = [p for p in points if not bool(np.all(intervention.alphas[p.name] == 1.0))]
    alphas = {p.name: torch.from_numpy(np.array(intervention.alphas[p.name], dtype=np.float32))
              for p in active}
    fns = {p.name: DAMPENERS[hook_kind(p.name)] for p in active}
    cache: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def hook(point: HookPoint, act: torch.Tensor) -> torch.Tensor:
        key = (point.name, act.device, act.dtype)
        alpha = cache.get(key)
        if alpha is None:
            alpha = cache[key] = alphas[point.name].to(device=act.device, dtype=act.dtype)
        return fns[point.name](act, alpha)

    with attach(model, active, hook):
        yield active


@dataclass(frozen=True)
class GenerationSettings:
    """Everything besides the prompt that decides a continuation (written into every record)."""

    model: str
    dtype: str
    max_new_tokens: int
    do_sample: bool
    top_p: float
    top_k: int
    temperature: float
    seed: int
    num_return_sequences: int
    method: str | None
    intervention_fingerprint: str | None
    strength: float | None
    backend: str = "hf"  # "transformer-lens": hooks through a TransformerBridge


@dataclass(frozen=True)
class Generation:
    """One continuation of one prompt.

    Attributes
    ----------
    prompt : str
    prompt_index : int
        Position of the prompt in the input list.
    sample_index : int
        0 .. num_return_sequences - 1.
    continuation : str
        Decoded new tokens, up to the first end-of-sequence token.
    n_new_tokens : int
        Tokens in ``continuation``.
    settings : GenerationSettings
    """

    prompt: str
    prompt_index: int
    sample_index: int
    continuation: str
    n_new_tokens: int
    settings: GenerationSettings

    def to_record(self) -> dict[str, Any]:
        """The JSONL record: prompt, continuation, intervention fingerprint, method, settings."""
        s = self.settings
        return {"prompt_index": self.prompt_index, "sample_index": self.sample_index,
                "prompt": self.prompt, "continuation": self.continuation,
                "n_new_tokens": self.n_new_tokens, "method": s.method,
                "intervention_fingerprint": s.intervention_fingerprint, "strength": s.strength,
                "settings": asdict(s), "version": __version__}


NUCLEUS_TOPK = 1024  # candidates ranked with topk before a row falls back to a full sort


def nucleus_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The tokens nucleus (top-p) sampling keeps, ``[rows, vocab]`` bool.

    A token is kept when the probability of the tokens ranked above it is below ``top_p``: the
    most likely tokens up to and including the one that reaches ``top_p`` (the set that
    ``transformers``' ``TopPLogitsWarper`` keeps; sums here are float64, so the edge can differ
    from its float32 sums only by rounding). The ``NUCLEUS_TOPK`` most likely tokens are ranked
    with ``topk``; only rows whose nucleus is larger fall back to a full sort, which is what
    makes this ~3x cheaper than sorting the whole vocabulary at every step.

    Parameters
    ----------
    probs : torch.Tensor of shape [rows, vocab]
        Each row a probability distribution.
    top_p : float in (0, 1]

    Examples
    --------
    >>> nucleus_mask(torch.tensor([[0.5, 0.1, 0.3, 0.1]]), 0.7).tolist()
    [[True, False, True, False]]
    """
    if top_p >= 1.0:
        return torch.ones_like(probs, dtype=torch.bool)

    def ranked_keep(values: torch.Tensor) -> torch.Tensor:  # values sorted descending, [rows, k]
        v = values.double()
        return (v.cumsum(-1) - v) < top_p  # mass strictly above each token < top_p

    k = min(NUCLEUS_TOPK, probs.shape[-1])
    top, idx = probs.topk(k, dim=-1)  # [rows, k], descending
    keep = ranked_keep(top)
    mask = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, idx, keep)
    wide = keep[:, -1].nonzero().flatten() if k < probs.shape[-1] else keep.new_zeros(0, dtype=torch.long)
    if wide.numel():  # nucleus may extend past the k candidates: rank the whole row
        full, full_idx = probs[wide].sort(dim=-1, descending=True)
        mask[wide] = torch.zeros_like(full, dtype=torch.bool).scatter_(1, full_idx, ranked_keep(full))
    return mask


class _RowSampler:
    """Logits processor: sample each row with its own generator and keep only that token.

    ``transformers`` then decodes greedily, so it picks the sampled token. Temperature and top-k
    use ``transformers``' own warpers, in its order, and top-p keeps the same nucleus as its
    ``TopPLogitsWarper`` (:func:`nucleus_mask`), so the distribution is the one
    ``model.generate(do_sample=True, ...)`` samples from. Each row draws one uniform from its
    own generator and takes the token where the cumulative probability (in vocabulary order)
    passes it: a row's draw does not depend on the other rows of the batch.
    """

    def __init__(self, rngs: list[np.random.Generator], temperature: float, top_k: int,
                 top_p: float):
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

        self.rngs = rngs
        self.top_p = top_p
        self.warpers = LogitsProcessorList()
        if temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(temperature))
        if top_k != 0:
            self.warpers.append(TopKLogitsWarper(top_k))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = self.warpers(input_ids, scores.float())  # type: ignore[arg-type]  # [rows, vocab]
        probs = torch.softmax(scores, dim=-1)  # [rows, vocab]
        kept = probs.masked_fill(~nucleus_mask(probs, self.top_p), 0.0)
        cdf = kept.double().cumsum(-1)  # [rows, vocab]
        u = torch.tensor([r.random() for r in self.rngs], dtype=cdf.dtype, device=cdf.device)
        target = (u * cdf[:, -1]).unsqueeze(1)  # [rows, 1]
        # the first token whose cumulative probability exceeds the draw; zero-probability
        # tokens repeat their predecessor's cdf and can never be first
        tokens = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[-1] - 1)
        return torch.full_like(scores, -math.inf).scatter_(1, tokens, 0.0)


def _positive(name: str, value: int, example: int) -> None:
    if value < 1:
        raise InputError(f"`--{name}` must be >= 1; got {value}. E.g. --{name} {example}.")


def check_generation_options(
    *,
    num_return_sequences: int = 1,
    max_new_tokens: int = 20,
    top_p: float = 0.9,
    top_k: int = 50,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    do_sample: bool = True,
    strength: float | None = None,
    has_intervention: bool = True,
) -> None:
    """Validate :func:`generate`'s options (cheap: call it before loading a model).

    Raises
    ------
    InputError
        The first bad option, e.g. "`--max-new-tokens` must be >= 1; got 0. ...".
    """
    _positive("max-new-tokens", max_new_tokens, 20)
    _positive("num-return-sequences", num_return_sequences, 5)
    _positive("batch-size", batch_size, 16)
    if seed < 0:
        raise InputError(f"`--seed` must be >= 0; got {seed}.")
    if do_sample and not temperature > 0:
        raise InputError(f"`--temperature` must be > 0; got {temperature}. "
                         "Use --greedy for argmax decoding.")
    if do_sample and not 0 < top_p <= 1:
        raise InputError(f"`--top-p` must be in (0, 1]; got {top_p}. 1 disables nucleus sampling.")
    if do_sample and top_k < 0:
        raise InputError(f"`--top-k` must be >= 0; got {top_k}. 0 disables top-k filtering.")
    if strength is not None:
        check_strength(strength)
        if not has_intervention:
            raise InputError(f"`--strength` needs an intervention; got --strength {strength} "
                             "without one. Pass --intervention FILE or drop --strength.")


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """At least one prompt, none empty."""
    prompts = list(prompts)
    if not prompts:
        raise InputError("`--prompt`/`--prompts` must give at least one prompt; got none. "
                         "E.g. --prompt 'The weather today'.")
    empty = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if empty:
        raise InputError(f"prompts must not be empty; got an empty prompt at index "
                         f"{', '.join(map(str, empty[:5]))}. Remove it.")
    return prompts


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a text file (one per line, blank lines skipped) or JSONL.

    JSONL lines are objects with ``prompt`` (a string, or RealToxicityPrompts' ``{"text": ...}``)
    or ``text``.

    Raises
    ------
    MissingFileError
        No such file.
    DataFileError
        Not UTF-8, bad JSON, no prompt field, or no prompts at all.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"prompts file {str(path)!r} does not exist; "
                               "pass an existing `--prompts` file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"prompts file {str(path)!r} must be UTF-8; byte {exc.start} is not. "
                            "Re-encode it.") from exc
    prompts: list[str] = []
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is text
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if not jsonl:
            prompts.append(line)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path.name} line {number}: not valid JSON ({exc.msg}).") from exc
        value = obj.get("prompt", obj.get("text")) if isinstance(obj, dict) else None
        if isinstance(value, dict):
            value = value.get("text")
        if not isinstance(value, str) or not value.strip():
            raise DataFileError(f"{path.name} line {number}: must be an object with a non-empty "
                                "`prompt` (or `prompt.text`, or `text`) string.")
        prompts.append(value)
    if not prompts:
        raise DataFileError(f"prompts file {str(path)!r} holds no prompts; "
                            "write one prompt per line.")
    return prompts


def _eos_ids(model: Any) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def _check_positions(model: Any, lengths: list[int], max_new_tokens: int) -> None:
    """Learned absolute positions (GPT-2, OPT) end at a hard limit: fail in one line."""
    config = model.config
    if config.model_type not in ("gpt2", "opt"):
        return  # rotary and ALiBi models run past max_position_embeddings (with care)
    limit = int(config.max_position_embeddings)
    longest = max(range(len(lengths)), key=lambda i: lengths[i])
    if lengths[longest] + max_new_tokens > limit:
        raise InputError(
            f"prompt + `--max-new-tokens` must fit the model's {limit} positions; prompt "
            f"{longest} has {lengths[longest]} tokens, + {max_new_tokens} new. Shorten the prompt "
            "or lower --max-new-tokens.")


def generate(
    loaded: LoadedModel,
    prompts: Sequence[str],
    *,
    intervention: Intervention | None = None,
    strength: float | None = None,
    num_return_sequences: int = 1,
    max_new_tokens: int = 20,
    top_p: float = 0.9,
    top_k: int = 50,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    do_sample: bool = True,
    progress: bool = True,
    prompt_indices: Sequence[int] | None = None,
) -> list[Generation]:
    """Continue each prompt ``num_return_sequences`` times, optionally under an intervention.

    Prompts are left-padded and run through ``model.generate`` with the KV cache, longest first,
    ``batch_size`` sequences at a time.

    Parameters
    ----------
    loaded : LoadedModel
    prompts : sequence of str, length n_prompts
    intervention : Intervention, optional
        None generates with the unmodified model (the baseline).
    strength : float in [0, 1], optional
        Scale the alphas towards 1 (see :meth:`Intervention.with_strength`).
    num_return_sequences : int
        Continuations per prompt.
    max_new_tokens : int
    top_p : float in (0, 1]
        Nucleus sampling mass; 1 disables it.
    top_k : int
        Sample among the ``top_k`` most likely tokens; 0 disables it. 50 is ``transformers``'
        default for ``do_sample=True``, kept so that samples follow the same distribution.
    temperature : float > 0
        Sampling options are ignored when ``do_sample`` is False (greedy).
    seed : int
        Sequence ``(p, s)`` samples from a generator seeded with ``(seed, p, s)``: the same
        continuation whatever the batch size or the number of return sequences.
    batch_size : int
        Sequences (prompt x sample) per ``model.generate`` call.
    progress : bool
        Show a tqdm bar of sequences.
    prompt_indices : sequence of int, optional
        Index of each prompt, used for its seeds and as ``Generation.prompt_index`` (default
        0 .. n_prompts - 1). Passing a slice of a longer list with its positions there continues
        each prompt exactly as the whole list would (``evaluate`` resumes this way).

    Returns
    -------
    list of Generation, length n_prompts * num_return_sequences
        Ordered by (position in ``prompts``, sample_index).

    Raises
    ------
    InputError
        Bad options or empty prompts; InterventionError for an intervention that does not fit.
    """
    from tqdm.auto import tqdm

    prompts = check_prompts(prompts)
    check_generation_options(
        num_return_sequences=num_return_sequences, max_new_tokens=max_new_tokens, top_p=top_p,
        top_k=top_k, temperature=temperature, seed=seed, batch_size=batch_size,
        do_sample=do_sample, strength=strength, has_intervention=intervention is not None)
    index = list(range(len(prompts))) if prompt_indices is None else list(map(int, prompt_indices))
    if len(index) != len(prompts) or len(set(index)) != len(index) or min(index) < 0:
        raise InputError(f"`prompt_indices` must be {len(prompts)} distinct ints >= 0, one per "
                         f"prompt; got {list(prompt_indices or [])[:5]}.")
    model, tokenizer = loaded.model, loaded.tokenizer
    ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    bridge = getattr(loaded, "bridge", None)  # --backend transformer-lens: dampen through the bridge's hooks
    if intervention is not None and bridge is not None:
        from aura_stream import tl_hooks

        intervention = tl_hooks.check_for_bridge(bridge, intervention, strength=strength)
        ctx = tl_hooks.dampened(bridge, intervention)
    elif intervention is not None:
        intervention, _ = resolve_intervention(model, intervention, strength=strength)
        ctx = dampened(model, intervention)
    settings = GenerationSettings(
        model=loaded.model_id, dtype=loaded.dtype, max_new_tokens=max_new_tokens,
        do_sample=do_sample, top_p=top_p, top_k=top_k, temperature=temperature, seed=seed,
        num_return_sequences=num_return_sequences,
        method=None if intervention is None else intervention.metadata.get("method"),
        intervention_fingerprint=None if intervention is None else intervention.fingerprint,
        strength=strength if intervention is not None else None,
        backend="hf" if bridge is None else "transformer-lens",
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    _check_positions(model, lengths, max_new_tokens)
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # longest first: OOM shows early
    rows = [(p, s) for p in order for s in range(num_return_sequences)]
    eos = _eos_ids(model)
    results: dict[tuple[int, int], Generation] = {}
    bar = tqdm(total=len(rows), unit="seq", desc="generate", disable=not progress,
               dynamic_ncols=True)
    try:
        with ctx, torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                enc = tokenizer([prompts[p] for p, _ in batch], return_tensors="pt", padding=True,
                                padding_side="left").to(loaded.device)
                processors: list[Any] = []
                if do_sample:
                    rngs = [np.random.default_rng([seed, index[p], s]) for p, s in batch]
                    processors.append(_RowSampler(rngs, temperature, top_k, top_p))
                out = model.generate(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                    do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id, use_cache=getattr(loaded, "kv_cache", True),
                    logits_processor=_processor_list(processors),
                )
                new = out[:, enc["input_ids"].shape[1]:].tolist()  # [rows, new_tokens]
                for (p, s), ids in zip(batch, new, strict=True):
                    cut = next((i for i, t in enumerate(ids) if t in eos), len(ids))
                    text = tokenizer.decode(ids[:cut], skip_special_tokens=True)
                    results[(p, s)] = Generation(prompts[p], index[p], s, text, cut, settings)
                bar.update(len(batch))
    finally:
        bar.close()
    return [results[key] for key in sorted(results)]


def _processor_list(processors: list[Any]) -> Any:
    from transformers import LogitsProcessorList

    return LogitsProcessorList(processors)


def write_jsonl(generations: Sequence[Generation], path: str | Path) -> Path:
    """Write one JSON record per generation, atomically (temporary file renamed into place)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"`--output` must be a file path; {str(path)!r} is a directory.")
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            for g in generations:
                f.write(json.dumps(g.to_record(), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}. "
                         "Choose a writable `--output`.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records written by :func:`write_jsonl`."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
