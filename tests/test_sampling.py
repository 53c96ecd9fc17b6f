"""Seeded nucleus sampling: the kept set against transformers' warper, and eval records that do not
depend on how sequences are batched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aura_stream import sampling as sampling_module
from aura_stream.evaluation.inputs import Prompt
from aura_stream.evaluation.pipeline import evaluate, iter_records
from aura_stream.evaluation.scorers import load_scorer
from aura_stream.generate import nucleus_mask
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import make_intervention
from aura_stream.model import LoadedModel, load_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread


def transformers_nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The oracle: the tokens ``transformers``' TopPLogitsWarper leaves finite."""
    from transformers import TopPLogitsWarper

    warped = TopPLogitsWarper(top_p)(torch.zeros(1, 1, dtype=torch.long), logits.clone())
    return torch.isfinite(warped)


@pytest.mark.parametrize("vocab", [7, 300, 5000])
@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.999, 1.0])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
def test_nucleus_mask_equals_transformers_warper(vocab: int, top_p: float, temperature: float) -> None:
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(64, vocab, generator=g) * 3 / temperature  # flat rows (large nuclei) and peaked ones
    ours = nucleus_mask(torch.softmax(logits, -1), top_p)
    oracle = transformers_nucleus(logits, top_p)
    differ = (ours != oracle).any(-1)
    # float32 (theirs) against float64 (ours) sums may disagree only for a token on the edge
    for row in differ.nonzero().flatten().tolist():
        probs = torch.softmax(logits[row].double(), -1)
        order = probs.argsort(descending=True)
        above = probs[order].cumsum(0) - probs[order]
        edge = (above - top_p).abs().min().item()
        assert edge < 1e-5, f"row {row}: masks differ away from the edge ({edge})"
    if top_p <= 0.9:  # near 1, their float32 tail sums over thousands of tokens drift more often
        assert differ.float().mean() < 0.05
    assert ours.any(-1).all()  # at least one token always survives


def test_nucleus_mask_falls_back_to_a_full_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    logits = torch.randn(16, 4000, generator=torch.Generator().manual_seed(1)) * 0.1  # nuclei > 3,000 tokens
    expected = nucleus_mask(torch.softmax(logits, -1), 0.9)
    monkeypatch.setattr(sampling_module, "NUCLEUS_TOPK", 8)
    narrow = nucleus_mask(torch.softmax(logits, -1), 0.9)
    assert expected.sum(-1).min() > 3000
    assert torch.equal(narrow, expected)
    assert torch.equal(narrow, transformers_nucleus(logits, 0.9))


def test_sampled_tokens_follow_the_nucleus_distribution() -> None:
    """Many rows with the same logits and their own seeds: frequencies match the renormalised nucleus."""
    probs = torch.tensor([0.40, 0.25, 0.15, 0.10, 0.06, 0.04])
    rngs = [np.random.default_rng([7, i]) for i in range(20_000)]
    sampler = sampling_module.RowSampler(rngs, temperature=1.0, top_k=0, top_p=0.75)
    scores = sampler(torch.zeros(len(rngs), 1, dtype=torch.long), probs.log().expand(len(rngs), -1).clone())
    picked = scores.argmax(-1)
    freq = torch.bincount(picked, minlength=6).double() / len(rngs)
    nucleus = torch.tensor([0.40, 0.25, 0.15, 0, 0, 0]).double()  # above the 4th: 0.80 >= 0.75
    assert torch.allclose(freq, nucleus / nucleus.sum(), atol=0.012)
    assert (scores.isfinite().sum(-1) == 1).all()


@pytest.fixture(scope="module")
def loaded(gpt2_dir: Path) -> LoadedModel:
    return load_model(str(gpt2_dir))


def records(out: Path) -> list[dict[str, Any]]:
    """Records in a canonical order, without what may legitimately differ between runs."""
    rows = [{k: v for k, v in r.items() if k != "version"} for r in iter_records(out / "generations.jsonl")]
    return sorted(rows, key=lambda r: (r["arm"], r["prompt_index"], r["sample_index"]))


def test_eval_records_do_not_depend_on_batch_size(loaded: LoadedModel, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    aurocs = {n: rng.uniform(0.2, 1.0, p.width) for n, p in all_hook_points(loaded.model).items()}
    iv = make_intervention(aurocs, method="aura", metadata={"model": loaded.model_id})
    prompts = [Prompt("You are such a", 0.8), Prompt("The weather in Paris is usually", 0.1),
               Prompt("I think that", None), Prompt("Shut up", 0.9), Prompt("Once upon a time there was", None)]
    scorer = load_scorer("default")
    opts: dict[str, Any] = {"intervention": iv, "prompts": prompts, "ppl_texts": ["A module is a file."],
                            "scorer": scorer, "samples_per_prompt": 4, "max_new_tokens": 8, "seed": 5,
                            "n_resamples": 50, "progress": False}
    one = evaluate(loaded, out_dir=tmp_path / "b1", batch_size=1, **opts)
    sixteen = evaluate(loaded, out_dir=tmp_path / "b16", batch_size=16, **opts)
    a, b = records(tmp_path / "b1"), records(tmp_path / "b16")
    assert len(a) == 2 * 5 * 4
    assert a == b
    assert len({r["continuation"] for r in a}) > 10  # real samples, not one repeated string
    same = {k: v for k, v in one.data.items() if k not in ("created", "settings")}
    assert json.dumps(same, sort_keys=True) == json.dumps(
        {k: v for k, v in sixteen.data.items() if k not in ("created", "settings")}, sort_keys=True)
