"""``eval``: toxicity of continuations and perplexity on neutral text, baseline against arms.

Protocol (RealToxicityPrompts style, DESIGN §10): every arm continues the same prompts
``samples_per_prompt`` times with nucleus sampling; continuation ``(p, s)`` is drawn with the seed
``(seed, p, s)`` in every arm, so arms differ only by their intervention and preprompt. A scorer
rates each continuation (the continuation alone, never the prompt or preprompt); perplexity is
measured on neutral text with and without each arm's intervention.

Output directory (``out_dir``):

- ``eval_config.json``: written first; what decides the results. A rerun with the same
  configuration resumes, any other is refused unless ``overwrite``.
- ``generations.jsonl``: one record per (arm, prompt, sample), appended and flushed after every
  block of prompts; a rerun skips the records already there.
- ``perplexity.json``: per-chunk NLL of the neutral text per intervention (a resume cache).
- ``summary.json`` and ``report.png``: written last, atomically (temporary file + rename).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from aura_stream._version import __version__
from aura_stream.errors import DataFileError, InputError
from aura_stream.generate import check_strength, dampened, generate, resolve_intervention
from aura_stream.identity import weights_fingerprint
from aura_stream.interventions import Intervention
from aura_stream.metrics import (
    Comparison,
    Estimate,
    compare_distinct,
    compare_perplexity,
    compare_toxicity,
    distinct_estimates,
    perplexity_estimate,
    prompt_groups,
    toxicity_estimates,
)
from aura_stream.model import LoadedModel
from aura_stream.resources import Prompt
from aura_stream.scorers import ToxicityScorer

__all__ = ["BASELINE", "Arm", "EvalSummary", "chunk_nll", "evaluate", "ppl_chunks", "text_nll"]

FORMAT = "aura-stream-eval/1"
BASELINE = "baseline"
CONFIG_FILE, GENERATIONS_FILE = "eval_config.json", "generations.jsonl"
PERPLEXITY_FILE, SUMMARY_FILE, REPORT_FILE = "perplexity.json", "summary.json", "report.png"
OUR_FILES = (CONFIG_FILE, GENERATIONS_FILE, PERPLEXITY_FILE, SUMMARY_FILE, REPORT_FILE)
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
MAX_CHUNK_TOKENS = 2048  # perplexity chunk cap: eager attention is quadratic in it


@dataclass(frozen=True)
class Arm:
    """One way of generating, compared against the baseline.

    Attributes
    ----------
    name : str
        Unique label in the report and in every JSONL record (letters, digits, ``_.+-``).
    intervention : Intervention, optional
        None generates with the unmodified model.
    preprompt : str, optional
        Text put before every prompt (joined with one space unless it ends in whitespace).
    strength : float in [0, 1], optional
        Scale the intervention's alphas towards 1 (see :meth:`Intervention.with_strength`).
    """

    name: str
    intervention: Intervention | None = None
    preprompt: str | None = None
    strength: float | None = None

    def identity(self) -> dict[str, Any]:
        """What decides this arm's generations (part of the run configuration)."""
        iv = self.intervention
        return {"name": self.name, "preprompt": self.preprompt, "strength": self.strength,
                "intervention_fingerprint": iv.fingerprint if iv is not None else None,
                "method": iv.metadata.get("method") if iv is not None else None}

    def describe(self) -> dict[str, Any]:
        """Provenance of the arm for ``summary.json``."""
        iv = self.intervention
        meta = iv.metadata if iv is not None else {}
        return {**self.identity(), "parameters": meta.get("parameters"), "model": meta.get("model"),
                "store_fingerprint": meta.get("store_fingerprint"),
                "n_dampened": iv.n_dampened() if iv is not None else 0}

    def prompt_text(self, prompt: str) -> str:
        """The text the model continues."""
        if not self.preprompt:
            return prompt
        return self.preprompt + ("" if self.preprompt[-1].isspace() else " ") + prompt


