"""Round two of the bad-input table: inputs that used to give silently wrong numbers (exit 0).

Each case ``test_refused_in_one_line[<id>]`` now ends in one clear line, exit != 0, with nothing
written and nothing existing touched (same rules as ``test_bad_inputs.py``); ``docs/reliability.md``
lists every id with what happened before. Cases that end in a *correct* result instead of an
error have their own tests below the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aura_stream.store import ActivationStore
from tests.test_bad_inputs import Ctx, extract_cmd, score_cmd
from tests.test_reliability import (  # noqa: F401  (fixtures used by name)
    Artifacts,
    all_arrays,
    artifacts_fixture,
    assert_one_line_error,
    assert_same_store,
    cli,
    copy_store,
    leftovers,
    offline,
    tree,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread

H = "blocks.0.mlp.hook_pre"


@dataclass(frozen=True)
class Case:
    make: Callable[[Ctx], tuple[list[object], list[Path]]]
    fragments: tuple[str, ...]
    code: int = 1


CASES: dict[str, Case] = {}


def case(case_id: str, *fragments: str, code: int = 1) -> Callable[[Callable[[Ctx], Any]], Any]:
    def register(make: Callable[[Ctx], tuple[list[object], list[Path]]]) -> Any:
        assert case_id not in CASES, case_id
        CASES[case_id] = Case(make, fragments, code)
        return make
    return register


def flip_byte(path: Path, index: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))


def shard(store: Path, block: int = 1, hook: str = "blocks.1.mlp.hook_pre") -> Path:
    return store / "activations" / "max" / hook / "c" / str(block) / "0"


# --------------------------------------------------------------------------- item 6: stored data


@case("store-labels-bit-flip", "`labels` fails its crc32c checksum", "Extract again with `--overwrite`")
def _labels_flip(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    flip_byte(store / "labels" / "c" / "0", 3)  # sample 3 changes class
    return score_cmd(c, store)


@case("store-labels-rewritten", "labels must match the digest recorded at creation", "`--overwrite`")
def _labels_rewritten(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    arr = ActivationStore.open(store, mode="r+").group["labels"]
    arr[3] = 1 - int(arr[3])  # type: ignore[index,call-overload]  # a valid chunk with a wrong label
    return score_cmd(c, store)


@case("store-progress-bit-flip", "`progress` fails its crc32c checksum", "`--overwrite`")
def _progress_flip(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    flip_byte(store / "progress" / "c" / "1")
    return score_cmd(c, store)


@case("store-shard-deleted", "incomplete: 8 of 16 rows missing (1 block(s) flagged complete have missing or empty",
      "rerun the same `extract` command")
def _shard_deleted(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    shard(store).unlink()
    return score_cmd(c, store)


@case("store-shard-emptied", "incomplete: 8 of 16 rows missing", "activations/max/blocks.1.mlp.hook_pre/c/1/0")
def _shard_emptied(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    shard(store).write_bytes(b"")
    return score_cmd(c, store)


@case("store-scores-bit-flip", "stored AUROCs must match their checksum", "`aura-stream score --recompute`")
def _scores_flip(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store(scored=True)
    flip_byte(store / "scores" / "max" / H / "auroc" / "c" / "0", 20)
    return score_cmd(c, store)


# --------------------------------------------------------------------------- item 3: another checkpoint, same --model


def model_copy(c: Ctx) -> Path:
    dest = c.tmp / "model"
    copy_store(c.model, dest)  # a plain directory copy
    return dest


def retrain(model_dir: Path) -> None:
    """Overwrite the checkpoint in place with other weights of the same shapes (as a new training run would)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01)
    model.save_pretrained(model_dir)


@case("extract-shard-other-weights", "holds another run (weights: store has", "use a new `--out` or `--overwrite`")
def _shard_other_weights(c: Ctx) -> tuple[list[object], list[Path]]:
    from tests.conftest import jigsaw_sample

    model, store = model_copy(c), c.tmp / "s.zarr"
    first = cli("extract", "--model", model, "--data", jigsaw_sample(), "--out", store, "--row-block", 8,
                "--shard", "0/2", "--quiet")
    assert first.exit_code == 0, first.output
    retrain(model)
    return ["extract", "--model", model, "--data", jigsaw_sample(), "--out", store, "--row-block", 8,
            "--shard", "1/2", "--quiet"], [store]


