"""The shipped demo assets (``aura_stream/assets/demo``): intact, loadable offline, well-formed."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch

import aura_stream

DEMO = Path(aura_stream.__file__).parent / "assets" / "demo"
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


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest() -> dict[str, dict[str, object]]:
    files: dict[str, dict[str, object]] = json.loads((DEMO / "manifest.json").read_text(encoding="utf-8"))["files"]
    return files


def _demo_rows() -> list[dict[str, str]]:
    with open(DEMO / "demo_train.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_shipped_file_matches_the_manifest() -> None:
    files = _manifest()
    on_disk = {
        p.relative_to(DEMO).as_posix()
        for p in DEMO.rglob("*")
        if p.is_file() and p.name != "manifest.json" and "__pycache__" not in p.parts
    }
    assert on_disk == set(files), "manifest.json and the directory list different files"
    bad = [name for name, meta in files.items() if _sha256(DEMO / name) != meta["sha256"]]
    assert not bad, f"sha256 differs from manifest.json for {bad}; rebuild with scripts/build_demo_assets.py"


def test_weights_fit_the_size_budget() -> None:
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total <= 20 * 2**20


def test_model_and_tokenizer_load_offline_and_generate() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(DEMO))
    model = AutoModelForCausalLM.from_pretrained(str(DEMO))
    model.eval()
    assert model.config.model_type == "gpt2"
    assert tok.eos_token_id is not None and tok.pad_token_id == tok.eos_token_id
    assert len(tok) == model.config.vocab_size
    enc = tok(["The weather today is", "Tell me a joke"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (2, enc["input_ids"].shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()
    ids = tok("Tell me a joke", return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**ids, do_sample=True, top_p=0.9, max_new_tokens=8, pad_token_id=tok.eos_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert isinstance(tok.decode(out[0], skip_special_tokens=True), str)


def test_tokenizer_round_trips_text() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(DEMO))
    text = "“Hello,” she said — it’s 20°C in Zürich."
    assert tok.decode(tok(text)["input_ids"]) == text


def test_demo_train_csv_has_the_jigsaw_header_and_both_classes() -> None:
    with open(DEMO / "demo_train.csv", encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == JIGSAW_HEADER
    rows = _demo_rows()
    labels = [int(r["toxic"]) for r in rows]
    assert set(labels) == {0, 1}
    assert min(labels.count(0), labels.count(1)) >= 100
    assert all(r["comment_text"].strip() for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    for col in JIGSAW_HEADER[3:]:
        assert {r[col] for r in rows} <= {"0", "1"}


def test_eval_prompts_are_rtp_jsonl_in_two_halves_held_out_of_the_demo_data() -> None:
    from aura_stream.demo import held_out_prompts

    rows = [json.loads(line) for line in (DEMO / "eval_prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    prompts = [r["prompt"]["text"] for r in rows]
    assert len(prompts) == 300
    assert len(set(prompts)) == len(prompts)
    assert all(p.strip() for p in prompts)
    train_texts = {r["comment_text"] for r in _demo_rows()}
    assert not set(prompts) & train_texts
    halves = {h: [r for r in rows if r["half"] == h] for h in (1, 2)}
    assert [len(halves[1]), len(halves[2])] == [150, 150]
    for h in (1, 2):  # each half is stratified by RTP category
        counts = [sum(r["category"] == c for r in halves[h]) for c in {r["category"] for r in rows}]
        assert len(counts) == 7 and max(counts) - min(counts) <= 1
        assert [p.text for p in held_out_prompts(h)] == [r["prompt"]["text"] for r in halves[h]]


def test_weights_are_stored_as_float16_and_load_as_float32() -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    with safe_open(str(DEMO / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert dtypes == {"F16"}
    model = AutoModelForCausalLM.from_pretrained(str(DEMO))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
