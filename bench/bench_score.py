"""Benchmark ``score`` on a large store against merely reading the store, in one run.

Phases, each in its own subprocess (so every peak RSS is that phase's alone), on the same store:

raw        read every activation file's bytes (no zarr): the disk / page-cache limit
read       the exact dask graph ``score`` builds (``from_zarr`` -> rechunk to all-rows column
           blocks, same memory budget, same threaded scheduler, all hooks in one ``compute``)
           with the AUROC kernel replaced by a no-op: the I/O + decode (crc32c) + rechunk limit
read-warm  the same again straight after, from the page cache
kernel     the AUROC kernel alone on one in-memory block of each hook width, extrapolated
score      ``aura_stream.score.score(store, recompute=True)``: local threads, default budget
score-wN   the same with ``workers=N`` (a local dask cluster of processes), if ``--workers N``
direct     with ``--direct-read``: the read with ``da.from_zarr(arr, chunks=(n_samples, block))``, one zarr
           read per task and no rechunk (a proposed change to score.py; see bench/results/score.md)

Before each cold phase the store's files are evicted from the page cache: by default with
``posix_fadvise(POSIX_FADV_DONTNEED)`` per file after ``sync`` (touches only this store's pages;
no root needed; the host of a VM may still cache the disk), or with ``--cache drop``
(``echo 3 > /proc/sys/vm/drop_caches``, root, machine-wide); ``--cache warm`` never evicts.
The resident fraction of the store before each phase is measured (``fincore``) and printed.

Peak RSS: the phase process's ``ru_maxrss`` and the polled (0.1 s) sum of RSS over the process
and all its descendants (dask workers included). Correctness: AUROCs of ``score`` against
``sklearn.metrics.roc_auc_score`` on a sample of neurons (shifted, ReLU'd, random) and, with
``--workers``, exact equality of the threaded and the cluster results.

    python bench/make_synthetic_store.py --out /tmp/aura-bench/falcon40b.zarr --n-samples 1500
    python bench/bench_score.py --store /tmp/aura-bench/falcon40b.zarr --workers 2 --md bench/results/score.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "bench"))

MB = 1e6


# ---------------------------------------------------------------------------------------------
# phases (run in a subprocess: ``--phase NAME``)
# ---------------------------------------------------------------------------------------------
def _usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"ru_maxrss_mb": ru.ru_maxrss / 1024, "cpu_s": ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime}


def activation_files(store: Path) -> list[Path]:
    """Data files of every activation array (shards), not metadata."""
    return sorted(p for p in (store / "activations").rglob("*") if p.is_file() and p.name != "zarr.json")


def phase_raw(store: Path, args: argparse.Namespace) -> dict[str, Any]:
    files = activation_files(store)
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    total = 0
    start = time.perf_counter()
    for path in files:
        with path.open("rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return {"wall_s": time.perf_counter() - start, "bytes": total, "files": len(files)}


def _hooks(store: Any, args: argparse.Namespace) -> list[str]:
    from aura_stream.hookpoints import match_hooks

    return match_hooks(args.hooks, store.hooks) if args.hooks else list(store.hooks)


def _preimport() -> None:
    """Import what ``compute_aurocs`` imports lazily, so that neither timed phase pays for imports."""
    import dask.array
    import dask.diagnostics  # noqa: F401
    import distributed  # noqa: F401


def phase_read(store_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``compute_aurocs`` with the kernel task swapped for a no-op: the same graph, nothing computed."""
    from aura_stream.score import compute_aurocs
    from aura_stream.store import ActivationStore

    mod = sys.modules["aura_stream.auroc"]

    def no_kernel(block: np.ndarray, labels: np.ndarray, name: str, block_info: Any = None) -> np.ndarray:
        return np.zeros(block.shape[1])

    mod._auroc_task = no_kernel  # type: ignore[attr-defined]  # auroc_dask looks it up at call time
    _preimport()
    store = ActivationStore.open(store_path)
    hooks = _hooks(store, args)
    start = time.perf_counter()
    if args.direct:  # the proposed graph: one zarr read of all rows x one column block per task, no rechunk
        direct_graph(store, hooks, args.memory_budget)
    else:
        compute_aurocs(store, store.poolings[0], hooks, memory_budget=args.memory_budget, progress=False)
    return {"wall_s": time.perf_counter() - start, "bytes": store.n_samples * sum(store.hooks[h] for h in hooks) * 2}


