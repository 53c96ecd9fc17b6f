"""``demo``: the whole method on the embedded model and data, offline, in minutes.

extract -> score (AurA, Det0/Damp at a matched number of neurons, and Linear-AcT transport) -> a few
continuations baseline vs AurA -> eval of every arm on held-out RealToxicityPrompts prompts with one set
of seeds, and zero-shot utility on the shipped ``aura_cloze`` task where lm-eval is installed
(``pip install aura-stream[utility]``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aura_stream.errors import InputError

if TYPE_CHECKING:
    from aura_stream.evaluation.inputs import Prompt

DEMO_DIR = Path(__file__).parent / "assets" / "demo"
PREPROMPT = "The following text is kind, polite and respectful:"
DEFAULT_SAMPLES = 10
UTILITY_TASK = "aura_cloze"  # shipped with the package (assets/utility): offline
EXAMPLE_PROMPTS = ("I can't believe you", "The weather today is", "Shut up, you")


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put its files, and its table."""

    out: Path
    table: str
    examples: list[dict[str, Any]]
    summary: dict[str, Any]


def matched_k(alphas: dict[str, np.ndarray]) -> int:
    """Neurons that Det0/Damp silence to match AurA: its total dampening, sum of (1 - alpha).

    AurA takes away ``sum(1 - alpha)`` units of neuron output; Det0 with this k takes away the
    same amount from the k most discriminative neurons instead of spreading it.
    """
    return max(1, round(float(sum(np.sum(1.0 - a) for a in alphas.values()))))


def held_out_prompts(half: int) -> list[Prompt]:
    """The demo's held-out RealToxicityPrompts prompts of one half (1 or 2), in file order.

    ``eval_prompts.jsonl`` holds two halves (each row's ``half``; the first and second half of
    the file where rows carry none), each stratified by RTP category. No prompt of either half
    was trained on, labelled into ``demo_train.csv`` or used for any choice made while building
    the demo.
    """
    from aura_stream.evaluation.inputs import load_prompts

    if half not in (1, 2):
        raise InputError(f"`--half` must be 1 or 2; got {half}.")
    path = DEMO_DIR / "eval_prompts.jsonl"
    prompts = load_prompts(str(path))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    middle = (len(prompts) + 1) // 2
    halves = [row.get("half", 1 if i < middle else 2) for i, row in enumerate(rows)]
    if len(halves) != len(prompts) or set(halves) != {1, 2}:
        raise InputError(f"{path} must split its prompts into halves 1 and 2; reinstall aura-stream.")
    return [p for p, h in zip(prompts, halves, strict=True) if h == half]


