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

from aura_stream.evaluation.outdir import UTILITY_FILE

__all__ = ["UTILITY_FILE", "UtilitySettings", "check_settings", "run_arms", "tasks_fingerprint", "utility_arms"]


@dataclass(frozen=True)
class UtilitySettings:
    """What ``--utility-tasks``, ``--utility-include`` and ``--utility-limit`` asked for."""

    tasks: list[str]
    include: list[str]
    limit: int | None
    batch_size: int
    lm_eval_version: str = ""
    tasks_fingerprint: str = ""  # sha256 of every file in the task directories (shipped and --utility-include)

    def identity(self) -> dict[str, Any]:
        """What decides the utility numbers besides the run itself: a ``utility.json`` is reused only if equal.

        The task files are fingerprinted by content, so an edited local YAML (or its data) and another
        lm-eval release recompute instead of reusing numbers of other tasks.
        """
        return {"tasks": self.tasks, "include": self.include, "limit": self.limit, "batch_size": self.batch_size,
                "lm_eval": self.lm_eval_version, "tasks_fingerprint": self.tasks_fingerprint}


def _data_files(yaml_path: Path) -> list[Path]:
    """Local files a task YAML names (``dataset_path`` and ``dataset_kwargs.data_files``), where they exist."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # lm-eval's !function tags
    try:
        loader = _Loader(yaml_path.read_text(encoding="utf-8"))  # a SafeLoader: plain data, tags dropped
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except (OSError, ValueError, yaml.YAMLError):
        return []
    if not isinstance(doc, dict):
        return []
    dataset = doc.get("dataset_path")
    builders = ("json", "csv", "parquet", "text", "arrow", "pandas")  # datasets' loaders by name, not paths
    named: list[Any] = [None if dataset in builders else dataset]
    kwargs = doc.get("dataset_kwargs")
    if isinstance(kwargs, dict):
        files = kwargs.get("data_files", kwargs.get("data_dir"))
        named += list(files.values()) if isinstance(files, dict) else [files]
    out: list[Path] = []
    for entry in named:
        for item in entry if isinstance(entry, list) else [entry]:
            if not (isinstance(item, str) and item):
                continue
            given = Path(item).expanduser()  # a relative path: beside the YAML or from the working directory
            for path in [given] if given.is_absolute() else [yaml_path.parent / given, Path.cwd() / given]:
                if path.is_file():
                    out.append(path.resolve())
                elif path.is_dir():
                    out += sorted(p.resolve() for p in path.rglob("*") if p.is_file())
    return out


def tasks_fingerprint(directories: Sequence[str]) -> str:
    """sha256 of the task files: every file under ``directories`` (path relative to its directory, bytes)
    and every local data file their YAMLs name outside them (absolute path, bytes)."""
    import hashlib

    digest = hashlib.sha256()

    def add(label: str, path: Path) -> None:
        digest.update(f"{label}:{path.stat().st_size}\n".encode())
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)

    inside: set[Path] = set()
    outside: set[Path] = set()
    for i, directory in enumerate(directories):
        root = Path(directory)
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            add(f"{i}:{path.relative_to(root).as_posix()}", path)
            inside.add(path.resolve())
            if path.suffix in (".yaml", ".yml"):
                outside.update(_data_files(path))
    for path in sorted(outside - inside):
        add(str(path), path)
    return digest.hexdigest()


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
    directories = include_paths(given)
    from importlib.metadata import version

    return UtilitySettings(names, directories[1:], limit, batch_size,  # the shipped directory is always first
                           lm_eval_version=version("lm_eval"), tasks_fingerprint=tasks_fingerprint(directories))


def utility_arms(arms: Sequence[Any]) -> list[Any]:
    """The baseline and every arm whose model differs from it (an intervention)."""
    return [a for i, a in enumerate(arms) if i == 0 or a.intervention is not None]


def run_arms(loaded: Any, arms: Sequence[Any], settings: UtilitySettings, out: Path,
             run_identity: str = "", *, confidence: float = 0.95, n_resamples: int = 2000,
             seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Utility of every arm of :func:`utility_arms` (resuming ``out/utility.json``) and the paired differences.

    ``run_identity`` (the sha256 of the eval's identity: model, weights, arms, prompts) is recorded with the
    utility settings; a ``utility.json`` is resumed only where both are equal, otherwise it is recomputed.
    The paired differences use the eval's ``confidence``, ``n_resamples`` and ``seed`` (bootstrap over
    documents), like its other intervals.
    """
    from aura_stream.evaluation.outdir import atomic_write_text
    from aura_stream.evaluation.utility import compare_utility, run_utility

    path = out / UTILITY_FILE
    record: dict[str, Any] = {"run": run_identity, "settings": settings.identity(), "arms": {}}
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            previous = None  # a torn file: recompute
        if (isinstance(previous, dict) and previous.get("run") == run_identity
                and previous.get("settings") == record["settings"]):
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
                                               batch_size=settings.batch_size, context=context,
                                               progress=progress)
        atomic_write_text(path, json.dumps(record) + "\n")
    base_name = arms[0].name
    base = record["arms"][base_name]
    differences = {name: {task: {m: d.to_dict() for m, d in per.items()} for task, per in
                          compare_utility(base, result, confidence=confidence, n_resamples=n_resamples,
                                          seed=seed).items()}
                   for name, result in record["arms"].items() if name != base_name}
    return {"tasks": settings.tasks, "limit": settings.limit, "file": UTILITY_FILE,
            "lm_eval": settings.lm_eval_version, "tasks_fingerprint": settings.tasks_fingerprint,
            "confidence": confidence,
            "arms": {name: {task: {"metrics": r["metrics"], "n": r["n"]} for task, r in result.items()}
                     for name, result in record["arms"].items()},
            "differences": differences,
            "left_out": [a.name for a in arms if a not in utility_arms(arms)]}
