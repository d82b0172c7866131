"""What flows through a model on a prompt: the residual stream of every layer, and each MLP's activations.

`capture_stream` runs the model's own forward once with plain forward hooks (no nnsight: the hooks cost less
and need nothing else, see bench/bench_lens.py) and keeps the residual stream (the first block's input, then
every block's output, before the final norm) and, where asked, statistics of the MLPs' hidden activations.
`activation_report` turns that into the numbers the Activations view shows: the hidden-state norm at each layer
and position, the MLP activation statistics, and the model's own output distribution at each position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from smoltui.engine.architecture import model_parts
from smoltui.engine.decode_events import PromptTruncated
from smoltui.engine.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class MlpStats:
    """Statistics of each MLP's hidden activation (the input of its output projection), per layer and position."""

    mean: np.ndarray  # (layers, T) float32
    std: np.ndarray  # (layers, T) float32
    absmax: np.ndarray  # (layers, T) float32: the largest |activation| of the row
    active_fraction: np.ndarray  # (layers, T) float32: the share of units above zero


@dataclass(frozen=True)
class StreamCapture:
    """One forward pass as the hooks saw it (tensors, not yet numbers for a screen)."""

    residual: torch.Tensor  # (layers + 1, T, hidden) in the model's dtype: embeddings, then every block's output
    last_logits: torch.Tensor  # (vocab,) float32: the model's own logits at the last position
    mlp: MlpStats | None  # None unless asked, or where the family's blocks have no MLP module


@dataclass(frozen=True)
class Activations:
    """The Activations view of a prompt. Row 0 of `residual_norm` is the embeddings, row i the output of block
    i - 1 (as in the logit lens)."""

    token_ids: np.ndarray  # (T,) int64
    tokens: tuple[str, ...]  # (T,) each position's token text
    residual_norm: np.ndarray  # (layers + 1, T) float32: L2 norm of the hidden state
    mlp: MlpStats | None  # None where the family's blocks have no MLP module (OPT)
    output_top_ids: np.ndarray  # (T, k) int64: the model's most probable next tokens at each position
    output_top_probs: np.ndarray  # (T, k) float32
    output_entropy: np.ndarray  # (T,) float32, nats
    texts: dict[int, str]  # the text of every token id above
    truncation: PromptTruncated | None = None  # set when the prompt was cut to fit the context


def capture_stream(model: nn.Module, token_ids: Sequence[int], *, mlp: bool = False) -> StreamCapture:
    """Run `model` on `token_ids` once and keep what its layers produced (see the module docstring).

    The caller fits the ids to the context first. Runs under inference mode; every hook is removed before it
    returns, so the decoder's fast step stays available.
    """
    import torch

    parts = model_parts(model)
    layers = len(parts.blocks)
    residual: list[torch.Tensor | None] = [None] * (layers + 1)

    def keep_input(_module, args, kwargs) -> None:
        states = args[0] if args else kwargs["hidden_states"]
        residual[0] = states[0]  # (T, hidden)

    def keep_output(index: int):
        def keep(_module, _args, output) -> None:
            states = output[0] if isinstance(output, tuple) else output
            residual[index] = states[0]  # (T, hidden)

        return keep

    handles = [parts.blocks[0].register_forward_pre_hook(keep_input, with_kwargs=True)]
    handles += [block.register_forward_hook(keep_output(i + 1)) for i, block in enumerate(parts.blocks)]
    recorder = _MlpRecorder(parts.mlps) if mlp and parts.mlps else None
    try:
        if recorder is not None:
            handles += recorder.attach()
        with torch.inference_mode():
            ids = torch.tensor([list(token_ids)], device=parts.embed_tokens.weight.device)  # (1, T)
            output = model(input_ids=ids, logits_to_keep=1)
    finally:
        for handle in handles:
            handle.remove()
    return StreamCapture(
        residual=torch.stack(residual),  # (layers + 1, T, hidden)
        last_logits=output.logits[0, -1].float(),
        mlp=recorder.stats() if recorder is not None else None,
    )