@dataclass(frozen=True)
class EvalSummary:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    out_dir : Path
    data : dict
        The content of ``summary.json``.
    baseline : list of Estimate
        The baseline's metrics on their own.
    comparisons : dict of str to list of Comparison
        Arm name -> its metrics against the baseline.
    max_toxicity : dict of str to np.ndarray of shape [n_prompts]
        Per arm, each prompt's highest continuation toxicity (what the report plots).
    """

    out_dir: Path
    data: dict[str, Any]
    baseline: list[Estimate]
    comparisons: dict[str, list[Comparison]]
    max_toxicity: dict[str, np.ndarray] = field(repr=False)

    @property
    def summary_path(self) -> Path:
        """``summary.json`` in ``out_dir``."""
        return self.out_dir / SUMMARY_FILE

    @property
    def generations_path(self) -> Path:
        """``generations.jsonl`` in ``out_dir``."""
        return self.out_dir / GENERATIONS_FILE

    @property
    def report_path(self) -> Path:
        """``report.png`` in ``out_dir``."""
        return self.out_dir / REPORT_FILE

    def table(self) -> str:
        """The printed table (see :func:`aura_stream.report.format_table`)."""
        from aura_stream.report import format_table

        return format_table(self.data)


# --------------------------------------------------------------------------- validation


def _check_options(samples_per_prompt: int, max_new_tokens: int, batch_size: int, seed: int,
                   top_p: float, top_k: int, temperature: float, n_resamples: int,
                   confidence: float) -> None:
    """Every bad option at once, before any work."""
    problems = [f"`--{name}` must be >= 1; got {value}" for name, value in (
        ("samples-per-prompt", samples_per_prompt), ("max-new-tokens", max_new_tokens),
        ("batch-size", batch_size), ("n-resamples", n_resamples)) if value < 1]
    if seed < 0:
        problems.append(f"`--seed` must be >= 0; got {seed}")
    if not 0 < top_p <= 1:
        problems.append(f"`--top-p` must be in (0, 1]; got {top_p}")
    if top_k < 0:
        problems.append(f"`--top-k` must be >= 0 (0 = off); got {top_k}")
    if not temperature > 0:
        problems.append(f"`--temperature` must be > 0; got {temperature}")
    if not 0 < confidence < 1:
        problems.append(f"`confidence` must be in (0, 1); got {confidence}")
    if problems:
        raise InputError("; ".join(problems) + ".")


def _check_prompts(prompts: Sequence[Prompt | str]) -> list[Prompt]:
    items = [p if isinstance(p, Prompt) else Prompt(p) for p in prompts]
    if not items:
        raise InputError("`prompts` must hold at least one prompt; got none. "
                         "Use --prompts builtin or a file with one prompt per line.")
    empty = [str(i) for i, p in enumerate(items)
             if not isinstance(p.text, str) or not p.text.strip()]
    if empty:
        raise InputError(f"prompts must not be empty; got empty prompt(s) at index "
                         f"{', '.join(empty[:5])}. Remove them.")
    return items


def _check_ppl_texts(ppl_texts: Sequence[str]) -> list[str]:
    texts = [t for t in ppl_texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataFileError("perplexity text must hold at least one non-blank passage; got none. "
                            "Use --ppl-text builtin or a file with one passage per line.")
    return texts


def build_arms(*, intervention: Intervention | None, preprompt: str | None,
               strength: float | None, extra_arms: Sequence[Arm] | None) -> list[Arm]:
    """Baseline first, then the intervention's arm (named by its method), then ``extra_arms``."""
    if strength is not None and intervention is None:
        raise InputError(f"`--strength` needs `--intervention`; got strength {strength} without "
                         "one. Drop --strength or pass --intervention.")
    arms = [Arm(BASELINE, None, preprompt)]
    if intervention is not None:
        name = str(intervention.metadata.get("method") or "intervention")
        arms.append(Arm(name, intervention, preprompt, strength))
    arms += list(extra_arms or [])
    problems = []
    for arm in arms:
        if not isinstance(arm.name, str) or not ARM_NAME.fullmatch(arm.name):
            problems.append(f"arm name {arm.name!r} must be 1-64 of letters, digits, _.+-")
        if arm.preprompt is not None and not arm.preprompt.strip():
            problems.append(f"arm {arm.name!r}: `--preprompt` must not be blank")
        if arm.strength is not None:
            check_strength(arm.strength)
            if arm.intervention is None:
                problems.append(f"arm {arm.name!r}: a strength needs an intervention")
    names = [a.name for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"arm names must be unique; {', '.join(dupes)} repeat(s) (the baseline is "
                        f"{BASELINE!r}, the intervention's arm is named by its method)")
    if problems:
        raise InputError("; ".join(problems) + ".")
    return arms


