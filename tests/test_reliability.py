"""Reliability and security: crashes, full disks, hostile files and half precision lose nothing.

Every guarantee in ``docs/reliability.md`` names the test here (or in ``test_bad_inputs.py``) that
proves it. Faults are real wherever the machine allows: processes die by SIGKILL, and disks fill up
on a small tmpfs mounted for the test (needs root). Without root, the store write is made to fail by
a mock of zarr's file writer and the atomic-output tests inject the failure at the final rename.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import hashlib
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from aura_stream_cli.main import app
from click.testing import CliRunner, Result
from safetensors.torch import load_file

from aura_stream.errors import NumericalError
from aura_stream.extract import extract
from aura_stream.interventions import load_intervention, make_intervention
from aura_stream.score import score
from aura_stream.store import ActivationStore
from tests.conftest import jigsaw_sample
from tests.test_extract import big_csv, store_arrays

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "aura_stream_cli.main"]
# one thread everywhere: a killed subprocess and the in-process resume must compute identical floats
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false"}
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- shared helpers


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach for the network (the env var alone is read once, at import)."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def cli(*args: object) -> Result:
    """Run the CLI in-process, as a user would type it."""
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Result, *fragments: str, code: int = 1, alone: bool = True) -> str:
    """Exit ``code``, exactly one ``Error: `` line holding every fragment, last, and no traceback.

    Exit 1 (an ``AuraStreamError``) prints that line alone (unless ``alone`` is False: results
    printed before a later step failed); a usage error (exit 2) comes after click's usage header.
    """
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output!r} {result.exception!r}"
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    if code == 2:
        assert all(ln.startswith(("Usage: ", "Try ")) for ln in lines[:-1]), result.output
    elif alone:
        assert lines == errors, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def tree(*paths: Path) -> dict[str, str | None]:
    """Content fingerprint of files and directories (None: absent) to prove nothing changed."""
    out: dict[str, str | None] = {}
    for top in paths:
        if not top.exists():
            out[str(top)] = None
            continue
        for p in sorted([top, *top.rglob("*")]) if top.is_dir() else [top]:
            out[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(directory: Path) -> list[str]:
    """Temporary files or directories that a failed atomic write would leave behind."""
    marks = (".tmp", ".partial", ".creating-", ".tmp-")
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if any(m in p.name for m in marks))


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_attrs(store: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Rewrite a store's ``aura_stream`` attributes in place, as an attacker with the files could."""
    meta = store / "zarr.json"
    doc = json.loads(meta.read_text())
    edit(doc["attributes"]["aura_stream"])
    meta.write_text(json.dumps(doc))
    return store


def all_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a store, sample ids included (equal ids: no row missing or duplicated)."""
    out = store_arrays(path)
    out["sample_id"] = ActivationStore.open(path).sample_ids
    return out


def assert_same_store(got: Path, want: dict[str, np.ndarray]) -> None:
    have = all_arrays(got)
    assert have.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(have[key], want[key], err_msg=key)


def without_created(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "created"}


@dataclass(frozen=True)
class Artifacts:
    """A finished run on the tiny GPT-2: a store, the same store scored, and its AurA file."""

    store: Path  # 16 rows (8 toxic), row blocks of 8, no scores
    scored: Path  # a copy with AUROCs stored
    intervention: Path


@pytest.fixture(scope="module", name="artifacts")
def artifacts_fixture(gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    root = tmp_path_factory.mktemp("artifacts")
    store = root / "base.zarr"
    extract(model=str(gpt2_dir), data=jigsaw_sample(), out=store, row_block=8, progress=False)
    scored = copy_store(store, root / "scored.zarr")
    iv = root / "aura.safetensors"
    score(scored, out=iv, progress=False)
    return Artifacts(store, scored, iv)


# --------------------------------------------------------------------------- a small disk


class SmallDisk:
    """A tmpfs of its own: fill it to leave N bytes, make it read-only, free it again."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler.bin"

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def leave(self, n_bytes: int) -> None:
        """Fill the disk so that about ``n_bytes`` (rounded to pages) stay free."""
        self.release()
        size = self.free_bytes() - -(-n_bytes // PAGE) * PAGE
        with self.filler.open("wb") as f:
            if size > 0:
                os.posix_fallocate(f.fileno(), 0, size)

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, flag: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if flag else 'rw'}", str(self.root)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk | None]:
    """A 16 MiB tmpfs (root only), or None where it cannot be mounted (then tests use mocks)."""
    root = tmp_path / "disk"
    root.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount") and not os.environ.get("AURA_STREAM_TEST_NO_MOUNT"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)],
                                 capture_output=True).returncode == 0
    try:
        yield SmallDisk(root) if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], check=False)  # lazy: never blocks teardown


