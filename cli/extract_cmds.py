"""``hooks``, ``extract`` and ``info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from aura_stream_cli.common import backend_option, config_option, echo, load_for_backend, resolved_config

MODEL_HELP = "Model directory or hub id (default: the demo model shipped with aura-stream)."


@click.command("hooks")
@click.option("--model", "model", default=None, help=MODEL_HELP)
@click.option("--pattern", "patterns", multiple=True, help="Glob over hook names; repeatable.")
@backend_option
def hooks_cmd(model: str | None, patterns: tuple[str, ...], backend: str) -> None:
    """List the model's hook names with their widths.

    \b
    Example:
      aura-stream hooks --model ./gpt2 --pattern 'blocks.*.mlp.*'
      aura-stream hooks --model ./gpt2 --backend transformer-lens   # the bridge's hook points
    """
    from aura_stream.hookpoints import match_hooks

    points = load_for_backend(backend, model).backend.hook_points()
    names = match_hooks(list(patterns), points) if patterns else list(points)
    for name in names:
        p = points[name]
        echo(f"{name:34s} {p.width:7d}  {p.module_path} ({p.site})")


@click.command("extract")
@config_option
@click.option("--model", default=None, help=MODEL_HELP)
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Jigsaw train.csv, or CSV/JSONL with --text-column/--label-column (default: demo set).")
@click.option("--out", required=True, type=click.Path(), help="Store directory to create or resume (.zarr).")
@click.option("--hooks", "hooks", multiple=True,
              help="Glob over hook names; repeatable (default: every MLP Linear output).")
@click.option("--pooling", multiple=True, default=("max",), show_default=True,
              help="max, mean or last; repeatable.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True, help="Tokens per sentence.")
@click.option("--per-class", type=int, default=None, help="At most this many sentences per class.")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the per-class choice.")
@click.option("--text-column", default=None, help="Text column of a generic CSV/JSONL.")
@click.option("--label-column", default=None, help="0/1 label column of a generic CSV/JSONL (1 = toxic).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]), default="auto",
              show_default=True, help="Model weights dtype.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--device-map", default=None, help="Spread a large model over devices, e.g. auto.")
@click.option("--max-memory", default=None,
              help="Memory budget: a size (e.g. 8GiB; default: what is free, cgroup included) that sizes "
                   "--stream-weights and refuses an in-memory model that does not fit; or per-device memory for "
                   "--device-map, e.g. 0:70GiB,1:70GiB.")
@click.option("--stream-weights", is_flag=True,
              help="Read the weights one decoder block at a time from the safetensors shards (models larger "
                   "than memory); same stored values, each weight read once per run.")
@click.option("--scratch-dir", type=click.Path(file_okay=False), default=None,
              help="Where hidden states beyond --max-memory spill with --stream-weights (default: beside --out).")
@click.option("--store-dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@click.option("--row-block", type=int, default=256, show_default=True,
              help="Rows per store chunk, the unit of resume and sharding.")
@click.option("--shard", default=None, help="This process's part, i/N (default: SLURM array variables).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store of another run.")
@click.option("--dry-run", is_flag=True, help="Print sizes and estimates from config.json alone; load no weights.")
@backend_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def extract_cmd(ctx: click.Context, /, **opts: Any) -> None:
    """Stream pooled activations of labelled sentences into a resumable zarr store.

    \b
    Example:
      aura-stream extract --model ./gpt2 --data train.csv \\
          --hooks 'blocks.*.mlp.hook_pre' --hooks 'blocks.*.hook_mlp_out' \\
          --pooling max --per-class 2000 --out runs/gpt2.zarr
      aura-stream extract --model ./gpt2 --backend transformer-lens --out runs/gpt2-tl.zarr
      aura-stream extract --model ./falcon-40b --stream-weights --max-memory 60GiB --dry-run \\
          --per-class 10000 --out runs/falcon40b.zarr      # peak memory, bytes read, passes
    Rerun the same command to resume an interrupted run.
    """
    from aura_stream.extract import extract, parse_shard
    from aura_stream.model import parse_max_memory

    shard = parse_shard(opts["shard"])
    budget, max_memory = None, None
    if opts["max_memory"] and ":" not in opts["max_memory"]:
        from aura_stream.memory import parse_size

        budget = parse_size(opts["max_memory"])
    else:
        max_memory = parse_max_memory(opts["max_memory"])
    if max_memory and not opts["device_map"]:
        from aura_stream.errors import InputError

        raise InputError(f"`--max-memory` must come with `--device-map`, which it configures; got --max-memory "
                         f"{opts['max_memory']} alone. Add --device-map auto or drop --max-memory.")
    if opts["dry_run"]:
        from aura_stream.estimate import dry_run

        echo(dry_run(model=opts["model"], hooks=list(opts["hooks"]) or None, pooling=list(opts["pooling"]),
                     batch_size=opts["batch_size"], max_length=opts["max_length"], data=opts["data"],
                     per_class=opts["per_class"], dtype=opts["dtype"], store_dtype=opts["store_dtype"],
                     row_block=opts["row_block"], n_shards=shard[1], stream_weights=opts["stream_weights"],
                     budget=budget))
        return
    result = extract(
        model=opts["model"], data=opts["data"], out=opts["out"], hooks=list(opts["hooks"]) or None,
        pooling=list(opts["pooling"]), batch_size=opts["batch_size"], max_length=opts["max_length"],
        per_class=opts["per_class"], seed=opts["seed"], dtype=opts["dtype"], device=opts["device"],
        store_dtype=opts["store_dtype"], text_column=opts["text_column"], label_column=opts["label_column"],
        overwrite=opts["overwrite"], shard=shard, row_block=opts["row_block"], device_map=opts["device_map"],
        max_memory=max_memory, progress=not opts["quiet"], config=resolved_config(ctx), backend=opts["backend"],
        stream_weights=opts["stream_weights"], memory_budget=budget, scratch_dir=opts["scratch_dir"],
    )
    echo(f"store {result.path}: {result.n_samples} samples, {len(result.hooks)} hooks; "
         f"{result.blocks_written} row blocks written, {result.blocks_skipped} already complete "
         f"({result.seconds:.1f} s)")


@click.command("info")
@click.argument("store", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the full record as JSON.")
def info_cmd(store: str, as_json: bool) -> None:
    """Show a store's shapes, progress and provenance.

    \b
    Example:
      aura-stream info runs/gpt2.zarr
    """
    from aura_stream.store import ActivationStore

    st = ActivationStore.open(Path(store))
    done = st.completed()
    n_shards = int(st.attrs.get("identity", {}).get("n_shards", 1))
    shards = [
        {"shard": f"{i}/{n_shards}", "blocks_done": int(done[i::n_shards].sum()), "blocks": int(done[i::n_shards].size)}
        for i in range(n_shards)
    ]
    scored = sorted({f"{p}/{h}" for p, h, _ in st.iter_arrays() if st.read_scores(p, h) is not None})
    record = {
        "path": str(st.path), "n_samples": st.n_samples, "n_toxic": int(st.labels.sum()),
        "row_block": st.row_block, "blocks_done": int(done.sum()), "blocks": int(done.size),
        "missing_rows": st.missing_rows(), "poolings": st.poolings, "hooks": st.hooks,
        "store_dtype": st.attrs.get("store_dtype"), "shards": shards, "scored": scored,
        "provenance": {k: v for k, v in st.attrs.items() if k not in ("hooks",)},
    }
    if as_json:
        echo(json.dumps(record, indent=2, default=str))
        return
    ident = st.attrs.get("identity", {})
    n_files = sum(1 for f in st.path.rglob("*") if f.is_file())
    n_bytes = sum(f.stat().st_size for f in st.path.rglob("*") if f.is_file())
    status = "complete" if done.all() else f"INCOMPLETE: {record['missing_rows']} rows missing"
    echo(f"store      {st.path}  (schema {st.attrs.get('schema_version')}, "
         f"aura-stream {st.attrs.get('package_version')})")
    echo(f"model      {ident.get('model')}  dtype {ident.get('model_dtype')}  max_length {ident.get('max_length')}  "
         f"backend {st.attrs.get('backend', 'hf')}")
    echo(f"data       {st.n_samples} samples ({record['n_toxic']} toxic), "
         f"fingerprint {str(ident.get('dataset_fingerprint'))[:12]}")
    echo(f"progress   {int(done.sum())}/{done.size} row blocks of {st.row_block} rows: {status}")
    if n_shards > 1:
        echo("shards     " + ", ".join(f"{s['shard']}: {s['blocks_done']}/{s['blocks']}" for s in shards))
    width = sum(st.hooks.values())
    echo(f"arrays     {len(st.hooks)} hooks x {len(st.poolings)} pooling(s) ({', '.join(st.poolings)}), "
         f"{width} neurons, {st.attrs.get('store_dtype')}")
    echo(f"disk       {n_bytes / 1e6:.1f} MB in {n_files} files")
    for name, d in st.hooks.items():
        echo(f"  {name:34s} [{st.n_samples}, {d}]")
    echo(f"scores     {', '.join(scored) if scored else 'none yet (run `aura-stream score`)'}")
    echo(f"created    {st.attrs.get('created')}")


COMMANDS = [hooks_cmd, extract_cmd, info_cmd]
