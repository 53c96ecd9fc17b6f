"""GPU check: extract, score (AUROC and Linear-AcT), hooked generation and fold on a ~1B-parameter random Llama in bf16.

One process, one model build, no network. On one GPU (default) it:

1. builds a random-init Llama-style model (hidden 2048, 16 layers, MLP 5632, 32 heads, vocab
   32000: ~0.95B parameters) in bfloat16 with a BPE tokenizer trained locally, and saves it;
2. writes a synthetic Jigsaw-format CSV (``bench/common.synthetic_csv``, half toxic);
3. ``extract`` (bf16, batch 32 x 128 tokens, default hooks) against a bare Hugging Face forward
   over the same batches (throughput ratio, median of interleaved repeats);
4. ``score`` (exact AUROC, local threads) -> an AurA intervention; ``score --method linear-act``
   (support all; its time against AUROC scoring) and hooked generation with that transport;
5. hooked greedy generation (``dampened`` + ``model.generate``) against plain ``model.generate``,
   same prompts and settings (tokens/s ratio), and ``aura_stream.generate.generate`` (greedy)
   giving the same continuations as the hooked ``model.generate``;
6. logits: hooks attached with alpha = 1 == plain (bit-exact), and the folded checkpoint
   (``fold``) against the hooked model, within bfloat16 tolerance (measured: the folded-vs-hooked
   error must not exceed twice the bf16-vs-float32 error of the hooked model itself, plus 1e-3).

Prints a markdown table of ratios and PASS/FAIL per check; exit status 1 if any check fails.

    bash bench/gpu_check.sh                       # on a GPU machine, from the repo root
    python bench/gpu_check.py --cpu --tiny        # the same code path on CPU, a tiny model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import WORDS, synthetic_csv, table  # noqa: E402

# Llama-style shapes; "1b": 16 x (4 x 2048^2 + 3 x 2048 x 5632) + 2 x 32000 x 2048 = 0.95e9 parameters
CONFIGS: dict[str, dict[str, int]] = {
    "1b": {"hidden_size": 2048, "num_hidden_layers": 16, "intermediate_size": 5632, "num_attention_heads": 32,
           "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 2048},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 176, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 2048, "max_position_embeddings": 512},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_model(out: Path, shape: dict[str, int], device: str, seed: int = 0) -> int:
    """Save a random-init bf16 Llama-style model and a locally trained BPE tokenizer; return #params."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(seed)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(500)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=min(2048, shape["vocab_size"]), special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    cfg = LlamaConfig(**shape, bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: seconds on a GPU instead of a minute on CPU
        model = LlamaForCausalLM(cfg)
    model = model.to(torch.bfloat16).eval()
    n_params = int(sum(p.numel() for p in model.parameters()))
    model.save_pretrained(out)
    fast.save_pretrained(out)
    del model
    return n_params


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def prompts(n: int, seed: int = 1) -> list[str]:
    """``n`` prompts of 8 to 24 random words (the batch needs left padding)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def bare_forward(loaded: Any, texts: list[str], batch_size: int, max_length: int, device: str, *,
                 body_only: bool = False) -> float:
    """Seconds for plain ``model(...)`` over the batches extract runs (no hooks, no store)."""
    model, tok = loaded.model, loaded.tokenizer
    net = model.model if body_only else model
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt").to(device)
            net(**enc, use_cache=False)
    sync(device)
    return time.perf_counter() - start


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64."""
    a64, b64 = a.double(), b.double()
    return float((a64 - b64).norm() / b64.norm().clamp_min(1e-30))