@case("eval-resume-other-weights", "holds an evaluation of a different configuration", "weights (",
      "pass --overwrite")
def _eval_other_weights(c: Ctx) -> tuple[list[object], list[Path]]:
    model, out = model_copy(c), c.tmp / "eval"
    args: list[object] = ["eval", "--model", model, "--out", out, "--limit-prompts", 1, "--samples-per-prompt", 1,
                          "--max-new-tokens", 2, "--ppl-text", c.file("ppl.txt", "A module is a file.\n"),
                          "--quiet"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    retrain(model)
    return args, [out]


# --------------------------------------------------------------------------- item 7: out-of-range values


def eval_args(c: Ctx, out: Path, *extra: object) -> list[object]:
    return ["eval", "--model", c.model, "--out", out, "--limit-prompts", 2, "--samples-per-prompt", 2,
            "--max-new-tokens", 2, "--ppl-text", c.file("ppl.txt", "A module is a file.\n"), "--quiet", *extra]


@case("eval-resume-toxicity-out-of-range", "generations.jsonl line 2: toxicity must be a probability in [0, 1]; "
      "got 1.7", "Pass --overwrite")
def _toxicity_out_of_range(c: Ctx) -> tuple[list[object], list[Path]]:
    import json

    out = c.tmp / "eval"
    first = cli(*eval_args(c, out))
    assert first.exit_code == 0, first.output
    path = out / "generations.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["toxicity"] = 1.7  # e.g. a hand-merged file, or a scorer that returned logits
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    (out / "summary.json").unlink()  # the run is resumed to rebuild it
    return eval_args(c, out), [out]


@case("generate-alpha-above-one", "alphas must be finite and in [0, 1]; blocks.0.mlp.hook_pre neuron 0 is 1.5",
      "Recreate the file")
def _alpha_above_one(c: Ctx) -> tuple[list[object], list[Path]]:
    from tests.test_bad_inputs import alpha

    iv = c.intervention("big.safetensors", alpha(value=1.5))
    out = c.tmp / "gen.jsonl"
    return ["generate", "--model", c.model, "--intervention", iv, "--prompt", "Hi", "--output", out], [out, iv]


@case("fold-alpha-overflows", "alphas must be finite and in [0, 1]", "neuron 0 is 3e+38")
def _alpha_overflows(c: Ctx) -> tuple[list[object], list[Path]]:
    from tests.test_bad_inputs import alpha

    iv = c.intervention("huge.safetensors", alpha(value=3e38))  # finite, but weight * alpha is inf
    out = c.tmp / "folded"
    return ["fold", "--model", c.model, "--intervention", iv, "--out", out], [out, iv]


case("score-out-inside-store", "`--out` must be outside the store", "would overwrite its files")(
    lambda c: (lambda s: (["score", s, "--out", s / "zarr.json", "--quiet"], [s]))(c.store()))
case("score-plot-inside-store", "`--plot` must be outside the store", "Choose a path beside the store")(
    lambda c: (lambda s: (["score", s, "--plot", s / "labels" / "zarr.json", "--quiet"], [s]))(c.store()))


# --------------------------------------------------------------------------- item 4: a classifier that is not one

case("eval-scorer-without-head", "`--scorer` must be a trained sequence-classification model",
     "no trained weights for score.weight")(
    lambda c: (eval_args(c, c.tmp / "eval", "--scorer", c.model), [c.tmp / "eval"]))


# --------------------------------------------------------------------------- item 5: data readers


def with_data(content: str, name: str = "d.csv") -> Callable[[Ctx], tuple[list[object], list[Path]]]:
    return lambda c: extract_cmd(c, data=c.file(name, content))


case("extract-csv-duplicate-column", "d.csv header must name each column once; 'text' repeat(s)",
     "Rename or remove the duplicate column")(
    with_data("text,label,text\nyou horrible idiot,1,fine\nthank you,0,fine\n"))
case("extract-jsonl-duplicate-key", "d.jsonl line 1 must name each column once; 'text' repeat(s)")(
    with_data('{"text": "you horrible idiot", "label": 1, "text": "fine"}\n{"text": "thanks", "label": 0}\n',
              "d.jsonl"))
case("extract-jsonl-null-text", "d.jsonl line 2: text column `text` must hold a string; got null",
     "Fill the text or remove the row")(
    with_data('{"text": "you horrible idiot", "label": 1}\n{"text": null, "label": 0}\n', "d.jsonl"))
case("extract-jsonl-number-text", "line 1: text column `text` must hold a string; got 42")(
    with_data('{"text": 42, "label": 1}\n{"text": "thanks", "label": 0}\n', "d.jsonl"))
case("extract-jsonl-bool-label", "label column `label` must hold 0 or 1; got true")(
    with_data('{"text": "you idiot", "label": true}\n{"text": "thanks", "label": 0}\n', "d.jsonl"))


# --------------------------------------------------------------------------- item 8: crashes on realistic mistakes


case("extract-max-length-above-positions", "`--max-length` must be <= 128, the positions of this gpt2 model; got 512",
     "Pass --max-length 128")(lambda c: extract_cmd(c, "--max-length", 512))
case("extract-device-gpu", "`--device` must be cpu, cuda, cuda:N, mps or auto; got 'gpu'")(
    lambda c: extract_cmd(c, "--device", "gpu"))
case("generate-device-gpu", "`--device` must be cpu, cuda, cuda:N, mps or auto; got 'gpu'")(
    lambda c: (["generate", "--model", c.model, "--prompt", "Hi", "--device", "gpu"], []))


@case("extract-truncated-weights", "a weights file is damaged", "interrupted download", "download it again")
def _truncated_weights(c: Ctx) -> tuple[list[object], list[Path]]:
    model = model_copy(c)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    args, watched = extract_cmd(c)
    args[args.index(c.model)] = model
    return args, watched


@case("extract-config-yaml-bomb", "uses more than 32 aliases", code=2)
def _yaml_bomb(c: Ctx) -> tuple[list[object], list[Path]]:
    lines = ["a0: &a0 [x, x, x, x, x, x]"]
    for i in range(1, 7):  # 6 levels of 6 aliases: 46,656 leaves once expanded
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 6) + "]")
    lines.append("hooks: *a6")
    bomb = c.file("bomb.yaml", "\n".join(lines) + "\n")
    return extract_cmd(c, "--config", bomb)


