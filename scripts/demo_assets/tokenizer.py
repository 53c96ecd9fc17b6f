"""Stage ``tokenizer``: a byte-level BPE trained on the training split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from demo_assets.common import (
    EOS,
    MIX,
    update_metrics,
)
from demo_assets.sources import Corpus


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
    update_metrics(
        args,
        tokenizer={"vocab_size": len(fast), "train_tokens_per_source": n_tokens},
        mix={k: {"repeats": MIX[k][0], "tokens_per_epoch": v, "share": round(v / total, 4)} for k, v in mixed.items()},
    )
    print("tokens per source", n_tokens, "epoch tokens", total)


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
