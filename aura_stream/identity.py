"""What identifies a model's weights, so that a resumed run can refuse a different checkpoint.

The ``--model`` string alone does not: a directory can be overwritten by another training run,
or a hub id can move to a new revision. The fingerprint hashes the configuration (less the keys
that name a path or a library version) and, per parameter, its name, shape, dtype and a strided
sample of its exact values. Exact values make it independent of the device and of how the work
is split (every shard of an HPC array computes the same string); the sample keeps it cheap for
40B models (a few thousand values per tensor, read where the tensor lives).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

SAMPLES_PER_TENSOR = 4096
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash")


def _config_bytes(model: Any) -> bytes:
    config = model.config.to_dict()
    for key in _VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    return json.dumps(config, sort_keys=True, default=str).encode()


@torch.no_grad()
def _tensor_sample(tensor: torch.Tensor) -> bytes:
    """Up to ``SAMPLES_PER_TENSOR`` evenly spaced values, exactly, as float32/float64 bytes."""
    flat = tensor.detach().reshape(-1)
    n = flat.numel()
    if n > SAMPLES_PER_TENSOR:
        index = torch.div(torch.arange(SAMPLES_PER_TENSOR, device=flat.device) * n, SAMPLES_PER_TENSOR,
                          rounding_mode="floor")
        flat = flat[index]
    wide = torch.float64 if flat.dtype == torch.float64 else torch.float32  # exact for every float dtype
    return bytes(flat.to(wide).cpu().numpy().tobytes()) if flat.is_floating_point() else \
        bytes(flat.cpu().numpy().tobytes())


def weights_fingerprint(model: Any) -> str:
    """sha256 of the model's configuration and a strided sample of every parameter.

    Parameters
    ----------
    model : transformers.PreTrainedModel

    Returns
    -------
    str
        64 hex digits. Equal for the same checkpoint loaded in the same dtype on any device;
        different, in practice, for any other weights (retrained, fine-tuned, folded).
        Tensors offloaded to disk (``meta``) contribute their name and shape only.
    """
    digest = hashlib.sha256(_config_bytes(model))
    for name, tensor in model.named_parameters():  # buffers (e.g. rotary tables) are computed, not loaded
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if tensor.device.type != "meta":
            digest.update(_tensor_sample(tensor))
    return digest.hexdigest()


# --------------------------------------------------------------------------- v2: contiguous runs

RUNS_PER_TENSOR = 16
RUN_LENGTH = 256  # values per run: 16 runs touch ~16 pages of a file, where 4096 strided values touch them all
FINGERPRINT_V2 = "v2:"


def sample_runs(n: int) -> list[tuple[int, int]]:
    """``(start, stop)`` element ranges sampled from a flat tensor of ``n`` values (all of it when small)."""
    if n <= RUNS_PER_TENSOR * RUN_LENGTH:
        return [(0, n)]
    step = (n - RUN_LENGTH) / (RUNS_PER_TENSOR - 1)
    return [(int(k * step), int(k * step) + RUN_LENGTH) for k in range(RUNS_PER_TENSOR)]


def widen(values: torch.Tensor) -> bytes:
    """Exact bytes of sampled values: floats as float32 (float64 stays), integers as they are."""
    if values.is_floating_point():
        wide = torch.float64 if values.dtype == torch.float64 else torch.float32
        values = values.to(wide)
    return bytes(values.cpu().numpy().tobytes())


def config_bytes(model: Any) -> bytes:
    """The configuration as hashed by the fingerprints (paths and library versions left out)."""
    return _config_bytes(model)


@torch.no_grad()
def weights_fingerprint_v2(model: Any) -> str:
    """``v2:`` + sha256 of the configuration and 16 contiguous runs of 256 values of every parameter.

    What ``extract`` records since streamed weights: the same sample is cheap to read from the
    safetensors files (:meth:`aura_stream.backends.streamed.StreamedModel.weights_fingerprint`), so
    in-memory and streamed runs of one checkpoint compute one string and resume each other's stores.
    """
    digest = hashlib.sha256(config_bytes(model))
    for name, tensor in model.named_parameters():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if tensor.device.type != "meta":
            flat = tensor.detach().reshape(-1)
            for start, stop in sample_runs(flat.numel()):
                digest.update(widen(flat[start:stop]))
    return FINGERPRINT_V2 + digest.hexdigest()
