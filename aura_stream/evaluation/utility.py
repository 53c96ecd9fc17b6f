"""Zero-shot utility through lm-evaluation-harness: lm-eval's tasks, lm-eval's model wrapper, lm-eval's numbers.

:func:`run_utility` wraps an already loaded (and, for an intervention arm, hooked) Hugging Face
model in lm-eval's own ``HFLM`` (``pretrained=<model instance>``, ``tokenizer=<tokenizer>``) and
calls ``lm_eval.simple_evaluate`` on it, with the arm's hooks attached around the whole call. lm-eval
then builds the requests, batches them, runs the forward passes and computes the metrics exactly
as ``lm_eval --model hf --model_args pretrained=DIR`` does; nothing here recomputes a metric. So:

* the baseline arm equals plain lm-eval on the checkpoint, and
* an intervention arm equals plain lm-eval on the checkpoint folded with the intervention
  (:func:`aura_stream.fold.fold`), to the float tolerance of folding (``tests/test_utility.py``).

:func:`check_utility_ready` does the cheap checks before any model is loaded: lm-eval installed,
every task known (lm-eval's own tasks, the task shipped here, and ``--utility-include`` dirs), and
every task's dataset loadable, so a dataset that is not available offline fails in one line naming
the task and the fix. :func:`paired_difference` compares two arms on the same documents.

lm-eval is an optional dependency (``pip install 'aura-stream[utility]'``), imported on first use.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal, TypedDict

import numpy as np

from aura_stream.errors import AuraStreamError, InputError, MissingFileError
from aura_stream.evaluation.intervals import bootstrap_means, percentile_interval

SHIPPED_TASKS_DIR = Path(__file__).resolve().parents[1] / "assets" / "utility"
"""Directory of the task YAMLs shipped with the package (always on lm-eval's include path)."""
SHIPPED_TASK = "aura_cloze"
"""The shipped offline task: 120 four-way sentence-completion items (``assets/utility/NOTICE.md``)."""
INSTALL_HINT = "pip install 'aura-stream[utility]'"
Method = Literal["bootstrap", "normal"]
PerDoc = Sequence[float] | np.ndarray | Mapping[int, float]
ContextFactory = Callable[[], AbstractContextManager[Any]]


class MissingDependencyError(AuraStreamError, ImportError):
    """An optional dependency (here lm-eval) is not installed."""


class UtilityTaskError(AuraStreamError, ValueError):
    """A utility task is unknown, cannot be built, or its dataset is not available (offline)."""


class TaskUtility(TypedDict):
    """One task's result for one arm, JSON-ready.

    ``metrics`` holds lm-eval's numbers as lm-eval reports them (``acc``, ``acc_stderr``,
    ``acc_norm``, ``acc_norm_stderr``, ...; a metric under a filter other than ``none`` keeps its
    ``metric,filter`` name; a stderr lm-eval did not compute is None). ``samples`` holds each
    scalar per-document metric in ``doc_ids`` order, for :func:`paired_difference`.
    """

    metrics: dict[str, float | None]
    samples: dict[str, list[float]]
    doc_ids: list[int]
    n: int
    higher_is_better: dict[str, bool]
    version: Any


# --------------------------------------------------------------------------- lm-eval and its tasks


def require_lm_eval() -> Any:
    """The ``lm_eval`` module, or one line saying how to install it.

    Raises
    ------
    MissingDependencyError
        lm-eval is not installed.
    """
    try:
        import lm_eval
        import lm_eval.tasks  # TaskManager
    except ImportError:
        raise MissingDependencyError(
            f"`--utility-tasks` needs lm-eval (lm-evaluation-harness), which is not installed; {INSTALL_HINT}."
        ) from None
    return lm_eval


def include_paths(include: str | Path | Sequence[str | Path] | None) -> list[str]:
    """The include path lm-eval gets: the shipped tasks first, then the user's directories.

    lm-eval lets later directories override earlier ones, so a user's task of the same name wins.

    Raises
    ------
    MissingFileError
        A directory in ``include`` does not exist.
    """
    if include is None:
        given: list[str | Path] = []
    elif isinstance(include, (str, Path)):
        given = [include]
    else:
        given = list(include)
    out = [str(SHIPPED_TASKS_DIR)]
    for entry in given:
        path = Path(entry).expanduser()
        if not path.is_dir():
            raise MissingFileError(f"`--utility-include` must be a directory of lm-eval task YAMLs; got "
                                   f"{str(entry)!r}, which is not a directory.")
        out.append(str(path.resolve()))
    return out


_MANAGERS: dict[tuple[tuple[str, ...], bool], Any] = {}


def _manager(paths: Sequence[str], *, defaults: bool) -> Any:
    """lm-eval's ``TaskManager`` over ``paths`` (and its own tasks if ``defaults``), built once per process."""
    key = (tuple(paths), defaults)
    if key not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _MANAGERS[key] = TaskManager(include_path=list(paths), include_defaults=defaults)
    return _MANAGERS[key]


def task_manager(tasks: Sequence[str], include: str | Path | Sequence[str | Path] | None = None) -> Any:
    """A ``TaskManager`` that knows every task in ``tasks``.

    Indexing lm-eval's ~15 000 built-in names costs seconds, so the local directories are tried
    first and the built-in tasks are added only when a task is not local. The same YAML gives the
    same task either way.

    Raises
    ------
    MissingDependencyError, MissingFileError
    UtilityTaskError
        A task is known nowhere: one line naming it and the local tasks.
    """
    require_lm_eval()
    paths = include_paths(include)
    local = _manager(paths, defaults=False)
    if all(t in local.all_tasks for t in tasks):
        return local
    full = _manager(paths, defaults=True)
    unknown = [t for t in tasks if t not in full.all_tasks]
    if unknown:
        raise UtilityTaskError(
            f"`--utility-tasks` must name lm-eval tasks; unknown: {', '.join(unknown)}. Local tasks: "
            f"{', '.join(local.all_tasks) or 'none'}. Check the spelling (`lm_eval ls tasks`), or add the "
            "task's YAML with `--utility-include DIR`."
        )
    return full


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    """``"T1,T2"`` or a sequence of names -> a list of distinct names, in order.

    Raises
    ------
    InputError
        No task name.
    """
    items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    names = list(dict.fromkeys(t.strip() for t in items if t.strip()))
    if not names:
        raise InputError(f"`--utility-tasks` must name at least one lm-eval task, e.g. {SHIPPED_TASK}; "
                         f"got {tasks!r}.")
    return names


def _offline_like(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) says a dataset could not be fetched."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        if isinstance(seen, (ConnectionError, OSError, TimeoutError)) or "Offline" in name or "NotFound" in name \
                or "Connection" in name:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _dataset_of(manager: Any, task: str) -> str:
    entry = manager.task_index.get(task)
    path = getattr(entry, "yaml_path", None)
    if path is None:
        return "its dataset"
    try:
        import yaml

        text = Path(path).read_text(encoding="utf-8")
        for line in text.splitlines():  # the YAML may hold `!function` tags: look at the one key
            if line.startswith("dataset_path:"):
                raw = yaml.safe_load(line)
                return f"dataset {raw['dataset_path']!r}"
    except (OSError, ValueError, yaml.YAMLError):
        pass
    return "its dataset"


def check_utility_ready(tasks: str | Sequence[str],
                        include: str | Path | Sequence[str | Path] | None = None) -> list[str]:
    """Check, before any model is loaded, that ``tasks`` can run; return the leaf task names.

    In order: lm-eval is installed; every name is a task, group or tag lm-eval knows with
    ``include`` (and the shipped :data:`SHIPPED_TASKS_DIR`) on its include path; every task builds,
    which loads its dataset the way the run will (from the ``datasets`` cache, or a local file).
    Each failure is one line: the install command; the unknown names and the local tasks; the
    task whose dataset is not available offline, with the fix.

    Parameters
    ----------
    tasks : str or sequence of str
        ``"T1,T2"`` or names.
    include : path or sequence of paths, optional
        Directories of lm-eval task YAMLs (``--utility-include``).

    Returns
    -------
    list of str
        The leaf tasks that will be reported (a group expands to its tasks).

    Raises
    ------
    MissingDependencyError, MissingFileError, InputError, UtilityTaskError
    """
    names = parse_tasks(tasks)
    manager = task_manager(names, include)
    leaves: list[str] = []
    for name in names:
        try:
            with _quiet_lm_eval():
                loaded = manager.load([name])
        except Exception as exc:  # lm-eval and datasets raise many kinds; each becomes one line
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")
            if _offline_like(exc):
                raise UtilityTaskError(
                    f"utility task `{name}` cannot load {_dataset_of(manager, name)} ({reason}); it is not "
                    "available offline. Run it once where there is network (the `datasets` cache is used "
                    "offline), or give a local copy: `--utility-include DIR` with a task YAML whose "
                    "`dataset_path: json` and `dataset_kwargs: {data_files: ...}` name local files."
                ) from exc
            raise UtilityTaskError(f"utility task `{name}` cannot be built by lm-eval ({reason}). Fix its YAML "
                                   "or drop it from `--utility-tasks`.") from exc
        leaves.extend(t for t in loaded["tasks"] if t not in leaves)
    return leaves


@contextlib.contextmanager
def _quiet_lm_eval() -> Iterator[None]:
    """lm-eval's INFO/WARNING lines (e.g. about a model passed as an object) held back while the block runs."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _no_lm_eval_bars() -> Iterator[None]:
    """lm-eval's own progress bars (request building, loglikelihood) off while the block runs.

    lm-eval offers no switch for them through ``simple_evaluate``; its modules' ``tqdm`` is replaced
    by one that is always disabled, and restored afterwards.
    """
    import importlib

    from tqdm import tqdm

    def silent(*args: Any, **kwargs: Any) -> Any:
        kwargs["disable"] = True
        return tqdm(*args, **kwargs)

    saved = []
    for name in ("lm_eval.api.task", "lm_eval.models.huggingface", "lm_eval.evaluator", "lm_eval.api.model"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "tqdm", None) is tqdm:
            saved.append(module)
            module.tqdm = silent  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in saved:
            module.tqdm = tqdm  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- running


def metric_name(key: str) -> str:
    """lm-eval's ``"acc,none"`` -> ``"acc"``; a metric under another filter keeps ``"metric,filter"``."""
    metric, _, filt = key.partition(",")
    return metric if filt in ("", "none") else key


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None  # lm-eval writes "N/A" where it computed no stderr


def task_results(results: Mapping[str, Any]) -> dict[str, TaskUtility]:
    """Per-task :class:`TaskUtility` records from what ``lm_eval.simple_evaluate`` returned.

    Used on aura-stream's runs and on plain lm-eval's alike, so the two compare key for key.
    Per-document values come from ``results["samples"]`` (``log_samples=True``); only scalar ones
    are kept (corpus-level metrics such as BLEU have no per-document value to pair).
    """
    out: dict[str, TaskUtility] = {}
    samples_all = results.get("samples") or {}
    for task, raw in results["results"].items():
        metrics: dict[str, float | None] = {}
        for key, value in raw.items():
            if "," in key:
                metrics[metric_name(key)] = _number(value)
        per_doc: dict[str, dict[int, float]] = {}
        for s in samples_all.get(task, []):
            filt = s.get("filter", "none")
            for metric in s.get("metrics", []):
                value = _number(s.get(metric))
                if value is not None:
                    per_doc.setdefault(metric_name(f"{metric},{filt}"), {})[int(s["doc_id"])] = value
        doc_ids = sorted(next(iter(per_doc.values()), {}))
        samples = {m: [v[d] for d in doc_ids] for m, v in per_doc.items() if sorted(v) == doc_ids}
        n_info = (results.get("n-samples") or {}).get(task, {})
        n = raw.get("sample_len", n_info.get("effective", len(doc_ids)))
        hib = {metric_name(k): bool(v) for k, v in (results.get("higher_is_better") or {}).get(task, {}).items()}
        out[task] = TaskUtility(metrics=metrics, samples=samples, doc_ids=doc_ids, n=int(n),
                                higher_is_better=hib, version=(results.get("versions") or {}).get(task))
    return out


def run_utility(
    model: Any,
    tokenizer: Any,
    *,
    tasks: str | Sequence[str],
    include: str | Path | Sequence[str | Path] | None = None,
    limit: int | float | None = None,
    batch_size: int | str = 1,
    context: ContextFactory | None = None,
    bootstrap_iters: int = 100000,
    progress: bool = True,
) -> dict[str, TaskUtility]:
    """lm-eval's zero-shot metrics of ``model`` on ``tasks``, with ``context``'s hooks attached.

    ``model`` is wrapped in ``lm_eval.models.huggingface.HFLM(pretrained=model, tokenizer=tokenizer,
    batch_size=batch_size)`` and evaluated by ``lm_eval.simple_evaluate`` with lm-eval's defaults
    (zero-shot unless a task's YAML says otherwise, lm-eval's seeds, ``log_samples=True``). HFLM
    uses the model where it is (its device, its dtype) and the tokenizer as it is (its own
    BOS-token default), exactly as it would after loading ``pretrained=DIR`` itself, so the numbers
    equal ``lm_eval --model hf --model_args pretrained=DIR --batch_size B`` on the same checkpoint
    loaded in the same dtype and device.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The Hugging Face model lm-eval calls (for a TransformerLens arm, the model the bridge wraps).
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer. lm-eval sets a pad token on it if it has none (as it would for its own).
    tasks : str or sequence of str
        ``"T1,T2"`` or names (``--utility-tasks``).
    include : path or sequence of paths, optional
        Directories of task YAMLs (``--utility-include``); the shipped tasks are always there.
    limit : int or float, optional
        lm-eval's ``limit``: the first N documents of each task (a float < 1: a fraction).
    batch_size : int or str
        lm-eval's batch size (``"auto"`` too). Compare arms at the same batch size.
    context : callable returning a context manager, optional
        Entered once around the whole lm-eval call, e.g.
        ``lambda: aura_stream.generate.dampened(model, intervention)``: every forward pass lm-eval
        makes runs dampened. None: the model as it is (the baseline arm).
    bootstrap_iters : int
        lm-eval's bootstrap for the stderr of metrics that are not means (0: none).
    progress : bool
        lm-eval's progress bars (False: none, as ``eval --quiet``).

    Returns
    -------
    dict of str to TaskUtility
        One record per task lm-eval reports (leaf tasks, and groups with their aggregate).

    Raises
    ------
    MissingDependencyError, MissingFileError, InputError, UtilityTaskError
        Before the first forward pass.
    """
    lm_eval = require_lm_eval()
    names = parse_tasks(tasks)
    manager = task_manager(names, include)
    from lm_eval.models.huggingface import HFLM

    with _quiet_lm_eval(), contextlib.nullcontext() if progress else _no_lm_eval_bars():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        with context() if context is not None else contextlib.nullcontext():
            try:
                results = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=limit,
                                                  log_samples=True, bootstrap_iters=bootstrap_iters)
            except Exception as exc:
                if not _offline_like(exc) or isinstance(exc, AuraStreamError):
                    raise
                raise UtilityTaskError(
                    f"a utility task in {', '.join(names)} cannot load its dataset ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); call `check_utility_ready` first, "
                    "and use `--utility-include DIR` with local task YAMLs offline."
                ) from exc
    return task_results(results)


