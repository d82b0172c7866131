"""The weights viewer's numbers and drawings: every tensor's statistics equal numpy's (also for a tensor read in
many chunks, and for norm-like weights near 1 whose std is small), tied tensors come once with their other name,
block means of a known matrix, the top singular values equal a full SVD's, the histogram counts every value, and
the drawings keep what they are given (counts, zero in the middle of the signed scale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_lms import tiny_lm
from torch import nn

from smoltui.engine.errors import UserError
from smoltui.engine.weights import (
    CHUNK,
    downsample,
    find_tensor,
    histogram,
    tensor_stats,
    tensor_table,
    top_singular_values,
)
from smoltui.weight_look import (
    SIGNED_LEVELS,
    fit_bins,
    heat_legend,
    heat_rows,
    histogram_text,
    short_number,
    signed_levels,
    singular_values_text,
)


def numpy_stats(values: np.ndarray) -> dict[str, float]:
    flat = values.astype(np.float64).reshape(-1)
    return {
        "mean": flat.mean(),
        "std": flat.std(),
        "min": flat.min(),
        "max": flat.max(),
        "sparsity": float(np.mean(flat == 0)),
        "norm": float(np.linalg.norm(flat)),
    }


@pytest.mark.parametrize(
    ("shape", "centre", "spread", "zero_every"),
    [
        ((7,), 0.0, 1.0, 3),
        ((48, 33), 0.0, 0.02, 11),
        ((3, CHUNK + 1234), 0.0, 1.0, 11),
        ((CHUNK * 2 + 5,), 1.0, 0.01, 0),
    ],
    ids=["vector", "matrix", "chunks", "norm-like"],
)
def test_stats_equal_numpys(shape, centre, spread, zero_every):
    generator = torch.Generator().manual_seed(0)
    tensor = torch.randn(shape, generator=generator) * spread + centre
    if zero_every:
        tensor.view(-1)[::zero_every] = 0.0  # exact zeros, a known share
    stats = tensor_stats("w", tensor)
    expected = numpy_stats(tensor.numpy())
    assert stats.shape == shape and stats.numel == tensor.numel() and stats.dtype == "float32"
    for name, value in expected.items():
        assert getattr(stats, name) == pytest.approx(value, rel=1e-5, abs=1e-7), name
    zeros = len(range(0, tensor.numel(), zero_every)) if zero_every else 0
    assert stats.sparsity == pytest.approx(zeros / tensor.numel())


def test_stats_of_bfloat16_are_those_of_its_values():
    tensor = torch.randn(40, 24, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    stats = tensor_stats("w", tensor)
    expected = numpy_stats(tensor.float().numpy())
    assert stats.dtype == "bfloat16"
    for name, value in expected.items():
        assert getattr(stats, name) == pytest.approx(value, rel=1e-5, abs=1e-7), name


class WithBuffers(nn.Module):
    """Two linears sharing one weight, a persistent float buffer, a non-persistent one and an integer one."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 6)
        self.second = nn.Linear(6, 6, bias=False)
        self.second.weight = self.first.weight
        self.register_buffer("running_scale", torch.full((6,), 2.0))
        self.register_buffer("inv_freq", torch.ones(3), persistent=False)
        self.register_buffer("position_ids", torch.arange(6))


def test_the_table_lists_each_tensor_once_with_its_other_names_and_persistent_float_buffers():
    table = tensor_table(WithBuffers())
    assert [(row.name, row.kind, row.also) for row in table] == [  # state_dict's order: a module's own first
        ("running_scale", "buffer", ()),
        ("first.weight", "parameter", ("second.weight",)),
        ("first.bias", "parameter", ()),
    ]
    scale = table[0]
    assert scale.mean == 2.0 and scale.std == pytest.approx(0.0, abs=1e-12) and scale.norm == pytest.approx(2 * 6**0.5)


def test_a_tied_transformers_model_lists_its_embedding_once(tmp_path):
    model = tiny_lm("gpt2", tmp_path)
    assert model.lm_head.weight is model.transformer.wte.weight
    table = tensor_table(model)
    names = [row.name for row in table]
    assert names == [name for name, _ in model.named_parameters()]  # the parameters, each once, in model order
    embedding = table[names.index("transformer.wte.weight")]
    assert embedding.also == ("lm_head.weight",)
    assert "lm_head.weight" not in names
    assert find_tensor(model, "lm_head.weight") is not None  # its other name still finds it


def test_the_table_stops_when_asked():
    import threading

    stop = threading.Event()
    stop.set()
    assert tensor_table(WithBuffers(), should_stop=stop) == []


