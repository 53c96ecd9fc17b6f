"""Benchmark ``eval``'s generation throughput against one plain batched ``model.generate``.

Same model, same held-out prompts, same settings (nucleus sampling top-p 0.9, top-k off,
``--new-tokens`` per continuation, ``--samples`` continuations per prompt, ``--batch`` sequences
per forward pass). Three variants, interleaved in a rotating order:

1. ``plain``: ``model.generate(do_sample=True, num_return_sequences=k)`` over left-padded
   batches of prompts: the reference, with nothing but sampling;
2. ``aura_stream.generate``: per-(prompt, sample) seeded sampling, the same batches;
3. ``aura_stream.evaluation.pipeline``: a whole one-arm evaluation into a fresh output folder: generation,
   toxicity scoring of every continuation (the offline BiLSTM), records appended and fsynced,
   perplexity on one short passage, bootstrap intervals and the report.

Throughput is generated tokens (sequences x new tokens) per second; the target is evaluate >=
0.8x plain. Times are CPU seconds of this process (on shared cores, wall clock mostly measures
the neighbours); wall-clock ratios are printed as well.

    python bench/bench_eval.py --prompts 48 --samples 8 --batch 192 --repeats 3

By default the shipped demo model (what ``aura-stream demo`` evaluates); ``--model DIR`` for another.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the demo model)")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch", type=int, default=192, help="sequences per forward pass")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from aura_stream.demo import DEMO_DIR
    from aura_stream.evaluation.inputs import load_ppl_text, load_prompts
    from aura_stream.evaluation.pipeline import evaluate
    from aura_stream.evaluation.scorers import load_scorer
    from aura_stream.generate import generate
    from aura_stream.model import load_model

    loaded = load_model(args.model)
    model, tok = loaded.model, loaded.tokenizer
    prompts = [p.text for p in load_prompts(str(DEMO_DIR / "eval_prompts.jsonl"))[:args.prompts]]
    k, n_new = args.samples, args.new_tokens
    per_call = max(1, args.batch // k)  # prompts per generate call
    scorer = load_scorer("default", batch_size=512)
    ppl_text = load_ppl_text("builtin")[:1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))

    def plain() -> None:
        with torch.inference_mode():
            for start in range(0, len(prompts), per_call):
                enc = tok(prompts[start:start + per_call], return_tensors="pt", padding=True,
                          padding_side="left")
                model.generate(**enc, do_sample=True, top_p=0.9, top_k=0, max_new_tokens=n_new,
                               num_return_sequences=k, pad_token_id=tok.pad_token_id)

    def ours() -> None:
        generate(loaded, prompts, num_return_sequences=k, max_new_tokens=n_new, top_p=0.9, top_k=0,
                 seed=0, batch_size=args.batch, progress=False)

    def whole_eval() -> None:
        out = tmp / "eval"
        shutil.rmtree(out, ignore_errors=True)
        evaluate(loaded, prompts=prompts, ppl_texts=ppl_text, scorer=scorer, out_dir=out,
                 samples_per_prompt=k, max_new_tokens=n_new, seed=0, batch_size=args.batch,
                 n_resamples=200, progress=False)

    variants: dict[str, Callable[[], None]] = {"plain model.generate (sampling)": plain,
                                               "aura_stream.generate": ours,
                                               "evaluation.pipeline (generate + score + records)": whole_eval}
    times: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in variants}
    names = list(variants)
    plain()  # warm-up: allocator, kernels
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            variants[name]()
            times[name][0].append(time.process_time() - start_cpu)
            times[name][1].append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    work = len(prompts) * k * n_new
    base = names[0]
    rows: list[dict[str, Any]] = []
    for name in names:
        cpu, wall = statistics.median(times[name][0]), statistics.median(times[name][1])
        rows.append({"variant": name, "tokens/cpu-s": f"{work / cpu:.0f}",
                     "vs plain (cpu)": f"**{statistics.median(times[base][0]) / cpu:.2f}x**",
                     "tokens/wall-s": f"{work / wall:.0f}",
                     "vs plain (wall)": f"{statistics.median(times[base][1]) / wall:.2f}x"})
    config = model.config
    print(f"model {loaded.model_id} ({config.n_layer} x {config.n_embd}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), {len(prompts)} prompts x {k} "
          f"samples x {n_new} new tokens, {args.batch} sequences per forward, {torch.get_num_threads()} "
          f"thread(s); medians of {args.repeats} rounds\n")
    print(table(rows))


if __name__ == "__main__":
    main()
