"""demo: the embedded pipeline end to end in a reduced mode; every output file appears."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aura_stream.demo import demo, held_out_prompts, matched_k
from aura_stream.interventions import load_intervention


def test_matched_k_is_total_dampening() -> None:
    assert matched_k({"a": np.array([1.0, 0.5, 0.25]), "b": np.array([0.0])}) == 2  # 0.5 + 0.75 + 1 = 2.25
    assert matched_k({"a": np.ones(3)}) == 1


@pytest.mark.skipif(not (Path(__file__).parents[1] / "aura_stream/assets/demo/config.json").is_file(),
                    reason="demo model not built")
def test_demo_reduced_end_to_end(tmp_path: Path) -> None:
    lines: list[str] = []
    pytest.importorskip("lm_eval")
    result = demo(tmp_path / "demo", n_prompts=2, samples_per_prompt=2, half=2, per_class=16, max_new_tokens=4,
                  batch_size=8, progress=False, ppl_limit=3, utility_limit=6, say=lines.append)
    out = tmp_path / "demo"
    for name in ("store.zarr/zarr.json", "aura.safetensors", "det0.safetensors", "damp.safetensors",
                 "linear_act.safetensors", "auroc.png", "examples.jsonl", "eval/summary.json",
                 "eval/generations.jsonl", "eval/report.png", "eval/utility.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "eval/summary.json").read_text())
    assert set(summary["comparisons"]) == {"aura", "det0", "damp", "linear-act", "preprompt", "preprompt+aura"}
    records = [json.loads(line) for line in (out / "eval/generations.jsonl").read_text().splitlines()]
    assert len(records) == 7 * 2 * 2  # arms x prompts x samples
    # the transport arm: a Linear-AcT map (omega, beta) estimated on mean pooling, applied at generation
    linear = load_intervention(out / "linear_act.safetensors")
    assert linear.is_transport and linear.metadata["pooling"] == "mean"
    # the utility column: aura_cloze on every arm whose model differs from the baseline
    util = summary["utility"]
    assert set(util["arms"]) == {"baseline", "aura", "det0", "damp", "linear-act", "preprompt+aura"}
    assert util["left_out"] == ["preprompt"] and util["arms"]["baseline"]["aura_cloze"]["n"] == 6
    header, _, base_row, *rows = result.table.splitlines()
    assert header.rstrip().endswith("aura_cloze acc")
    acc = util["arms"]["baseline"]["aura_cloze"]["metrics"]["acc"]
    assert base_row.rstrip().endswith(f"{acc:.3f}")
    assert next(r for r in rows if r.startswith("preprompt ")).rstrip().endswith("= baseline")
    assert {r["prompt"] for r in records} == {p.text for p in held_out_prompts(2)[:2]}
    assert summary["prompts"]["source"].endswith("half 2)")
    aura, det0 = load_intervention(out / "aura.safetensors"), load_intervention(out / "det0.safetensors")
    assert det0.n_dampened() == matched_k(aura.alphas)
    assert "baseline" in result.table and "preprompt+aura" in result.table
    assert lines[0].startswith("[1/4] extract") and any(line.startswith("[4/4] eval") for line in lines)


def test_halves_are_disjoint_and_half_is_checked() -> None:
    from aura_stream.errors import InputError

    one, two = held_out_prompts(1), held_out_prompts(2)
    assert len(one) == len(two) == 150
    assert not {p.text for p in one} & {p.text for p in two}
    with pytest.raises(InputError, match="`--half` must be 1 or 2; got 3"):
        held_out_prompts(3)


def test_cli_demo_help_and_bad_half() -> None:
    from aura_stream_cli.main import app
    from click.testing import CliRunner

    runner = CliRunner()
    help_text = runner.invoke(app, ["demo", "--help"]).output
    assert "--half" in help_text and "aura-stream demo --seed 1 --half 2" in help_text
    bad = runner.invoke(app, ["demo", "--half", "3"])
    assert bad.exit_code == 2 and "--half" in bad.output