def main() -> int:  # one linear script on purpose: one process, one model build
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on CPU (smoke test of the script)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model instead of ~1B parameters")
    parser.add_argument("--samples", type=int, default=None, help="extract samples (default 2048; 64 with --tiny)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of timed pairs")
    parser.add_argument("--gen-batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads with --cpu")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary directory, removed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--md", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()

    if args.cpu:
        device = "cpu"
        torch.set_num_threads(args.threads)  # on shared cores, extra OpenMP threads spin against neighbours
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print("no CUDA device visible; pass --cpu (with --tiny) to smoke-test on CPU", file=sys.stderr)
        return 2
    shape = CONFIGS["tiny" if args.tiny else "1b"]
    n_samples = args.samples or (64 if args.tiny else 2048)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="aura-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import transformers

    from aura_stream.data import load_labelled
    from aura_stream.extract import extract
    from aura_stream.fold import fold
    from aura_stream.generate import dampened, generate, multiply
    from aura_stream.hookpoints import all_hook_points
    from aura_stream.interventions import make_intervention
    from aura_stream.model import attach, load_model
    from aura_stream.score import score

    t_start = time.perf_counter()
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    log(f"device {device} ({gpu}), torch {torch.__version__}, transformers {transformers.__version__}, "
        f"work dir {work}")
    checks: list[dict[str, str]] = []
    info: list[dict[str, str]] = []

    def check(name: str, value: str, target: str, ok: bool | None, *, perf: bool = False) -> None:
        if perf and args.tiny:  # speed targets hold for the ~1B model on a GPU, not for a tiny smoke model
            ok, target = None, f"{target} (1B on GPU only)"
        checks.append({"check": name, "value": value, "target": target,
                       "result": "info" if ok is None else ("PASS" if ok else "FAIL")})
        log(f"{name}: {value} ({checks[-1]['result']})")

    # 1. model, tokenizer, data ---------------------------------------------------------------
    model_dir = work / "model"
    t0 = time.perf_counter()
    n_params = build_model(model_dir, shape, device)
    info.append({"step": "build + save random model", "seconds": f"{time.perf_counter() - t0:.1f}",
                 "detail": f"{n_params:,} parameters, bfloat16, {json.dumps(shape)}"})
    data = synthetic_csv(work / "data.csv", n_samples)
    warm_data = synthetic_csv(work / "warm.csv", 2 * args.batch_size, seed=1)
    texts = load_labelled(data).texts
    loaded = load_model(str(model_dir), dtype="bfloat16", device=device)
    points = all_hook_points(loaded.model)

    # 2. extract vs bare forward ----------------------------------------------------------------
    def run_extract(csv: Path, out: Path) -> float:
        res = extract(model=str(model_dir), data=csv, out=out, dtype="bfloat16", device=device,
                      batch_size=args.batch_size, max_length=args.max_length, overwrite=True, progress=False)
        return res.seconds

    run_extract(warm_data, work / "warm.zarr")  # CUDA context, kernels, imports
    bare_forward(loaded, texts[: 2 * args.batch_size], args.batch_size, args.max_length, device)
    t_ext: list[float] = []
    t_bare: list[float] = []
    t_body: list[float] = []
    for r in range(args.repeats):
        t_bare.append(bare_forward(loaded, texts, args.batch_size, args.max_length, device))
        t_body.append(bare_forward(loaded, texts, args.batch_size, args.max_length, device, body_only=True))
        t_ext.append(run_extract(data, work / "store.zarr"))
        log(f"extract round {r + 1}: extract {t_ext[-1]:.2f} s, bare forward {t_bare[-1]:.2f} s, "
            f"body only {t_body[-1]:.2f} s")
    ratio = statistics.median(b / e for b, e in zip(t_bare, t_ext, strict=True))
    ratio_body = statistics.median(b / e for b, e in zip(t_body, t_ext, strict=True))
    check(f"extract / bare HF forward throughput ({n_samples} x {args.max_length} tok, batch {args.batch_size})",
          f"{ratio:.3f}x (extract {statistics.median(t_ext):.2f} s, forward {statistics.median(t_bare):.2f} s)",
          ">= 0.80x", ratio >= 0.80, perf=True)
    check("extract / bare forward without the LM head (extract stops after the last hooked block)",
          f"{ratio_body:.3f}x (forward body {statistics.median(t_body):.2f} s)", "info", None)
    store_bytes = sum(f.stat().st_size for f in (work / "store.zarr").rglob("*") if f.is_file())
    tokens = n_samples * args.max_length
    info.append({"step": "extract", "seconds": f"{statistics.median(t_ext):.2f}",
                 "detail": f"{tokens / statistics.median(t_ext):,.0f} tokens/s, store {store_bytes / 1e9:.2f} GB"})

    # 2b. extract --stream-weights on the device: same stored values, time vs the in-memory extract
    t0 = time.perf_counter()
    extract(model=str(model_dir), data=data, out=work / "streamed.zarr", dtype="bfloat16", device=device,
            batch_size=args.batch_size, max_length=args.max_length, overwrite=True, progress=False,
            stream_weights=True)
    t_stream = time.perf_counter() - t0
    from aura_stream.store import ActivationStore

    mem_store, st_store = ActivationStore.open(work / "store.zarr"), ActivationStore.open(work / "streamed.zarr")
    same = all(np.array_equal(a[:], st_store.activations(p, h)[:]) for p, h, a in mem_store.iter_arrays())
    check("extract --stream-weights stores the same values as the in-memory extract", str(same), "True", same)
    check("extract --stream-weights wall / in-memory extract", f"{t_stream / statistics.median(t_ext):.3f}x "
          f"({t_stream:.2f} s vs {statistics.median(t_ext):.2f} s)", "<= 1.10x",
          t_stream <= 1.10 * statistics.median(t_ext), perf=True)

    # 3. score ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    result = score(work / "store.zarr", recompute=True, progress=False, out=work / "aura.safetensors")
    t_score = time.perf_counter() - t0
    iv = result.intervention
    n_neurons = sum(iv.widths.values())
    n_damp = sum(s.n_dampened for s in result.summary)
    info.append({"step": "score (threads)", "seconds": f"{t_score:.1f}",
                 "detail": f"{n_neurons:,} neurons, {n_neurons / t_score:,.0f} neurons/s, {n_damp:,} dampened"})
    finite = all(np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all() for a in iv.aurocs.values())
    check("score: every AUROC finite and in [0, 1]", str(finite), "True", finite)

    # 4. generation: hooked vs plain ------------------------------------------------------------
    model, tok = loaded.model, loaded.tokenizer
    gen_prompts = prompts(args.gen_batch)
    enc = tok(gen_prompts, return_tensors="pt", padding=True, padding_side="left").to(device)
    n_new = args.new_tokens
    greedy = {"do_sample": False, "max_new_tokens": n_new, "min_new_tokens": n_new,
              "pad_token_id": tok.pad_token_id, "use_cache": True}

    def plain() -> None:
        with torch.inference_mode():
            model.generate(**enc, **greedy)

    def hooked() -> None:
        with dampened(model, iv), torch.inference_mode():
            model.generate(**enc, **greedy)

    def interleaved(with_hooks: Callable[[], None]) -> tuple[list[float], list[float]]:
        """Times of plain and ``with_hooks`` generation, alternating which runs first; warmed up once."""
        plain()
        with_hooks()
        t_a: list[float] = []
        t_b: list[float] = []
        for r in range(args.repeats):
            for first in ([True, False] if r % 2 == 0 else [False, True]):
                (t_a if first else t_b).append(timed(plain if first else with_hooks, device))
        return t_a, t_b

    t_plain, t_hooked = interleaved(hooked)
    work_tokens = args.gen_batch * n_new
    tps_plain, tps_hooked = work_tokens / statistics.median(t_plain), work_tokens / statistics.median(t_hooked)
    check(f"generate with hooks / plain model.generate tokens/s (greedy, {args.gen_batch} x {n_new} new, KV cache)",
          f"{tps_hooked / tps_plain:.3f}x ({tps_hooked:,.0f} vs {tps_plain:,.0f} tokens/s)", ">= 0.90x",
          tps_hooked / tps_plain >= 0.90, perf=True)

    # aura_stream.generate (greedy) == hooked model.generate, token for token up to the first EOS
    with dampened(model, iv), torch.inference_mode():
        ref = model.generate(**enc, do_sample=False, max_new_tokens=n_new, pad_token_id=tok.pad_token_id)
    ref_new = ref[:, enc["input_ids"].shape[1]:].tolist()
    eos = {tok.eos_token_id}
    t0 = time.perf_counter()
    gens = generate(loaded, gen_prompts, intervention=iv, do_sample=False, max_new_tokens=n_new,
                    batch_size=args.gen_batch, progress=False)
    sync(device)
    t_pipe = time.perf_counter() - t0
    same = 0
    for g, ids in zip(gens, ref_new, strict=True):
        cut = next((i for i, t in enumerate(ids) if t in eos), len(ids))
        same += g.continuation == tok.decode(ids[:cut], skip_special_tokens=True)
    check("aura_stream.generate (greedy) == dampened + model.generate, same continuations",
          f"{same}/{len(gens)}", f"{len(gens)}/{len(gens)}", same == len(gens))
    info.append({"step": "aura_stream.generate, greedy, with intervention", "seconds": f"{t_pipe:.2f}",
                 "detail": f"{sum(g.n_new_tokens for g in gens):,} new tokens up to EOS (incl. tokenisation)"})

    # 4b. transport (Linear-AcT, support all): scoring time vs AUROC, hooked generation speed ------
    stored_poolings = ActivationStore.open(work / "store.zarr").poolings
    pool = "mean" if "mean" in stored_poolings else stored_poolings[0]
    t0 = time.perf_counter()
    lact = score(work / "store.zarr", method="linear-act", support="all", pooling=pool, progress=False,
                 out=work / "lact.safetensors")
    t_lact = time.perf_counter() - t0
    tiv = lact.intervention
    info.append({"step": "score --method linear-act (threads)", "seconds": f"{t_lact:.1f}",
                 "detail": f"{t_lact / t_score:.2f}x the AUROC scoring time (target <= 1.2x)"})
    finite_t = all(np.isfinite(np.stack([a for a in tiv.affine(h) if a is not None])).all() for h in tiv.widths)
    check("score --method linear-act: omega, beta finite", str(finite_t), "True", finite_t)

    def hooked_t() -> None:
        with dampened(model, tiv), torch.inference_mode():
            model.generate(**enc, **greedy)

    t_plain_t, t_hooked_t = interleaved(hooked_t)
    ratio_t = statistics.median(t_plain_t) / statistics.median(t_hooked_t)
    check("generate with a Linear-AcT transport / plain model.generate tokens/s", f"{ratio_t:.3f}x", ">= 0.90x",
          ratio_t >= 0.90, perf=True)

    # 5. logits: alpha = 1, hooked vs folded ----------------------------------------------------
    lenc = tok(gen_prompts, return_tensors="pt", padding=True, truncation=True, max_length=args.max_length,
               padding_side="left").to(device)
    mask = lenc["attention_mask"].bool()

    def logits(m: Any) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = m(**lenc, use_cache=False).logits[mask].float()
            return out

    plain_logits = logits(model)
    ones = make_intervention({n: np.full(w, 0.5) for n, w in iv.widths.items()}, method="aura")  # alpha = 1
    with dampened(model, ones):
        api_ones = logits(model)
    active = [points[n] for n in iv.widths]
    with attach(model, active, lambda p, act: multiply(act, torch.ones(act.shape[-1], dtype=act.dtype,
                                                                        device=act.device))):
        forced_ones = logits(model)
    plain_again = logits(model)
    noise = float((plain_again - plain_logits).abs().max())  # 0 unless the backend is non-deterministic
    diff = max(float((api_ones - plain_logits).abs().max()), float((forced_ones - plain_logits).abs().max()))
    eq = diff <= noise
    check(f"logits, hooks with alpha = 1 on all {len(active)} hooks == plain",
          f"max abs diff {diff:.1e} (plain vs plain again: {noise:.1e})",
          "bit-exact (<= run-to-run noise)", eq)
    with dampened(model, iv):
        hooked_logits = logits(model)
    moved = rel_err(hooked_logits, plain_logits)
    check("logits moved by the intervention, norm(hooked - plain) / norm(plain)", f"{moved:.2e}", "> 0", moved > 0)

    ref32 = load_model(str(model_dir), dtype="float32", device=device)
    with dampened(ref32.model, iv):
        hooked32 = logits(ref32.model)
    del ref32
    bf16_noise = rel_err(hooked_logits, hooked32)

    t0 = time.perf_counter()
    fold(loaded, iv, work / "folded")  # changes loaded.model in place: last use of it
    loaded.model.to("cpu")  # free the device for the reload (the folded weights are saved)
    if device == "cuda":
        torch.cuda.empty_cache()
    folded = load_model(str(work / "folded"), dtype="bfloat16", device=device)
    t_fold = time.perf_counter() - t0
    folded_logits = logits(folded.model)
    err = rel_err(folded_logits, hooked_logits)
    tol = 2 * bf16_noise + 1e-3
    agree = float((folded_logits.argmax(-1) == hooked_logits.argmax(-1)).float().mean())
    check("folded checkpoint vs hooked logits, norm(folded - hooked) / norm(hooked), bf16",
          f"{err:.2e} (bf16 vs fp32 of the hooked model: {bf16_noise:.2e}; argmax agree {agree:.1%})",
          f"<= {tol:.2e}", err <= tol)
    info.append({"step": "fold + save + reload", "seconds": f"{t_fold:.1f}", "detail": "bfloat16 checkpoint"})

    total = time.perf_counter() - t_start
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
    header = (f"{'CPU smoke test' if device == 'cpu' else 'GPU check'}: {gpu}; torch {torch.__version__}, "
              f"transformers {transformers.__version__}; model {n_params:,} parameters "
              f"({'tiny' if args.tiny else '1b'}), bfloat16; total {total:.0f} s{peak}.")
    report = "\n\n".join([header, table(info), table(checks)])
    print(report)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(report + "\n")
    if not args.keep and args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    failed = [c["check"] for c in checks if c["result"] == "FAIL"]
    print(f"\n{'ALL CHECKS PASS' if not failed else 'FAILED: ' + '; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