def test_downsample_gives_the_block_means_of_a_known_matrix():
    matrix = torch.tensor([[1.0, -1.0, 2.0, 2.0], [3.0, -3.0, 4.0, 0.0], [-5.0, 5.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(downsample(matrix, 2, 2, mode="signed"), [[0.0, 2.0], [0.5, 0.5]])
    np.testing.assert_allclose(downsample(matrix, 2, 2, mode="abs"), [[2.0, 2.0], [3.0, 0.5]])
    np.testing.assert_allclose(downsample(matrix, 1, 4, mode="signed"), [[0.0, 0.5, 1.75, 0.75]])
    assert downsample(matrix, 10, 10).shape == (4, 4)  # nothing is stretched
    assert downsample(torch.arange(6.0), 4, 3, mode="signed").tolist() == [[0.5, 2.5, 4.5]]  # a vector is one row


def test_downsample_of_a_large_matrix_keeps_its_mean():
    matrix = torch.randn(576, 1536, generator=torch.Generator().manual_seed(2))
    cells = downsample(matrix, 40, 96, mode="signed")
    assert cells.shape == (40, 96)
    assert cells.mean() == pytest.approx(float(matrix.mean()), abs=1e-3)  # 96 divides 1536: equal blocks across


@pytest.mark.parametrize("shape", [(64, 200), (300, 40), (33, 33)])
def test_top_singular_values_equal_a_full_svd(shape):
    matrix = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    matrix[:, 0] *= 10  # one direction stands out, as in trained weights
    full = np.linalg.svd(matrix.numpy().astype(np.float64), compute_uv=False)
    for method in ("gram", "full"):
        np.testing.assert_allclose(top_singular_values(matrix, 8, method=method), full[:8], rtol=1e-4)
    assert len(top_singular_values(matrix, 1000)) == min(shape)


def test_histogram_counts_every_value_between_min_and_max():
    tensor = torch.randn(5000, generator=torch.Generator().manual_seed(4))
    edges, counts = histogram(tensor, 32)
    assert len(edges) == 33 and len(counts) == 32
    assert edges[0] == pytest.approx(float(tensor.min())) and edges[-1] == pytest.approx(float(tensor.max()))
    assert counts.sum() == 5000
    numpy_counts, _ = np.histogram(tensor.numpy(), bins=edges)
    assert np.abs(counts - numpy_counts).sum() <= 4  # a value on an edge may fall either side in float32
    edges, counts = histogram(torch.full((10,), 3.0), 4)
    assert counts.sum() == 10 and edges[0] < 3.0 < edges[-1]
    edges, counts = histogram(tensor, 10, low=-1.0, high=1.0)  # values beyond the range are left out
    assert edges[0] == -1.0 and edges[-1] == 1.0
    assert counts.sum() == int(((tensor >= -1.0) & (tensor <= 1.0)).sum())


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: downsample(torch.ones(2, 2), 2, 2, mode="log"), "mode"),
        (lambda: downsample(torch.ones(2, 2), 0, 2), "rows"),
        (lambda: histogram(torch.ones(3), 0), "bins"),
        (lambda: top_singular_values(torch.ones(3, 3), 0), "k"),
        (lambda: top_singular_values(torch.ones(3, 3), 2, method="magic"), "method"),
        (lambda: find_tensor(WithBuffers(), "nothing.weight"), "name"),
    ],
)
def test_bad_input_is_one_sentence_naming_the_field(call, field):
    with pytest.raises(UserError) as raised:
        call()
    assert raised.value.field == field
    assert str(raised.value).count(". ") == 0  # one sentence


def test_an_unknown_tensor_name_lists_a_few_real_ones():
    with pytest.raises(UserError, match="first.weight"):
        find_tensor(WithBuffers(), "nothing.weight")


# -- the drawings ----------------------------------------------------------------------------------------------


def test_fit_bins_keeps_the_shape_when_bins_are_merged_and_stretches_otherwise():
    flat = fit_bins(np.full(128, 5), 44)  # 2 or 3 bins a column: a flat histogram stays flat, no sawtooth
    assert len(flat) == 44 and flat.tolist() == [5.0] * 44
    assert fit_bins(np.array([1, 3, 5, 7]), 2).tolist() == [2.0, 6.0]
    assert fit_bins(np.array([1, 5]), 4).tolist() == [1, 1, 5, 5]


def test_the_legend_fits_its_width():
    assert heat_legend("abs", 0.04433).plain == "mean |w| per cell: 0 " + " " * 16 + " 0.04433 (√ scale)"
    for width in (30, 40, 50):
        for mode in ("abs", "signed"):
            assert len(heat_legend(mode, 0.04433, width).plain) <= width


def test_histogram_text_draws_the_tallest_bin_full_and_the_range_under_it():
    edges = np.linspace(-2.0, 2.0, 5)
    text = histogram_text(edges, np.array([0, 8, 4, 2]), width=8, height=2).plain.split("\n")
    assert text[0] == "  ██    "  # bin 2 (8 values) fills both lines; bin 3 (4) only the lower
    assert text[1] == "  ████▄▄"
    assert text[2] == "-2  0  2"  # the range, and zero under its column


def test_the_signed_scale_puts_zero_in_the_middle_and_keeps_the_sign():
    levels = signed_levels(np.array([[-2.0, 0.0, 2.0, 0.5]]), high=2.0)
    middle = (SIGNED_LEVELS - 1) // 2
    assert levels.tolist() == [[0, middle, SIGNED_LEVELS - 1, middle + round(0.5 * middle)]]  # √(0.5/2) = 0.5
    lines, high = heat_rows(np.array([[-2.0, 0.0], [1.0, 2.0], [0.0, 0.0]]), "signed")
    assert high == 2.0 and len(lines) == 2 and all(len(line) == 2 for line in lines)  # 3 rows: 2 lines
    assert lines[1][0].text == "▀" and lines[1][0].style.bgcolor is None  # the odd last row has nothing below


def test_singular_values_text_has_a_line_per_value_with_bars_relative_to_the_largest():
    lines = singular_values_text(np.array([10.0, 5.0, 0.0]), width=20).plain.split("\n")
    assert [line.split()[0] for line in lines] == ["σ1", "σ2", "σ3"]
    assert lines[0].count("█") == 2 * lines[1].count("█")
    assert short_number(-0.000123) == "-1.23e-04" and short_number(0.01234) == "0.01234"