class _MlpRecorder:
    """Keeps the input of the last linear map each MLP calls (its output projection): the hidden activation.

    Found by watching the calls rather than by name, so it works whatever a family calls its projections
    (down_proj, c_proj, dense_4h_to_h, fc2, fc_out...).
    """

    def __init__(self, mlps: list[nn.Module]) -> None:
        self.mlps = mlps
        self.last_input: list[torch.Tensor | None] = [None] * len(mlps)
        self.rows: list[tuple[torch.Tensor, ...]] = []

    def attach(self) -> list:
        handles = []
        for index, mlp in enumerate(self.mlps):
            for module in mlp.modules():
                if _is_linear(module):
                    handles.append(module.register_forward_pre_hook(self._watcher(index)))
            handles.append(mlp.register_forward_hook(self._finisher(index)))
        return handles

    def _watcher(self, index: int):
        def watch(_module, args) -> None:
            self.last_input[index] = args[0]

        return watch

    def _finisher(self, index: int):
        import torch

        def finish(_module, _args, _output) -> None:
            activation = self.last_input[index][0].float()  # (T, intermediate)
            std, mean = torch.std_mean(activation, dim=-1, correction=0)
            absmax = activation.abs().amax(dim=-1)
            active = (activation > 0).float().mean(dim=-1)
            self.rows.append((mean, std, absmax, active))
            self.last_input[index] = None

        return finish

    def stats(self) -> MlpStats:
        import torch

        mean, std, absmax, active = (torch.stack(column).cpu().numpy() for column in zip(*self.rows, strict=True))
        return MlpStats(mean=mean, std=std, absmax=absmax, active_fraction=active)


def _is_linear(module: nn.Module) -> bool:
    from torch import nn

    # transformers' Conv1D (GPT-2) is a linear map with its weight transposed.
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def activation_report(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[int],
    *,
    top_k: int = DEFAULT_TOP_K,
) -> Activations:
    """Hidden-state norms, MLP activation statistics and the output distribution of `prompt` (text or ids)."""
    import torch

    from smoltui.engine.inspect_prompt import fit_to_context, prompt_token_ids
    from smoltui.engine.lens import LOGITS_BUDGET
    from smoltui.engine.lens_head import LensHead
    from smoltui.engine.token_text import TokenTexts

    if top_k < 1:
        raise UserError("the number of top tokens must be at least 1; raise --top.", field="top")
    ids, truncation = fit_to_context(model, prompt_token_ids(tokenizer, prompt))
    capture = capture_stream(model, ids, mlp=True)
    head = LensHead(model, "exact")
    head.check_reproduces(capture.residual[-1, -1], capture.last_logits)
    final = capture.residual[-1]  # (T, hidden)
    chunk = max(1, LOGITS_BUDGET // head.vocab)
    with torch.inference_mode():
        residual_norm = torch.linalg.vector_norm(capture.residual.float(), dim=-1)  # (layers + 1, T)
        parts = [_output_distribution(head.logits(final[start : start + chunk]), top_k) for start in
                 range(0, final.shape[0], chunk)]  # fmt: skip
        top_logprobs, top_ids, entropy = (torch.cat(column) for column in zip(*parts, strict=True))
    texts = TokenTexts(tokenizer)
    every_id = {*ids, *top_ids.flatten().tolist()}
    return Activations(
        token_ids=np.asarray(ids, dtype=np.int64),
        tokens=tuple(texts.get(token) for token in ids),
        residual_norm=residual_norm.cpu().numpy(),
        mlp=capture.mlp,
        output_top_ids=top_ids.cpu().numpy(),
        output_top_probs=top_logprobs.exp().cpu().numpy(),
        output_entropy=entropy.cpu().numpy(),
        texts={token: texts.get(token) for token in every_id},
        truncation=truncation,
    )


def _output_distribution(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k log-probabilities and ids (P, k), and the entropy (P,), of logits (P, vocab)."""
    import torch

    logprobs = torch.log_softmax(logits, dim=-1)
    entropy = -(logprobs.exp() * logprobs.clamp_min(torch.finfo(logprobs.dtype).min)).sum(-1)  # (P,)
    top_logprobs, top_ids = torch.topk(logprobs, min(top_k, logprobs.shape[-1]), dim=-1)  # (P, k)
    return top_logprobs, top_ids, entropy