case("extract-config-too-large", "must be at most 1024 KiB", code=2)(
    lambda c: extract_cmd(c, "--config", c.file("big.yaml", "# padding\n" * 200_000 + "batch_size: 4\n")))


@case("generate-intervention-widths-not-a-mapping", "metadata must hold `hooks` as a list, `widths` as a mapping",
      "got list, list and str")
def _widths_list(c: Ctx) -> tuple[list[object], list[Path]]:
    from tests.test_bad_inputs import alpha

    iv = c.intervention("w.safetensors", alpha(), widths=[128])
    return ["generate", "--model", c.model, "--intervention", iv, "--prompt", "Hi"], [iv]


case("score-scheduler-bad-address", "`--scheduler` must be an address like tcp://host:8786", "got 'nonsense'")(
    lambda c: score_cmd(c, c.store(scored=True), "--recompute", "--scheduler", "nonsense"))
case("score-plot-unsupported-suffix", "`--plot` must end in one of", "got", "auroc.xyz")(
    lambda c: score_cmd(c, c.store(), "--plot", c.tmp / "auroc.xyz"))


# --------------------------------------------------------------------------- options a method ignores

case("score-aura-with-num-experts", "`--num-experts` must not be given with `--method aura`, which ignores it")(
    lambda c: score_cmd(c, c.store(scored=True), "--method", "aura", "--num-experts", 5))
case("score-det0-with-damp-alpha", "`--damp-alpha` must not be given with `--method det0`")(
    lambda c: score_cmd(c, c.store(scored=True), "--method", "det0", "--num-experts", 5, "--damp-alpha", 0.3))