def direct_graph(store: Any, hooks: list[str], memory_budget: str) -> list[Any]:
    """``compute_aurocs``' graph with ``da.from_zarr(arr, chunks=(n_samples, block))`` instead of the
    store's (row_block, inner) chunks + rechunk: what score.py could do (see bench/results/score.md)."""
    import dask
    import dask.array as da

    from aura_stream.auroc import _block_size, auroc_dask, parse_memory
    from aura_stream.score import _threads

    per_block = max(1, parse_memory(memory_budget) // max(1, _threads()))
    n, labels, lazy = store.n_samples, store.labels, []
    for h in hooks:
        arr = store.activations(store.poolings[0], h)
        size = min(arr.shape[1], _block_size(None, per_block, n * arr.dtype.itemsize, arr.chunks[1]))
        lazy.append(auroc_dask(da.from_zarr(arr, chunks=(n, size)), labels, memory_budget=per_block))
    return list(dask.compute(*lazy, scheduler="threads"))


def phase_kernel(store_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """AUROC kernel on one in-memory block of each distinct hook width; extrapolated to the store."""
    from aura_stream.auroc import auroc_block
    from aura_stream.store import ActivationStore

    store = ActivationStore.open(store_path)
    labels = store.labels
    hooks = _hooks(store, args)
    by_width: dict[int, str] = {}
    for h in hooks:
        by_width.setdefault(store.hooks[h], h)
    auroc_block(np.zeros((store.n_samples, 4), np.float16) + labels[:, None], labels)  # compile/cache load
    rates: dict[str, float] = {}
    total_s = 0.0
    for width, h in by_width.items():
        x = np.asarray(store.activations(store.poolings[0], h)[:])
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            auroc_block(x, labels)
            best = min(best, time.perf_counter() - start)
        rates[h] = width / best
        total_s += sum(store.hooks[k] for k in hooks if store.hooks[k] == width) / rates[h]
    return {"wall_s": total_s, "bytes": store.n_samples * sum(store.hooks[h] for h in hooks) * 2,
            "neurons_per_s": {k: round(v) for k, v in rates.items()}, "extrapolated": True}


def phase_score(store_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from aura_stream.score import score
    from aura_stream.store import ActivationStore

    _preimport()
    store = ActivationStore.open(store_path)
    hooks = _hooks(store, args)
    start = time.perf_counter()
    result = score(store_path, recompute=True, progress=False, workers=args.phase_workers or None,
                   hooks=args.hooks or None, memory_budget=args.memory_budget)
    wall = time.perf_counter() - start
    assert sorted(result.computed) == sorted(hooks), "score reused stored AUROCs"
    return {"wall_s": wall, "bytes": store.n_samples * sum(store.hooks[h] for h in hooks) * 2}


def phase_score_direct(store_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The AUROCs through :func:`direct_graph` with the real kernel (the proposed score graph)."""
    from aura_stream.store import ActivationStore

    _preimport()
    store = ActivationStore.open(store_path)
    hooks = _hooks(store, args)
    start = time.perf_counter()
    direct_graph(store, hooks, args.memory_budget)
    return {"wall_s": time.perf_counter() - start, "bytes": store.n_samples * sum(store.hooks[h] for h in hooks) * 2}


PHASES = {"raw": phase_raw, "read": phase_read, "kernel": phase_kernel, "score": phase_score,
          "score-direct": phase_score_direct}


def run_phase_here(args: argparse.Namespace) -> None:
    out = PHASES[args.phase](args.store, args)
    out.update(_usage())
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------
def resident_fraction(store: Path) -> float | None:
    """Fraction of the store's activation bytes in the page cache (``fincore``), or None."""
    files = activation_files(store)
    if not shutil.which("fincore") or not files:
        return None
    res = 0
    for i in range(0, len(files), 500):
        proc = subprocess.run(["fincore", "-b", "-n", "-r", "-o", "RES", *map(str, files[i:i + 500])],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return None
        res += sum(int(x) for x in proc.stdout.split())
    return res / sum(f.stat().st_size for f in files)


def evict(store: Path, how: str) -> str:
    """Drop the store from the page cache; returns what was done."""
    if how == "warm":
        return "none (warm)"
    os.sync()
    if how == "drop":
        try:
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            return "drop_caches=3 (machine-wide)"
        except OSError as exc:
            print(f"drop_caches not permitted ({exc}); using fadvise", file=sys.stderr)
    for path in (p for p in store.rglob("*") if p.is_file()):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "fadvise DONTNEED per file"


def run_phase(name: str, phase: str, args: argparse.Namespace, *, cold: bool, workers: int = 0,
              direct: bool = False) -> dict[str, Any]:
    import psutil

    cache = evict(args.store, args.cache) if cold else "none (after previous phase)"
    resident = resident_fraction(args.store)
    cmd = [sys.executable, __file__, "--phase", phase, "--store", str(args.store),
           "--memory-budget", args.memory_budget, "--phase-workers", str(workers)]
    if args.hooks:
        cmd += ["--hooks", *args.hooks]
    if direct:
        cmd.append("--direct")
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            rss = 0
            for p in tree:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    outer = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"phase {name} failed (rc {proc.returncode}):\n{stderr[-4000:]}")
    out: dict[str, Any] = json.loads(lines[-1][7:])
    out.update(name=name, cache=cache, resident_before=resident, tree_peak_rss_mb=peak / MB,
               load_start=load0, load_end=os.getloadavg()[0], process_s=outer)
    print(f"{name}: {out['wall_s']:.1f} s, {out['bytes'] / out['wall_s'] / MB:.0f} MB/s, tree peak RSS "
          f"{peak / MB:.0f} MB, cpu {out['cpu_s']:.1f} s, load {load0:.1f}->{out['load_end']:.1f}, "
          f"resident before {resident if resident is None else f'{resident:.1%}'}", file=sys.stderr, flush=True)
    return out


def check_against_sklearn(store_path: Path, n_hooks: int, seed: int) -> dict[str, Any]:
    """Max |score - sklearn| on shifted, ReLU'd and random neurons of ``n_hooks`` hooks."""
    from make_synthetic_store import neuron_roles
    from sklearn.metrics import roc_auc_score

    from aura_stream.store import ActivationStore

    store = ActivationStore.open(store_path)
    labels = store.labels
    names = list(store.hooks)
    cfg = store.attrs.get("config", {})
    rng = np.random.default_rng(seed)
    picks = sorted({0, len(names) - 1, *rng.choice(len(names), size=min(n_hooks, len(names)), replace=False)})
    err, n_checked, shifted_mean, other_mean = 0.0, 0, [], []
    for i in picks:
        h = names[i]
        stored = store.read_scores(store.poolings[0], h)
        assert stored is not None, f"no scores for {h}"
        width = store.hooks[h]
        cols: list[int] = []
        if "shift_frac" in cfg:
            shifted, relu = neuron_roles(store.attrs["selection"]["seed"], i, width, cfg["shift_frac"],
                                         cfg["relu_frac"])
            cols += list(shifted[:6]) + list(relu[:3])
            shifted_mean.append(stored[shifted].mean())
            other_mean.append(np.delete(stored, shifted).mean())
        cols += list(rng.choice(width, size=4, replace=False))
        cols = sorted(set(int(c) for c in cols))
        arr = store.activations(store.poolings[0], h)
        lo, hi = min(cols), max(cols) + 1
        block = np.asarray(arr[:, lo:hi])
        for c in cols:
            ref = roc_auc_score(labels, block[:, c - lo].astype(np.float64))
            err = max(err, abs(ref - float(stored[c])))
            n_checked += 1
    return {"neurons_checked": n_checked, "hooks_checked": len(picks), "max_abs_err": err,
            "shifted_mean_auroc": float(np.mean(shifted_mean)) if shifted_mean else None,
            "other_mean_auroc": float(np.mean(other_mean)) if other_mean else None}


def all_scores(store_path: Path) -> dict[str, np.ndarray]:
    from aura_stream.store import ActivationStore

    store = ActivationStore.open(store_path)
    return {h: s for h in store.hooks if (s := store.read_scores(store.poolings[0], h)) is not None}


def describe(store_path: Path, memory_budget: str) -> dict[str, Any]:
    """Store shape, chunking, and the block size / task count ``score`` will use."""
    import dask.array as da

    from aura_stream.auroc import auroc_dask, parse_memory
    from aura_stream.score import _threads
    from aura_stream.store import ActivationStore

    store = ActivationStore.open(store_path)
    arrays = list(store.iter_arrays())
    widths = sorted({store.hooks[h] for _, h, _ in arrays})
    per_block = max(1, parse_memory(memory_budget) // max(1, _threads()))
    blocks, tasks = {}, 0
    for _, h, arr in arrays:
        lazy = auroc_dask(da.from_zarr(arr), store.labels, memory_budget=per_block)
        blocks[store.hooks[h]] = lazy.chunks[0][0]
        tasks += len(lazy.__dask_graph__())
    a0 = arrays[0][2]
    files = activation_files(store_path)
    on_disk = sum(f.stat().st_size for f in files)
    values = store.n_samples * sum(store.hooks.values())
    return {"n_samples": store.n_samples, "arrays": len(arrays), "neurons": sum(store.hooks.values()),
            "widths": widths, "row_block": store.row_block, "inner_chunk": a0.chunks, "shard": a0.shards,
            "files": len(files), "bytes_on_disk": on_disk, "bytes_per_value": on_disk / values,
            "threads": _threads(), "block_cols": blocks, "dask_tasks": tasks, "budget": memory_budget,
            "per_block_budget": per_block}


def busy_processes() -> str:
    """Other processes using > 10% of a CPU over one second (the machine is shared)."""
    import psutil

    procs = [p for p in psutil.process_iter(["name", "cmdline"]) if p.pid != os.getpid()]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            pct = p.cpu_percent(None)
            if pct > 10:
                cmd = " ".join(p.info["cmdline"] or [p.info["name"] or "?"])
                busy.append((pct, cmd[:60]))
    busy.sort(reverse=True)
    return f"{len(busy)} (" + "; ".join(f"{c} {pct:.0f}%" for pct, c in busy[:6]) + ")"


def fmt_rss(r: dict[str, Any]) -> str:
    return f"{r['tree_peak_rss_mb']:,.0f} (ru_maxrss {r['ru_maxrss_mb']:,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=0, help="also score with a local cluster of N processes")
    parser.add_argument("--cache", choices=["evict", "drop", "warm"], default="evict",
                        help="evict: fadvise this store's files (default); drop: drop_caches (root); warm: never")
    parser.add_argument("--memory-budget", default="2GB", help="score's default is 2GB")
    parser.add_argument("--hooks", nargs="*", default=None, help="hook globs (default: all)")
    parser.add_argument("--check-hooks", type=int, default=6, help="hooks sampled for the sklearn check")
    parser.add_argument("--skip", nargs="*", default=[], choices=["raw", "read-warm", "kernel"])
    parser.add_argument("--md", type=Path, default=None, help="also write the markdown report here")
    parser.add_argument("--direct-read", action="store_true",
                        help="also time the read with one zarr read per (all rows x column block) task")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase-workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase_here(args)
        return

    import numba

    t0 = time.perf_counter()
    busy = busy_processes()
    info = describe(args.store, args.memory_budget)
    print(json.dumps(info), file=sys.stderr)
    results: list[dict[str, Any]] = []
    if "raw" not in args.skip:
        results.append(run_phase("raw bytes (no zarr)", "raw", args, cold=True))
    read = run_phase("read: score's dask graph, no kernel", "read", args, cold=True)
    results.append(read)
    read_warm = None
    if "read-warm" not in args.skip:
        read_warm = run_phase("read again (page cache)", "read", args, cold=False)
        results.append(read_warm)
    if args.direct_read:
        results.append(run_phase("read, proposed graph: from_zarr(chunks=(n, block))", "read", args, cold=True,
                                 direct=True))
    if "kernel" not in args.skip:
        results.append(run_phase("AUROC kernel only, in memory (extrapolated)", "kernel", args, cold=False))
    sc = run_phase("score(recompute=True), threads", "score", args, cold=True)
    results.append(sc)
    check = check_against_sklearn(args.store, args.check_hooks, seed=0)
    threaded = all_scores(args.store)
    scw = None
    equal = None
    if args.workers:
        scw = run_phase(f"score(recompute=True, workers={args.workers})", "score", args, cold=True,
                        workers=args.workers)
        results.append(scw)
        cluster = all_scores(args.store)
        equal = all(np.array_equal(threaded[h], cluster[h]) for h in threaded) and threaded.keys() == cluster.keys()
    total = time.perf_counter() - t0

    gb = info["n_samples"] * info["neurons"] * 2 / 1e9
    lines = [
        f"Store: {info['n_samples']:,} samples x {info['neurons']:,} neurons ({info['arrays']} arrays, widths "
        f"{info['widths']}), float16, {gb:.2f} GB of values, {info['bytes_on_disk'] / 1e9:.2f} GB in "
        f"{info['files']} shard files ({info['bytes_per_value']:.3f} bytes/value); row block {info['row_block']}, "
        f"inner chunk {tuple(info['inner_chunk'])}, shard {tuple(info['shard'])}.",
        f"score: budget {info['budget']} over {info['threads']} threads -> {info['per_block_budget'] / 1e9:.2f} GB "
        f"per block -> column blocks {info['block_cols']} (width -> cols); {info['dask_tasks']:,} dask tasks.",
        f"Machine: {os.cpu_count()} CPUs, {__import__('psutil').virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"{platform.platform()}; numba threads {numba.get_num_threads()}; Python {platform.python_version()}.",
        f"Cache policy before cold phases: {read['cache']}. Other busy processes at start: {busy}.",
        "",
        "| phase | page cache before | wall s | MB/s | CPU s | CPU/wall | peak RSS MB, tree (self) "
        "| load 1-min start->end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        res = "-" if r["resident_before"] is None else f"{r['resident_before']:.0%}"
        cpu = "-" if r.get("extrapolated") else f"{r['cpu_s']:.0f}"
        util = "-" if r.get("extrapolated") else f"{r['cpu_s'] / r['process_s']:.2f}"
        lines.append(f"| {r['name']} | {res} | {r['wall_s']:.1f} | {r['bytes'] / r['wall_s'] / MB:,.0f} | {cpu} | "
                     f"{util} | {fmt_rss(r)} | {r['load_start']:.1f} -> {r['load_end']:.1f} |")
    kern = next((r for r in results if r.get("extrapolated")), None)
    lines += ["", "| check | value | target | result |", "|---|---|---|---|"]
    ratio = sc["wall_s"] / read["wall_s"]
    lines.append(f"| score / read, cold (threads) | {ratio:.2f}x ({sc['wall_s']:.1f} s / {read['wall_s']:.1f} s) "
                 f"| <= 3x | {'PASS' if ratio <= 3 else 'FAIL'} |")
    if read_warm:
        lines.append(f"| score (cold) / read (warm) | {sc['wall_s'] / read_warm['wall_s']:.2f}x | info | |")
    if kern:
        lines.append(f"| kernel-only time / score time | {kern['wall_s'] / sc['wall_s']:.2f} "
                     f"({kern['neurons_per_s']} neurons/s) | info | |")
    rss = sc["tree_peak_rss_mb"]
    lines.append(f"| peak RSS of score (threads), {gb:.1f} GB store | {rss:,.0f} MB | <= 1,500 MB | "
                 f"{'PASS' if rss <= 1500 else 'FAIL'} |")
    if scw:
        r2 = scw["wall_s"] / read["wall_s"]
        lines.append(f"| score / read, cold (workers={args.workers}) | {r2:.2f}x ({scw['wall_s']:.1f} s) | <= 3x | "
                     f"{'PASS' if r2 <= 3 else 'FAIL'} |")
        lines.append(f"| peak RSS of score (workers={args.workers}, all processes) | {scw['tree_peak_rss_mb']:,.0f} MB "
                     f"| <= 1,500 MB | {'PASS' if scw['tree_peak_rss_mb'] <= 1500 else 'FAIL'} |")
        lines.append(f"| threads == workers={args.workers}, all {info['neurons']:,} AUROCs bit-equal | {equal} "
                     f"| True | {'PASS' if equal else 'FAIL'} |")
    ok = check["max_abs_err"] <= 1e-12
    lines.append(f"| max abs(score - sklearn) on {check['neurons_checked']} neurons of {check['hooks_checked']} hooks "
                 f"| {check['max_abs_err']:.1e} | <= 1e-12 | {'PASS' if ok else 'FAIL'} |")
    if check["shifted_mean_auroc"] is not None:
        good = check["shifted_mean_auroc"] > 0.6 and abs(check["other_mean_auroc"] - 0.5) < 0.01
        lines.append(f"| mean AUROC shifted neurons / others | {check['shifted_mean_auroc']:.3f} / "
                     f"{check['other_mean_auroc']:.3f} | > 0.6 / 0.5 +- 0.01 | {'PASS' if good else 'FAIL'} |")
    lines += ["", f"Whole benchmark: {total:.0f} s. Peak RSS 'tree' = polled (0.1 s) sum of RSS over the phase "
              "process and its descendants (shared pages counted per process); 'self' = the phase process's "
              "ru_maxrss. CPU s = user+sys of the phase process and its waited-for children."]
    report = "\n".join(lines)
    print(report)
    print("JSON " + json.dumps({"info": info, "results": results, "check": check, "equal": equal}, default=str))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(report + "\n")


if __name__ == "__main__":
    main()
