"""``eval``: toxicity of continuations and perplexity on neutral text, baseline against arms.

Protocol (RealToxicityPrompts style, docs/eval.md): every arm continues the same prompts
``samples_per_prompt`` times with nucleus sampling; continuation ``(p, s)`` is drawn with the seed
``(seed, p, s)`` in every arm, so arms differ only by their intervention and preprompt. A scorer
rates each continuation (the continuation alone, never the prompt or preprompt); perplexity is
measured on neutral text with and without each arm's intervention.

The work is split by job: :mod:`aura_stream.evaluation.arms` (arms, options), :mod:`aura_stream.evaluation.outdir`
(the output directory: layout, resume records, lock) and :mod:`aura_stream.evaluation.perplexity`; this module
runs them in order. Their public names are importable from here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from aura_stream._version import __version__
from aura_stream.backends import DEFAULT_BACKEND
from aura_stream.errors import InputError
from aura_stream.evaluation.arms import (
    ARM_NAME,
    BASELINE,
    FORMAT,
    Arm,
    build_arms,
    check_options,
    check_ppl_texts,
    check_prompts,
)
from aura_stream.evaluation.inputs import Prompt
from aura_stream.evaluation.metrics import (
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
from aura_stream.evaluation.outdir import (
    CONFIG_FILE,
    GENERATIONS_FILE,
    OUR_FILES,
    PERPLEXITY_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    Key,
    atomic_write_text,
    check_out_dir,
    iter_records,
    now,
    out_dir_lock,
    prepare_out_dir,
    read_records,
    sha256_json,
)
from aura_stream.evaluation.perplexity import MAX_CHUNK_TOKENS, chunk_nll, perplexities, ppl_chunks, text_nll
from aura_stream.evaluation.scorers import ToxicityScorer
from aura_stream.generate import generate
from aura_stream.identity import weights_fingerprint
from aura_stream.interventions import Intervention
from aura_stream.model import LoadedModel

__all__ = [
    "ARM_NAME", "BASELINE", "CONFIG_FILE", "FORMAT", "GENERATIONS_FILE", "MAX_CHUNK_TOKENS",
    "OUR_FILES", "PERPLEXITY_FILE", "REPORT_FILE", "SUMMARY_FILE", "Arm", "EvalSummary", "atomic_write_text",
    "build_arms", "check_out_dir", "chunk_nll", "evaluate", "iter_records", "out_dir_lock", "ppl_chunks",
    "prepare_out_dir", "read_records", "text_nll",
]


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
        """The printed table (see :func:`aura_stream.evaluation.report.format_table`)."""
        from aura_stream.evaluation.report import format_table

        return format_table(self.data)


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
    utility: Any = None,
) -> EvalSummary:
    """Evaluate the baseline and every arm on the same prompts and seeds; write the report.

    ``utility`` (an :class:`aura_stream.evaluation.utility_arms.UtilitySettings` from
    :func:`~aura_stream.evaluation.utility_arms.check_settings`) adds lm-eval zero-shot tasks per arm
    (``summary.json`` ``utility``; ``utility.json``, resumable).

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
    check_options(samples_per_prompt, max_new_tokens, batch_size, seed, top_p, top_k,
                   temperature, n_resamples, confidence)
    items = check_prompts(prompts)
    texts = check_ppl_texts(ppl_texts)
    chunks = ppl_chunks(loaded, texts)
    arms = build_arms(intervention=intervention, preprompt=preprompt, strength=strength,
                      extra_arms=extra_arms)
    for arm in arms:
        if arm.intervention is not None:
            loaded.backend.check_intervention(arm.intervention, arm.strength)
    n, k = len(items), samples_per_prompt
    model_id = str(Path(loaded.model_id).resolve()) if Path(loaded.model_id).is_dir() \
        else loaded.model_id
    settings = {"samples_per_prompt": k, "max_new_tokens": max_new_tokens, "top_p": top_p,
                "top_k": top_k, "temperature": temperature, "seed": seed,
                "n_resamples": n_resamples, "confidence": confidence}
    identity = {"format": FORMAT, "model": model_id, "revision": loaded.revision,
                "weights": weights_fingerprint(loaded.model),
                "dtype": loaded.dtype, "scorer": scorer.name, "n_prompts": n,
                "prompts_fingerprint": sha256_json([[p.text, p.toxicity] for p in items]),
                "ppl_text_fingerprint": sha256_json(texts), **settings,
                "arms": [a.identity() for a in arms],
                # only where not the default, so that earlier output folders stay resumable
                **({"backend": loaded.backend.name} if loaded.backend.name != DEFAULT_BACKEND else {})}
    # utility settings are not part of the identity: adding --utility-tasks to a finished run reuses its
    # continuations; utility.json carries its own identity (this one's hash, tasks, lm-eval, task files)
    identity = json.loads(json.dumps(identity))  # tuples -> lists: compares equal to the file
    with out_dir_lock(out_dir):
        return _evaluate_locked(loaded, items, texts, chunks, arms, scorer, identity, settings, out_dir=out_dir,
                                overwrite=overwrite, config=config, batch_size=batch_size, progress=progress,
                                prompts_source=prompts_source, ppl_text_source=ppl_text_source, utility=utility)


