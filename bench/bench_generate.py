"""Benchmark hooked generation and a folded checkpoint against plain ``model.generate``.

Same GPT-2-small-shaped random model (12 layers, 768 wide, 12 heads, vocab 50257), same 8
prompts, same settings; the variants run interleaved, in a rotating order, ``--repeats`` times,
and the table reports median tokens/s and the ratio to the plain run of the same decoding mode.

    python bench/bench_generate.py --new-tokens 32 --repeats 5

Targets: hooked >= 0.90x plain, folded >= 0.98x plain.
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
from common import WORDS, gpt2_small, table  # noqa: E402


def prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` prompts of 8 to 24 random words (so the batch needs left padding)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

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
    hooks = match_hooks(default_patterns(points), points)  # the paper's set: c_fc and c_proj outputs
    rng = np.random.default_rng(0)
    iv = make_intervention({h: rng.uniform(0.3, 0.8, points[h].width) for h in hooks}, method="aura")

    to_fold = load_model(str(model_dir))
    fold(to_fold, iv, tmp / "folded")
    del to_fold
    folded = AutoModelForCausalLM.from_pretrained(tmp / "folded").eval()

    texts = prompts(args.batch)
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="left")
    n = args.new_tokens
    greedy: dict[str, Any] = {"do_sample": False, "max_new_tokens": n, "min_new_tokens": n,
                              "pad_token_id": tok.pad_token_id}

    def hf(m: Any, **kw: Any) -> Callable[[], int]:
        def run() -> int:
            with torch.inference_mode():
                out = m.generate(**enc, **{**greedy, **kw})
            return int(out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1]))
        return run

    def hooked() -> int:
        with dampened(model, iv):
            return hf(model)()

    def pipeline() -> int:
        gens = generate(loaded, texts, intervention=iv, max_new_tokens=n, batch_size=args.batch,
                        top_p=0.9, seed=0, progress=False)
        return sum(g.n_new_tokens for g in gens)

    variants: dict[str, Callable[[], int]] = {
        "plain model.generate, greedy": hf(model),
        "dampened + model.generate, greedy": hooked,
        "folded checkpoint, greedy": hf(folded),
        "plain model.generate, sampling top-p 0.9": hf(model, do_sample=True, top_p=0.9),
        "aura_stream.generate (hooks + seeded sampler)": pipeline,
    }
    baseline = {name: ("plain model.generate, sampling top-p 0.9" if "sampl" in name
                       else "plain model.generate, greedy") for name in variants}
    for run in variants.values():  # warm-up
        run()
    times: dict[str, list[float]] = {k: [] for k in variants}
    tokens: dict[str, int] = {}
    names = list(variants)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate to spread drift
            start = time.perf_counter()
            tokens[name] = variants[name]()
            times[name].append(time.perf_counter() - start)

    speed = {k: tokens[k] / statistics.median(v) for k, v in times.items()}
    rows = [{"variant": k, "tokens/s (median)": f"{speed[k]:.0f}",
             "min..max s": f"{min(times[k]):.2f}..{max(times[k]):.2f}",
             "vs plain": f"{speed[k] / speed[baseline[k]]:.3f}x"} for k in variants]
    print(f"GPT-2-small shape (12 x 768, vocab 50257), batch {args.batch}, {n} new tokens, "
          f"{args.repeats} repeats, {torch.get_num_threads()} threads, {len(hooks)} hooks dampened "
          f"({iv.n_dampened()} neurons)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
