"""Evaluation: toxicity of continuations, perplexity, zero-shot utility, and their report.

``aura-stream eval`` runs :func:`aura_stream.evaluation.pipeline.evaluate`. The modules:

- :mod:`.pipeline` — the run: arms in order, continuations, scoring, perplexity, utility, summary.
- :mod:`.arms` — the protocol's arms (baseline, interventions) and the options they run on.
- :mod:`.outdir` — the output directory: its files, resume records and the one-run lock.
- :mod:`.inputs` — toxicity prompts and neutral text, shipped or user-supplied.
- :mod:`.perplexity` — chunking, summed next-token NLL and the per-intervention cache.
- :mod:`.metrics` — toxicity, perplexity and distinct-n summaries per arm, paired against the baseline.
- :mod:`.intervals` — bootstrap and normal intervals and the records that carry them.
- :mod:`.text_metrics` — perplexity and distinct-n of the text itself.
- :mod:`.scorers` — toxicity scorers (:mod:`.scorers.bilstm`, :mod:`.scorers.hf_classifier`) behind
  one protocol (:mod:`.scorers.protocol`).
- :mod:`.utility` — lm-evaluation-harness tasks on a (hooked) model; :mod:`.utility_arms` runs them
  on every arm of ``eval``.
- :mod:`.report` — the printed table and ``report.png``, drawn from ``summary.json``.
"""
