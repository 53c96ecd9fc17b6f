"""``eval --utility-tasks``: lm-eval numbers per arm inside ``summary.json``, resumable, checked before any work."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from aura_stream.errors import AuraStreamError
from aura_stream.evaluation.pipeline import Arm, evaluate
from aura_stream.evaluation.report import format_table, render_report
from aura_stream.evaluation.scorers import load_scorer
from aura_stream.evaluation.utility import SHIPPED_TASK, run_utility
from aura_stream.evaluation.utility_arms import UTILITY_FILE, check_settings
from aura_stream.generate import dampened
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import make_intervention
from aura_stream.model import load_model

pytestmark = pytest.mark.usefixtures("one_thread")
LIMIT = 12


def _intervention(model: object) -> object:
    rng = np.random.default_rng(0)
    aurocs = {n: rng.uniform(0.3, 1.0, p.width) for n, p in all_hook_points(model).items()
              if n.endswith("mlp.hook_pre")}
    return make_intervention(aurocs, method="aura", metadata={"model": "tiny"})


def test_eval_utility_equals_run_utility_per_arm_and_resumes(tiny_model_dirs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    loaded = load_model(str(tiny_model_dirs["gpt2"]))
    iv = _intervention(loaded.model)
    settings = check_settings(SHIPPED_TASK, None, LIMIT, 4)
    assert settings is not None
    kwargs = {"prompts": ["Hello there", "You are"], "ppl_texts": ["a short text to measure " * 4],
              "scorer": load_scorer("default"), "out_dir": tmp_path / "eval", "samples_per_prompt": 2,
              "max_new_tokens": 4, "batch_size": 4, "progress": False, "utility": settings,
              "extra_arms": [Arm("preprompt", None, "Be kind.")]}
    summary = evaluate(loaded, intervention=iv, **kwargs)  # type: ignore[arg-type]
    util = summary.data["utility"]
    assert set(util["arms"]) == {"baseline", "aura"} and util["left_out"] == ["preprompt"]
    base = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=LIMIT, batch_size=4)
    arm = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=LIMIT, batch_size=4,
                      context=lambda: dampened(loaded.model, iv))  # type: ignore[arg-type]
    assert util["arms"]["baseline"][SHIPPED_TASK]["metrics"] == base[SHIPPED_TASK]["metrics"]
    assert util["arms"]["aura"][SHIPPED_TASK]["metrics"] == arm[SHIPPED_TASK]["metrics"]
    diff = util["differences"]["aura"][SHIPPED_TASK]["acc"]
    want = np.mean(arm[SHIPPED_TASK]["samples"]["acc"]) - np.mean(base[SHIPPED_TASK]["samples"]["acc"])
    assert diff["difference"] == pytest.approx(want) and diff["n"] == LIMIT
    # the printed table: one row per task, metric and arm with lm-eval's values and the paired difference
    rows = {(ln.split()[1], ln.split()[2]): ln for ln in format_table(summary.data).splitlines()
            if ln.startswith(SHIPPED_TASK)}
    b, a = base[SHIPPED_TASK]["metrics"], arm[SHIPPED_TASK]["metrics"]
    assert rows[("acc", "aura")].split()[3:10] == [
        f"{b['acc']:.3f}", "±", f"{b['acc_stderr']:.3f}", f"{a['acc']:.3f}", "±", f"{a['acc_stderr']:.3f}",
        f"{diff['difference']:+.3f}"]
    assert ("acc_norm", "aura") in rows and not any(k[1] == "preprompt" for k in rows)
    record = (tmp_path / "eval" / UTILITY_FILE).read_bytes()
    again = evaluate(loaded, intervention=iv, **kwargs)  # type: ignore[arg-type]
    assert again.data["utility"] == util and (tmp_path / "eval" / UTILITY_FILE).read_bytes() == record


def test_unknown_task_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(AuraStreamError, match="no_such_task"):
        check_settings("no_such_task", None, None, 4)
    with pytest.raises(AuraStreamError, match="need `--utility-tasks`"):
        check_settings(None, None, 5, 4)
    with pytest.raises(AuraStreamError, match="`--utility-limit` must be >= 1"):
        check_settings(SHIPPED_TASK, None, 0, 4)


def test_cli_eval_utility_column(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    from aura_stream_cli.main import app
    from click.testing import CliRunner

    res = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dirs["gpt2"]), "--out", str(tmp_path / "e"),
                                   "--samples-per-prompt", "1", "--max-new-tokens", "2", "--limit-prompts", "2",
                                   "--utility-tasks", SHIPPED_TASK, "--utility-limit", "4", "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"== zero-shot utility (lm-eval {version('lm_eval')}; first 4 documents per task)" in res.output
    summary = json.loads((tmp_path / "e" / "summary.json").read_text(encoding="utf-8"))
    metrics = summary["utility"]["arms"]["baseline"][SHIPPED_TASK]["metrics"]
    row = next(line for line in res.output.splitlines() if line.startswith(SHIPPED_TASK) and " acc " in line)
    assert row.split()[1:] == ["acc", f"{metrics['acc']:.3f}", "±", f"{metrics['acc_stderr']:.3f}"]
    # the PNG gains the utility panel (a wider figure than the three-panel report)
    import matplotlib.image

    wide = matplotlib.image.imread(tmp_path / "e" / "report.png").shape[1]
    del summary["utility"]
    render_report(summary, {"baseline": np.zeros(2)}, tmp_path / "narrow.png")
    assert wide > matplotlib.image.imread(tmp_path / "narrow.png").shape[1]
    res = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dirs["gpt2"]), "--out", str(tmp_path / "f"),
                                   "--utility-tasks", "no_such_task", "--quiet"])
    assert res.exit_code == 1 and "no_such_task" in res.output and not (tmp_path / "f").exists()


def _colours_task(tmp_path: Path, labels: list[int]) -> str:
    """A local task in ``tmp_path/tasks`` whose data file lies outside that directory."""
    rows = [{"q": f"Item {i} is", "choices": ["red", "green", "blue"], "label": lab} for i, lab in enumerate(labels)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "colours.yaml").write_text(
        f"task: colours_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{q}}'\ndoc_to_choice: choices\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n", encoding="utf-8")
    return str(tmp_path / "tasks")


def test_utility_added_to_a_finished_run_and_changed_task_data_recomputed(tiny_model_dirs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    loaded = load_model(str(tiny_model_dirs["gpt2"]))
    kwargs = {"prompts": ["Hello there", "You are"], "ppl_texts": ["a short text to measure " * 4],
              "scorer": load_scorer("default"), "out_dir": tmp_path / "eval", "samples_per_prompt": 2,
              "max_new_tokens": 4, "batch_size": 4, "progress": False}
    first = evaluate(loaded, **kwargs)  # type: ignore[arg-type]
    generations = (tmp_path / "eval" / "generations.jsonl").read_bytes()
    include = _colours_task(tmp_path, [i % 3 for i in range(LIMIT)])
    settings = check_settings("colours_local", include, None, 4)
    assert settings is not None
    # adding utility to a finished run resumes it (no refusal, continuations reused) and adds the utility
    second = evaluate(loaded, utility=settings, **kwargs)  # type: ignore[arg-type]
    assert (tmp_path / "eval" / "generations.jsonl").read_bytes() == generations
    assert second.data["baseline"] == first.data["baseline"]
    record = json.loads((tmp_path / "eval" / UTILITY_FILE).read_text(encoding="utf-8"))
    old = record["arms"]["baseline"]["colours_local"]["samples"]["acc"]
    # the task's data changes (same file name, same YAML): utility.json must not be reused
    include = _colours_task(tmp_path, [(i + 1) % 3 for i in range(LIMIT)])
    changed = check_settings("colours_local", include, None, 4)
    assert changed is not None and changed.tasks_fingerprint != settings.tasks_fingerprint
    third = evaluate(loaded, utility=changed, **kwargs)  # type: ignore[arg-type]
    want = run_utility(loaded.model, loaded.tokenizer, tasks=["colours_local"], include=[include], batch_size=4)
    assert third.data["utility"]["arms"]["baseline"]["colours_local"]["metrics"] == want["colours_local"]["metrics"]
    record = json.loads((tmp_path / "eval" / UTILITY_FILE).read_text(encoding="utf-8"))
    assert record["settings"]["tasks_fingerprint"] == changed.tasks_fingerprint
    new = record["arms"]["baseline"]["colours_local"]["samples"]["acc"]
    assert new == want["colours_local"]["samples"]["acc"] and new != old  # every label moved: per-doc acc differs


def test_quiet_runs_show_no_lm_eval_bars(tiny_model_dirs: dict[str, Path], capfd: pytest.CaptureFixture[str]) -> None:
    import lm_eval.models.huggingface as hf
    from tqdm import tqdm

    loaded = load_model(str(tiny_model_dirs["gpt2"]))
    loud = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=4, batch_size=4)
    assert "Running loglikelihood requests" in capfd.readouterr().err
    quiet = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=4, batch_size=4, progress=False)
    assert "Running loglikelihood requests" not in capfd.readouterr().err
    assert quiet == loud and hf.tqdm is tqdm  # same numbers; lm-eval's tqdm restored
