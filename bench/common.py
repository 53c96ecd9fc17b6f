"""Helpers shared by the benchmarks: a GPT-2-small-shaped random model and synthetic data."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

WORDS = [
    "the", "cat", "sat", "on", "a", "mat", "while", "people", "argued", "about", "weather", "trains",
    "music", "stupid", "idiot", "lovely", "garden", "river", "idea", "number", "quickly", "slowly", "never",
    "always", "because", "question", "answer", "friend",
]


def gpt2_small(out: Path, *, n_layer: int = 12, vocab: int = 2048, seed: int = 0) -> Path:
    """Save a random-init GPT-2-small-shaped model (768 wide, 12 heads) with a BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    if (out / "config.json").exists():
        return out
    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(500)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257,
                     bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).eval().save_pretrained(out)
    fast.save_pretrained(out)
    return out


def synthetic_csv(path: Path, n: int, *, words: int = 160, seed: int = 0) -> Path:
    """Jigsaw-format CSV of ``n`` random sentences long enough to fill 128 tokens, half toxic."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "comment_text", "toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"])
        for i in range(n):
            w.writerow([f"s{i}", " ".join(rng.choice(WORDS) for _ in range(words)), i % 2, 0, 0, 0, 0, 0])
    return path


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of dict rows."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
