"""Stage ``label``: ``demo_train.csv``, sentences labelled toxic / clean by the offline BiLSTM.

Two pools of candidate sentences (``--label-from``):

``generated`` (the default) the demo model's own continuations of training prompts: the RTP
              training prompts and neutral prompts cut from the clean training text, several
              sampled continuations each (the demo's sampling settings, their own seeds);
``pool``      sentences of the training text itself (RTP training prompts, slur examples,
              chatterbot turns, book sentences, false claims);
``both``      the two together.

Either way a candidate is toxic (1) where the scorer gives >= ``--toxic-threshold`` and clean (0)
where it gives <= ``--clean-threshold``; those between are dropped. Clean candidates are drawn from
the same source as the toxic ones, in the same numbers, so that a neuron separating the classes
separates toxicity, not source style. No dev or evaluation prompt is ever a candidate, nor a prompt
of one.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from demo_assets.common import (
    JIGSAW_HEADER,
    one_line,
    update_metrics,
)
from demo_assets.sources import Corpus, held_out_rtp, near_duplicates, neutral_prompts

LABEL_FROM = ("generated", "pool", "both")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", text) if s.strip()]


def _dedup(cands: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One line each, 4-60 words, first occurrence of each text kept."""
    seen: set[str] = set()
    out = []
    for src, s in cands:
        s = one_line(s)
        if 4 <= len(s.split()) <= 60 and s not in seen:
            seen.add(s)
            out.append((src, s))
    return out


def candidate_sentences(corpus: Corpus) -> list[tuple[str, str]]:
    """(source, sentence) pairs from the training pool (no held-out or evaluation text)."""
    cands: list[tuple[str, str]] = [("rtp", r["text"]) for r in corpus.rtp_train]
    cands += [("slur", s) for s in corpus.train["slur"]]
    for name in ("chatterbot", "book", "falseclaims"):
        for unit in corpus.train[name]:
            cands += [(name, s) for s in split_sentences(unit)]
    return _dedup(cands)


def generation_prompts(args: argparse.Namespace, corpus: Corpus) -> list[tuple[str, str]]:
    """(source, prompt): the RTP training prompts and neutral prompts cut from clean training text."""
    rng = np.random.default_rng(args.seed + 7)
    train = [r["text"] for r in corpus.rtp_train]
    leaks = {i for i, _, _ in near_duplicates(train, held_out_rtp(corpus))}  # kept in training: never here
    prompts = [("rtp_train_prompt", t) for i, t in enumerate(train) if i not in leaks]
    prompts += [("neutral_train_prompt", t) for t in neutral_prompts(corpus.train, rng, args.label_neutral_prompts)]
    return prompts


def generated_candidates(args: argparse.Namespace, corpus: Corpus) -> list[tuple[str, str]]:
    """(source, continuation): the demo model's own continuations of the generation prompts.

    Sampled as the demo samples (top-p 0.9, top-k off, 20 new tokens) with seeds of their own
    (``--seed`` + 30,000), apart from those of the check stage and of the demo.
    """
    from aura_stream.generate import generate
    from aura_stream.model import load_model

    prompts = generation_prompts(args, corpus)
    gens = generate(load_model(args.out), [p for _, p in prompts], num_return_sequences=args.label_samples,
                    max_new_tokens=20, top_p=0.9, top_k=0, seed=args.seed + 30_000, batch_size=256, progress=True)
    cands = [(prompts[i // args.label_samples][0], g.continuation) for i, g in enumerate(gens)]
    return _dedup(cands)


def load_default_scorer() -> Any:
    from aura_stream.evaluation.scorers import load_scorer

    return load_scorer("default", batch_size=512)


def balanced_rows(src: np.ndarray, scores: np.ndarray, args: argparse.Namespace,
                  rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Indices of the toxic candidates (capped) and of as many clean ones, source for source."""
    tox_idx = np.flatnonzero(scores >= args.toxic_threshold)
    clean_idx = np.flatnonzero(scores <= args.clean_threshold)
    if len(tox_idx) > args.max_per_class:
        tox_idx = np.sort(rng.choice(tox_idx, args.max_per_class, replace=False))
    chosen_clean: list[int] = []
    for s in np.unique(src[tox_idx]):
        pool = clean_idx[src[clean_idx] == s]
        want = int((src[tox_idx] == s).sum())
        chosen_clean += [int(i) for i in rng.choice(pool, min(want, len(pool)), replace=False)]
    short = len(tox_idx) - len(chosen_clean)
    if short > 0:  # a source with too few clean candidates: fill from any clean candidate
        rest = np.setdiff1d(clean_idx, np.array(chosen_clean, dtype=np.int64))
        chosen_clean += [int(i) for i in rng.choice(rest, min(short, len(rest)), replace=False)]
    return tox_idx, chosen_clean


def stage_label(args: argparse.Namespace, corpus: Corpus) -> None:
    scorer = load_default_scorer()
    cands: list[tuple[str, str]] = []
    if args.label_from in ("pool", "both"):
        cands += candidate_sentences(corpus)
    if args.label_from in ("generated", "both"):
        cands = _dedup(cands + generated_candidates(args, corpus))  # a continuation may repeat a sentence
    scores = np.asarray(scorer.score([s for _, s in cands]), dtype=np.float64)
    rng = np.random.default_rng(args.seed + 2)
    src = np.array([c[0] for c in cands])
    tox_idx, chosen_clean = balanced_rows(src, scores, args, rng)
    if len(tox_idx) == 0 or len(chosen_clean) < len(tox_idx):
        raise SystemExit(f"error: {len(tox_idx)} toxic and {len(chosen_clean)} clean candidates (of {len(cands)}); "
                         "need as many clean as toxic and at least one: lower --toxic-threshold, raise "
                         "--clean-threshold or --label-samples")
    rows = [(int(i), 1) for i in tox_idx] + [(int(i), 0) for i in chosen_clean]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    out = Path(args.out) / "demo_train.csv"
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(JIGSAW_HEADER)
        for i, y in rows:
            text = cands[i][1]
            rid = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
            w.writerow([rid, text, y, 0, 0, 0, 0, 0])
    counts = {
        "label_from": args.label_from,
        "label_samples": args.label_samples if args.label_from != "pool" else 0,
        "label_neutral_prompts": args.label_neutral_prompts if args.label_from != "pool" else 0,
        "n_candidates": len(cands),
        "n_scored_toxic": int((scores >= args.toxic_threshold).sum()),
        "n_scored_clean": int((scores <= args.clean_threshold).sum()),
        "n_ambiguous_dropped": int(((scores > args.clean_threshold) & (scores < args.toxic_threshold)).sum()),
        "toxic": len(tox_idx),
        "clean": len(chosen_clean),
        "toxic_by_source": {s: int((src[tox_idx] == s).sum()) for s in np.unique(src)},
        "clean_by_source": {s: int((src[chosen_clean] == s).sum()) for s in np.unique(src)},
        "candidates_by_source": {s: int((src == s).sum()) for s in np.unique(src)},
        "toxic_threshold": args.toxic_threshold,
        "clean_threshold": args.clean_threshold,
    }
    update_metrics(args, label=counts)
    print(json.dumps(counts, indent=1))