case("generate-greedy-with-sampling-options", "`--top-p --temperature` must not be given with `--greedy`")(
    lambda c: (["generate", "--model", c.model, "--prompt", "Hi", "--greedy", "--top-p", 0.5, "--temperature", 0.7],
               []))
case("extract-max-memory-without-device-map", "`--max-memory` must come with `--device-map`")(
    lambda c: extract_cmd(c, "--max-memory", "cpu:2GiB"))


# --------------------------------------------------------------------------- the runner


@pytest.mark.parametrize("case_id", list(CASES))
def test_refused_in_one_line(case_id: str, gpt2_dir: Path, artifacts: Artifacts, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec = CASES[case_id]
    ctx = Ctx(tmp_path, gpt2_dir, artifacts, monkeypatch)
    args, watched = spec.make(ctx)
    before, files_before = tree(*watched), set(tmp_path.rglob("*"))
    result = cli(*args)
    assert_one_line_error(result, *spec.fragments, code=spec.code)
    assert tree(*watched) == before  # nothing half-written, nothing existing touched
    assert set(tmp_path.rglob("*")) == files_before and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- correct results


def test_info_and_extract_see_a_deleted_shard(gpt2_dir: Path, artifacts: Artifacts, tmp_path: Path) -> None:
    """``info`` says INCOMPLETE, and the same ``extract`` command rewrites exactly that block."""
    from tests.conftest import jigsaw_sample

    store = copy_store(artifacts.store, tmp_path / "s.zarr")
    want = all_arrays(artifacts.store)
    shard(store).unlink()
    info = cli("info", store)
    assert info.exit_code == 0 and "INCOMPLETE: 8 rows missing" in info.output, info.output
    again = cli("extract", "--model", gpt2_dir, "--data", jigsaw_sample(), "--out", store, "--row-block", 8,
                "--quiet")
    assert again.exit_code == 0 and "1 row blocks written, 1 already complete" in again.output, again.output
    assert_same_store(store, want)


def test_all_zero_block_is_written_not_skipped(tmp_path: Path) -> None:
    """zarr skips chunks equal to the fill value; the store must not (a missing file means unwritten)."""
    from aura_stream.store import StoreSpec

    spec = StoreSpec(n_samples=4, row_block=2, hooks={H: 3}, poolings=["max"], store_dtype="float16",
                     identity={}, provenance={}, labels=np.array([0, 1, 0, 1], np.int8), sample_ids=list("abcd"))
    st = ActivationStore.create_or_open(tmp_path / "z.zarr", spec)
    st.write_block(0, {("max", H): np.zeros((2, 3), np.float32)})
    st.write_block(1, {("max", H): np.ones((2, 3), np.float32)})
    assert st.completed().all() and st.missing_rows() == 0


def test_fold_refuses_non_finite_weights(gpt2_dir: Path, tmp_path: Path) -> None:
    """Finite alphas on a model holding an inf weight: nothing is written (it used to say "folded ...")."""
    import torch

    from aura_stream.errors import NumericalError
    from aura_stream.fold import fold
    from aura_stream.interventions import make_intervention
    from aura_stream.model import load_model

    loaded = load_model(str(gpt2_dir))
    with torch.no_grad():
        loaded.model.transformer.h[0].mlp.c_fc.weight[3, 5] = float("inf")
    iv = make_intervention({H: np.full(128, 0.75)}, method="aura")
    with pytest.raises(NumericalError, match=r"folded weights must be finite; transformer\.h\.0\.mlp\.c_fc\.weight"):
        fold(loaded, iv, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_eval_refuses_a_scorer_outside_zero_one(gpt2_dir: Path, tmp_path: Path) -> None:
    from aura_stream.errors import InputError
    from aura_stream.evaluation.pipeline import evaluate
    from aura_stream.model import load_model

    class Logits:  # a user's scorer that returns logits instead of probabilities
        name = "logits"

        def score(self, texts: list[str]) -> np.ndarray:
            return np.full(len(texts), 3.2)

    with pytest.raises(InputError, match=r"scorer 'logits' must return one probability in \[0, 1\] per text"):
        evaluate(load_model(str(gpt2_dir)), prompts=["Hi"], ppl_texts=["A module is a file."], scorer=Logits(),
                 out_dir=tmp_path / "e", samples_per_prompt=1, max_new_tokens=2, progress=False)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0c", "\x1c", "\x85", "\x0b"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_unicode_line_separators_stay_inside_the_text(separator: str, suffix: str, tmp_path: Path) -> None:
    """A comment holding U+2028 or a form feed is one row (Python's splitlines made it two or a parse error)."""
    import json

    from aura_stream.data import load_labelled

    toxic = f"first part{separator}second part you idiot"
    path = tmp_path / f"d{suffix}"
    if suffix == ".csv":
        path.write_text(f"text,label\n{toxic},1\nthank you,0\n", encoding="utf-8")  # unquoted, as csv writes it
    else:
        rows = [{"text": toxic, "label": 1}, {"text": "thank you", "label": 0}]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    got = load_labelled(path)
    assert got.texts == [toxic, "thank you"] and got.labels.tolist() == [1, 0]


def test_prompts_file_keeps_unicode_separators(tmp_path: Path) -> None:
    from aura_stream.generate import read_prompts

    path = tmp_path / "p.txt"
    path.write_text("one\u2028still one\r\ntwo\n", encoding="utf-8")
    assert read_prompts(path) == ["one\u2028still one", "two"]


def test_fifo_does_not_hang_a_real_process(gpt2_dir: Path, tmp_path: Path) -> None:
    """The real CLI in a subprocess: refused at once (it used to block on the read forever)."""
    import os
    import subprocess

    from tests.test_reliability import CHILD_ENV, CLI

    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    try:
        done = subprocess.run([*CLI, "extract", "--model", str(gpt2_dir), "--data", str(fifo), "--out",
                               str(tmp_path / "s.zarr"), "--quiet"], env=CHILD_ENV, capture_output=True, text=True,
                              timeout=300)  # a hang guard, not a speed limit
    except subprocess.TimeoutExpired:
        pytest.fail("extract blocked on a FIFO")
    assert done.returncode == 1 and "must be a regular file" in done.stderr, done.stderr


def test_two_evals_on_one_out_dir(gpt2_dir: Path, tmp_path: Path) -> None:
    """Real processes: while one ``eval`` holds ``--out`` the second is refused; once the first dies, the
    second resumes and every record appears exactly once."""
    import json
    import os
    import signal
    import subprocess
    import time

    from tests.test_reliability import CHILD_ENV, CLI

    out, ppl = tmp_path / "eval", tmp_path / "ppl.txt"
    ppl.write_text("A module is a file.\n")
    args = [*CLI, "eval", "--model", str(gpt2_dir), "--out", str(out), "--limit-prompts", "3",
            "--samples-per-prompt", "4", "--max-new-tokens", "3", "--batch-size", "2", "--ppl-text", str(ppl),
            "--quiet"]
    first = subprocess.Popen(args, env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):  # the config is written once the lock is held
            if (out / "eval_config.json").exists() or first.poll() is not None:
                break
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)  # frozen while holding the lock: no race with its finishing
        assert first.poll() is None, "the first eval ended before it could be paused"
        second = subprocess.run(args, env=CHILD_ENV, capture_output=True, text=True, timeout=600)
        assert second.returncode == 1, second.stderr
        assert "must be used by one `eval` at a time; another is writing it now" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    third = subprocess.run(args, env=CHILD_ENV, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr  # the kernel released the dead run's lock
    keys = [(r["arm"], r["prompt_index"], r["sample_index"])
            for r in map(json.loads, (out / "generations.jsonl").read_text().splitlines())]
    assert len(keys) == len(set(keys)) == 3 * 4


def test_config_defaults_of_other_methods_are_not_refused(artifacts: Artifacts, tmp_path: Path) -> None:
    """The shipped score.yaml sets damp_alpha for everyone: only a typed option a method ignores is refused."""
    config = Path(__file__).resolve().parents[1] / "configs" / "score.yaml"
    store = copy_store(artifacts.scored, tmp_path / "s.zarr")
    result = cli("score", store, "--config", config, "--method", "aura", "--quiet")
    assert result.exit_code == 0, result.output
