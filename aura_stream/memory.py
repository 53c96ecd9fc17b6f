"""Memory budgets: sizes like ``8GiB``, the memory this process may really use, and what it used.

The memory a process may use is the smaller of what the machine has free and what its cgroup
allows (a SLURM job or a container caps it there, not in ``/proc/meminfo``).  Peak memory and
bytes read are measured from the kernel's own counters, never assumed.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

from aura_stream.errors import InputError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*$", re.IGNORECASE)


def parse_size(text: str, *, option: str = "--max-memory") -> int:
    """``"8GiB"`` -> 8589934592; ``"700MB"`` -> 700000000; a bare number is bytes.

    Raises
    ------
    InputError
        Anything else, with an example.
    """
    m = _SIZE.match(text)
    if m is None:
        raise InputError(f"`{option}` must be a size such as 8GiB or 700MB; got {text!r}.")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
    if value < 1:
        raise InputError(f"`{option}` must be positive; got {text!r}.")
    return int(value)


def fmt_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def _cgroup_limit() -> int | None:
    """Bytes this process's cgroup may use beyond what it uses now (v1 or v2), or None for no limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit_file, usage_file = base / "memory.limit_in_bytes", base / "memory.usage_in_bytes"
        elif controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit_file, usage_file = base / "memory.max", base / "memory.current"
        else:
            continue
        try:
            limit_text = limit_file.read_text().strip()
            if limit_text == "max" or int(limit_text) >= 1 << 60:
                return None
            return max(0, int(limit_text) - int(usage_file.read_text().strip()))
        except (OSError, ValueError):
            return None
    return None


def available_memory() -> int:
    """Bytes this process can still allocate: free memory, capped by its cgroup."""
    import psutil

    free = int(psutil.virtual_memory().available)
    capped = _cgroup_limit()
    return free if capped is None else min(free, capped)


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def bytes_read() -> int | None:
    """Bytes this process made the kernel read from storage (``/proc/self/io``), where known."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
