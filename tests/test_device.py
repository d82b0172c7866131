"""Device and dtype choice: auto, explicit overrides, and the sentence for a device that is not there."""

from __future__ import annotations

import pytest
import torch

from smoltui.engine.device import resolve_device, resolve_dtype, resolve_placement
from smoltui.engine.errors import UserError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@no_cuda
def test_auto_falls_back_to_cpu_and_fp32():
    placement = resolve_placement("auto", "auto")
    if placement.device == "mps":
        pytest.skip("Apple GPU present")
    assert placement.device == "cpu"
    assert placement.dtype == "fp32"
    assert placement.torch_dtype is torch.float32
    assert placement.torch_device == torch.device("cpu")


@no_cuda
def test_missing_cuda_is_one_clear_sentence():
    with pytest.raises(UserError, match="cuda was asked for but torch sees no GPU"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="cuda was asked for"):
        resolve_device("cuda:1")


def test_explicit_choices_override_auto():
    assert resolve_device("CPU") == "cpu"
    assert resolve_dtype("bf16", "cpu") == "bf16"
    assert resolve_dtype("bfloat16", "cpu") == "bf16"
    assert resolve_dtype("float32", "cpu") == "fp32"
    assert resolve_placement("cpu", "bf16").torch_dtype is torch.bfloat16


@pytest.mark.parametrize("device", ["tpu", "cpu:0", "gpu", ""])
def test_unknown_device_names_the_choices(device):
    with pytest.raises(UserError, match="pass one of auto, cpu, cuda, mps"):
        resolve_device(device)


def test_unknown_dtype_names_the_choices():
    with pytest.raises(UserError, match="pass one of auto, fp32, bf16, fp16"):
        resolve_dtype("int3", "cpu")


@pytest.mark.gpu
def test_auto_on_a_gpu_machine_is_cuda_with_bf16_for_inference():
    placement = resolve_placement("auto", "auto")
    assert placement.device == "cuda"
    assert placement.dtype == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert resolve_device("cuda:0") == "cuda:0"
