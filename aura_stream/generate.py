"""Generation with an intervention, batched, with the KV cache and seeded per-sequence sampling.

Dampening goes through the model's backend (``loaded.backend.dampened``: module hooks on the
Hugging Face model by default, so ``transformers``' own ``generate`` does the work, KV cache
included); sampling is :mod:`aura_stream.sampling`. Sampling is reproducible and independent of
how prompts are batched: each generated sequence ``(prompt_index, sample_index)`` draws its
uniforms from its own generator seeded with ``(seed, prompt_index, sample_index)``, and
``transformers`` then picks that token greedily. Batch size and ``num_return_sequences`` therefore
do not change a sequence (up to float rounding of padded batches, which could only move a draw
sitting on a bin edge).

The dampening names are re-exported here (``from aura_stream.generate import dampened`` keeps
working: module hooks on a Hugging Face model, :func:`aura_stream.backends.hf.dampened`).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aura_stream._version import __version__
from aura_stream.backends.hf import dampened, resolve_intervention
from aura_stream.dampening import DAMPENERS, DampenFn, check_strength, hook_kind, multiply
from aura_stream.errors import (
    DataFileError,
    InputError,
    MissingFileError,
)
from aura_stream.interventions import Intervention
from aura_stream.model import FOLDED_ATTR, LoadedModel, learned_position_limit
from aura_stream.sampling import NUCLEUS_TOPK, RowSampler, nucleus_mask, processor_list

__all__ = ["DAMPENERS", "FOLDED_ATTR", "NUCLEUS_TOPK", "DampenFn", "Generation", "GenerationSettings",
           "check_generation_options", "check_prompts", "check_strength", "dampened", "generate", "hook_kind",
           "multiply", "nucleus_mask", "read_jsonl", "read_prompts", "resolve_intervention", "write_jsonl"]

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
    backend: str = "hf"  # the backend's name ("transformer-lens": hooks through a TransformerBridge)


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
    """Learned absolute positions (GPT-2, OPT, ...) end at a hard limit: fail in one line."""
    limit = learned_position_limit(model.config)
    if limit is None:
        return
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
    tokenizer = loaded.tokenizer
    intervention, ctx = _dampening(loaded, intervention, strength)
    settings = GenerationSettings(
        model=loaded.model_id, dtype=loaded.dtype, max_new_tokens=max_new_tokens,
        do_sample=do_sample, top_p=top_p, top_k=top_k, temperature=temperature, seed=seed,
        num_return_sequences=num_return_sequences,
        method=None if intervention is None else intervention.metadata.get("method"),
        intervention_fingerprint=None if intervention is None else intervention.fingerprint,
        strength=strength if intervention is not None else None,
        backend=loaded.backend.name,
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    _check_positions(loaded.backend.generation_model, lengths, max_new_tokens)
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # longest first: OOM shows early
    rows = [(p, s) for p in order for s in range(num_return_sequences)]
    results: dict[tuple[int, int], Generation] = {}
    bar = tqdm(total=len(rows), unit="seq", desc="generate", disable=not progress,
               dynamic_ncols=True)
    try:
        with ctx, torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                texts = _generate_batch(loaded, [prompts[p] for p, _ in batch],
                                        [(index[p], s) for p, s in batch], settings)
                for (p, s), (text, n_new) in zip(batch, texts, strict=True):
                    results[(p, s)] = Generation(prompts[p], index[p], s, text, n_new, settings)
                bar.update(len(batch))
    finally:
        bar.close()
    return [results[key] for key in sorted(results)]


def _dampening(loaded: LoadedModel, intervention: Intervention | None, strength: float | None
               ) -> tuple[Intervention | None, contextlib.AbstractContextManager[Any]]:
    """The intervention to record (strength applied) and the context that dampens the model."""
    if intervention is None:
        return None, contextlib.nullcontext()
    intervention = loaded.backend.check_intervention(intervention, strength)
    return intervention, loaded.backend.dampened(intervention)


def _generate_batch(loaded: LoadedModel, texts: list[str], seeds: list[tuple[int, int]],
                    settings: GenerationSettings) -> list[tuple[str, int]]:
    """One left-padded ``model.generate`` call: (continuation, new tokens up to EOS) per row."""
    tokenizer = loaded.tokenizer
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left").to(loaded.device)
    processors: list[Any] = []
    if settings.do_sample:
        rngs = [np.random.default_rng([settings.seed, p, s]) for p, s in seeds]
        processors.append(RowSampler(rngs, settings.temperature, settings.top_k, settings.top_p))
    model = loaded.backend.generation_model
    out = model.generate(
        input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
        do_sample=False, num_beams=1, max_new_tokens=settings.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id, use_cache=loaded.backend.kv_cache,
        logits_processor=processor_list(processors),
    )
    eos = _eos_ids(model)
    results = []
    for ids in out[:, enc["input_ids"].shape[1]:].tolist():  # [rows, new_tokens]
        cut = next((i for i, t in enumerate(ids) if t in eos), len(ids))
        results.append((tokenizer.decode(ids[:cut], skip_special_tokens=True), cut))
    return results


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
