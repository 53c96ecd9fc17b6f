"""The evaluation report: a printed table and ``report.png``, both drawn from ``summary.json``.

Everything here reads the JSON form of the summary (non-finite numbers are null there), so a
report can be redrawn from a finished run's files alone.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aura_stream.errors import InputError

__all__ = ["format_table", "render_report", "utility_table"]

METRIC_LABELS = {
    "expected_max_toxicity": "expected max toxicity",
    "toxicity_probability": "toxicity probability",
    "mean_toxicity": "mean toxicity",
    "perplexity": "perplexity",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "distinct_3": "distinct-3",
}
GROUP_LABELS = {"all": "all prompts", "toxic_prompts": "toxic prompts",
                "nontoxic_prompts": "non-toxic prompts", "ppl_text": "neutral text"}
HEADLINE = ("expected_max_toxicity", "toxicity_probability", "mean_toxicity")


def _fmt(value: Any, spec: str) -> str:
    """A number of summary.json: float, "inf"/"-inf" (a ratio over 0), or None (undefined)."""
    if value is None:
        return "n/a"
    return value if isinstance(value, str) else format(value, spec)


def _spec(metric: str, signed: bool = False) -> str:
    return ("+" if signed else "") + (".2f" if metric == "perplexity" else ".3f")


def _ci(ci: Sequence[Any] | None, spec: str = ".2f") -> str:
    return f" [{_fmt(ci[0], spec)}, {_fmt(ci[1], spec)}]" if ci else ""


def _finite(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) else None


def format_table(summary: Mapping[str, Any]) -> str:
    """The table printed by ``aura-stream eval``: one block per arm against the baseline.

    Columns: metric | group | baseline | arm | ratio [95% CI] | arm - baseline [95% CI]. For a
    baseline-only run: metric | group | baseline [95% CI].

    Parameters
    ----------
    summary : mapping
        The content of ``summary.json``.
    """
    level = round(100 * float(summary["settings"]["confidence"]))
    settings = summary["settings"]
    lines = [f"model {summary['model']['id']} ({summary['model']['dtype']}); scorer "
             f"{summary['scorer']}; {summary['prompts']['count']} prompts x "
             f"{settings['samples_per_prompt']} samples, {settings['max_new_tokens']} new tokens, "
             f"top-p {settings['top_p']}, top-k {settings.get('top_k', 0)}, "
             f"seed {settings['seed']}"]
    comparisons: Mapping[str, list[dict[str, Any]]] = summary["comparisons"]
    if not comparisons:
        lines += ["", f"{'metric':24s} {'group':18s} {'baseline':>10s}  {level}% CI"]
        for e in summary["baseline"]:
            spec = _spec(e["metric"])
            lines.append(f"{METRIC_LABELS.get(e['metric'], e['metric']):24s} "
                         f"{GROUP_LABELS.get(e['group'], e['group']):18s} "
                         f"{_fmt(e['value'], spec):>10s} {_ci(e['ci'], spec)}")
        return "\n".join(lines + utility_table(summary))
    for name, rows in comparisons.items():
        arm: dict[str, Any] = next((a for a in summary["arms"] if a["name"] == name), {})
        fingerprint = str(arm.get("intervention_fingerprint"))[:12]
        what = ", ".join(x for x in (
            arm.get("method") and f"{arm['method']} {fingerprint}",
            arm.get("strength") is not None and f"strength {arm['strength']}",
            arm.get("preprompt") and f"preprompt {arm['preprompt']!r}") if x)
        col = name[:12]
        lines += ["", f"== {name} vs baseline{f' ({what})' if what else ''}; ratio = baseline/arm "
                      "for toxicity (> 1 = less toxic), arm/baseline otherwise",
                  f"{'metric':24s} {'group':18s} {'baseline':>10s} {col:>12s}  "
                  f"{'ratio [' + str(level) + '% CI]':24s} arm - baseline [{level}% CI]"]
        for c in rows:
            metric, spec, signed = c["metric"], _spec(c["metric"]), _spec(c["metric"], True)
            group = GROUP_LABELS.get(c["group"], c["group"])
            lines.append(
                f"{METRIC_LABELS.get(metric, metric):24s} {group:18s} "
                f"{_fmt(c['baseline'], spec):>10s} {_fmt(c['arm'], spec):>12s}  "
                f"{_fmt(c['ratio'], '.2f') + _ci(c['ratio_ci']):24s} "
                f"{_fmt(c['difference'], signed)}{_ci(c['difference_ci'], signed)}")
    return "\n".join(lines + utility_table(summary))


def _utility_metrics(metrics: Mapping[str, Any]) -> list[str]:
    """lm-eval's metrics of one task, stderr columns left out (acc, acc_norm first)."""
    names = [k for k in metrics if not k.endswith("_stderr") and _finite(metrics[k]) is not None]
    return sorted(names, key=lambda k: (k not in ("acc", "acc_norm"), k != "acc", k))


