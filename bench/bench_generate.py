"""Benchmark hooked generation and a folded checkpoint against plain ``model.generate``.

Same GPT-2-small-shaped random model (12 layers, 768 wide, 12 heads, vocab 50257), same 8
prompts (left-padded), same settings. Two measurements, each interleaved in a rotating order:

1. whole ``generate`` calls (``--new-tokens`` per sequence, ``--repeats`` times per variant);
2. single decoding steps (8 sequences x 1 new token, ``--steps`` per variant), where the hooks'
   share of the work is largest: a lower bound of the ratio for whole generations, and with
   many short samples its median is far less noisy;
3. the hooks' own work per decoding step, isolated (every attached hook called on a
   ``[batch, 1, d]`` tensor), which gives the expected ratio without the neighbours' noise.

Times are CPU seconds of this process (on shared cores, wall-clock mostly measures the
neighbours); wall-clock ratios are printed as well.  Targets: hooked >= 0.90x plain, folded
>= 0.98x plain.

    python bench/bench_generate.py --new-tokens 20 --repeats 3 --steps 60 --threads 1

One thread by default: on shared cores, extra OpenMP threads spin against other processes
(measured here: 4.5x slower with 2 threads under load).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import WORDS, gpt2_small, table

Timings = dict[str, tuple[list[float], list[float]]]  # variant -> (cpu seconds, wall seconds)


def prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` prompts of 8 to 24 random words (so the batch needs left padding)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int, label: str) -> Timings:
    """Run every variant ``repeats`` times, rotating the order each round."""
    out: Timings = {k: ([], []) for k in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            variants[name]()
            out[name][0].append(time.process_time() - start_cpu)
            out[name][1].append(time.perf_counter() - start)
        print(f"{label} round {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return out


def rows(timings: Timings, work: dict[str, int], baseline: dict[str, str], unit: str
         ) -> list[dict[str, str]]:
    """Table rows: median throughput per CPU second and per wall second, ratios to baseline."""
    cpu = {k: work[k] / statistics.median(v[0]) for k, v in timings.items()}
    wall = {k: work[k] / statistics.median(v[1]) for k, v in timings.items()}
    return [{"variant": k, f"{unit}/cpu-s": f"{cpu[k]:.1f}",
             "vs plain (cpu)": f"**{cpu[k] / cpu[baseline[k]]:.3f}x**",
             "cpu s min..max": f"{min(timings[k][0]):.3f}..{max(timings[k][0]):.3f}",
             f"{unit}/wall-s": f"{wall[k]:.1f}",
             "vs plain (wall)": f"{wall[k] / wall[baseline[k]]:.3f}x"} for k in timings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="generate calls per variant")
    parser.add_argument("--steps", type=int, default=60, help="single decoding steps per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from aura_stream.fold import fold
    from aura_stream.generate import dampened, generate
    from aura_stream.hookpoints import all_hook_points, default_patterns, match_hooks
    from aura_stream.interventions import make_intervention
    from aura_stream.model import load_model

    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    model_dir = gpt2_small(tmp / "gpt2-small")
    loaded = load_model(str(model_dir))
    model, tok = loaded.model, loaded.tokenizer
    points = all_hook_points(model)
    hooks = match_hooks(default_patterns(points), points)  # the paper's set: c_fc, c_proj outputs
    rng = np.random.default_rng(0)
    aurocs = {h: rng.uniform(0.3, 0.8, points[h].width) for h in hooks}
    iv = make_intervention(aurocs, method="aura")
    to_fold = load_model(str(model_dir))
    fold(to_fold, iv, tmp / "folded")
    del to_fold
    folded = load_model(str(tmp / "folded")).model

    texts = prompts(args.batch)
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="left")
    n = args.new_tokens
    greedy: dict[str, Any] = {"do_sample": False, "max_new_tokens": n, "min_new_tokens": n,
                              "pad_token_id": tok.pad_token_id}

    def hf(m: Any, **kw: Any) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                m.generate(**enc, **{**greedy, **kw})
        return run

    def hooked() -> None:
        with dampened(model, iv):
            hf(model)()

    def pipeline() -> None:
        gens = generate(loaded, texts, intervention=iv, max_new_tokens=n, batch_size=args.batch,
                        top_p=0.9, seed=0, progress=False)
        work["aura_stream.generate (hooks + seeded sampler)"] = sum(g.n_new_tokens for g in gens)

    plain_g, plain_s = "plain model.generate, greedy", "plain model.generate, sampling top-p 0.9"
    variants: dict[str, Callable[[], None]] = {
        plain_g: hf(model),
        "dampened + model.generate, greedy": hooked,
        "folded checkpoint, greedy": hf(folded),
        plain_s: hf(model, do_sample=True, top_p=0.9),
        "aura_stream.generate (hooks + seeded sampler)": pipeline,
    }
    work = dict.fromkeys(variants, args.batch * n)
    baseline = {k: plain_s if "sampl" in k else plain_g for k in variants}

    # single decoding steps: the last prompt token of each sequence, against a prefilled cache
    with torch.inference_mode():
        prefill = model(**enc, use_cache=True)
    cache = prefill.past_key_values
    step_ids = enc["input_ids"][:, -1:]  # [batch, 1]
    step_mask = torch.cat([enc["attention_mask"], torch.ones_like(step_ids)], dim=1)
    block = 5  # steps per timed sample; hooks attach once per block, as once per generate call

    def steps(m: Any) -> None:
        with torch.inference_mode():
            for _ in range(block):
                m(input_ids=step_ids, attention_mask=step_mask, past_key_values=cache,
                  use_cache=True)
                cache.crop(-1)  # drop the new position again: every step sees the same cache

    def hooked_steps() -> None:
        with dampened(model, iv):
            steps(model)

    step_variants = {"plain decoding step": lambda: steps(model),
                     "dampened decoding step": hooked_steps}
    step_work = dict.fromkeys(step_variants, args.batch * block)
    step_baseline = dict.fromkeys(step_variants, "plain decoding step")

    # the hooks' own work per decoding step, isolated: every attached hook on a [batch, 1, d] input
    acts = {p.name: torch.randn(args.batch, 1, p.width) for p in (points[h] for h in hooks)}

    def hook_work() -> float:
        with dampened(model, iv) as active, torch.inference_mode():
            fns = [(model.get_submodule(p.module_path), fn, acts[p.name]) for p in active
                   for fn in model.get_submodule(p.module_path)._forward_hooks.values()]
            start = time.process_time()
            for _ in range(200):
                for module, fn, act in fns:
                    fn(module, (act,), act)
            return (time.process_time() - start) / 200

    with torch.inference_mode():  # warm-up: allocator, kernels, hook setup
        model.generate(**enc, **{**greedy, "max_new_tokens": 2, "min_new_tokens": 2})
        folded.generate(**enc, **{**greedy, "max_new_tokens": 2, "min_new_tokens": 2})
    hooked_steps()
    step_timings = interleaved(step_variants, max(1, args.steps // block), "steps")
    gen_timings = interleaved(variants, args.repeats, "generate")
    hook_s = statistics.median(hook_work() for _ in range(5))
    step_s = statistics.median(step_timings["plain decoding step"][0]) / block

    print(f"GPT-2-small shape (12 x 768, vocab 50257), batch {args.batch}, {n} new tokens, "
          f"{torch.get_num_threads()} thread(s), {len(hooks)} hooks dampened "
          f"({iv.n_dampened()} neurons); medians of {args.repeats} generate calls and of "
          f"{max(1, args.steps // block)} blocks of {block} decoding steps\n")
    print(table(rows(gen_timings, work, baseline, "tokens")
                + rows(step_timings, step_work, step_baseline, "tokens")))
    print(f"\nhooks' own work per decoding step ({len(hooks)} hooks, [{args.batch}, 1, d] each): "
          f"{hook_s * 1e3:.3f} ms cpu = {100 * hook_s / step_s:.2f} % of a plain step "
          f"({step_s * 1e3:.1f} ms) -> expected ratio {step_s / (step_s + hook_s):.4f}x")


if __name__ == "__main__":
    main()
