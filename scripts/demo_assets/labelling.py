"""Stage ``label``: ``demo_train.csv`` from training-pool sentences scored by the offline BiLSTM."""

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
from demo_assets.sources import Corpus


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", text) if s.strip()]


def candidate_sentences(corpus: Corpus) -> list[tuple[str, str]]:
    """(source, sentence) pairs from the training pool (no held-out or evaluation text)."""
    cands: list[tuple[str, str]] = [("rtp", r["text"]) for r in corpus.rtp_train]
    cands += [("slur", s) for s in corpus.train["slur"]]
    for name in ("chatterbot", "book", "falseclaims"):
        for unit in corpus.train[name]:
            cands += [(name, s) for s in split_sentences(unit)]
    seen: set[str] = set()
    out = []
    for src, s in cands:
        s = one_line(s)
        if 4 <= len(s.split()) <= 60 and s not in seen:
            seen.add(s)
            out.append((src, s))
    return out


def load_default_scorer() -> Any:
    from aura_stream.scorers import load_scorer

    return load_scorer("default")


def stage_label(args: argparse.Namespace, corpus: Corpus) -> None:
    scorer = load_default_scorer()
    cands = candidate_sentences(corpus)
    scores = np.asarray(scorer.score([s for _, s in cands]), dtype=np.float64)
    rng = np.random.default_rng(args.seed + 2)
    src = np.array([c[0] for c in cands])
    tox_idx = np.flatnonzero(scores >= args.toxic_threshold)
    clean_idx = np.flatnonzero(scores <= args.clean_threshold)
    if len(tox_idx) > args.max_per_class:
        tox_idx = np.sort(rng.choice(tox_idx, args.max_per_class, replace=False))
    # Clean sentences follow the toxic ones' source mix, so that a neuron separating the classes
    # separates toxicity rather than source style; shortfalls are filled from the clean sources.
    chosen_clean: list[int] = []
    for s in np.unique(src[tox_idx]):
        pool = clean_idx[src[clean_idx] == s]
        want = int((src[tox_idx] == s).sum())
        chosen_clean += list(rng.choice(pool, min(want, len(pool)), replace=False))
    short = len(tox_idx) - len(chosen_clean)
    if short > 0:
        rest = np.setdiff1d(clean_idx, np.array(chosen_clean, dtype=np.int64))
        rest = rest[np.isin(src[rest], ("chatterbot", "book", "falseclaims"))]
        chosen_clean += list(rng.choice(rest, min(short, len(rest)), replace=False))
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