# --------------------------------------------------------------------------- comparing arms


@dataclass(frozen=True)
class PairedDifference:
    """An arm's mean of a per-document metric minus the baseline's, on the same documents.

    Attributes
    ----------
    baseline, arm : float
        Means over the ``n`` shared documents.
    difference : float
        ``arm - baseline`` (the mean of the per-document differences).
    interval : (float, float) or None
        ``confidence`` interval of ``difference``; None with fewer than 2 documents (normal).
    n : int
    method : {"bootstrap", "normal"}
    confidence : float
    """

    baseline: float
    arm: float
    difference: float
    interval: tuple[float, float] | None
    n: int
    method: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the interval as a list)."""
        out = asdict(self)
        out["interval"] = list(self.interval) if self.interval is not None else None
        return out


def _aligned(baseline: PerDoc, arm: PerDoc) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(baseline, Mapping) != isinstance(arm, Mapping):
        raise InputError("`baseline_samples` and `arm_samples` must both be sequences or both be mappings of "
                         f"doc id to value; got {type(baseline).__name__} and {type(arm).__name__}.")
    if isinstance(baseline, Mapping) and isinstance(arm, Mapping):
        if set(baseline) != set(arm):
            only = sorted(set(baseline) ^ set(arm))[:5]
            raise InputError(f"`arm_samples` must cover the baseline's documents; got different doc ids (e.g. "
                             f"{only}). Evaluate both arms with the same tasks and `--utility-limit`.")
        keys = sorted(baseline)
        return (np.array([baseline[k] for k in keys], dtype=np.float64),
                np.array([arm[k] for k in keys], dtype=np.float64))
    b = np.asarray(baseline, dtype=np.float64)
    a = np.asarray(arm, dtype=np.float64)
    if b.ndim != 1 or b.shape != a.shape:
        raise InputError(f"`arm_samples` must have the baseline's shape [n_docs]; got {a.shape} and {b.shape}. "
                         "Evaluate both arms with the same tasks and `--utility-limit`.")
    return b, a


def paired_difference(
    baseline_samples: PerDoc,
    arm_samples: PerDoc,
    *,
    method: Method = "bootstrap",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedDifference:
    """Mean per-document difference ``arm - baseline`` with a paired ``confidence`` interval.

    Each document is scored by both arms, so the unit is the document: ``d_i = arm_i - baseline_i``.

    * ``bootstrap`` (default, as the rest of ``eval``): documents resampled with replacement
      (:func:`~aura_stream.evaluation.intervals.bootstrap_means`), percentile interval of the mean of
      ``d``; deterministic for a given ``seed``.
    * ``normal``: ``mean(d) ± z * sd(d) / sqrt(n)`` with ``sd`` the sample standard deviation
      (ddof 1) and ``z`` the normal quantile; None for fewer than 2 documents.

    Parameters
    ----------
    baseline_samples, arm_samples : sequence or array of float, or mapping of doc id to float
        Per-document values (e.g. ``TaskUtility["samples"]["acc"]``); sequences must be in the same
        document order, mappings are matched by doc id.
    method : {"bootstrap", "normal"}
    confidence : float in (0, 1)
    n_resamples, seed : int
        Bootstrap only.

    Returns
    -------
    PairedDifference

    Raises
    ------
    InputError
        Different documents or shapes, no documents, non-finite values, or a bad option.

    Examples
    --------
    >>> r = paired_difference([1, 0, 1, 0], [1, 1, 1, 0], method="normal")
    >>> r.difference, round(r.interval[0], 4), round(r.interval[1], 4)
    (0.25, -0.24, 0.74)
    """
    if method not in ("bootstrap", "normal"):
        raise InputError(f"`method` must be bootstrap or normal; got {method!r}.")
    if not 0 < confidence < 1:
        raise InputError(f"`confidence` must be in (0, 1); got {confidence}.")
    base, arm = _aligned(baseline_samples, arm_samples)
    if base.size == 0:
        raise InputError("`baseline_samples` must hold at least one document; got none. Run a larger "
                         "`--utility-limit`.")
    if not (np.isfinite(base).all() and np.isfinite(arm).all()):
        raise InputError("`baseline_samples` and `arm_samples` must be finite; got NaN or inf. Pair only "
                         "per-document metrics such as acc or acc_norm.")
    diff = arm - base
    mean = float(diff.mean())
    interval: tuple[float, float] | None
    if method == "normal":
        if diff.size < 2:
            interval = None
        else:
            z = NormalDist().inv_cdf(0.5 + confidence / 2)
            half = z * float(diff.std(ddof=1)) / math.sqrt(diff.size)
            interval = (mean - half, mean + half)
    else:
        reps = bootstrap_means(diff[:, None], n_resamples=n_resamples, seed=seed)[:, 0]
        interval = percentile_interval(reps, confidence=confidence)
    return PairedDifference(baseline=float(base.mean()), arm=float(arm.mean()), difference=mean,
                            interval=interval, n=int(diff.size), method=method, confidence=confidence)


def compare_utility(
    baseline: Mapping[str, TaskUtility],
    arm: Mapping[str, TaskUtility],
    *,
    method: Method = "bootstrap",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, PairedDifference]]:
    """:func:`paired_difference` of every per-document metric of every task both arms report.

    Returns
    -------
    dict of task to dict of metric to PairedDifference
        Tasks without per-document values (groups) are left out.
    """
    out: dict[str, dict[str, PairedDifference]] = {}
    for task, base in baseline.items():
        other = arm.get(task)
        if other is None or not base["doc_ids"]:
            continue
        per_metric = {}
        for metric, values in base["samples"].items():
            if metric in other["samples"]:
                per_metric[metric] = paired_difference(
                    dict(zip(base["doc_ids"], values, strict=True)),
                    dict(zip(other["doc_ids"], other["samples"][metric], strict=True)),
                    method=method, confidence=confidence, n_resamples=n_resamples, seed=seed)
        out[task] = per_metric
    return out


__all__ = [
    "INSTALL_HINT",
    "SHIPPED_TASK",
    "SHIPPED_TASKS_DIR",
    "MissingDependencyError",
    "PairedDifference",
    "TaskUtility",
    "UtilityTaskError",
    "check_utility_ready",
    "compare_utility",
    "include_paths",
    "paired_difference",
    "parse_tasks",
    "require_lm_eval",
    "run_utility",
    "task_manager",
    "task_results",
]
