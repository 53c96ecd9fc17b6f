"""The built wheel carries every module and asset of the source tree (an editable install hides a
package missing from ``pyproject.toml``; a user's ``pip install aura-stream`` would not)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_every_module_and_asset(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    # a copy of the sources, so no build/ folder left by an earlier build can supply a missing package
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("aura_stream", "cli"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("aura_stream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "aura_stream").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    expected |= {"aura_stream_cli/" + p.relative_to(ROOT / "cli").as_posix()
                 for p in (ROOT / "cli").rglob("*.py")}
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel: {missing[:10]}"
