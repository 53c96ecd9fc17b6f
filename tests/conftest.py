"""Shared fixtures: tiny random-init Hugging Face models and a real BPE tokenizer, built offline."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
JIGSAW_SAMPLE = FIXTURES / "jigsaw_train_sample.csv"
VOCAB = 320


def jigsaw_sample() -> Path:
    """The 16-row Jigsaw sample (8 toxic, 8 clean) kept in ``tests/fixtures`` (see its README)."""
    assert JIGSAW_SAMPLE.is_file(), f"{JIGSAW_SAMPLE} is missing from this checkout"
    return JIGSAW_SAMPLE


def build_tokenizer(out: Path) -> Any:
    """A byte-level BPE tokenizer trained on the Jigsaw sample, saved as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r["comment_text"] for r in csv.DictReader(jigsaw_sample().open(encoding="utf-8"))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(out)
    return fast


def tiny_config(kind: str) -> Any:
    """Config of a tiny random model of one architecture family."""
    import transformers as T

    common: dict[str, Any] = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    if kind == "gpt2":
        return T.GPT2Config(n_layer=3, n_embd=32, n_head=4, n_positions=128, **common)
    if kind == "llama":
        return T.LlamaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, **common)
    if kind == "falcon":  # Falcon-40B's shape: new decoder architecture with several KV heads
        return T.FalconConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=4, num_kv_heads=2,
                              new_decoder_architecture=True, parallel_attn=True, bias=False, **common)
    if kind == "falcon7b":  # Falcon-7B's shape: multi-query, parallel attention
        return T.FalconConfig(num_hidden_layers=3, hidden_size=32, num_attention_heads=4, multi_query=True,
                              new_decoder_architecture=False, parallel_attn=True, bias=False, **common)
    if kind == "neox":
        return T.GPTNeoXConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                               max_position_embeddings=128, **common)
    raise ValueError(kind)


KINDS = ("gpt2", "llama", "falcon", "neox")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Directories of saved tiny models (gpt2, llama, falcon, falcon7b, neox), seeded."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("models")
    tok_dir = root / "tokenizer"
    build_tokenizer(tok_dir)
    out = {}
    for i, kind in enumerate((*KINDS, "falcon7b")):
        torch.manual_seed(1000 + i)
        model = AutoModelForCausalLM.from_config(tiny_config(kind)).eval()
        with torch.no_grad():  # bigger weights so pooled values and AUROCs are not all alike
            for p in model.parameters():
                p.mul_(5.0) if p.dim() > 1 else None
        path = root / kind
        model.save_pretrained(path)
        for f in tok_dir.iterdir():
            (path / f.name).write_bytes(f.read_bytes())
        out[kind] = path
    return out


@pytest.fixture(scope="session")
def gpt2_dir(tiny_model_dirs: dict[str, Path]) -> Path:
    """The tiny GPT-2 model directory."""
    return tiny_model_dirs["gpt2"]


@pytest.fixture
def jigsaw_csv() -> Path:
    """Path of the 16-row Jigsaw sample."""
    return jigsaw_sample()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: tiny models gain nothing from threads, on shared cores extra threads
    only spin against each other, and one thread makes floats identical across processes."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
