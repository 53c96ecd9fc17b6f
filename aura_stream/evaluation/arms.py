"""The evaluation protocol: arms (baseline and interventions) and the options and inputs they run on.

Every arm continues the same prompts ``samples_per_prompt`` times with nucleus sampling;
continuation ``(p, s)`` is drawn with the seed ``(seed, p, s)`` in every arm, so arms differ only
by their intervention and preprompt (docs/eval.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aura_stream.errors import DataFileError, InputError
from aura_stream.evaluation.inputs import Prompt
from aura_stream.generate import check_strength
from aura_stream.interventions import Intervention

FORMAT = "aura-stream-eval/1"
BASELINE = "baseline"
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


@dataclass(frozen=True)
class Arm:
    """One way of generating, compared against the baseline.

    Attributes
    ----------
    name : str
        Unique label in the report and in every JSONL record (letters, digits, ``_.+-``).
    intervention : Intervention, optional
        None generates with the unmodified model.
    preprompt : str, optional
        Text put before every prompt (joined with one space unless it ends in whitespace).
    strength : float in [0, 1], optional
        Scale the intervention's alphas towards 1 (see :meth:`Intervention.with_strength`).
    """

    name: str
    intervention: Intervention | None = None
    preprompt: str | None = None
    strength: float | None = None

    def identity(self) -> dict[str, Any]:
        """What decides this arm's generations (part of the run configuration)."""
        iv = self.intervention
        return {"name": self.name, "preprompt": self.preprompt, "strength": self.strength,
                "intervention_fingerprint": iv.fingerprint if iv is not None else None,
                "method": iv.metadata.get("method") if iv is not None else None}

    def describe(self) -> dict[str, Any]:
        """Provenance of the arm for ``summary.json``."""
        iv = self.intervention
        meta = iv.metadata if iv is not None else {}
        return {**self.identity(), "parameters": meta.get("parameters"), "model": meta.get("model"),
                "store_fingerprint": meta.get("store_fingerprint"),
                "n_dampened": iv.n_dampened() if iv is not None else 0}

    def prompt_text(self, prompt: str) -> str:
        """The text the model continues."""
        if not self.preprompt:
            return prompt
        return self.preprompt + ("" if self.preprompt[-1].isspace() else " ") + prompt




def check_options(samples_per_prompt: int, max_new_tokens: int, batch_size: int, seed: int,
                   top_p: float, top_k: int, temperature: float, n_resamples: int,
                   confidence: float) -> None:
    """Every bad option at once, before any work."""
    problems = [f"`--{name}` must be >= 1; got {value}" for name, value in (
        ("samples-per-prompt", samples_per_prompt), ("max-new-tokens", max_new_tokens),
        ("batch-size", batch_size), ("n-resamples", n_resamples)) if value < 1]
    if seed < 0:
        problems.append(f"`--seed` must be >= 0; got {seed}")
    if not 0 < top_p <= 1:
        problems.append(f"`--top-p` must be in (0, 1]; got {top_p}")
    if top_k < 0:
        problems.append(f"`--top-k` must be >= 0 (0 = off); got {top_k}")
    if not temperature > 0:
        problems.append(f"`--temperature` must be > 0; got {temperature}")
    if not 0 < confidence < 1:
        problems.append(f"`confidence` must be in (0, 1); got {confidence}")
    if problems:
        raise InputError("; ".join(problems) + ".")


def check_prompts(prompts: Sequence[Prompt | str]) -> list[Prompt]:
    items = [p if isinstance(p, Prompt) else Prompt(p) for p in prompts]
    if not items:
        raise InputError("`prompts` must hold at least one prompt; got none. "
                         "Use --prompts builtin or a file with one prompt per line.")
    empty = [str(i) for i, p in enumerate(items)
             if not isinstance(p.text, str) or not p.text.strip()]
    if empty:
        raise InputError(f"prompts must not be empty; got empty prompt(s) at index "
                         f"{', '.join(empty[:5])}. Remove them.")
    return items


def check_ppl_texts(ppl_texts: Sequence[str]) -> list[str]:
    texts = [t for t in ppl_texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataFileError("perplexity text must hold at least one non-blank passage; got none. "
                            "Use --ppl-text builtin or a file with one passage per line.")
    return texts


def build_arms(*, intervention: Intervention | None, preprompt: str | None,
               strength: float | None, extra_arms: Sequence[Arm] | None) -> list[Arm]:
    """Baseline first, then the intervention's arm (named by its method), then ``extra_arms``."""
    if strength is not None and intervention is None:
        raise InputError(f"`--strength` needs `--intervention`; got strength {strength} without "
                         "one. Drop --strength or pass --intervention.")
    arms = [Arm(BASELINE, None, preprompt)]
    if intervention is not None:
        name = str(intervention.metadata.get("method") or "intervention")
        arms.append(Arm(name, intervention, preprompt, strength))
    arms += list(extra_arms or [])
    problems = []
    for arm in arms:
        if not isinstance(arm.name, str) or not ARM_NAME.fullmatch(arm.name):
            problems.append(f"arm name {arm.name!r} must be 1-64 of letters, digits, _.+-")
        if arm.preprompt is not None and not arm.preprompt.strip():
            problems.append(f"arm {arm.name!r}: `--preprompt` must not be blank")
        if arm.strength is not None:
            check_strength(arm.strength)
            if arm.intervention is None:
                problems.append(f"arm {arm.name!r}: a strength needs an intervention")
    names = [a.name for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"arm names must be unique; {', '.join(dupes)} repeat(s) (the baseline is "
                        f"{BASELINE!r}, the intervention's arm is named by its method)")
    if problems:
        raise InputError("; ".join(problems) + ".")
    return arms
