#!/usr/bin/env python
"""Compare labelled sets for the demo on the dev prompts: which set finds the better experts?

Each labelled CSV (Jigsaw columns, e.g. a ``demo_train.csv`` written by
``build_demo_assets.py --stages label --out DIR`` with other ``--label-*`` options) runs through the
demo's pipeline on the demo weights: extract, AurA, Det0 at the matched k, then AurA and Det0 against
the baseline on the build's dev prompts (never an evaluation prompt) for several seeds. Prints one JSON
line per set and a Markdown row like those of the model card's "Why the model's own continuations".

Usage::

    .venv/bin/python scripts/build_demo_assets.py --stages corpus          # writes build/demo_assets/corpus.json
    .venv/bin/python scripts/compare_demo_labels.py aura_stream/assets/demo/demo_train.csv other.csv
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

METRICS = ("toxicity_probability", "expected_max_toxicity", "mean_toxicity")


def compare(csv_path: Path, out: Path, dev: list, seeds: list[int], k: int) -> dict:
    from aura_stream.demo import matched_k
    from aura_stream.evaluation.inputs import load_ppl_text
    from aura_stream.evaluation.pipeline import Arm, evaluate
    from aura_stream.evaluation.scorers import load_scorer
    from aura_stream.extract import extract
    from aura_stream.model import load_model
    from aura_stream.score import score

    extract(model=None, data=csv_path, out=out / "store.zarr", overwrite=True, progress=False)
    aura = score(out / "store.zarr", method="aura", out=out / "aura.safetensors", progress=False).intervention
    n = matched_k(aura.alphas)
    det0 = score(out / "store.zarr", method="det0", num_experts=n, out=out / "det0.safetensors",
                 progress=False).intervention
    aurocs = np.concatenate([a.ravel() for a in aura.aurocs.values()])
    loaded, scorer = load_model(None), load_scorer("default", batch_size=512)
    per_seed = {}
    for seed in seeds:
        summary = evaluate(loaded, intervention=aura, prompts=dev, ppl_texts=load_ppl_text("builtin")[:40],
                           scorer=scorer, out_dir=out / f"eval_seed{seed}", samples_per_prompt=k, seed=seed,
                           batch_size=256, overwrite=True, progress=False, extra_arms=[Arm("det0", det0)],
                           prompts_source="build dev prompts", ppl_text_source="builtin")
        per_seed[seed] = {arm: {c["metric"]: _ratio(c["ratio"]) for c in comps if c["group"] in ("all", "ppl_text")}
                          for arm, comps in summary.data["comparisons"].items()}
    # Geometric mean over seeds; NaN where a seed's ratio is undefined (e.g. no toxic prompt in either arm).
    geo = {f"{arm}_{m}": geometric_mean([r[arm][m] for r in per_seed.values()])
           for arm in ("aura", "det0") for m in METRICS}
    return {"csv": str(csv_path), "per_class": _per_class(csv_path), "max_auroc": float(aurocs.max()),
            "matched_k": n, "seeds": per_seed, "geometric_mean": geo,
            "perplexity": per_seed[seeds[0]]["aura"]["perplexity"]}


def geometric_mean(values: list[float]) -> float:
    """Geometric mean of ratios (NaN if any is NaN)."""
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=np.float64)))))


def _ratio(value: object) -> float:
    """A comparison's ratio as a float; NaN where the report gives none (a zero baseline or arm)."""
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _per_class(path: Path) -> int:
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        return sum(row["toxic"] == "1" for row in csv.DictReader(fh))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("csv", nargs="+", type=Path, help="labelled CSVs to compare")
    p.add_argument("--work-dir", default="build/demo_assets", help="where the build wrote corpus.json")
    p.add_argument("--out", default="build/compare_labels", type=Path)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--k", type=int, default=10, help="continuations per dev prompt")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    corpus = Path(a.work_dir) / "corpus.json"
    if not corpus.is_file():
        sys.exit(f"error: {corpus} not found; run `scripts/build_demo_assets.py --stages corpus` first "
                 "(or pass the build's --work-dir).")
    missing = [str(c) for c in a.csv if not c.is_file()]
    if missing:
        sys.exit(f"error: labelled CSV not found: {', '.join(missing)}; pass existing files.")
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        sys.exit(f"error: --seeds must be a comma list of integers, e.g. 0,1,2; got {a.seeds!r}.")
    torch.set_num_threads(a.threads)
    from aura_stream.evaluation.inputs import Prompt

    dev = [Prompt(r["text"]) for r in json.loads(corpus.read_text(encoding="utf-8"))["rtp_dev"]]
    for i, path in enumerate(a.csv):
        res = compare(path, a.out / f"set{i}", dev, seeds, a.k)
        print(json.dumps(res))
        g = res["geometric_mean"]
        print(f"| {path} | {res['per_class']} | {res['max_auroc']:.3f} | "
              + " / ".join(f"{g['aura_' + m]:.2f}" for m in METRICS)
              + f" | {g['det0_toxicity_probability']:.2f} | {res['perplexity']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