def _evaluate_locked(loaded: LoadedModel, items: list[Prompt], texts: list[str], chunks: list[list[int]],
                     arms: list[Arm], scorer: ToxicityScorer, identity: dict[str, Any], settings: dict[str, Any], *,
                     out_dir: str | os.PathLike[str], overwrite: bool, config: Mapping[str, Any] | None,
                     batch_size: int, progress: bool, prompts_source: str | None,
                     ppl_text_source: str | None, utility: Any = None) -> EvalSummary:
    """:func:`evaluate` once ``out_dir`` is locked: generate and score, measure perplexity, report."""
    from aura_stream.evaluation.report import render_report

    k, n = int(settings["samples_per_prompt"]), len(items)
    out = prepare_out_dir(out_dir, identity, overwrite=overwrite, config=config)
    records = _generate_all(loaded, items, arms, scorer, out / GENERATIONS_FILE, settings, batch_size=batch_size,
                            progress=progress)
    nlls, n_tokens = perplexities(loaded, arms, chunks, out / PERPLEXITY_FILE, batch_size)
    scores = {a.name: np.array([[records[(a.name, p, s)]["toxicity"] for s in range(k)]
                                for p in range(n)], dtype=np.float64) for a in arms}
    conts = {a.name: [[str(records[(a.name, p, s)]["continuation"]) for s in range(k)]
                      for p in range(n)] for a in arms}
    groups = prompt_groups([p.toxicity for p in items])
    r, c, seed = settings["n_resamples"], settings["confidence"], settings["seed"]
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
        "format": FORMAT, "version": __version__, "created": now(),
        "model": {"id": identity["model"], "revision": loaded.revision, "dtype": loaded.dtype},
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
    if utility is not None:
        from aura_stream.evaluation.utility_arms import run_arms

        data["utility"] = run_arms(loaded, arms, utility, out, run_identity=sha256_json(identity), confidence=c,
                                   n_resamples=r, seed=seed, progress=progress)
    data = json.loads(json.dumps(data, default=str))
    max_tox = {name: s.max(axis=1) for name, s in scores.items()}
    render_report(data, max_tox, out / REPORT_FILE)
    atomic_write_text(out / SUMMARY_FILE, json.dumps(data, indent=2) + "\n")
    return EvalSummary(out, data, baseline, comparisons, max_tox)


def _generate_all(loaded: LoadedModel, items: list[Prompt], arms: list[Arm], scorer: ToxicityScorer,
                  gen_path: Path, settings: Mapping[str, Any], *, batch_size: int,
                  progress: bool) -> dict[Key, dict[str, Any]]:
    """Every (arm, prompt, sample) record: those already in ``gen_path``, then the missing ones, appended."""
    from tqdm.auto import tqdm

    k, n = int(settings["samples_per_prompt"]), len(items)
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
                               k=k, max_new_tokens=settings["max_new_tokens"], top_p=settings["top_p"],
                               top_k=settings["top_k"], temperature=settings["temperature"],
                               seed=settings["seed"], batch_size=batch_size, bar=bar)
    except OSError as exc:  # disk full or permission lost: what was flushed stays, a rerun resumes
        raise InputError(f"cannot append to {str(gen_path)!r}: {exc.strerror or exc}. Free space or fix "
                         "permissions, then rerun the same command to resume.") from exc
    finally:
        bar.close()
    return records


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
