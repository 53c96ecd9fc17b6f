"""utility: lm-eval through aura-stream equals plain lm-eval (baseline: the checkpoint; arm: the folded
checkpoint); the shipped task; one-line errors before model work; paired differences."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before datasets / huggingface_hub read them
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aura_stream.errors import InputError, MissingFileError
from aura_stream.evaluation.utility import (
    SHIPPED_TASK,
    SHIPPED_TASKS_DIR,
    UtilityTaskError,
    check_utility_ready,
    compare_utility,
    paired_difference,
    run_utility,
    task_results,
)
from aura_stream.fold import fold
from aura_stream.generate import dampened
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import Intervention
from aura_stream.model import load_model

lm_eval = pytest.importorskip("lm_eval")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread

LIMIT = 16
BATCH = 4


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub access whatever imported datasets first: its offline switch is read at import time."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)


def plain_lm_eval(model_dir: Path, tasks: list[str], include: list[str] | None = None) -> dict[str, Any]:
    """What ``lm_eval --model hf --model_args pretrained=DIR --include_path ... --limit --batch_size`` gives."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=[str(SHIPPED_TASKS_DIR), *(include or [])])
    results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir}", tasks=tasks,
                                      task_manager=manager, limit=LIMIT, batch_size=BATCH, device="cpu",
                                      log_samples=True)
    assert results is not None
    return task_results(results)


def random_intervention(model: Any, seed: int = 0) -> Intervention:
    """Alphas in [0, 1] on every MLP hook kind, a quarter exactly 0."""
    rng = np.random.default_rng(seed)
    alphas = {}
    for name, p in all_hook_points(model).items():
        if name.split(".", 2)[2] in ("mlp.hook_pre", "mlp.hook_pre_linear", "hook_mlp_out"):
            a = rng.uniform(0, 1, p.width)
            a[rng.uniform(size=p.width) < 0.25] = 0.0
            alphas[name] = a.astype(np.float32)
    return Intervention(alphas, {n: np.full(a.shape, 0.5) for n, a in alphas.items()}, {"method": "test"})


# --------------------------------------------------------------------------- equality with plain lm-eval


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_baseline_equals_plain_lm_eval(kind: str, tiny_model_dirs: dict[str, Path]) -> None:
    model_dir = tiny_model_dirs[kind]
    loaded = load_model(str(model_dir))
    ours = run_utility(loaded.model, loaded.tokenizer, tasks=[SHIPPED_TASK], limit=LIMIT, batch_size=BATCH)
    plain = plain_lm_eval(model_dir, [SHIPPED_TASK])
    assert ours == plain  # metrics (acc, acc_norm, their stderr), per-document values, n, version
    got = ours[SHIPPED_TASK]
    assert set(got["metrics"]) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    assert got["n"] == LIMIT and got["doc_ids"] == list(range(LIMIT))
    assert len(got["samples"]["acc"]) == LIMIT
    json.dumps(ours)  # JSON-ready for summary.json


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_intervention_arm_equals_plain_lm_eval_on_folded(kind: str, tiny_model_dirs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    model_dir = tiny_model_dirs[kind]
    loaded = load_model(str(model_dir))
    iv = random_intervention(loaded.model)
    calls: list[int] = []

    @contextlib.contextmanager
    def arm_hooks() -> Iterator[None]:  # the arm's dampening, and a count of the forward passes under it
        handle = loaded.model.register_forward_hook(lambda *_: calls.append(1))
        try:
            with dampened(loaded.model, iv):
                yield
        finally:
            handle.remove()

    arm = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=LIMIT, batch_size=BATCH,
                      context=arm_hooks)
    assert calls  # lm-eval's forward passes ran inside the arm's context
    base = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=LIMIT, batch_size=BATCH)
    assert not loaded.model._forward_hooks and all(not m._forward_hooks for m in loaded.model.modules())
    folded_dir = fold(loaded, iv, tmp_path / "folded")  # changes loaded.model in place: last
    plain = plain_lm_eval(folded_dir, [SHIPPED_TASK])
    assert arm == plain
    diff = compare_utility(base, arm)[SHIPPED_TASK]["acc"]
    assert diff.n == LIMIT
    arm_acc, base_acc = arm[SHIPPED_TASK]["metrics"]["acc"], base[SHIPPED_TASK]["metrics"]["acc"]
    assert arm_acc is not None and base_acc is not None
    assert diff.difference == pytest.approx(arm_acc - base_acc)
    assert diff.interval is not None and diff.interval[0] <= diff.difference <= diff.interval[1]