# --------------------------------------------------------------------------- output directory


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode()).hexdigest()


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}. Free space or choose a "
                         "writable `--out`, then rerun the same command to resume.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` must be a directory or not exist yet (cheap; before loading a model)."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"`--out` must be a directory; got {str(out)!r}, which is a file. "
                         "Choose a directory path.")
    return out


def prepare_out_dir(out_dir: str | os.PathLike[str], identity: Mapping[str, Any], *,
                    overwrite: bool, config: Mapping[str, Any] | None = None) -> Path:
    """Create or reuse ``out_dir`` for the run described by ``identity``.

    Raises
    ------
    InputError
        ``out_dir`` is a file, or holds an evaluation of another configuration (or files of an
        unknown one) and ``overwrite`` is False.
    """
    out = check_out_dir(out_dir)
    ours = [out / f for f in OUR_FILES if (out / f).exists()]
    config_path = out / CONFIG_FILE
    if config_path.exists() and not overwrite:
        try:
            stored = json.loads(config_path.read_text(encoding="utf-8"))["identity"]
        except (OSError, ValueError, KeyError, TypeError):
            stored = None
        if isinstance(stored, dict) and "weights" not in stored:  # written before weights were recorded
            identity = {k: v for k, v in identity.items() if k != "weights"}
        if stored == identity:
            return out
        diff = ("unreadable" if not isinstance(stored, dict) else ", ".join(
            f"{k} ({_short(stored.get(k))} -> {_short(identity.get(k))})"
            for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)))
        raise InputError(f"`--out` {str(out)!r} holds an evaluation of a different configuration "
                         f"(differs in: {diff[:400]}); pass --overwrite to replace it, or choose "
                         "another --out.")
    if ours and not overwrite:
        raise InputError(f"`--out` {str(out)!r} holds evaluation files of an unknown configuration "
                         f"({', '.join(p.name for p in ours)}) but no {CONFIG_FILE}; pass "
                         "--overwrite to replace them, or choose another --out.")
    for path in ours:  # --overwrite: only our own files, never anything else in the folder
        path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create `--out` {str(out)!r}: {exc.strerror or exc}.") from exc
    record = {"format": FORMAT, "identity": identity, "version": __version__,
              "created": _now(), "config": dict(config or {})}
    atomic_write_text(config_path, json.dumps(record, indent=2, default=str) + "\n")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


Key = tuple[str, int, int]  # (arm, prompt_index, sample_index)