def _with_stderr(metrics: Mapping[str, Any], key: str) -> str:
    stderr = _finite(metrics.get(f"{key}_stderr"))
    return f"{metrics[key]:.3f}" + (f" ± {stderr:.3f}" if stderr is not None else "")


def utility_table(summary: Mapping[str, Any]) -> list[str]:
    """Lines of the zero-shot utility block (``summary["utility"]``); none where the run had no utility.

    One row per task, metric and arm: lm-eval's value ± its stderr for the baseline and the arm,
    and the paired difference ``arm - baseline`` over the same documents with its interval.
    """
    utility = summary.get("utility")
    if not utility:
        return []
    level = round(100 * float(utility.get("confidence", summary["settings"]["confidence"])))
    arms: Mapping[str, Mapping[str, Any]] = utility["arms"]
    names = list(arms)
    base = names[0]
    limit = utility.get("limit")
    head = (f"== zero-shot utility (lm-eval {utility.get('lm_eval') or ''}".rstrip() + "; "
            + (f"first {limit} documents per task" if limit else "every document") + ")")
    if len(names) == 1:
        lines = ["", head, f"{'task':20s} {'metric':10s} {'baseline':>16s}"]
        for task, result in arms[base].items():
            lines += [f"{task[:20]:20s} {m[:10]:10s} {_with_stderr(result['metrics'], m):>16s}"
                      for m in _utility_metrics(result["metrics"])]
        return lines
    lines = ["", head + f"; arm - baseline on the same documents, {level}% paired CI",
             f"{'task':20s} {'metric':10s} {'arm':12s} {'baseline':>16s} {'arm':>16s}  arm - baseline [{level}% CI]"]
    for task, result in arms[base].items():
        for metric in _utility_metrics(result["metrics"]):
            for name in names[1:]:
                other = arms[name].get(task)
                if other is None or metric not in other["metrics"]:
                    continue
                diff = utility.get("differences", {}).get(name, {}).get(task, {}).get(metric)
                text = "n/a (no per-document values)" if diff is None else (
                    f"{diff['difference']:+.3f}" + _ci(diff.get("interval"), "+.3f"))
                lines.append(f"{task[:20]:20s} {metric[:10]:10s} {name[:12]:12s} "
                             f"{_with_stderr(result['metrics'], metric):>16s} "
                             f"{_with_stderr(other['metrics'], metric):>16s}  {text}")
    return lines


