"""``eval``: toxicity and perplexity of the baseline and an intervention, with a report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from aura_stream_cli import common
from aura_stream_cli.common import echo, resolved_config

F = TypeVar("F", bound=Callable[..., Any])
# typed alias: mypy cannot follow the editable install's package-dir mapping to cli/common.py
config_option: Callable[[F], F] = common.config_option
backend_option: Callable[[F], F] = common.backend_option


@click.command("eval")
@config_option
@click.option("--model", default=None,
              help="Model directory or hub id (default: the demo model shipped with aura-stream).")
@click.option("--intervention", type=click.Path(dir_okay=False), default=None,
              help="Intervention file from `aura-stream score` (default: the baseline only).")
@click.option("--out", required=True, type=click.Path(),
              help="Directory for summary.json, generations.jsonl and report.png; rerun to resume.")
@click.option("--prompts", default="builtin", show_default=True,
              help="'builtin' (700 RealToxicityPrompts challenging prompts), RTP-style JSONL, or "
                   "text with one prompt per line.")
@click.option("--samples-per-prompt", type=int, default=25, show_default=True,
              help="Continuations per prompt (k).")
@click.option("--max-new-tokens", type=int, default=20, show_default=True)
@click.option("--top-p", type=float, default=0.9, show_default=True, help="Nucleus sampling mass.")
@click.option("--top-k", type=int, default=0, show_default=True,
              help="Also keep only the k likeliest tokens; 0 = nucleus alone (the RTP protocol).")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True,
              help="Sample (p, s) is seeded with (seed, p, s) in every arm; seeds the bootstrap.")
@click.option("--scorer", default="default", show_default=True,
              help="'default' (offline Jigsaw BiLSTM) or a local Hugging Face classifier folder.")
@click.option("--ppl-text", default="builtin", show_default=True,
              help="Neutral text for perplexity: 'builtin' or a file with one passage per line.")
@click.option("--preprompt", default=None,
              help="Text put before every prompt in both arms (scored: continuations only).")
@click.option("--limit-prompts", type=int, default=None, help="Use only the first N prompts.")
@click.option("--batch-size", type=int, default=16, show_default=True,
              help="Sequences per generate call; text chunks per perplexity forward.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]),
              default="auto", show_default=True, help="Model weights dtype.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--strength", type=float, default=None,
              help="Scale alphas towards 1: 1 - s * (1 - alpha), s in [0, 1] (default: none).")
@click.option("--overwrite", is_flag=True,
              help="Start afresh, replacing any evaluation in --out (else: resume, or refuse "
                   "one of another configuration).")
@click.option("--utility-tasks", default=None,
              help="lm-eval zero-shot tasks per arm, comma-separated, e.g. aura_cloze (shipped) or "
                   "hellaswag,piqa (needs aura-stream[utility]).")
@click.option("--utility-include", type=click.Path(file_okay=False), default=None,
              help="Directory of local lm-eval task YAMLs (the offline route).")
@click.option("--utility-limit", type=int, default=None, help="Documents per utility task (lm-eval --limit).")
@backend_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def eval_cmd(ctx: click.Context, /, **opts: Any) -> None:
    """Measure toxicity (RealToxicityPrompts protocol) and perplexity, baseline vs intervention.

    Every prompt gets --samples-per-prompt continuations per arm, with the same prompts and seeds
    in both arms; the scorer rates each continuation. Prints a table (metric | baseline | arm |
    ratio [95% CI]) and writes summary.json, generations.jsonl and report.png into --out. An
    interrupted run resumes when rerun with the same options.

    \b
    Example:
      aura-stream eval --model ./gpt2 --intervention runs/gpt2-aura.safetensors \\
          --out reports/gpt2-aura/ --samples-per-prompt 25 --limit-prompts 200
      aura-stream eval --model ./gpt2 --out reports/gpt2-base/ --prompts rtp.jsonl
      aura-stream eval --model ./gpt2 --intervention runs/gpt2-aura.safetensors \\
          --out reports/gpt2-aura-tl/ --backend transformer-lens
      aura-stream eval --model ./gpt2 --intervention runs/gpt2-aura.safetensors \\
          --out reports/gpt2-utility/ --utility-tasks aura_cloze --utility-limit 100   # zero-shot utility
    """
    from aura_stream.errors import InputError
    from aura_stream.evaluation.inputs import load_ppl_text, load_prompts
    from aura_stream.evaluation.pipeline import check_out_dir, evaluate
    from aura_stream.evaluation.scorers import load_scorer
    from aura_stream.generate import check_strength
    from aura_stream.interventions import load_intervention
    from aura_stream.model import check_not_folded, load_model, resolve_device

    # everything cheap first, so that a typo fails before a large model loads
    bad = [f"`--{name}` must be >= 1; got {opts[key]}" for name, key in (
        ("samples-per-prompt", "samples_per_prompt"), ("limit-prompts", "limit_prompts"),
        ("max-new-tokens", "max_new_tokens"), ("batch-size", "batch_size"))
        if opts[key] is not None and opts[key] < 1]
    if bad:
        raise InputError("; ".join(bad) + ".")
    if opts["strength"] is not None:
        check_strength(opts["strength"])
    check_out_dir(opts["out"])
    common.check_backend_ready(opts["backend"], opts["model"])
    from aura_stream.evaluation.utility_arms import check_settings

    utility = check_settings(opts["utility_tasks"], opts["utility_include"], opts["utility_limit"],
                             opts["batch_size"])
    prompts = load_prompts(opts["prompts"])
    if opts["limit_prompts"] is not None:
        prompts = prompts[:opts["limit_prompts"]]
    ppl_texts = load_ppl_text(opts["ppl_text"])
    iv = load_intervention(opts["intervention"]) if opts["intervention"] else None
    if iv is not None:
        check_not_folded(opts["model"], "`--intervention`")
    scorer = load_scorer(opts["scorer"], device=resolve_device(opts["device"]))
    loaded = load_model(opts["model"], dtype=opts["dtype"], device=opts["device"])
    loaded = common.with_backend(opts["backend"], loaded)
    result = evaluate(
        loaded, intervention=iv, prompts=prompts, ppl_texts=ppl_texts, scorer=scorer,
        out_dir=opts["out"], samples_per_prompt=opts["samples_per_prompt"],
        max_new_tokens=opts["max_new_tokens"], top_p=opts["top_p"], top_k=opts["top_k"],
        temperature=opts["temperature"], seed=opts["seed"], preprompt=opts["preprompt"],
        batch_size=opts["batch_size"], strength=opts["strength"], overwrite=opts["overwrite"],
        progress=not opts["quiet"], config=resolved_config(ctx),
        prompts_source=str(opts["prompts"]), ppl_text_source=str(opts["ppl_text"]), utility=utility,
    )
    echo(result.table())
    echo("")
    echo(f"wrote {result.summary_path}, {result.generations_path} and {result.report_path}")


COMMANDS = [eval_cmd]