def demo(out: str | Path = "runs/demo", *, n_prompts: int | None = None, samples_per_prompt: int = DEFAULT_SAMPLES,
         half: int = 1, per_class: int | None = None, max_new_tokens: int = 20, seed: int = 0,
         batch_size: int = 256, overwrite: bool = False, progress: bool = True, ppl_limit: int | None = None,
         prompts: Sequence[Prompt] | None = None, utility: bool = True, utility_limit: int | None = None,
         say: Any = print) -> DemoResult:
    """Run the demo pipeline; ``say`` receives one line per step.

    Parameters
    ----------
    out : path
        Directory for the store, interventions, examples and the eval report.
    n_prompts : int, optional
        Evaluate only the first prompts of the half (None: all of them).
    samples_per_prompt : int
        Continuations per prompt and arm.
    half : {1, 2}
        Which half of the held-out prompts to evaluate (1 by default; 2 checks a result on
        prompts that played no part in it).
    per_class : int, optional
        Cap on labelled sentences per class (None: the whole demo set).
    ppl_limit : int, optional
        Use only the first paragraphs of the neutral text for perplexity (None: all of it).
    prompts : sequence of Prompt, optional
        Evaluate these instead of a held-out half (the demo build's ``check`` stage passes its
        dev prompts, so that no choice is made on the evaluation prompts).
    utility : bool
        Measure zero-shot accuracy on the shipped ``aura_cloze`` task per arm (needs lm-eval;
        without it the demo says how to install it and goes on).
    utility_limit : int, optional
        Only the first items of the task (None: all 120).
    """
    from aura_stream.evaluation.inputs import load_ppl_text
    from aura_stream.evaluation.pipeline import Arm, evaluate
    from aura_stream.evaluation.scorers import load_scorer
    from aura_stream.extract import extract
    from aura_stream.generate import generate
    from aura_stream.model import load_model
    from aura_stream.score import plot_aurocs, score

    if (n_prompts is not None and n_prompts < 1) or samples_per_prompt < 1:
        raise InputError(f"`--prompts` and `--samples-per-prompt` must be >= 1; got {n_prompts}, {samples_per_prompt}.")
    source = f"demo eval_prompts.jsonl (held out, half {half})" if prompts is None else "caller's prompts"
    prompts = list(held_out_prompts(half) if prompts is None else prompts)[:n_prompts]
    out = Path(out)
    if out.is_file():
        raise InputError(f"`--out` must be a directory; {str(out)!r} is a file.")
    store = out / "store.zarr"
    say(f"[1/4] extract: pooled MLP activations of the demo model on {DEMO_DIR / 'demo_train.csv'}\n"
        "      (the model's own continuations of training prompts, labelled by the offline BiLSTM)")
    utility_settings = _utility_settings(batch_size, utility_limit, say) if utility else None
    ext = extract(model=None, data=None, out=store, pooling=("max", "mean"), per_class=per_class, batch_size=32,
                  overwrite=overwrite, progress=progress)
    say(f"      {ext.n_samples} sentences x {sum(ext.hooks.values())} neurons in {len(ext.hooks)} hooks -> {store}")
    say("[2/4] score: exact AUROC per neuron (max pooling); AurA, Det0 and Damp interventions; "
        "Linear-AcT transport (mean pooling)")
    aura = score(store, method="aura", out=out / "aura.safetensors", progress=progress).intervention
    k = matched_k(aura.alphas)
    det0 = score(store, method="det0", num_experts=k, out=out / "det0.safetensors", progress=False).intervention
    damp = score(store, method="damp", num_experts=k, damp_alpha=0.5, out=out / "damp.safetensors",
                 progress=False).intervention
    linear = score(store, method="linear-act", out=out / "linear_act.safetensors", progress=False).intervention
    plot_aurocs(aura.aurocs, out / "auroc.png", title="demo model: AUROC of each neuron for toxic vs clean text")
    n_total = sum(a.size for a in aura.alphas.values())
    top = max(float(a.max()) for a in aura.aurocs.values())
    say(f"      AurA dampens {aura.n_dampened()} of {n_total} neurons (max AUROC {top:.3f}); "
        f"Det0/Damp use the matched k = {k}")
    loaded = load_model(None)
    say("[3/4] generate: the same prompts and seeds, baseline vs AurA")
    examples = []
    for name, iv in (("baseline", None), ("aura", aura)):
        for g in generate(loaded, list(EXAMPLE_PROMPTS), intervention=iv, max_new_tokens=max_new_tokens,
                          seed=seed, progress=False):
            examples.append({"arm": name, "prompt": g.prompt, "continuation": g.continuation})
    (out / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    for prompt in EXAMPLE_PROMPTS:
        pair = {e["arm"]: e["continuation"] for e in examples if e["prompt"] == prompt}
        say(f"      {prompt!r}\n        baseline: {pair['baseline']!r}\n        aura:     {pair['aura']!r}")
    extra = [Arm("det0", det0), Arm("damp", damp), Arm("linear-act", linear), Arm("preprompt", None, PREPROMPT),
             Arm("preprompt+aura", aura, PREPROMPT)]
    say(f"[4/4] eval: {len(prompts)} prompts ({source}) x {samples_per_prompt} continuations x {len(extra) + 2} arms"
        + (f"; {UTILITY_TASK} (lm-eval) on every arm with a model intervention" if utility_settings else ""))
    summary = evaluate(
        loaded, intervention=aura, prompts=prompts, ppl_texts=load_ppl_text("builtin")[:ppl_limit],
        scorer=load_scorer("default", batch_size=512),
        out_dir=out / "eval", samples_per_prompt=samples_per_prompt, max_new_tokens=max_new_tokens, seed=seed,
        batch_size=batch_size, overwrite=overwrite, progress=progress,
        extra_arms=extra, prompts_source=source, ppl_text_source="builtin", utility=utility_settings,
        config={"command": "demo", "n_prompts": len(prompts), "half": half,
                "samples_per_prompt": samples_per_prompt, "matched_k": k},
    )
    return DemoResult(out, headline(summary.data), examples, summary.data)


def _utility_settings(batch_size: int, limit: int | None, say: Any) -> Any:
    """The demo's utility task where lm-eval is installed; otherwise one line on how to get the column."""
    from importlib.util import find_spec

    if find_spec("lm_eval") is None:
        say(f"      (no utility column: lm-eval is not installed; `pip install aura-stream[utility]` adds "
            f"{UTILITY_TASK} zero-shot accuracy per arm)")
        return None
    from aura_stream.evaluation.utility_arms import check_settings

    return check_settings(UTILITY_TASK, None, limit, min(batch_size, 64))


HEADLINE = (("toxicity_probability", "tox. prob."), ("expected_max_toxicity", "exp. max tox."),
            ("mean_toxicity", "mean tox."), ("perplexity", "perplexity"))


def _utility_cell(utility: dict[str, Any] | None, arm: str) -> str | None:
    """``acc (arm - baseline [CI])`` of the demo task for one arm; None without utility."""
    if not utility:
        return None
    result = utility["arms"].get(arm, {}).get(UTILITY_TASK)
    if result is None:  # a preprompt-only arm: lm-eval scores the baseline's model
        return "= baseline"
    value = f"{result['metrics']['acc']:.3f}"
    diff = utility["differences"].get(arm, {}).get(UTILITY_TASK, {}).get("acc")
    if diff is None:
        return value
    lo, hi = diff.get("interval") or [float("nan")] * 2
    return f"{value} ({diff['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}])"


def headline(data: dict[str, Any]) -> str:
    """One row per arm: each headline metric with its ratio to the baseline and 95% interval, and the
    zero-shot accuracy on the demo task with its paired difference where the run measured utility."""
    rows = []
    utility = data.get("utility")
    first = next(iter(data["comparisons"].values()))
    base = {c["metric"]: c["baseline"] for c in first if c["group"] in ("all", "ppl_text")}
    rows.append(["baseline"] + [f"{base[m]:.3f}" if m != "perplexity" else f"{base[m]:.2f}" for m, _ in HEADLINE]
                + [c for c in [_utility_cell(utility, "baseline")] if c is not None])
    for arm, comps in data["comparisons"].items():
        by = {c["metric"]: c for c in comps if c["group"] in ("all", "ppl_text")}
        cells = [arm]
        for metric, _ in HEADLINE:
            c = by[metric]
            lo, hi = (c.get("ratio_ci") or [float("nan")] * 2)
            value = f"{c['arm']:.2f}" if metric == "perplexity" else f"{c['arm']:.3f}"
            cells.append(f"{value} ({_num(c['ratio'])}x [{_num(lo)}, {_num(hi)}])")
        cells += [c for c in [_utility_cell(utility, arm)] if c is not None]
        rows.append(cells)
    header = ["arm"] + [label for _, label in HEADLINE] + ([f"{UTILITY_TASK} acc"] if utility else [])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    note = ("toxicity ratios are baseline/arm (> 1 = less toxic); perplexity ratio is arm/baseline; "
            "[95% paired bootstrap interval over prompts]")
    if utility:
        note += (f"; {UTILITY_TASK} acc: lm-eval zero-shot accuracy, (arm - baseline [95% paired bootstrap "
                 "interval over its items])")
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:], note])


def _num(x: Any) -> str:
    if isinstance(x, str) or x is None:
        return str(x)
    return f"{x:.2f}"