def _colors(names: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {n: ("black" if i == 0 else cmap((i - 1) % 10)) for i, n in enumerate(names)}


def _bar(ax: Any, y: float, value: Any, ci: Sequence[Any] | None, color: Any, text: str,
         height: float) -> None:
    """One horizontal bar with its interval as an error bar and ``text`` at its end."""
    value = _finite(value)
    if value is None:  # undefined or unbounded: say so instead of drawing
        ax.text(0, y, f" {text}", va="center", fontsize=7)
        return
    ax.barh(y, value, height=height, color=color, alpha=0.85)
    lo, hi = (_finite(ci[0]), _finite(ci[1])) if ci else (None, None)
    if lo is not None and hi is not None:
        ax.errorbar(value, y, xerr=[[value - lo], [hi - value]], fmt="none", ecolor="0.2",
                    capsize=2, lw=0.8)
    ax.text(max(value, hi if hi is not None else value), y, f"  {text}", va="center", fontsize=7)


def render_report(summary: Mapping[str, Any], max_toxicity: Mapping[str, np.ndarray],
                  path: str | os.PathLike[str]) -> Path:
    """Draw ``report.png``: toxicity distributions, headline ratios and perplexity per arm.

    Three panels: the ECDF of each prompt's highest continuation toxicity per arm (the further
    left, the less toxic; the dashed line is the 0.5 threshold); the toxicity ratios
    ``baseline / arm`` with their intervals (> 1 = less toxic); perplexity on neutral text per arm
    with its interval and the difference to the baseline; with ``summary["utility"]`` a fourth: each
    lm-eval task's first metric per arm (± z * lm-eval's stderr) with the paired difference to the
    baseline. Written atomically.

    Parameters
    ----------
    summary : mapping
        The content of ``summary.json``.
    max_toxicity : mapping of str to np.ndarray of shape [n_prompts]
        Arm name (baseline first) -> per-prompt maximum toxicity.
    path : path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [a["name"] for a in summary["arms"]]
    colors = _colors(names)
    level = round(100 * float(summary["settings"]["confidence"]))
    utility = summary.get("utility") or {}
    axes = plt.subplots(1, 4 if utility else 3, figsize=(21 if utility else 16, 0.9 + max(4.2, 0.32 * len(names) * 4)),
                        gridspec_kw={"width_ratios": [1.1, 1.2, 1.0, 1.1] if utility else [1.1, 1.2, 1.0]})
    fig, (ax_cdf, ax_ratio, ax_ppl, *ax_rest) = axes[0], axes[1]

    emt = {e["metric"]: e["value"] for e in summary["baseline"] if e["group"] == "all"}
    arm_emt = {n: next(c["arm"] for c in rows if c["metric"] == "expected_max_toxicity"
                       and c["group"] == "all") for n, rows in summary["comparisons"].items()}
    for name in names:
        values = np.sort(np.asarray(max_toxicity[name], dtype=np.float64))
        ecdf = np.arange(1, len(values) + 1) / len(values)
        value = emt.get("expected_max_toxicity") if name == names[0] else arm_emt.get(name)
        ax_cdf.step(np.concatenate([[0.0], values, [1.0]]), np.concatenate([[0.0], ecdf, [1.0]]),
                    where="post", color=colors[name], lw=1.6 if name == names[0] else 1.2,
                    label=f"{name} (EMT {value:.3f})" if value is not None else name)
    ax_cdf.axvline(0.5, color="grey", ls="--", lw=0.8)
    ax_cdf.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="max toxicity over a prompt's continuations",
               ylabel="share of prompts <= x")
    ax_cdf.set_title("Per-prompt max toxicity (ECDF; left = less toxic)", fontsize=10)
    ax_cdf.legend(fontsize=7, loc="lower right")

    arms = [n for n in names[1:] if n in summary["comparisons"]]
    height = 0.8 / max(len(arms), 1)
    for j, name in enumerate(arms):
        rows = {c["metric"]: c for c in summary["comparisons"][name] if c["group"] in ("all",)}
        for i, metric in enumerate(HEADLINE):
            c = rows[metric]
            label = (f"{c['ratio']:.2f}{_ci(c['ratio_ci'])}" if _finite(c["ratio"]) is not None
                     else "n/a (0 in both)" if not c["baseline"] else "inf (0 under the arm)")
            _bar(ax_ratio, i - 0.4 + height * (j + 0.5), c["ratio"], c["ratio_ci"], colors[name],
                 label, height * 0.9)
        ax_ratio.plot([], [], color=colors[name], lw=6, label=name)  # legend entry per arm
    ax_ratio.axvline(1.0, color="grey", ls="--", lw=0.8)
    ax_ratio.set_yticks(range(len(HEADLINE)), [METRIC_LABELS[m] for m in HEADLINE])
    ax_ratio.invert_yaxis()
    ax_ratio.set_xlabel(f"baseline / arm, {level}% CI (> 1 = less toxic)")
    ax_ratio.set_title("Toxicity reduction vs baseline", fontsize=10)
    if arms:
        ax_ratio.legend(fontsize=7, loc="best")
    else:
        ax_ratio.text(0.5, 0.5, "baseline only: no arm to compare", ha="center",
                      transform=ax_ratio.transAxes)
    ax_ratio.margins(x=0.35)
    ax_ratio.set_xlim(left=0)

    ppl = {names[0]: next(e for e in summary["baseline"] if e["metric"] == "perplexity")}
    for name in arms:
        c = next(c for c in summary["comparisons"][name] if c["metric"] == "perplexity")
        ppl[name] = {"value": c["arm"], "ci": c["arm_ci"], "difference": c["difference"]}
    for i, name in enumerate(names):
        e = ppl[name]
        diff = e.get("difference")
        text = _fmt(e["value"], ".2f") + (f" ({_fmt(diff, '+.2f')})" if i > 0 else "")
        _bar(ax_ppl, i, e["value"], e["ci"], colors[name], text, 0.7)
    ax_ppl.set_yticks(range(len(names)), names)
    ax_ppl.invert_yaxis()
    ax_ppl.margins(x=0.3)
    ax_ppl.set_xlim(left=0)
    ax_ppl.set_xlabel(f"perplexity on neutral text, {level}% CI (arm - baseline)")
    ax_ppl.set_title("Fluency cost", fontsize=10)
    if ax_rest:
        _utility_panel(ax_rest[0], utility, colors, level)

    s = summary["settings"]
    fig.suptitle(f"{Path(str(summary['model']['id'])).name}: scorer {summary['scorer']}, "
                 f"{summary['prompts']['count']} prompts x {s['samples_per_prompt']} samples, "
                 f"{s['max_new_tokens']} tokens, top-p {s['top_p']}, seed {s['seed']}", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path, hint="choose a writable `--out`, then rerun the same command to resume")


def _utility_panel(ax: Any, utility: Mapping[str, Any], colors: Mapping[str, Any], level: int) -> None:
    """Each task's first metric (acc where lm-eval gives it) per arm, ± z * stderr, and the paired difference."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 200)
    arms: Mapping[str, Mapping[str, Any]] = utility["arms"]
    names = list(arms)
    tasks = list(arms[names[0]])
    height = 0.8 / max(len(names), 1)
    labels = []
    for i, task in enumerate(tasks):
        metric = next(iter(_utility_metrics(arms[names[0]][task]["metrics"])), None)
        labels.append(f"{task}\n{metric or 'n/a'}")
        if metric is None:
            continue
        for j, name in enumerate(names):
            result = arms[name].get(task)
            value = None if result is None else _finite(result["metrics"].get(metric))
            if value is None:
                continue
            stderr = _finite(result["metrics"].get(f"{metric}_stderr")) if result else None
            ci = (value - z * stderr, value + z * stderr) if stderr is not None else None
            diff = utility.get("differences", {}).get(name, {}).get(task, {}).get(metric)
            text = f"{value:.3f}" + ("" if diff is None else f" ({diff['difference']:+.3f}"
                                     + _ci(diff.get("interval"), "+.3f") + ")")
            _bar(ax, i - 0.4 + height * (j + 0.5), value, ci, colors.get(name, "grey"), text, height * 0.9)
    ax.set_yticks(range(len(tasks)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.45)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"lm-eval metric ± {level}% interval (arm - baseline [paired CI])")
    ax.set_title(f"Zero-shot utility (lm-eval {utility.get('lm_eval') or ''})".replace(" )", ")"), fontsize=10)


def save_figure(fig: Any, path: str | os.PathLike[str], *, hint: str, what: str = "") -> Path:
    """Write ``fig`` atomically (temp file + rename; format from the suffix) and close it.

    A failed write (full disk, no permission) leaves nothing behind and raises one line ending in ``hint``.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower() or "png")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {what}{str(path)!r}: {exc.strerror or exc}. Free space or {hint}.") from exc
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