def pages(path: Path) -> int:
    return -(-path.stat().st_size // PAGE) * PAGE


def is_block_file(path: Path, store: Path) -> bool:
    """Data written per row block: activation shards and progress flags (``.../c/...``)."""
    parts = path.relative_to(store).parts
    return parts[0] in ("activations", "progress") and "c" in parts


@contextlib.contextmanager
def no_room_for(disk: SmallDisk | None, target: Path, *, room: int = 0) -> Iterator[None]:
    """Inside the block, writing ``target`` fails for lack of space.

    With a small disk: it is filled to leave ``room`` bytes. Without one (no root): a mock makes
    the final rename of ``target`` fail, after its temporary file was written whole.
    """
    if disk is not None:
        disk.leave(room)
        try:
            yield
        finally:
            disk.release()
        return
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst) == target:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", replace)
        yield


# --------------------------------------------------------------------------- 1. crash safety


def kill_when(cmd: list[str], ready: Callable[[], bool], *, delay: float, timeout: float = 300.0) -> int:
    """Run ``cmd``; SIGKILL it ``delay`` seconds after ``ready()`` first holds; its exit status."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CHILD_ENV)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                time.sleep(delay)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def n_flags(store: Path) -> int:
    """Row blocks flagged complete (progress chunks on disk; zarr's ``.partial`` files excluded)."""
    folder = store / "progress" / "c"
    with contextlib.suppress(FileNotFoundError):
        return sum(1 for p in folder.iterdir() if p.name.isdigit())
    return 0


EXTRACT_ROWS = 8  # copies of the 16-row sample: 128 rows
EXTRACT_BLOCK = 8  # rows per block: 16 blocks
N_TRIALS = 10  # random kill moments in the slow run; trial 0 runs by default


@pytest.fixture(scope="module")
def extract_reference(gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """The data of the kill trials and the arrays of an uninterrupted run over it."""
    root = tmp_path_factory.mktemp("extract-ref")
    data = big_csv(root, copies=EXTRACT_ROWS)
    ref = root / "ref.zarr"
    extract(model=str(gpt2_dir), data=data, out=ref, row_block=EXTRACT_BLOCK, batch_size=EXTRACT_BLOCK,
            progress=False)
    return data, all_arrays(ref)


def _trials(n: int) -> list[Any]:
    return [0, *(pytest.param(i, marks=pytest.mark.slow) for i in range(1, n + 1))]


@pytest.mark.parametrize("trial", _trials(N_TRIALS))
def test_extract_killed_at_random_moment_resumes_to_identical_store(
        trial: int, gpt2_dir: Path, extract_reference: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    """SIGKILL at a seeded random moment, rerun: the store equals an uninterrupted run's.

    Trial 0 kills while the store is being created (its hidden build directory exists);
    the others after a random number of flagged row blocks plus a random delay (mid-block).
    ``test_extract.py::test_resume_after_sigkill_equals_uninterrupted`` kills after 3 blocks.
    """
    data, want = extract_reference
    out = tmp_path / "killed.zarr"
    rng = random.Random(trial)
    n_blocks = -(-16 * EXTRACT_ROWS // EXTRACT_BLOCK)
    if trial == 0:
        def ready() -> bool:
            return any(tmp_path.glob(".killed.zarr.creating-*")) or (out / "zarr.json").exists()
        delay = 0.0
    else:
        target = rng.randrange(1, n_blocks - 1)  # at least two blocks still to come
        delay = rng.uniform(0.0, 0.02)

        def ready() -> bool:
            return n_flags(out) >= target
    args = ["--model", gpt2_dir, "--data", data, "--out", out, "--row-block", EXTRACT_BLOCK,
            "--batch-size", EXTRACT_BLOCK, "--quiet"]
    status = kill_when([*CLI, "extract", *map(str, args)], ready, delay=delay)
    assert status == -signal.SIGKILL, status  # two blocks and the interpreter's exit were still to come
    # creation is atomic: after the kill there is no store or a whole, openable one
    done = ActivationStore.open(out).completed() if (out / "zarr.json").exists() else np.zeros(0, bool)
    assert out.exists() == (done.size > 0)
    result = extract(model=str(gpt2_dir), data=data, out=out, row_block=EXTRACT_BLOCK, batch_size=EXTRACT_BLOCK,
                     progress=False)
    assert result.blocks_skipped == int(done.sum())  # flagged blocks are trusted and kept
    assert_same_store(out, want)
    # only hidden temporary names may be left by the kill, never a second store
    assert all(p.name.startswith(".killed.zarr.creating-") for p in tmp_path.iterdir() if p != out)


EVAL_ARGS = ["--limit-prompts", "8", "--samples-per-prompt", "2", "--max-new-tokens", "4", "--batch-size", "1",
             "--quiet"]  # 4 prompts per flushed block: 4 flushes of 8 lines over the two arms
EVAL_TRIALS = 4


@pytest.fixture(scope="module")
def eval_reference(gpt2_dir: Path, artifacts: Artifacts,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, Any], list[str]]:
    """Arguments (with a fixed --out, freed after use) and an uninterrupted run's summary and lines."""
    root = tmp_path_factory.mktemp("eval-ref")
    ppl = root / "ppl.txt"
    ppl.write_text("The interpreter reads a statement and executes it.\n"
                   "A module is a file containing definitions and statements.\n")
    out = root / "run"
    args = ["eval", "--model", str(gpt2_dir), "--intervention", str(artifacts.intervention), "--out", str(out),
            "--ppl-text", str(ppl), *EVAL_ARGS]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    lines = sorted((out / "generations.jsonl").read_text().splitlines())
    shutil.rmtree(out)
    return args, summary, lines


@pytest.mark.parametrize("trial", _trials(EVAL_TRIALS))
def test_eval_killed_at_random_moment_resumes_to_identical_summary(
        trial: int, eval_reference: tuple[list[str], dict[str, Any], list[str]]) -> None:
    """SIGKILL ``aura-stream eval`` mid-way, rerun: summary.json equals an uninterrupted run's.

    Trial 0 kills right after the first flushed block of generations; the slow trials after a
    random number of lines (up to all 32, i.e. during perplexity) plus a random delay.
    """
    args, want, want_lines = eval_reference
    out = Path(args[args.index("--out") + 1])
    shutil.rmtree(out, ignore_errors=True)  # the same --out as the reference: equal config
    rng = random.Random(100 + trial)
    target, delay = (1, 0.0) if trial == 0 else (rng.randrange(1, 33), rng.uniform(0.0, 0.3))
    gen = out / "generations.jsonl"

    def ready() -> bool:
        with contextlib.suppress(FileNotFoundError):
            return gen.read_bytes().count(b"\n") >= target
        return False

    status = kill_when([*CLI, *args], ready, delay=delay)
    assert status in (0, -signal.SIGKILL), status
    if (out / "summary.json").exists():  # a kill after the last write: whatever is there is whole
        json.loads((out / "summary.json").read_text())
    r = cli(*args)
    assert r.exit_code == 0, r.output
    got = json.loads((out / "summary.json").read_text())
    assert without_created(got) == without_created(want)
    assert sorted(gen.read_text().splitlines()) == want_lines  # nothing lost, nothing twice
    shutil.rmtree(out)


# --------------------------------------------------------------------------- 2. write failures


@contextlib.contextmanager
def zarr_enospc(n_ok: int, *parts: str) -> Iterator[None]:
    """Mock for machines without a small disk: zarr's file writes whose path holds every one of
    ``parts`` fail with ENOSPC once ``n_ok`` of them succeeded."""
    import zarr.storage._local as local

    real, calls = local._put, [0]

    def put(path: Path, *args: Any, **kwargs: Any) -> Any:
        if all(part in str(path) for part in parts):
            calls[0] += 1
            if calls[0] > n_ok:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(local, "_put", put)
        yield


def test_store_write_failure_is_one_line_and_resumable(gpt2_dir: Path, disk: SmallDisk | None,
                                                       tmp_path: Path) -> None:
    """Disk full mid-extraction: one clear line, the store stays resumable; so does a read-only disk."""
    data = big_csv(tmp_path, copies=2)  # 32 rows, 8 blocks of 4
    ref = tmp_path / "ref.zarr"
    extract(model=str(gpt2_dir), data=data, out=ref, row_block=4, batch_size=4, store_dtype="float32",
            progress=False)
    args = ["extract", "--model", gpt2_dir, "--data", data, "--row-block", 4, "--batch-size", 4,
            "--store-dtype", "float32", "--quiet", "--out"]
    out = (disk.root if disk is not None else tmp_path) / "s.zarr"
    if disk is not None:
        files = [p for p in ref.rglob("*") if p.is_file()]
        creation = sum(pages(p) for p in files if not is_block_file(p, ref))
        per_block = sum(pages(p) for p in files if is_block_file(p, ref)) / 8
        disk.leave(creation + 4 * PAGE + int(2.5 * per_block))  # room to create it and for ~2 blocks
        full: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    else:
        full = zarr_enospc(2 * 6, "activations", "/c/")  # 6 arrays: 2 blocks fit
    with full:
        r = cli(*args, out)
    assert_one_line_error(r, "writing the store failed", "No space left on device",
                          "Free space or fix permissions, then rerun the same command to resume")
    done = int(ActivationStore.open(out).completed().sum())
    assert 0 < done < 8
    if disk is not None:  # then permission is lost: the same clear line, nothing lost
        disk.release()
        disk.read_only(True)
        try:
            assert_one_line_error(cli(*args, out), "writing the store failed", "Read-only file system")
        finally:
            disk.read_only(False)
        assert int(ActivationStore.open(out).completed().sum()) == done
    r = cli(*args, out)
    assert r.exit_code == 0, r.output
    assert f"{8 - done} row blocks written, {done} already complete" in r.output
    assert_same_store(out, all_arrays(ref))


def test_store_creation_on_full_disk_leaves_nothing(gpt2_dir: Path, disk: SmallDisk | None, tmp_path: Path) -> None:
    parent = disk.root if disk is not None else tmp_path / "parent"
    parent.mkdir(exist_ok=True)
    out = parent / "s.zarr"
    with no_room_for(disk, out) if disk is not None else zarr_enospc(0):
        r = cli("extract", "--model", gpt2_dir, "--data", jigsaw_sample(), "--out", out, "--quiet")
    assert_one_line_error(r, "cannot create store", "No space left on device", "free space")
    assert not out.exists() and leftovers(parent) == []


def test_score_write_failure_never_leaves_torn_scores(artifacts: Artifacts, disk: SmallDisk | None,
                                                      tmp_path: Path) -> None:
    """A full disk while `score` stores AUROCs: one line; a torn array is never reused as zeros."""
    want = score(copy_store(artifacts.store, tmp_path / "ref.zarr"), progress=False).intervention.aurocs
    store = copy_store(artifacts.store, (disk.root if disk is not None else tmp_path) / "s.zarr")
    # with a disk: the first array's 4 metadata files fit, its data does not; the mock fails the data alike
    with no_room_for(disk, store, room=4 * PAGE) if disk is not None else zarr_enospc(0, "/scores/", "/c/"):
        r = cli("score", store, "--quiet")
    assert_one_line_error(r, "cannot write scores into store", "No space left on device",
                          "Free space or fix permissions, then rerun `score`")
    st = ActivationStore.open(store)
    torn = [h for h in st.hooks if f"scores/max/{h}/auroc" in st.group]
    assert torn, "the failure should have left an array without its data"
    assert all(st.read_scores("max", h) is None for h in torn)
    r = cli("score", store, "--quiet")
    assert r.exit_code == 0 and "AUROCs computed for 6 hooks, reused for 0" in r.output, r.output
    for hook, values in want.items():
        np.testing.assert_array_equal(ActivationStore.open(store).read_scores("max", hook), values)


# --------------------------------------------------------------------------- 3. atomic outputs


def test_intervention_appears_whole_or_not_at_all(artifacts: Artifacts, disk: SmallDisk | None,
                                                  tmp_path: Path) -> None:
    folder = disk.root if disk is not None else tmp_path
    target = folder / "aura.safetensors"
    store = copy_store(artifacts.scored, tmp_path / "s.zarr")  # AUROCs stored: score only writes the file
    with no_room_for(disk, target):
        r = cli("score", store, "--out", target, "--quiet")
    assert_one_line_error(r, "cannot write", "aura.safetensors", "Free space or choose a writable `--out`")
    assert not target.exists() and leftovers(folder) == []
    # an older file at the target survives a failed rewrite byte for byte
    shutil.copyfile(artifacts.intervention, target)
    before = target.read_bytes()
    with no_room_for(disk, target):
        r = cli("score", store, "--method", "det0", "--num-experts", "5", "--out", target, "--quiet")
    assert_one_line_error(r, "cannot write", "Free space or choose a writable `--out`")
    assert target.read_bytes() == before and leftovers(folder) == []


def test_auroc_plot_appears_whole_or_not_at_all(artifacts: Artifacts, disk: SmallDisk | None, tmp_path: Path) -> None:
    folder = disk.root if disk is not None else tmp_path
    plot = folder / "auroc.png"
    store = copy_store(artifacts.scored, tmp_path / "s.zarr")
    with no_room_for(disk, plot):
        r = cli("score", store, "--plot", plot, "--quiet")
    # the scores table is printed first; the plot, written last, fails
    assert_one_line_error(r, "cannot write the plot", "Free space or choose a writable `--plot`", alone=False)
    assert not plot.exists() and leftovers(folder) == []


def test_folded_checkpoint_appears_whole_or_not_at_all(gpt2_dir: Path, artifacts: Artifacts,
                                                       disk: SmallDisk | None, tmp_path: Path) -> None:
    folder = disk.root if disk is not None else tmp_path
    out = folder / "folded"
    args = ["fold", "--model", gpt2_dir, "--intervention", artifacts.intervention, "--out", out]
    with no_room_for(disk, out, room=16 * PAGE):  # the config fits, the weights do not
        r = cli(*args)
    assert_one_line_error(r, "cannot write the checkpoint", "Choose a writable `--out` with room")
    assert not out.exists() and leftovers(folder) == []
    assert cli(*args).exit_code == 0
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # whole: it loads


def test_eval_report_appears_whole_or_not_at_all(eval_reference: tuple[list[str], dict[str, Any], list[str]],
                                                 disk: SmallDisk | None, tmp_path: Path) -> None:
    """report.png and summary.json: a failed write leaves no part of either; a rerun finishes them."""
    args = [*eval_reference[0]]
    folder = disk.root if disk is not None else tmp_path
    out = folder / "eval"
    args[args.index("--out") + 1] = str(out)
    assert cli(*args).exit_code == 0
    summary, report = json.loads((out / "summary.json").read_text()), (out / "report.png").read_bytes()
    (out / "summary.json").unlink()
    (out / "report.png").unlink()
    # first the report cannot be written; then, with room for the report alone, the summary
    for target, room in (("report.png", 0), ("summary.json", len(report))):
        with no_room_for(disk, out / target, room=room):
            r = cli(*args)
        assert_one_line_error(r, "cannot write", target, "Free space or choose a writable `--out`")
        assert not (out / "summary.json").exists() and leftovers(folder) == []
        assert not (out / "report.png").exists() or (out / "report.png").read_bytes() == report
    assert cli(*args).exit_code == 0
    assert without_created(json.loads((out / "summary.json").read_text())) == without_created(summary)
    assert (out / "report.png").read_bytes() == report


@pytest.mark.slow
def test_eval_full_disk_while_generating_resumes(eval_reference: tuple[list[str], dict[str, Any], list[str]],
                                                 disk: SmallDisk | None) -> None:
    """Disk full while appending generations: one line; after freeing space the run completes."""
    if disk is None:
        pytest.skip("needs a mounted tmpfs (root)")
    args, want, want_lines = eval_reference
    args = [*args]
    out = disk.root / "eval"
    args[args.index("--out") + 1] = str(out)
    with no_room_for(disk, out, room=PAGE):  # eval_config.json fits, the first block of lines does not
        r = cli(*args)
    assert_one_line_error(r, "cannot append to", "No space left on device", "rerun the same command to resume")
    r = cli(*args)
    assert r.exit_code == 0, r.output
    got = json.loads((out / "summary.json").read_text())
    assert without_created(got) == without_created(want) | {"config": {**want["config"], "out": str(out)}}
    assert sorted((out / "generations.jsonl").read_text().splitlines()) == want_lines


# --------------------------------------------------------------------------- 5. hostile files


class _Payload:
    """Unpickling this creates ``marker``: proof of code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def pickle_payload(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_Payload(marker)))
    return path


def test_pickle_payload_is_live_yet_never_executed(gpt2_dir: Path, tmp_path: Path) -> None:
    """The payload runs under ``pickle.loads``; fed to every command that opens interventions, it never runs."""
    control = tmp_path / "control-marker"
    pickle.loads(pickle_payload(tmp_path / "control.pkl", control).read_bytes()).close()
    assert control.exists()  # the payload is live
    marker = tmp_path / "marker"
    evil = pickle_payload(tmp_path / "evil.safetensors", marker)
    torch_zip = tmp_path / "evil-torch.safetensors"
    torch.save({"blocks.0.mlp.hook_pre.alpha": _Payload(marker)}, torch_zip)
    for path in (evil, torch_zip):
        for args in (["generate", "--model", gpt2_dir, "--prompt", "Hi", "--quiet"],
                     ["fold", "--model", gpt2_dir, "--out", tmp_path / "folded"],
                     ["eval", "--model", gpt2_dir, "--out", tmp_path / "eval", "--quiet"]):
            r = cli(*args, "--intervention", path)
            assert_one_line_error(r, "is not a safetensors file", "only opens safetensors interventions")
    assert not marker.exists()
    assert not (tmp_path / "folded").exists() and not (tmp_path / "eval").exists()


TAMPERINGS: dict[str, Callable[[dict[str, Any]], None]] = {
    "hook-dotdot": lambda a: a.update(hooks={"../../escape": 128, **a["hooks"]}),
    "hook-separator": lambda a: a.update(hooks={"blocks.0.mlp.hook_pre/../../../escape": 128}),
    "hook-absolute": lambda a: a.update(hooks={"/tmp/escape": 128}),
    "pooling-dotdot": lambda a: a.update(poolings=["../../escape"]),
    "pooling-absolute": lambda a: a.update(poolings=["/tmp/escape"]),
    "width-not-int": lambda a: a["hooks"].update({"blocks.0.mlp.hook_pre": "128; rm -rf /"}),
    "row-block-zero": lambda a: a.update(row_block=0),
    "n-samples-missing": lambda a: a.pop("n_samples"),
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_tampered_store_attributes_are_refused_and_write_nothing(
        tampering: str, gpt2_dir: Path, artifacts: Artifacts, tmp_path: Path) -> None:
    """Every command that opens the store refuses it in one line; no file anywhere changes."""
    store = edit_attrs(copy_store(artifacts.store, tmp_path / "box" / "s.zarr"), TAMPERINGS[tampering])
    before, escaped = tree(tmp_path), Path("/tmp/escape").exists()
    for args in (["info", store], ["score", store, "--quiet", "--out", tmp_path / "box" / "i.safetensors"],
                 ["score", store, "--quiet", "--recompute"],
                 ["extract", "--model", gpt2_dir, "--data", jigsaw_sample(), "--out", store, "--row-block", 8,
                  "--quiet"]):
        line = assert_one_line_error(cli(*args))
        assert "tampered" in line or "damaged" in line, line
    assert tree(tmp_path) == before
    assert Path("/tmp/escape").exists() == escaped


FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def unsafe_calls(source: str, where: str) -> list[str]:
    """What in ``source`` could run code hidden in a file: unpickling, eval/exec, unsafe YAML, remote code."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            problems += [f"{at} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kw = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
        if func in ("eval", "exec", "compile", "yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            problems.append(f"{at} calls {func}")
        if func.endswith("torch.load") and kw.get("weights_only") != "True":
            problems.append(f"{at} calls {func} without weights_only=True")
        if func.endswith(("np.load", "numpy.load")) and kw.get("allow_pickle", "False") != "False":
            problems.append(f"{at} calls {func} with allow_pickle")
        problems += [f"{at} passes {k}={kw[k]}" for k in ("trust_remote_code", "shell")
                     if kw.get(k, "False") != "False"]
    return problems


def test_library_never_unpickles_or_executes_strings() -> None:
    """Source scan of the library and the CLI; the scanner itself is checked on a bad example."""
    bad = ("import pickle\nfrom joblib import load\ntorch.load(p)\nnp.load(p, allow_pickle=True)\n"
           "eval(s)\nyaml.load(t)\nM.from_pretrained(p, trust_remote_code=True)\nrun(c, shell=True)\n")
    assert len(unsafe_calls(bad, "bad")) == 8
    assert unsafe_calls("torch.load(p, weights_only=True)\nyaml.safe_load(t)\n", "good") == []
    files = sorted([*(ROOT / "aura_stream").rglob("*.py"), *(ROOT / "cli").rglob("*.py")])
    assert len(files) > 15
    problems = [p for f in files for p in unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert problems == []


# --------------------------------------------------------------------------- 6. numerics


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1.5, -0.1])
def test_nan_inf_or_impossible_auroc_never_reaches_alpha(bad: float) -> None:
    aurocs = {"blocks.0.mlp.hook_pre": np.array([0.7, 0.2, bad, 0.9])}
    for method, k in (("aura", None), ("det0", 2), ("damp", 2)):
        with pytest.raises(NumericalError, match=r"hook blocks\.0\.mlp\.hook_pre neuron 2 is .*--recompute"):
            make_intervention(aurocs, method=method, num_experts=k)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_command_runs_in_half_precision(dtype: str, gpt2_dir: Path, tmp_path: Path) -> None:
    """extract, score, generate, fold and eval with ``--dtype`` bfloat16 / float16 on the tiny GPT-2."""
    store, iv = tmp_path / "s.zarr", tmp_path / "aura.safetensors"
    ppl = tmp_path / "ppl.txt"
    ppl.write_text("The interpreter reads a statement and executes it.\nA module is a file of definitions.\n")
    steps = [
        ["extract", "--model", gpt2_dir, "--data", jigsaw_sample(), "--out", store, "--dtype", dtype,
         "--row-block", 8, "--quiet"],
        ["score", store, "--out", iv, "--quiet"],
        ["generate", "--model", gpt2_dir, "--intervention", iv, "--dtype", dtype, "--prompt", "You are",
         "--num-return-sequences", 2, "--max-new-tokens", 3, "--output", tmp_path / "gen.jsonl", "--quiet"],
        ["fold", "--model", gpt2_dir, "--intervention", iv, "--dtype", dtype, "--out", tmp_path / "folded"],
        ["eval", "--model", gpt2_dir, "--intervention", iv, "--dtype", dtype, "--out", tmp_path / "eval",
         "--limit-prompts", 2, "--samples-per-prompt", 2, "--max-new-tokens", 3, "--batch-size", 4,
         "--ppl-text", ppl, "--quiet"],
    ]
    for args in steps:
        r = cli(*args)
        assert r.exit_code == 0, f"{args[0]}: {r.output} {r.exception!r}"
    assert ActivationStore.open(store).attrs["identity"]["model_dtype"] == dtype
    alphas = load_intervention(iv).alphas
    assert all(np.isfinite(a).all() and ((a >= 0) & (a <= 1)).all() for a in alphas.values())
    assert len((tmp_path / "gen.jsonl").read_text().splitlines()) == 2
    weights = load_file(str(tmp_path / "folded" / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {getattr(torch, dtype)}
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["model"]["dtype"] == dtype
    ppl_values = [e["value"] for e in summary["baseline"] if e["metric"] == "perplexity"]
    assert ppl_values and all(np.isfinite(v) for v in ppl_values)
