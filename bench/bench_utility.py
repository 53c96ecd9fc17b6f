"""Benchmark utility evaluation through aura-stream against plain ``lm_eval --model hf``.

Same task, same model, same batch size and limit. Three variants, interleaved in a rotating order:

1. ``plain``: ``lm_eval.simple_evaluate(model="hf", model_args="pretrained=DIR")``: lm-eval loads
   the checkpoint itself (the reference);
2. ``baseline``: ``aura_stream.model.load_model(DIR)`` then :func:`aura_stream.evaluation.utility.run_utility`;
3. ``arm``: the same with an intervention's hooks attached (``aura_stream.generate.dampened``,
   random alphas on every MLP output), i.e. an intervention arm.

Each variant's time includes its model load, so ``plain`` pays for what aura-stream's variants pay
for. lm-eval's task index is built once beforehand and given to all three (the CLI builds it too).
Throughput is documents per CPU-second of this process (on shared cores, wall clock mostly measures
the neighbours); wall-clock ratios are printed as well. Target: baseline and arm >= 0.95x plain.

    python bench/bench_utility.py --limit 40 --batch 8 --repeats 3

By default the shipped demo model and the shipped ``aura_cloze`` task.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the demo model)")
    parser.add_argument("--task", default="aura_cloze")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import lm_eval
    import numpy as np
    import torch

    from aura_stream.evaluation.utility import run_utility, task_manager, task_results
    from aura_stream.generate import dampened
    from aura_stream.hookpoints import all_hook_points
    from aura_stream.interventions import Intervention
    from aura_stream.model import demo_model_dir, load_model

    torch.set_num_threads(args.threads)
    model_dir = str(args.model or demo_model_dir())
    manager = task_manager([args.task])

    def plain() -> dict[str, Any]:
        results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir}", tasks=[args.task],
                                          task_manager=manager, limit=args.limit, batch_size=args.batch,
                                          device="cpu", log_samples=True)
        return task_results(results or {"results": {}})

    def ours(hooked: bool) -> dict[str, Any]:
        loaded = load_model(model_dir)
        context = None
        if hooked:
            rng = np.random.default_rng(0)
            alphas = {n: rng.uniform(0, 1, p.width).astype(np.float32)
                      for n, p in all_hook_points(loaded.model).items() if n.endswith("hook_mlp_out")}
            iv = Intervention(alphas, {n: np.full(a.shape, 0.5) for n, a in alphas.items()}, {"method": "bench"})

            def context() -> Any:
                return dampened(loaded.model, iv)
        return run_utility(loaded.model, loaded.tokenizer, tasks=[args.task], limit=args.limit,
                           batch_size=args.batch, context=context)

    variants: dict[str, Callable[[], dict[str, Any]]] = {
        "plain": plain, "baseline": lambda: ours(False), "arm": lambda: ours(True)}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, dict[str, Any]] = {}
    names = list(variants)
    plain()  # warm-up: imports, first-call costs, the datasets cache
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            c0, w0 = time.process_time(), time.perf_counter()
            outputs[name] = variants[name]()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    assert outputs["baseline"] == outputs["plain"], "baseline must equal plain lm-eval"
    n = outputs["plain"][args.task]["n"]
    print(f"model {model_dir}, task {args.task}, {n} documents, batch {args.batch}, {args.threads} thread(s), "
          f"medians of {args.repeats}")
    print("| variant | docs per CPU-second | vs plain (CPU) | vs plain (wall) |")
    print("|---|---|---|---|")
    base_cpu, base_wall = statistics.median(cpu["plain"]), statistics.median(wall["plain"])
    for name in names:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"| {name} | {n / c:.2f} | {base_cpu / c:.3f}x | {base_wall / w:.3f}x |")
    for name in names:
        acc = outputs[name][args.task]["metrics"].get("acc")
        print(f"{name}: acc {acc}")


if __name__ == "__main__":
    main()
