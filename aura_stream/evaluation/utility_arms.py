"""``eval --utility-tasks``: lm-eval zero-shot tasks on every arm, resumable, paired against the baseline.

Each arm with a model-side intervention (and the baseline) runs lm-eval's own task definitions
through lm-eval's HF wrapper (:func:`aura_stream.evaluation.utility.run_utility`) with the arm's hooks attached
by its backend, so the numbers are lm-eval's. An arm that only adds a preprompt is left out: lm-eval
builds its own prompts, so the model it scores is the baseline's. Results go to ``utility.json``
after every arm (a rerun skips the arms already there) and into ``summary.json`` under ``utility``:
lm-eval's metrics per arm and task, and per arm, task and per-document metric the paired difference
against the baseline with its interval.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UTILITY_FILE = "utility.json"


@dataclass(frozen=True)
class UtilitySettings:
    """What ``--utility-tasks``, ``--utility-include`` and ``--utility-limit`` asked for."""

    tasks: list[str]
    include: list[str]
    limit: int | None
    batch_size: int

    def identity(self) -> dict[str, Any]:
        """The part of the eval identity that decides utility numbers."""
        return {"tasks": self.tasks, "include": self.include, "limit": self.limit, "batch_size": self.batch_size}


def check_settings(tasks: str | Sequence[str] | None, include: str | Sequence[str] | None, limit: int | None,
                   batch_size: int) -> UtilitySettings | None:
    """Validate the utility options before any model work (lm-eval installed, tasks known, data offline)."""
    from aura_stream.errors import InputError
    from aura_stream.evaluation.utility import check_utility_ready, include_paths, parse_tasks

    if not tasks:
        if include or limit is not None:
            raise InputError("`--utility-include`/`--utility-limit` need `--utility-tasks`; got them alone. "
                             "Add e.g. --utility-tasks aura_cloze, or drop them.")
        return None
    if limit is not None and limit < 1:
        raise InputError(f"`--utility-limit` must be >= 1; got {limit}.")
    names = parse_tasks(tasks)
    check_utility_ready(names, include)
    given = [] if include is None else [include] if isinstance(include, str) else list(include)
    paths = include_paths(given)[1:]  # the shipped directory is always first
    return UtilitySettings(names, paths, limit, batch_size)


def utility_arms(arms: Sequence[Any]) -> list[Any]:
    """The baseline and every arm whose model differs from it (an intervention)."""
    return [a for i, a in enumerate(arms) if i == 0 or a.intervention is not None]


def run_arms(loaded: Any, arms: Sequence[Any], settings: UtilitySettings, out: Path) -> dict[str, Any]:
    """Utility of every arm of :func:`utility_arms` (resuming ``out/utility.json``) and the paired differences."""
    from aura_stream.evaluation.outdir import atomic_write_text
    from aura_stream.evaluation.utility import compare_utility, run_utility

    path = out / UTILITY_FILE
    record: dict[str, Any] = {"settings": settings.identity(), "arms": {}}
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None  # a torn file: recompute
        if isinstance(previous, dict) and previous.get("settings") == record["settings"]:
            record["arms"] = dict(previous.get("arms", {}))
    model = loaded.backend.generation_model
    for arm in utility_arms(arms):
        if arm.name in record["arms"]:
            continue

        def context(arm: Any = arm) -> contextlib.AbstractContextManager[Any]:
            if arm.intervention is None:
                return contextlib.nullcontext()
            manager: contextlib.AbstractContextManager[Any] = loaded.backend.dampened(
                arm.intervention, strength=arm.strength)
            return manager

        record["arms"][arm.name] = run_utility(model, loaded.tokenizer, tasks=settings.tasks,
                                               include=settings.include or None, limit=settings.limit,
                                               batch_size=settings.batch_size, context=context)
        atomic_write_text(path, json.dumps(record) + "\n")
    base_name = arms[0].name
    base = record["arms"][base_name]
    differences = {name: {task: {m: d.to_dict() for m, d in per.items()} for task, per in
                          compare_utility(base, result).items()}
                   for name, result in record["arms"].items() if name != base_name}
    return {"tasks": settings.tasks, "limit": settings.limit, "file": UTILITY_FILE,
            "arms": {name: {task: {"metrics": r["metrics"], "n": r["n"]} for task, r in result.items()}
                     for name, result in record["arms"].items()},
            "differences": differences,
            "left_out": [a.name for a in arms if a not in utility_arms(arms)]}


def utility_lines(utility: dict[str, Any]) -> list[str]:
    """One line per arm and task: accuracy (lm-eval's first metric) and the paired difference with its interval."""
    lines = []
    for arm, tasks in utility["arms"].items():
        for task, result in tasks.items():
            metrics = result["metrics"]
            key = next((k for k in ("acc", "acc_norm") if metrics.get(k) is not None),
                       next((k for k in metrics if not k.endswith("_stderr")), None))
            if key is None:
                continue
            text = f"{arm:16s} {task} {key} {metrics[key]:.3f}"
            stderr = metrics.get(f"{key}_stderr")
            if stderr is not None:
                text += f" ± {stderr:.3f}"
            diff = utility["differences"].get(arm, {}).get(task, {}).get(key)
            if diff is not None and diff.get("interval"):
                lo, hi = diff["interval"]
                text += f"  (vs baseline {diff['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}])"
            lines.append(text)
    return lines
