"""Constants and small helpers shared by the build stages."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

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
# Toxic-register text is ~14% of the training tokens (RTP 5%, slur examples 8%). Of the mixes
# tried (MODEL_CARD.md) this one was the most fluent, AurA's effect was at least as large, and its
# lower toxic-continuation rate leaves room for the toxicity probability to move.
MIX: dict[str, tuple[int, tuple[int, int], str]] = {
    "rtp": (2, (3, 6), " "),
    "slur": (1, (3, 6), "\n"),
    "chatterbot": (2, (1, 1), "\n"),
    "book": (2, (1, 2), "\n"),
    "falseclaims": (1, (4, 8), " "),
}
# CPython's pydoc prose is NOT trained on: aura_stream.evaluation.inputs.builtin_ppl_text() is made of
# it, so it stays held-out (out-of-domain) text for the demo's perplexity.
CLEAN_SOURCES = ("chatterbot", "book", "falseclaims")



def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package `{name}` must be installed to build the demo assets; "
            f"pip install --no-deps the version named in the model card"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def update_metrics(args: argparse.Namespace, **kw: Any) -> None:
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
