"""The evaluation's output directory: its files, resume records and the lock that keeps it to one run.

Layout of ``out_dir``:

- ``eval_config.json``: written first; what decides the results. A rerun with the same
  configuration resumes, any other is refused unless ``overwrite``.
- ``generations.jsonl``: one record per (arm, prompt, sample), appended and flushed after every
  block of prompts; a rerun skips the records already there.
- ``perplexity.json``: per-chunk NLL of the neutral text per intervention (a resume cache).
- ``utility.json`` (``--utility-tasks``): lm-eval results per arm, written after every arm; it carries
  its own identity (this run's, the tasks, lm-eval's version, a fingerprint of the task files), so
  utility can be added to a finished run and a changed task recomputes instead of being reused.
- ``summary.json`` and ``report.png``: written last, atomically (temporary file + rename).

While a run writes the directory it holds an exclusive ``flock`` on the directory itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aura_stream._version import __version__
from aura_stream.errors import DataFileError, InputError
from aura_stream.evaluation.arms import FORMAT

CONFIG_FILE, GENERATIONS_FILE = "eval_config.json", "generations.jsonl"
PERPLEXITY_FILE, SUMMARY_FILE, REPORT_FILE = "perplexity.json", "summary.json", "report.png"
UTILITY_FILE = "utility.json"  # lm-eval results per arm (eval --utility-tasks)
OUR_FILES = (CONFIG_FILE, GENERATIONS_FILE, PERPLEXITY_FILE, SUMMARY_FILE, REPORT_FILE, UTILITY_FILE)




def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode()).hexdigest()


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}. Free space or choose a "
                         "writable `--out`, then rerun the same command to resume.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` must be a directory or not exist yet (cheap; before loading a model)."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"`--out` must be a directory; got {str(out)!r}, which is a file. "
                         "Choose a directory path.")
    return out


def prepare_out_dir(out_dir: str | os.PathLike[str], identity: Mapping[str, Any], *,
                    overwrite: bool, config: Mapping[str, Any] | None = None) -> Path:
    """Create or reuse ``out_dir`` for the run described by ``identity``.

    Raises
    ------
    InputError
        ``out_dir`` is a file, or holds an evaluation of another configuration (or files of an
        unknown one) and ``overwrite`` is False.
    """
    out = check_out_dir(out_dir)
    ours = [out / f for f in OUR_FILES if (out / f).exists()]
    config_path = out / CONFIG_FILE
    if config_path.exists() and not overwrite:
        try:
            stored = json.loads(config_path.read_text(encoding="utf-8"))["identity"]
        except (OSError, ValueError, KeyError, TypeError):
            stored = None
        if isinstance(stored, dict) and "weights" not in stored:  # written before weights were recorded
            identity = {k: v for k, v in identity.items() if k != "weights"}
        if isinstance(stored, dict):  # utility settings were part of the identity in 0.1 (utility.json has its own)
            stored.pop("utility", None)
        if stored == identity:
            return out
        diff = ("unreadable" if not isinstance(stored, dict) else ", ".join(
            f"{k} ({_short(stored.get(k))} -> {_short(identity.get(k))})"
            for k in sorted(set(stored) | set(identity)) if stored.get(k) != identity.get(k)))
        raise InputError(f"`--out` {str(out)!r} holds an evaluation of a different configuration "
                         f"(differs in: {diff[:400]}); pass --overwrite to replace it, or choose "
                         "another --out.")
    if ours and not overwrite:
        raise InputError(f"`--out` {str(out)!r} holds evaluation files of an unknown configuration "
                         f"({', '.join(p.name for p in ours)}) but no {CONFIG_FILE}; pass "
                         "--overwrite to replace them, or choose another --out.")
    for path in ours:  # --overwrite: only our own files, never anything else in the folder
        path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create `--out` {str(out)!r}: {exc.strerror or exc}.") from exc
    record = {"format": FORMAT, "identity": identity, "version": __version__,
              "created": now(), "config": dict(config or {})}
    atomic_write_text(config_path, json.dumps(record, indent=2, default=str) + "\n")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


Key = tuple[str, int, int]  # (arm, prompt_index, sample_index)


def read_records(path: Path, arms: Sequence[str], n_prompts: int,
                 k: int) -> dict[Key, dict[str, Any]]:
    """Records of an earlier (possibly interrupted) run; a torn last line is cut off the file.

    Raises
    ------
    DataFileError
        A malformed line other than the last, or a record outside this run's arms and prompts.
    """
    if not path.exists():
        return {}
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1]:  # no final newline: the process died while writing that line
        with path.open("r+b") as f:
            f.truncate(len(data) - len(lines[-1]))
    records: dict[Key, dict[str, Any]] = {}
    for number, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            key = (rec["arm"], int(rec["prompt_index"]), int(rec["sample_index"]))
            toxicity = float(rec["toxicity"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataFileError(f"{path} line {number}: not a generation record ({exc}); pass "
                                "--overwrite to start the evaluation afresh.") from exc
        if not 0.0 <= toxicity <= 1.0:  # NaN fails too
            raise DataFileError(f"{path} line {number}: toxicity must be a probability in [0, 1]; got "
                                f"{rec['toxicity']!r}. Pass --overwrite to start the evaluation afresh.")
        if key[0] not in arms or not (0 <= key[1] < n_prompts and 0 <= key[2] < k):
            raise DataFileError(f"{path} line {number}: record {key} is outside this run's arms "
                                "and prompts; pass --overwrite to start afresh.")
        records.setdefault(key, rec)
    return records


@contextlib.contextmanager
def out_dir_lock(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``out_dir`` (created if needed) while one evaluation writes it.

    A second ``eval`` on the same directory would append the same records twice; it is refused
    at once. The lock is the kernel's (``flock`` on the directory): a killed run releases it and
    nothing stale remains.
    """
    out = check_out_dir(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY)
    except OSError as exc:
        raise InputError(f"cannot create `--out` {str(out)!r}: {exc.strerror or exc}.") from exc
    try:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one run per folder is then the user's care
            yield out
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"`--out` {str(out)!r} must be used by one `eval` at a time; another is writing it "
                             "now. Wait for it to finish, or choose another --out.") from None
        try:
            yield out
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a ``generations.jsonl``, in file order."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
