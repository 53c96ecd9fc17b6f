"""CLI: help with examples, config precedence, one-line errors with the right exit codes, info."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aura_stream_cli.main import app
from click.testing import CliRunner

from aura_stream.store import ActivationStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", sorted(app.commands))
def test_every_command_has_help_with_example(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"aura-stream {command}" in result.output


def test_config_precedence_cli_over_env_over_yaml(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"batch_size": 4, "max_length": 40, "seed": 7, "row_block": 8}))
    runner = CliRunner()
    base = ["extract", "--config", str(cfg), "--model", str(gpt2_dir), "--data", str(jigsaw_csv), "--quiet"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "a.zarr"), "--max-length", "50"],
                      env={"AURA_STREAM_EXTRACT_BATCH_SIZE": "6", "AURA_STREAM_EXTRACT_SEED": "9"})
    assert r.exit_code == 0, r.output
    config = ActivationStore.open(tmp_path / "a.zarr").attrs["config"]
    assert config["max_length"] == 50  # command line beats YAML
    assert config["batch_size"] == 6 and config["seed"] == 9  # env beats YAML
    assert config["row_block"] == 8  # YAML beats built-in
    assert config["config_file"] == str(cfg)


def test_shipped_configs_are_valid_and_match_builtin_defaults() -> None:
    for command in ("extract", "score"):
        data = yaml.safe_load((ROOT / "configs" / f"{command}.yaml").read_text())
        params = {p.name: p for p in app.commands[command].params}
        for key, value in data.items():
            assert key in params, f"{command}.yaml: unknown key {key}"
            default = params[key].default
            assert (list(default) if isinstance(default, tuple) else default) == value, key


def test_unknown_config_key_is_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("batchsize: 3\n")
    r = CliRunner().invoke(app, ["extract", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown key(s) batchsize" in r.output


@pytest.mark.parametrize(("args", "message"), [
    (["extract", "--model", "/nonexistent/model", "--out", "OUT"], "is not a directory"),
    (["extract", "--model", "no-such-org/no-such-model-xyz", "--out", "OUT"], "cannot load model"),
    (["extract", "--data", "/nonexistent.csv", "--out", "OUT"], "does not exist"),
    (["extract", "--shard", "5/2", "--out", "OUT"], "`--shard` index must be in 0..N-1"),
    (["extract", "--max-memory", "lots", "--out", "OUT"], "`--max-memory` must be a size such as 8GiB"),
    (["extract", "--max-memory", "gpu:70GiB", "--out", "OUT"], "`--max-memory` must look like"),
    (["info", "/nonexistent.zarr"], "does not exist"),
    (["score", "/nonexistent.zarr"], "does not exist"),
])
def test_errors_are_one_line_exit_1(args: list[str], message: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [a.replace("OUT", str(tmp_path / "o.zarr")) for a in args]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o.zarr").exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["--debug", "info", str(tmp_path / "missing.zarr")])
    assert r.exit_code == 1 and "Traceback" in r.output


def test_usage_error_exit_2() -> None:
    r = CliRunner().invoke(app, ["extract", "--pooling"])
    assert r.exit_code == 2


def test_hooks_and_info(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["hooks", "--model", str(gpt2_dir), "--pattern", "blocks.1.*"])
    assert r.exit_code == 0
    assert [line.split()[0] for line in r.output.splitlines()] == [
        "blocks.1.mlp.hook_pre", "blocks.1.mlp.hook_post", "blocks.1.hook_mlp_out"]
    out = tmp_path / "s.zarr"
    r = runner.invoke(app, ["extract", "--model", str(gpt2_dir), "--data", str(jigsaw_csv), "--out", str(out),
                            "--row-block", "5", "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(out)])
    assert r.exit_code == 0
    assert "16 samples (8 toxic)" in r.output and "4/4 row blocks of 5 rows: complete" in r.output
    assert "blocks.2.hook_mlp_out" in r.output and "[16, 32]" in r.output
