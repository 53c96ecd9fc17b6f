"""``generate`` and ``fold``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from aura_stream_cli import common
from aura_stream_cli.common import echo, resolved_config

F = TypeVar("F", bound=Callable[..., Any])
# typed alias: mypy cannot follow the editable install's package-dir mapping to cli/common.py
config_option: Callable[[F], F] = common.config_option
backend_option: Callable[[F], F] = common.backend_option

MODEL_HELP = "Model directory or hub id (default: the demo model shipped with aura-stream)."
DTYPE = click.Choice(["auto", "float32", "float16", "bfloat16"])


@click.command("generate")
@config_option
@click.option("--model", default=None, help=MODEL_HELP)
@click.option("--intervention", type=click.Path(dir_okay=False), default=None,
              help="Intervention file from `aura-stream score` (default: none, the baseline).")
@click.option("--prompt", "prompt", multiple=True, help="A prompt; repeatable.")
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False), default=None,
              help="Text file, one prompt per line; or JSONL with `prompt` (or `prompt.text`).")
@click.option("--num-return-sequences", type=int, default=1, show_default=True,
              help="Continuations per prompt.")
@click.option("--max-new-tokens", type=int, default=20, show_default=True)
@click.option("--top-p", type=float, default=0.9, show_default=True, help="Nucleus sampling mass.")
@click.option("--top-k", type=int, default=50, show_default=True,
              help="Sample among the k likeliest tokens (transformers' default); 0 disables.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--greedy", is_flag=True, help="Argmax decoding instead of sampling.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Sequence (p, s) is seeded with (seed, p, s): batch size does not change it.")
@click.option("--strength", type=float, default=None,
              help="Scale alphas towards 1: 1 - s * (1 - alpha), s in [0, 1] (default: none).")
@click.option("--batch-size", type=int, default=16, show_default=True,
              help="Sequences per forward pass.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write JSONL records here instead of printing.")
@click.option("--dtype", type=DTYPE, default="auto", show_default=True, help="Model weights dtype.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@backend_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate_cmd(**opts: Any) -> None:
    """Continue prompts with the intervention's neurons dampened (or without, as the baseline).

    \b
    Example:
      aura-stream generate --model ./gpt2 --intervention runs/gpt2-aura.safetensors \\
          --prompt "I can't believe you" --num-return-sequences 5 --max-new-tokens 20
      aura-stream generate --model ./gpt2 --prompts prompts.txt --output baseline.jsonl
      aura-stream generate --model ./gpt2 --intervention gpt2-aura.safetensors --backend transformer-lens \\
          --prompt "I can't believe you"   # dampened through TransformerLens hooks, same continuations
    """
    from aura_stream.generate import (
        check_generation_options,
        check_prompts,
        generate,
        read_prompts,
        write_jsonl,
    )
    from aura_stream.interventions import load_intervention
    from aura_stream.model import check_not_folded, load_model, resolve_device

    prompts = list(opts["prompt"])
    if opts["prompts_file"]:
        prompts += read_prompts(opts["prompts_file"])
    check_prompts(prompts)
    common.check_backend_ready(opts["backend"], opts["model"])
    check_generation_options(  # before loading a model that may take minutes
        num_return_sequences=opts["num_return_sequences"], max_new_tokens=opts["max_new_tokens"],
        top_p=opts["top_p"], top_k=opts["top_k"], temperature=opts["temperature"],
        seed=opts["seed"], batch_size=opts["batch_size"], do_sample=not opts["greedy"],
        strength=opts["strength"], has_intervention=bool(opts["intervention"]))
    if opts["greedy"]:  # sampling options that greedy decoding would silently ignore
        ctx = click.get_current_context()
        given = [f"--{n.replace('_', '-')}" for n in ("top_p", "top_k", "temperature")
                 if ctx.get_parameter_source(n) not in (None, click.core.ParameterSource.DEFAULT)]
        if given:
            from aura_stream.errors import InputError

            raise InputError(f"`{' '.join(given)}` must not be given with `--greedy`, which ignores sampling "
                             "options; drop them or drop --greedy.")
    resolve_device(opts["device"])
    iv = load_intervention(opts["intervention"]) if opts["intervention"] else None
    if iv is not None:
        check_not_folded(opts["model"], "`--intervention`")
    loaded = load_model(opts["model"], dtype=opts["dtype"], device=opts["device"])
    loaded = common.with_backend(opts["backend"], loaded)
    gens = generate(
        loaded, prompts, intervention=iv, strength=opts["strength"],
        num_return_sequences=opts["num_return_sequences"], max_new_tokens=opts["max_new_tokens"],
        top_p=opts["top_p"], top_k=opts["top_k"], temperature=opts["temperature"],
        seed=opts["seed"],
        batch_size=opts["batch_size"], do_sample=not opts["greedy"], progress=not opts["quiet"],
    )
    if opts["output"]:
        path = write_jsonl(gens, opts["output"])
        s = gens[0].settings
        label = "baseline" if s.method is None else f"{s.method} {s.intervention_fingerprint!s:.12}"
        echo(f"wrote {len(gens)} generations ({label}) to {path}")
        return
    for g in gens:
        if g.sample_index == 0:
            echo(f"[{g.prompt_index}] {g.prompt}")
        echo(f"  {g.sample_index}: {g.continuation!r}")


@click.command("fold")
@config_option
@click.option("--model", default=None, help=MODEL_HELP)
@click.option("--intervention", type=click.Path(dir_okay=False), required=True,
              help="Intervention file from `aura-stream score`.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="New or empty directory for the folded checkpoint.")
@click.option("--strength", type=float, default=None,
              help="Fold 1 - s * (1 - alpha), s in [0, 1] (default: the file's alphas).")
@click.option("--dtype", type=DTYPE, default="auto", show_default=True,
              help="Weights dtype to write.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--stream-weights", is_flag=True,
              help="Never load the model: fold its safetensors shards one at a time (memory about one shard; "
                   "the same tensors as without). --model must be a local directory.")
@click.option("--quiet", is_flag=True, help="No progress bar (--stream-weights).")
@click.pass_context
def fold_cmd(ctx: click.Context, /, **opts: Any) -> None:
    """Write a standard Hugging Face checkpoint with the alphas folded into the MLP weights.

    The result runs anywhere (transformers, vLLM, TGI, llama.cpp) with no hooks and no overhead.

    \b
    Example:
      aura-stream fold --model ./gpt2 --intervention runs/gpt2-aura.safetensors \\
          --out runs/gpt2-aura-folded
      python -c "import transformers as t; \\
          t.AutoModelForCausalLM.from_pretrained('runs/gpt2-aura-folded')"
      aura-stream fold --stream-weights --model /models/falcon-40b \\
          --intervention falcon40b-aura.safetensors --out /models/falcon-40b-aura   # RAM: one shard
    """
    from aura_stream.fold import check_out_dir, fold
    from aura_stream.generate import check_strength
    from aura_stream.interventions import load_intervention
    from aura_stream.model import check_not_folded, load_model, resolve_device

    check_out_dir(Path(opts["out"]))  # before loading a large model
    check_not_folded(opts["model"], "`fold`")
    resolve_device(opts["device"])
    strength = opts["strength"]
    if strength is not None:
        check_strength(strength)
    iv = load_intervention(opts["intervention"])
    if opts["stream_weights"]:  # the model is never loaded
        from aura_stream.errors import InputError
        from aura_stream.fold_streamed import fold_streamed
        from aura_stream.model import demo_model_dir

        if opts["dtype"] != "auto" or opts["device"] != "cpu":
            raise InputError(f"`--dtype` and `--device` must keep their defaults with `--stream-weights`, which "
                             f"writes each tensor in its checkpoint dtype on the CPU; got --dtype {opts['dtype']} "
                             f"--device {opts['device']}. Drop them, or drop --stream-weights.")
        model_dir = opts["model"] or str(demo_model_dir())
        out = fold_streamed(model_dir, iv, opts["out"], strength=strength, config=resolved_config(ctx),
                            progress=not opts["quiet"])
    else:
        loaded = load_model(opts["model"], dtype=opts["dtype"], device=opts["device"])
        out = fold(loaded, iv, opts["out"], strength=strength, config=resolved_config(ctx))
    n = (iv if strength is None else iv.with_strength(strength)).n_dampened()
    echo(f"folded {n} dampened neurons ({iv.metadata.get('method')}) into {out}")


COMMANDS = [generate_cmd, fold_cmd]
