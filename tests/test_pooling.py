"""pooling: known answers for max, mean and last with left and right padding."""

from __future__ import annotations

import pytest
import torch

from aura_stream.errors import InputError
from aura_stream.pooling import parse_pooling, pool


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_right_and_left_padding(dtype: torch.dtype) -> None:
    tokens = torch.tensor([[1.0, -4.0], [3.0, 2.0], [-2.0, 8.0]])  # one sentence, 3 tokens, d = 2
    pad = torch.full((2, 2), 100.0)  # padding values that must never leak into the result
    right = torch.cat([tokens, pad])[None].to(dtype)
    left = torch.cat([pad, tokens])[None].to(dtype)
    mask_r = torch.tensor([[True, True, True, False, False]])
    mask_l = torch.tensor([[False, False, True, True, True]])
    for act, mask in ((right, mask_r), (left, mask_l)):
        assert pool(act, mask, "max").tolist() == [[3.0, 8.0]]
        assert pool(act, mask, "mean")[0].tolist() == pytest.approx([2 / 3, 2.0], rel=1e-2)
        assert pool(act, mask, "last").tolist() == [[-2.0, 8.0]]
        assert pool(act, mask, "max").dtype == torch.float32


def test_all_negative_max_ignores_padding() -> None:
    act = torch.tensor([[[-5.0], [-3.0], [0.0]]])
    assert pool(act, torch.tensor([[True, True, False]]), "max").item() == -3.0


def test_parse_pooling() -> None:
    assert parse_pooling(["max,mean", "max"]) == ["max", "mean"]
    with pytest.raises(InputError, match="must be one of max, mean, last; got median"):
        parse_pooling("median")