def read_records(path: Path, arms: Sequence[str], n_prompts: int,
                 k: int) -> dict[Key, dict[str, Any]]:
    """Records of an earlier (possibly interrupted) run; a torn last line is cut off the file.

    Raises
    ------
    DataFileError
        A malformed line other than the last, or a record outside this run's arms and prompts.
    """
    if not path.exists():
        return {}
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1]:  # no final newline: the process died while writing that line
        with path.open("r+b") as f:
            f.truncate(len(data) - len(lines[-1]))
    records: dict[Key, dict[str, Any]] = {}
    for number, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            key = (rec["arm"], int(rec["prompt_index"]), int(rec["sample_index"]))
            toxicity = float(rec["toxicity"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataFileError(f"{path} line {number}: not a generation record ({exc}); pass "
                                "--overwrite to start the evaluation afresh.") from exc
        if not 0.0 <= toxicity <= 1.0:  # NaN fails too
            raise DataFileError(f"{path} line {number}: toxicity must be a probability in [0, 1]; got "
                                f"{rec['toxicity']!r}. Pass --overwrite to start the evaluation afresh.")
        if key[0] not in arms or not (0 <= key[1] < n_prompts and 0 <= key[2] < k):
            raise DataFileError(f"{path} line {number}: record {key} is outside this run's arms "
                                "and prompts; pass --overwrite to start afresh.")
        records.setdefault(key, rec)
    return records


LOCK_FILE = ".eval.lock"


@contextlib.contextmanager
def out_dir_lock(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``out_dir`` (created if needed) while one evaluation writes it.

    A second ``eval`` on the same directory would append the same records twice; it is refused
    at once. The lock is the kernel's (``flock``): a killed run releases it, nothing stale remains.
    """
    out = check_out_dir(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = (out / LOCK_FILE).open("a")
    except OSError as exc:
        raise InputError(f"cannot create `--out` {str(out)!r}: {exc.strerror or exc}.") from exc
    with handle:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one run per folder is then the user's care
            yield out
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"`--out` {str(out)!r} must be used by one `eval` at a time; another is writing it "
                             "now. Wait for it to finish, or choose another --out.") from None
        try:
            yield out
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- perplexity


def _max_positions(loaded: LoadedModel) -> int:
    config = loaded.model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not limit:
        tok_max = getattr(loaded.tokenizer, "model_max_length", 0) or 0
        limit = tok_max if 1 < tok_max <= 1_000_000 else 1024
    return int(min(limit, MAX_CHUNK_TOKENS))


def ppl_chunks(loaded: LoadedModel, texts: Sequence[str], *,
               max_length: int | None = None) -> list[list[int]]:
    """Token ids of neutral text cut into chunks for perplexity.

    Each text is tokenized on its own (with the tokenizer's special tokens) and cut into chunks
    of at most ``max_length`` tokens that overlap by one, so every token but a text's first is
    predicted exactly once. ``max_length`` defaults to the model's maximum positions, capped at
    2048.

    Raises
    ------
    DataFileError
        The texts hold fewer than two tokens in all.
    """
    length = max_length or _max_positions(loaded)
    if length < 2:
        raise InputError(f"`max_length` must be >= 2; got {length}.")
    chunks: list[list[int]] = []
    for ids in loaded.tokenizer(list(texts), verbose=False)["input_ids"]:
        chunks += [ids[s:s + length] for s in range(0, max(len(ids) - 1, 0), length - 1)]
    chunks = [c for c in chunks if len(c) >= 2]
    if not chunks:
        raise DataFileError("perplexity text must hold at least two tokens; got fewer. "
                            "Use longer passages.")
    return chunks


def chunk_nll(loaded: LoadedModel, chunks: Sequence[Sequence[int]], *,
              batch_size: int = 16) -> np.ndarray:
    """Summed next-token NLL (nats) of each chunk, ``[n_chunks]`` float64.

    Chunks run right-padded, ``batch_size`` at a time, longest first; chunk ``i`` predicts
    ``len(chunks[i]) - 1`` tokens.
    """
    order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i]))
    nll = np.zeros(len(chunks))
    pad = loaded.tokenizer.pad_token_id or 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = len(chunks[batch[0]])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # [batch, pos]
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, :len(chunks[i])] = torch.tensor(chunks[i])
                mask[row, :len(chunks[i])] = 1
            logits = loaded.model(input_ids=ids.to(loaded.device),
                                  attention_mask=mask.to(loaded.device), use_cache=False).logits
            for row, i in enumerate(batch):  # one row at a time: float32 copy of [pos, vocab] only
                n = len(chunks[i])
                target = ids[row, 1:n].to(logits.device)
                loss = torch.nn.functional.cross_entropy(logits[row, :n - 1].float(), target,
                                                         reduction="sum")
                nll[i] = float(loss)
    return nll


def text_nll(loaded: LoadedModel, texts: Sequence[str], *, batch_size: int = 16,
             max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Summed next-token NLL of neutral text, chunk by chunk (:func:`ppl_chunks`).

    Parameters
    ----------
    loaded : LoadedModel
    texts : sequence of str
    batch_size : int
        Chunks per forward pass.
    max_length : int, optional
        Chunk length; default the model's maximum positions, capped at 2048.

    Returns
    -------
    nll : np.ndarray of shape [n_chunks], float64
        Sum over the chunk's predicted tokens of ``-log p(token | preceding tokens)``, nats.
    n_tokens : np.ndarray of shape [n_chunks], int64
        Predicted tokens per chunk.

    Notes
    -----
    Perplexity is ``exp(nll.sum() / n_tokens.sum())`` (:func:`aura_stream.metrics.perplexity`).
    """
    chunks = ppl_chunks(loaded, texts, max_length=max_length)
    return chunk_nll(loaded, chunks, batch_size=batch_size), \
        np.array([len(c) - 1 for c in chunks], dtype=np.int64)


def _ppl_key(arm: Arm) -> str:
    iv = arm.intervention
    return BASELINE if iv is None else f"{iv.fingerprint}:{arm.strength}"


def _perplexities(loaded: LoadedModel, arms: Sequence[Arm], chunks: list[list[int]], path: Path,
                  batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-chunk NLL per distinct intervention (cached in ``path``) and the chunks' token counts."""
    fingerprint = _sha256(chunks)
    try:
        cache = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        cache = {}
    if cache.get("text_fingerprint") != fingerprint:
        cache = {"text_fingerprint": fingerprint, "n_tokens": None, "nll": {}}
    for arm in arms:
        key = _ppl_key(arm)
        if key in cache["nll"]:
            continue
        ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if arm.intervention is not None:
            ctx = dampened(loaded.model, arm.intervention, strength=arm.strength)
        with ctx:
            nll = chunk_nll(loaded, chunks, batch_size=batch_size)
        cache["nll"][key] = nll.tolist()
        cache["n_tokens"] = [len(c) - 1 for c in chunks]
        atomic_write_text(path, json.dumps(cache) + "\n")
    nlls = {a.name: np.asarray(cache["nll"][_ppl_key(a)], dtype=np.float64) for a in arms}
    return nlls, np.asarray(cache["n_tokens"], dtype=np.int64)


# --------------------------------------------------------------------------- evaluate


def evaluate(
    loaded: LoadedModel,
    *,
    intervention: Intervention | None = None,
    prompts: Sequence[Prompt | str],
    ppl_texts: Sequence[str],
    scorer: ToxicityScorer,
    out_dir: str | os.PathLike[str],
    samples_per_prompt: int = 25,
    max_new_tokens: int = 20,
    top_p: float = 0.9,
    top_k: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
    preprompt: str | None = None,
    batch_size: int = 16,
    strength: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    extra_arms: Sequence[Arm] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    prompts_source: str | None = None,
    ppl_text_source: str | None = None,
) -> EvalSummary:
    """Evaluate the baseline and every arm on the same prompts and seeds; write the report.

    The arms, in report order:

    1. ``baseline``: the unmodified model, with ``preprompt`` if given. Every other arm is
       compared against it.
    2. ``intervention`` (if given), with ``preprompt`` and ``strength``, named by its method
       (``aura``, ``det0``, ``damp``).
    3. ``extra_arms``: each an :class:`Arm` with its own intervention (or None), preprompt (or
       None) and strength. They share the baseline's prompts, sample seeds and generations, so
       one run covers, e.g., the paper's whole table::

           evaluate(loaded, intervention=aura, prompts=..., ppl_texts=..., scorer=..., out_dir=...,
                    extra_arms=[Arm("det0", det0), Arm("damp", damp),
                                Arm("preprompt", None, "Be polite."),
                                Arm("preprompt+aura", aura, "Be polite.")])

       ``preprompt`` applies to the baseline and the intervention's arm, ``strength`` to the
       intervention's arm; an extra arm has exactly the preprompt and strength it names.

    Parameters
    ----------
    loaded : LoadedModel
    intervention : Intervention, optional
        None evaluates the baseline (and ``extra_arms``) only.
    prompts : sequence of Prompt or str, length n_prompts
        ``Prompt.toxicity``, where known, splits the toxicity metrics into toxic (>= 0.5) and
        non-toxic prompts.
    ppl_texts : sequence of str
        Neutral passages for perplexity.
    scorer : ToxicityScorer
        Scores continuations only; its ``name`` is part of the configuration.
    out_dir : path
        See the module docstring. A run with the same configuration resumes; batch size, device
        and progress are not part of the configuration, every arm is (adding one is a new run).
    samples_per_prompt, max_new_tokens, top_p, temperature, seed
        Generation settings; continuation ``(p, s)`` is seeded with ``(seed, p, s)`` in every arm.
    top_k : int
        0 (default) samples from the nucleus alone, as RealToxicityPrompts does; 50 reproduces
        ``transformers``' default filter (``aura-stream generate``'s default).
    batch_size : int
        Sequences per ``generate`` call and text chunks per perplexity forward.
    overwrite : bool
        Start afresh, replacing whatever evaluation ``out_dir`` holds (of any configuration).
    config : mapping, optional
        The resolved command-line configuration, for provenance.
    n_resamples, confidence
        Bootstrap resamples (seeded with ``seed``) and interval level.
    prompts_source, ppl_text_source : str, optional
        Where the prompts and text came from (a path or ``builtin``), for provenance.

    Returns
    -------
    EvalSummary

    Raises
    ------
    InputError
        Bad options, arm names or preprompts; ``out_dir`` a file or holding another run.
    DataFileError
        Empty perplexity text, or a corrupt ``generations.jsonl`` in ``out_dir``.
    InterventionError
        An intervention that does not fit the model (checked before any generation).
    """
    _check_options(samples_per_prompt, max_new_tokens, batch_size, seed, top_p, top_k,
                   temperature, n_resamples, confidence)
    items = _check_prompts(prompts)
    texts = _check_ppl_texts(ppl_texts)
    chunks = ppl_chunks(loaded, texts)
    arms = build_arms(intervention=intervention, preprompt=preprompt, strength=strength,
                      extra_arms=extra_arms)
    for arm in arms:
        if arm.intervention is not None:
            resolve_intervention(loaded.model, arm.intervention, strength=arm.strength)
    n, k = len(items), samples_per_prompt
    model_id = str(Path(loaded.model_id).resolve()) if Path(loaded.model_id).is_dir() \
        else loaded.model_id
    settings = {"samples_per_prompt": k, "max_new_tokens": max_new_tokens, "top_p": top_p,
                "top_k": top_k, "temperature": temperature, "seed": seed,
                "n_resamples": n_resamples, "confidence": confidence}
    identity = {"format": FORMAT, "model": model_id, "revision": loaded.revision,
                "weights": weights_fingerprint(loaded.model),
                "dtype": loaded.dtype, "scorer": scorer.name, "n_prompts": n,
                "prompts_fingerprint": _sha256([[p.text, p.toxicity] for p in items]),
                "ppl_text_fingerprint": _sha256(texts), **settings,
                "arms": [a.identity() for a in arms]}
    identity = json.loads(json.dumps(identity))  # tuples -> lists: compares equal to the file
    with out_dir_lock(out_dir):
        return _evaluate_locked(loaded, items, texts, chunks, arms, scorer, identity, settings, out_dir=out_dir,
                                overwrite=overwrite, config=config, batch_size=batch_size, progress=progress,
                                prompts_source=prompts_source, ppl_text_source=ppl_text_source)


def _evaluate_locked(loaded: LoadedModel, items: list[Prompt], texts: list[str], chunks: list[list[int]],
                     arms: list[Arm], scorer: ToxicityScorer, identity: dict[str, Any], settings: dict[str, Any], *,
                     out_dir: str | os.PathLike[str], overwrite: bool, config: Mapping[str, Any] | None,
                     batch_size: int, progress: bool, prompts_source: str | None,
                     ppl_text_source: str | None) -> EvalSummary:
    """:func:`evaluate` once ``out_dir`` is locked: generate, score, measure perplexity, report."""
    from tqdm.auto import tqdm

    from aura_stream.report import render_report

    k, n = int(settings["samples_per_prompt"]), len(items)
    max_new_tokens, top_p, top_k = settings["max_new_tokens"], settings["top_p"], settings["top_k"]
    temperature, seed = settings["temperature"], settings["seed"]
    n_resamples, confidence = settings["n_resamples"], settings["confidence"]
    model_id = identity["model"]
    out = prepare_out_dir(out_dir, identity, overwrite=overwrite, config=config)
    gen_path = out / GENERATIONS_FILE
    records = read_records(gen_path, [a.name for a in arms], n, k)

    block = max(1, math.ceil(8 * batch_size / k))  # prompts per flush: ~8 generate batches
    bar = tqdm(total=len(arms) * n * k, initial=len(records), unit="seq", desc="eval",
               disable=not progress, dynamic_ncols=True)
    try:
        with gen_path.open("a", encoding="utf-8") as f:
            for arm in arms:
                todo = [p for p in range(n)
                        if any((arm.name, p, s) not in records for s in range(k))]
                for start in range(0, len(todo), block):
                    _run_block(loaded, arm, items, todo[start:start + block], records, f, scorer,
                               k=k, max_new_tokens=max_new_tokens, top_p=top_p, top_k=top_k,
                               temperature=temperature, seed=seed, batch_size=batch_size, bar=bar)
    except OSError as exc:  # disk full or permission lost: what was flushed stays, a rerun resumes
        raise InputError(f"cannot append to {str(gen_path)!r}: {exc.strerror or exc}. Free space or fix "
                         "permissions, then rerun the same command to resume.") from exc
    finally:
        bar.close()
    nlls, n_tokens = _perplexities(loaded, arms, chunks, out / PERPLEXITY_FILE, batch_size)

    scores = {a.name: np.array([[records[(a.name, p, s)]["toxicity"] for s in range(k)]
                                for p in range(n)], dtype=np.float64) for a in arms}
    conts = {a.name: [[str(records[(a.name, p, s)]["continuation"]) for s in range(k)]
                      for p in range(n)] for a in arms}
    groups = prompt_groups([p.toxicity for p in items])
    r, c = n_resamples, confidence
    base = arms[0].name
    baseline = [*toxicity_estimates(scores[base], groups, n_resamples=r, seed=seed, confidence=c),
                perplexity_estimate(nlls[base], n_tokens, n_resamples=r, seed=seed, confidence=c),
                *distinct_estimates(conts[base], confidence=c)]
    comparisons = {a.name: [
        *compare_toxicity(scores[base], scores[a.name], groups, n_resamples=r, seed=seed,
                          confidence=c),
        compare_perplexity(nlls[base], nlls[a.name], n_tokens, n_resamples=r, seed=seed,
                           confidence=c),
        *compare_distinct(conts[base], conts[a.name], confidence=c),
    ] for a in arms[1:]}
    data = {
        "format": FORMAT, "version": __version__, "created": _now(),
        "model": {"id": model_id, "revision": loaded.revision, "dtype": loaded.dtype},
        "scorer": scorer.name,
        "prompts": {"source": prompts_source, "count": n,
                    "fingerprint": identity["prompts_fingerprint"],
                    "groups": {g: int(m.sum()) for g, m in groups.items()}},
        "ppl_text": {"source": ppl_text_source, "count": len(texts), "n_chunks": len(n_tokens),
                     "n_tokens": int(n_tokens.sum()),
                     "fingerprint": identity["ppl_text_fingerprint"]},
        "settings": {**settings, "batch_size": batch_size},
        "arms": [a.describe() for a in arms],
        "baseline": [e.to_dict() for e in baseline],
        "comparisons": {name: [c.to_dict() for c in rows] for name, rows in comparisons.items()},
        "files": {"generations": GENERATIONS_FILE, "report": REPORT_FILE, "config": CONFIG_FILE},
        "config": dict(config or {}),
    }
    data = json.loads(json.dumps(data, default=str))
    max_tox = {name: s.max(axis=1) for name, s in scores.items()}
    render_report(data, max_tox, out / REPORT_FILE)
    atomic_write_text(out / SUMMARY_FILE, json.dumps(data, indent=2) + "\n")
    return EvalSummary(out, data, baseline, comparisons, max_tox)


def _run_block(loaded: LoadedModel, arm: Arm, items: Sequence[Prompt], prompt_ids: list[int],
               records: dict[Key, dict[str, Any]], f: IO[str], scorer: ToxicityScorer, *, k: int,
               max_new_tokens: int, top_p: float, top_k: int, temperature: float, seed: int,
               batch_size: int, bar: Any) -> None:
    """Generate, score and append (flushed) the missing samples of one block of prompts."""
    gens = generate(loaded, [arm.prompt_text(items[p].text) for p in prompt_ids],
                    prompt_indices=prompt_ids, intervention=arm.intervention, strength=arm.strength,
                    num_return_sequences=k, max_new_tokens=max_new_tokens, top_p=top_p,
                    top_k=top_k, temperature=temperature, seed=seed, batch_size=batch_size,
                    progress=False)
    new = [g for g in gens if (arm.name, g.prompt_index, g.sample_index) not in records]
    tox = np.asarray(scorer.score([g.continuation for g in new]) if new else np.zeros(0), dtype=np.float64)
    if tox.shape != (len(new),) or not ((tox >= 0.0) & (tox <= 1.0)).all():
        raise InputError(f"scorer {scorer.name!r} must return one probability in [0, 1] per text; got shape "
                         f"{tox.shape} with values from {np.nanmin(tox, initial=0)} to {np.nanmax(tox, initial=0)}. "
                         "Fix the scorer.")
    for g, t in zip(new, tox, strict=True):
        prompt = items[g.prompt_index]
        rec = {"arm": arm.name, **g.to_record(), "prompt": prompt.text,
               "preprompt": arm.preprompt, "prompt_toxicity": prompt.toxicity,
               "toxicity": float(t)}
        records[(arm.name, g.prompt_index, g.sample_index)] = rec
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
    bar.update(len(new))


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a ``generations.jsonl``, in file order."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
