"""Models larger than memory: in-memory vs ``--stream-weights`` extract (and fold) under a hard memory cap.

Builds (once) a random-init 1.1B-parameter bfloat16 Llama (TinyLlama's shape) saved in 5 safetensors
shards (2.2 GB of weights), then runs each mode in a fresh process, the page cache dropped before each:

- ``memory``           in-memory extract, no cap (the reference wall time)
- ``streamed``         ``--stream-weights``, no cap
- ``memory-capped``    in-memory under the cap, with the fit check bypassed: killed or thrashing
- ``memory-refused``   in-memory under the cap as a user runs it: refused in one line
- ``streamed-capped``  ``--stream-weights --max-memory`` under the cap: completes
- ``fold`` / ``fold-streamed-capped``: the same for ``fold`` (where ``aura_stream.fold_streamed`` exists)

The cap is a cgroup v1 memory limit (``/sys/fs/cgroup/memory``; no swap here). Bytes read come
from ``/proc/<pid>/io`` (``read_bytes``, polled by this process, so a killed child still counts),
peak memory from the cgroup's ``memory.max_usage_in_bytes`` (page cache included) and from the
child's own ``VmHWM`` (``ru_maxrss`` would inherit the parent's peak through fork + exec).
Needs root for the cgroup and ``drop_caches``.

    python bench/bench_stream.py --out bench/out/stream           # ~8 min on 2 cores
    python bench/bench_stream.py --cap-mb 1100 --rows 256 --timeout 240

Prints one JSON line per run and the ratios; ``docs/performance.md`` records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CGROOT = Path("/sys/fs/cgroup/memory")
HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time, resource
from pathlib import Path
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
from aura_stream.memory import bytes_read
out = {"mode": args["mode"]}
try:
    if args["mode"].startswith("fold"):
        from aura_stream.interventions import load_intervention
        iv = load_intervention(args["intervention"])
        if "streamed" in args["mode"]:
            from aura_stream.fold_streamed import fold_streamed
            t = time.perf_counter(); fold_streamed(args["model"], iv, args["out"], progress=False)
        else:
            from aura_stream.fold import fold
            from aura_stream.model import load_model
            t = time.perf_counter(); fold(load_model(args["model"]), iv, args["out"])
    else:
        from aura_stream.extract import extract
        kw = dict(model=args["model"], data=args["data"], out=args["out"], hooks=["blocks.*.mlp.hook_pre"],
                  batch_size=16, max_length=64, per_class=args["rows"] // 2, progress=False)
        if args["mode"] == "memory-capped":
            kw["memory_budget"] = 1 << 50  # bypass the fit check: what happened before it existed
        if args["mode"].startswith("streamed"):
            kw["stream_weights"] = True
            if args.get("budget"):
                kw["memory_budget"] = args["budget"]
        t = time.perf_counter(); extract(**kw)
    out.update(ok=True, work_s=time.perf_counter() - t)
except Exception as exc:
    out.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:300]}")
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
out.update(total_s=time.perf_counter() - t0, peak_rss=hwm, read_bytes_self=bytes_read())
print("RESULT " + json.dumps(out), flush=True)
"""


def build_model(path: Path) -> int:
    """The 1.1B bf16 Llama in 5 shards with the demo tokenizer; returns its weight bytes."""
    import torch
    import transformers as T

    from aura_stream.model import demo_model_dir

    if not (path / "model.safetensors.index.json").is_file():
        torch.manual_seed(0)
        cfg = T.LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                            num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048,
                            tie_word_embeddings=False)  # TinyLlama-1.1B's shape
        model = T.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(path, max_shard_size="460MB")
        demo = demo_model_dir()
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(demo / name, path / name)
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run(mode: str, args: dict[str, Any], *, cap: int | None, timeout: float) -> dict[str, Any]:
    """One child process, in its own memory cgroup when ``cap`` is given."""
    drop_caches()
    group = CGROOT / f"aura-bench-{os.getpid()}-{mode}"
    prefix: list[str] = []
    if cap is not None:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(cap))
        prefix = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" "$@"']
    cmd = [*prefix, sys.executable, "-c", CHILD, json.dumps({**args, "mode": mode})]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    read, killed = 0, None
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines():
                if line.startswith("read_bytes:"):
                    read = max(read, int(line.split()[1]))
        except OSError:
            pass
        if time.perf_counter() - start > timeout:
            proc.kill()
            killed = f"timed out after {timeout:.0f} s"
        time.sleep(0.25)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    result: dict[str, Any] = {"mode": mode, "wall_s": round(wall, 1), "read_bytes": read, "rc": proc.returncode}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[7:]))
            result["read_bytes"] = max(read, result.get("read_bytes_self") or 0)
    if cap is not None:
        result["cgroup_peak"] = int((group / "memory.max_usage_in_bytes").read_text())
        result["oom_kills"] = _oom_kills(group)
        group.rmdir()
    if killed or (proc.returncode or 0) < 0:
        result["killed"] = killed or f"signal {-proc.returncode}"
        result["stderr_tail"] = stderr.strip().splitlines()[-1:] if stderr.strip() else []
    print(json.dumps(result), flush=True)
    return result


