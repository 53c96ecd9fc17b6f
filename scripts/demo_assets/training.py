"""Stage ``train``: the GPT-2 trained on CPU, resumable from checkpoints, stored as float16."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from demo_assets.common import (
    CLEAN_SOURCES,
    MIX,
    update_metrics,
)
from demo_assets.sources import Corpus, epoch_docs
from demo_assets.tokenizer import load_tokenizer


def make_blocks(tok: Any, docs: list[str], block: int) -> np.ndarray:
    """Concatenate documents, each followed by EOS, and cut into [n_blocks, block] token ids."""
    ids = tok(docs)["input_ids"]
    eos = tok.eos_token_id
    stream = np.fromiter((t for seq in ids for t in [*seq, eos]), dtype=np.int64)
    n = len(stream) // block
    return stream[: n * block].reshape(n, block)


def training_batches(args: argparse.Namespace, tok: Any, corpus: Corpus) -> np.ndarray:
    """All training batches, [steps, batch, n_positions], in a seed-determined order."""
    rng = np.random.default_rng(args.seed + 1)
    need = args.steps * args.batch_size
    chunks, have, epochs = [], 0, 0
    while have < need:
        blocks = make_blocks(tok, epoch_docs(corpus.train, rng), args.n_positions)
        blocks = blocks[rng.permutation(len(blocks))]
        chunks.append(blocks)
        have += len(blocks)
        epochs += 1
    allb = np.concatenate(chunks)[:need]
    print(f"{need} blocks from {epochs} epoch(s) of the mix")
    return allb.reshape(args.steps, args.batch_size, args.n_positions)


def val_blocks(tok: Any, corpus: Corpus, block: int, sources: tuple[str, ...]) -> np.ndarray:
    docs = [d for s in sources for d in corpus.val[s]]
    return make_blocks(tok, docs, block)


@torch.no_grad()
def perplexity(model: Any, blocks: np.ndarray, batch_size: int = 32) -> float:
    model.eval()
    nll, n = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = torch.from_numpy(blocks[i : i + batch_size])
        logits = model(input_ids=x).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        nll += float(loss)
        n += x[:, 1:].numel()
    return math.exp(nll / n)


def new_model(args: argparse.Namespace, tok: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=args.n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        activation_function="gelu_new",
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(args.seed)
    return GPT2LMHeadModel(config)


# Arguments that shape a training run: a checkpoint written under other values is not resumed.
RUN_KEYS: tuple[str, ...] = (
    *("seed", "steps", "batch_size", "n_positions", "n_embd", "n_layer", "n_head", "dropout"),
    *("lr", "warmup", "threads", "val_fraction", "n_eval_prompts", "n_dev_prompts", "vocab_size"),
)


def stage_train(args: argparse.Namespace, corpus: Corpus) -> None:
    tok = load_tokenizer(args.out)
    model = new_model(args, tok)
    n_params = sum(p.numel() for p in model.parameters())
    batches = training_batches(args, tok, corpus)
    val = val_blocks(tok, corpus, args.n_positions, CLEAN_SOURCES)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return float(args.lr * (step + 1) / args.warmup)
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return float(args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))))

    ckpt_path = Path(args.work_dir) / "checkpoint.pt"
    # Everything that shapes the run: a checkpoint of another run is never resumed.
    run_key = json.dumps(
        {k: getattr(args, k) for k in RUN_KEYS} | {"mix": {k: v[0] for k, v in MIX.items()}, "n_params": n_params},
        sort_keys=True,
    )
    start, elapsed, log = 0, 0.0, []
    ck = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() and not args.restart else None
    if ck is not None and ck.get("run_key") != run_key:
        print(f"{ckpt_path} belongs to another run (different settings); training from scratch")
        ck = None
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        torch.set_rng_state(ck["torch_rng"])
        start, elapsed, log = ck["step"], ck["elapsed"], ck["log"]
        print(f"resumed at step {start}")
    model.train()
    t0, tok_since, t_since = time.time(), 0, time.time()
    stop = args.stop_at or args.steps  # early stop inside the --steps schedule
    if start > stop:
        raise SystemExit(f"{ckpt_path} is at step {start}, past --stop-at {stop}; pass --restart")
    for step in range(start, stop):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = torch.from_numpy(batches[step])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tok_since += x.numel()
        done = step + 1
        if done % args.log_every == 0 or done == stop:
            now = time.time()
            entry = {
                "step": done,
                "loss": round(float(loss.detach()), 4),
                "lr": lr_at(step),
                "tokens_per_s": round(tok_since / (now - t_since), 1),
                "elapsed_s": round(elapsed + now - t0, 1),
            }
            if done % args.eval_every == 0 or done == stop:
                entry["val_ppl"] = round(perplexity(model, val), 3)
                model.train()
            log.append(entry)
            print(json.dumps(entry), flush=True)
            tok_since, t_since = 0, time.time()
        if done % args.ckpt_every == 0 or done == stop:
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": done,
                    "elapsed": elapsed + time.time() - t0,
                    "log": log,
                    "torch_rng": torch.get_rng_state(),
                    "run_key": run_key,
                },
                tmp,
            )
            os.replace(tmp, ckpt_path)
    wall = elapsed + time.time() - t0
    model.eval()
    act_diff = finalize(args, model, tok, val)
    # Every number below is of the files that ship, loaded back as aura-stream loads them.
    model = AutoModelForCausalLM.from_pretrained(args.out).eval()
    val_ppl = perplexity(model, val)
    toxic_val_ppl = perplexity(model, val_blocks(tok, corpus, args.n_positions, ("slur",)))
    update_metrics(
        args,
        train={
            "n_params": n_params,
            "steps": args.steps,
            "stopped_at": stop,
            "batch_size": args.batch_size,
            "n_positions": args.n_positions,
            "tokens_seen": stop * args.batch_size * args.n_positions,
            "wall_s": round(wall, 1),
            "mean_tokens_per_s": round(stop * args.batch_size * args.n_positions / wall, 1),
            "threads": args.threads,
            "lr": args.lr,
            "warmup": args.warmup,
            "dropout": args.dropout,
            "heldout_ppl_clean": round(val_ppl, 3),
            "heldout_ppl_slur": round(toxic_val_ppl, 3),
            "n_val_tokens_clean": int(val.size),
            "final_loss": log[-1]["loss"] if log else None,
            "activation_swap_max_logit_diff": act_diff,
            "log": log,
        },
    )
    print(f"params {n_params}  wall {wall:.0f}s  held-out ppl (clean) {val_ppl:.2f}")


SHIPPED_ACTIVATION = "gelu_pytorch_tanh"


def finalize(args: argparse.Namespace, model: Any, tok: Any, val: np.ndarray) -> float:
    """Write the shipped files: float16 weights, the fused tanh-GELU, sampling defaults.

    Training uses ``gelu_new``; the shipped config names ``gelu_pytorch_tanh``, the same function
    (0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))) as one fused kernel, which makes
    generation ~15% faster on a CPU. Returns the largest logit difference the swap makes on a
    held-out batch (float rounding only).
    """
    with torch.no_grad():
        for p in model.parameters():  # the package stores float16 (size cap)
            p.copy_(p.half().float())
        x = torch.from_numpy(val[:8])
        before = model(input_ids=x).logits
    model.config.activation_function = SHIPPED_ACTIVATION
    model.generation_config.do_sample = True
    model.generation_config.top_p = 0.9
    model.generation_config.top_k = 0
    model.generation_config.max_new_tokens = 20
    model.generation_config.pad_token_id = tok.eos_token_id
    model.save_pretrained(args.out)
    save_float16(Path(args.out) / "model.safetensors")
    with torch.no_grad():
        after = AutoModelForCausalLM.from_pretrained(args.out).eval()(input_ids=x).logits
    diff = float((after - before).abs().max())
    if diff > 1e-3:
        raise SystemExit(f"the shipped model's logits differ from the trained model's by {diff}; not shipping")
    return diff


def save_float16(path: Path) -> None:
    """Rewrite a float32 ``model.safetensors`` as float16; ``config.json`` keeps float32, so
    ``from_pretrained`` loads float32 parameters (exactly the float16 values)."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