def test_user_include_dir_task(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A local task YAML the offline route documents (dataset_path: json, data_files) runs and equals plain."""
    rows = [{"q": f"Item {i} is", "choices": ["red", "green", "blue"], "label": i % 3} for i in range(LIMIT)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "colours.yaml").write_text(
        f"task: colours_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{q}}'\ndoc_to_choice: choices\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n", encoding="utf-8")
    include = [str(tmp_path / "tasks")]
    assert check_utility_ready("colours_local", include) == ["colours_local"]
    loaded = load_model(str(tiny_model_dirs["gpt2"]))
    ours = run_utility(loaded.model, loaded.tokenizer, tasks=["colours_local"], include=include, limit=LIMIT,
                       batch_size=BATCH)
    assert ours == plain_lm_eval(tiny_model_dirs["gpt2"], ["colours_local"], include)


# --------------------------------------------------------------------------- the shipped task


def test_shipped_task_is_complete_and_ready() -> None:
    assert check_utility_ready(SHIPPED_TASK) == [SHIPPED_TASK]
    lines = (SHIPPED_TASKS_DIR / "aura_cloze.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    assert 100 <= len(docs) <= 200
    for d in docs:
        assert len(d["choices"]) == 4 and len(set(d["choices"])) == 4 and 0 <= d["label"] < 4
    assert len({d["context"] for d in docs}) == len(docs)
    assert (SHIPPED_TASKS_DIR / "NOTICE.md").is_file()


def test_shipped_task_rebuilds_byte_for_byte() -> None:
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "scripts"))
    try:
        import build_utility_task
    finally:
        sys.path.remove(str(root / "scripts"))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in build_utility_task.items())
    assert text == (SHIPPED_TASKS_DIR / "aura_cloze.jsonl").read_text(encoding="utf-8")


def test_shipped_task_is_package_data() -> None:
    """pyproject's package-data globs cover every file of the shipped task (so wheels carry it)."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["aura_stream"]
    package = root / "aura_stream"
    for path in SHIPPED_TASKS_DIR.iterdir():
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel
    assert "aura_stream" in config["tool"]["setuptools"]["packages"]


# --------------------------------------------------------------------------- errors before model work


def test_unknown_task_is_one_line() -> None:
    with pytest.raises(UtilityTaskError) as info:
        check_utility_ready("aura_cloze,no_such_task_xyz")
    msg = str(info.value)
    assert "\n" not in msg
    assert "no_such_task_xyz" in msg and "aura_cloze" in msg and "--utility-include" in msg


def test_empty_tasks_and_missing_include_dir(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="at least one"):
        check_utility_ready(" , ")
    with pytest.raises(MissingFileError, match="--utility-include"):
        check_utility_ready(SHIPPED_TASK, tmp_path / "nope")


def test_hub_dataset_offline_is_one_line_naming_the_task(tmp_path: Path) -> None:
    (tmp_path / "hub.yaml").write_text(
        "task: hub_only_task\ndataset_path: aura-stream-test/not-a-cached-dataset\noutput_type: multiple_choice\n"
        "test_split: test\ndoc_to_text: '{{q}}'\ndoc_to_choice: choices\ndoc_to_target: label\n",
        encoding="utf-8")
    with pytest.raises(UtilityTaskError) as info:
        check_utility_ready([SHIPPED_TASK, "hub_only_task"], tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "`hub_only_task`" in msg and "aura-stream-test/not-a-cached-dataset" in msg
    assert "offline" in msg and "--utility-include DIR" in msg


def test_missing_lm_eval_is_one_install_line() -> None:
    code = ("import sys; sys.modules['lm_eval'] = None\n"
            "from aura_stream.evaluation.utility import check_utility_ready\n"
            "from aura_stream.errors import AuraStreamError\n"
            "try:\n    check_utility_ready('aura_cloze')\n"
            "except AuraStreamError as e:\n    print(type(e).__name__, '|', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout + out.stderr
    assert lines[0].startswith("MissingDependencyError | ")
    assert "`--utility-tasks` needs lm-eval" in lines[0] and "pip install 'aura-stream[utility]'" in lines[0]


# --------------------------------------------------------------------------- paired difference


def test_paired_difference_known_answers() -> None:
    r = paired_difference([1, 0, 1, 0], [1, 1, 1, 0], method="normal")
    assert (r.baseline, r.arm, r.difference, r.n) == (0.5, 0.75, 0.25, 4)
    half = 1.959963984540054 * 0.5 / 2  # sd of [0, 1, 0, 0] (ddof 1) is 0.5; n = 4
    assert r.interval == pytest.approx((0.25 - half, 0.25 + half))
    same = paired_difference([1, 0, 1, 1, 0], [1, 0, 1, 1, 0])
    assert same.difference == 0.0 and same.interval == (0.0, 0.0)
    shift = paired_difference([0.0] * 7, [1.0] * 7)  # every document gains 1: no spread
    assert shift.difference == 1.0 and shift.interval == (1.0, 1.0)
    # mappings are matched by doc id, in any order
    by_id = paired_difference({3: 0.0, 1: 1.0, 2: 0.0, 0: 1.0}, {0: 1.0, 1: 1.0, 2: 1.0, 3: 0.0}, method="normal")
    assert by_id.difference == 0.25 and by_id.interval == pytest.approx(r.interval)
    boot = paired_difference(np.r_[np.zeros(50), np.ones(50)], np.ones(100), n_resamples=4000)
    assert boot.difference == 0.5 and boot.interval is not None
    assert boot.interval[0] == pytest.approx(0.5 - 1.96 * 0.05, abs=0.03)
    assert boot.interval[1] == pytest.approx(0.5 + 1.96 * 0.05, abs=0.03)
    assert paired_difference([1], [0], method="normal").interval is None
    assert r.interval is not None
    assert json.loads(json.dumps(r.to_dict()))["interval"] == pytest.approx(list(r.interval))


def test_paired_difference_refuses_unpaired() -> None:
    with pytest.raises(InputError, match="same tasks"):
        paired_difference([1, 0], [1, 0, 1])
    with pytest.raises(InputError, match="doc ids"):
        paired_difference({0: 1.0, 1: 0.0}, {0: 1.0, 2: 0.0})
    with pytest.raises(InputError, match="finite"):
        paired_difference([1.0, float("nan")], [1.0, 0.0])
    with pytest.raises(InputError, match="bootstrap or normal"):
        paired_difference([1.0], [1.0], method="exact")  # type: ignore[arg-type]


def test_transformer_lens_arm_equals_plain_lm_eval_on_folded(tiny_model_dirs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """TransformerLens backend: lm-eval calls the HF model the bridge wraps; the bridge's hooks fire."""
    pytest.importorskip("transformer_lens")
    from aura_stream.backends import tl

    model_dir = tiny_model_dirs["gpt2"]
    loaded = tl.load_bridge(str(model_dir))
    iv = random_intervention(loaded.model)
    base = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=LIMIT, batch_size=BATCH)
    arm = run_utility(loaded.model, loaded.tokenizer, tasks=SHIPPED_TASK, limit=LIMIT, batch_size=BATCH,
                      context=lambda: loaded.backend.dampened(iv))
    assert base == plain_lm_eval(model_dir, [SHIPPED_TASK])
    assert arm != base
    folded_dir = fold(load_model(str(model_dir)), iv, tmp_path / "folded")
    assert arm == plain_lm_eval(folded_dir, [SHIPPED_TASK])