def _oom_kills(group: Path) -> int | None:
    try:
        for line in (group / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def make_intervention(model_dir: Path, path: Path) -> None:
    """AurA alphas of random AUROCs on every ``hook_pre`` of the model, from its config alone."""
    import numpy as np

    from aura_stream.estimate import hook_widths, read_shape
    from aura_stream.interventions import make_intervention, save_intervention

    widths = {n: w for n, w in hook_widths(read_shape(model_dir)).items() if n.endswith("mlp.hook_pre")}
    rng = np.random.default_rng(0)
    aurocs = {n: rng.uniform(0.3, 0.9, w) for n, w in widths.items()}
    save_intervention(make_intervention(aurocs, method="aura", metadata={"model": str(model_dir)}), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "stream")
    ap.add_argument("--cap-mb", type=int, default=None,
                    help="hard cgroup cap of the capped runs (default: half the weights)")
    ap.add_argument("--budget-mb", type=int, default=None,
                    help="--max-memory of the streamed capped run (default: 92%% of the cap)")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=240, help="seconds before a capped in-memory run is killed")
    ap.add_argument("--modes", default="memory,streamed,memory-refused,streamed-capped,memory-capped,fold,"
                                       "fold-streamed-capped")
    opts = ap.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    model = opts.out / "llama-1.1b-bf16"
    weights = build_model(model)
    opts.cap_mb = opts.cap_mb or weights // 2 >> 20
    opts.budget_mb = opts.budget_mb or int(opts.cap_mb * 0.92)
    data = Path(__file__).resolve().parents[1] / "aura_stream" / "assets" / "demo" / "demo_train.csv"
    cap = opts.cap_mb << 20
    print(json.dumps({"weights_bytes": weights, "cap_bytes": cap, "rows": opts.rows}), flush=True)
    results: dict[str, dict[str, Any]] = {}
    for mode in opts.modes.split(","):
        target = opts.out / f"{mode}.{'ckpt' if mode.startswith('fold') else 'zarr'}"
        shutil.rmtree(target, ignore_errors=True)
        args: dict[str, Any] = {"model": str(model), "data": str(data), "out": str(target), "rows": opts.rows,
                                "budget": opts.budget_mb << 20 if mode == "streamed-capped" else None}
        if mode.startswith("fold"):
            args["intervention"] = str(opts.out / "random.safetensors")
            if not Path(args["intervention"]).is_file():
                make_intervention(model, Path(args["intervention"]))
        capped = mode.endswith(("capped", "refused"))
        results[mode] = run(mode, args, cap=cap if capped else None, timeout=opts.timeout if capped else 3600)
    _summarise(results, weights, cap, opts.out)


def _summarise(results: dict[str, dict[str, Any]], weights: int, cap: int, out: Path) -> None:
    import numpy as np

    summary: dict[str, Any] = {"weights_GB": round(weights / 1e9, 3), "cap_MB": cap >> 20}
    mem, st = results.get("memory"), results.get("streamed-capped")
    if mem and st and mem.get("ok") and st.get("ok"):
        summary["streamed_capped_wall_over_memory_uncapped"] = round(st["work_s"] / mem["work_s"], 3)
        summary["streamed_capped_read_over_weights"] = round(st["read_bytes"] / weights, 3)
        summary["streamed_capped_peak_MB"] = st.get("cgroup_peak", 0) >> 20
        from aura_stream.store import ActivationStore

        a, b = ActivationStore.open(out / "memory.zarr"), ActivationStore.open(out / "streamed-capped.zarr")
        summary["stores_equal"] = all(np.array_equal(x[:], b.activations(p, h)[:]) for p, h, x in a.iter_arrays())
    if results.get("streamed") and mem and results["streamed"].get("ok"):
        summary["streamed_uncapped_wall_over_memory"] = round(results["streamed"]["work_s"] / mem["work_s"], 3)
    fold, fold_st = results.get("fold"), results.get("fold-streamed-capped")
    if fold and fold_st and fold.get("ok") and fold_st.get("ok"):
        summary["fold_peak_rss_MB"] = fold["peak_rss"] >> 20
        summary["fold_streamed_capped_peak_MB"] = fold_st.get("cgroup_peak", 0) >> 20
        summary["fold_outputs_equal"] = _same_tensors(out / "fold.ckpt", out / "fold-streamed-capped.ckpt")
    print("SUMMARY " + json.dumps(summary), flush=True)


def _same_tensors(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    def tensors(d: Path) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for f in sorted(d.glob("*.safetensors")):
            out.update(load_file(str(f)))
        return out

    x, y = tensors(a), tensors(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


if __name__ == "__main__":
    main()
