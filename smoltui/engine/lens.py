"""The logit lens: what every layer of a model would predict if it were the last one, at every position.

The residual stream after each layer goes through the model's own output head (`LensHead`): the final norm,
the LM head and whatever the family does to its logits. A `LensGrid` holds the result: rows are the residual
stream (row 0 the embeddings as the first block sees them, row i the output of block i - 1, the last row the
final block's output, whose distribution is the model's own), columns are positions (the distribution at
position p predicts the token at p + 1). Per cell: the top-k tokens and probabilities, the entropy, the KL
divergence KL(final ‖ layer) to the final layer's distribution, the probability of the token that came next,
and the rank and probability of a chosen target token.

`logit_lens` computes the grid of a prompt in one forward pass; `lens_while_generating` then grows it by one
column per generated token from the residual stream the decoder captures (`TokenGenerated.hidden`), so a
generation costs one decode step plus the lens of one position per token.

The head (lens_head.py) reproduces each family's output, so the last row equals softmax(logits); the other
rows may carry bf16 rounding on a CPU where that makes the lens 4x cheaper (`precision`, see there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from smoltui.engine.decode_events import DecodeFinished, PromptTruncated, TokenGenerated
from smoltui.engine.errors import UserError
from smoltui.engine.inspect_prompt import fit_to_context, prompt_token_ids
from smoltui.engine.lens_head import LensHead, Precision
from smoltui.engine.token_text import TokenTexts

if TYPE_CHECKING:
    import threading

    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from smoltui.engine.sampler_settings import SamplerSettings

DEFAULT_TOP_K = 5
# Logits held at once while a grid is computed (rows × vocabulary floats): 64 MB.
LOGITS_BUDGET = 1 << 24


@dataclass(frozen=True)
class LensGrid:
    """The logit lens of a sequence (see the module docstring for rows and columns).

    Arrays are numpy, cheap to slice for a grid or a chart: `top_ids[row, position, 0]` is a cell's top token,
    `grid.text(id)` its text. Unknown values (the token after the last position, before it is generated) are
    -1 in `next_ids` and NaN in `next_prob`.
    """

    token_ids: np.ndarray  # (T,) int64: the input token at each position
    next_ids: np.ndarray  # (T,) int64: the token that came next; -1 where not known yet
    top_ids: np.ndarray  # (layers + 1, T, k) int64, most probable first
    top_probs: np.ndarray  # (layers + 1, T, k) float32
    entropy: np.ndarray  # (layers + 1, T) float32, nats
    kl_to_final: np.ndarray  # (layers + 1, T) float32: KL(final ‖ row) in nats, 0 on the last row
    next_prob: np.ndarray  # (layers + 1, T) float32: probability of the token that came next
    target_id: int | None  # the chosen target token, if any
    target_rank: np.ndarray | None  # (layers + 1, T) int64, None without a target
    target_prob: np.ndarray | None  # (layers + 1, T) float32, None without a target
    texts: dict[int, str]  # the text of every token id in the grid (inputs, next, top-k, target)
    truncation: PromptTruncated | None = None  # set when the prompt was cut to fit the context

    @property
    def rows(self) -> int:
        """layers + 1: the embeddings and every block's output."""
        return self.top_ids.shape[0]

    @property
    def positions(self) -> int:
        return self.token_ids.shape[0]

    @property
    def top_is_next(self) -> np.ndarray:
        """(layers + 1, T) bool: where a cell's top token is the token that actually came next."""
        return self.top_ids[:, :, 0] == self.next_ids[None, :]

    def text(self, token_id: int) -> str:
        return self.texts[int(token_id)]

    @staticmethod
    def row_label(row: int) -> str:
        """ "embeddings" for row 0, else the block whose output the row is ("layer 0" is row 1)."""
        return "embeddings" if row == 0 else f"layer {row - 1}"

    def columns(self, start: int, stop: int | None = None) -> LensGrid:
        """The positions start:stop (a view: nothing is copied)."""
        cut = slice(start, stop)
        return replace(
            self,
            token_ids=self.token_ids[cut],
            next_ids=self.next_ids[cut],
            top_ids=self.top_ids[:, cut],
            top_probs=self.top_probs[:, cut],
            entropy=self.entropy[:, cut],
            kl_to_final=self.kl_to_final[:, cut],
            next_prob=self.next_prob[:, cut],
            target_rank=None if self.target_rank is None else self.target_rank[:, cut],
            target_prob=None if self.target_prob is None else self.target_prob[:, cut],
        )

    def extended(self, right: LensGrid) -> LensGrid:
        """This grid with the positions of `right` after it (same model, target and k)."""
        per_position = ("token_ids", "next_ids")
        per_cell = ("top_ids", "top_probs", "entropy", "kl_to_final", "next_prob")
        joined = {name: np.concatenate([getattr(self, name), getattr(right, name)]) for name in per_position}
        joined |= {name: np.concatenate([getattr(self, name), getattr(right, name)], axis=1) for name in per_cell}
        if self.target_rank is not None and right.target_rank is not None:
            joined["target_rank"] = np.concatenate([self.target_rank, right.target_rank], axis=1)
            joined["target_prob"] = np.concatenate([self.target_prob, right.target_prob], axis=1)
        return replace(self, texts=self.texts | right.texts, **joined)


@dataclass(frozen=True)
class LensGrown:
    """The grid after one more generated token (`token` None: the prompt's grid, before any)."""

    grid: LensGrid
    token: TokenGenerated | None


LensEvent = PromptTruncated | LensGrown | DecodeFinished


@dataclass(frozen=True)
class TargetToken:
    token_id: int
    text: str


def target_token(tokenizer: PreTrainedTokenizerBase, text: str) -> TargetToken:
    """The one token `text` is, or a UserError (field "target") that says how it splits and what to pass."""
    if not text:
        raise UserError(
            "the target token is empty; pass one token, e.g. ' Paris' with its leading space.", field="target"
        )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    texts = TokenTexts(tokenizer)
    if len(ids) == 1:
        return TargetToken(ids[0], texts.get(ids[0]))
    pieces = " + ".join(repr(texts.get(token)) for token in ids)
    spaced = tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    hint = repr(" " + text) + " (with its leading space)" if len(spaced) == 1 else repr(texts.get(ids[0]))
    raise UserError(
        f"the target {text!r} is not one token of this tokenizer but {len(ids)} ({pieces}); pass one token, "
        f"such as {hint}.",
        field="target",
    )


def logit_lens(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[int],
    *,
    target: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    new_tokens: int = 0,
    precision: Precision = "auto",
) -> LensGrid:
    """The lens grid of `prompt` (text or ids), in one forward pass of the model.

    `target` is a token id (see `target_token`). A prompt longer than the context keeps its most recent tokens
    (leaving room for `new_tokens` to come) and says so in `grid.truncation`.
    """
    head = LensHead(model, precision)
    _check_options(head, target, top_k)
    return _prompt_grid(model, head, TokenTexts(tokenizer), tokenizer, prompt, target, top_k, new_tokens)


def _prompt_grid(model, head, texts, tokenizer, prompt, target, top_k, new_tokens) -> LensGrid:
    from smoltui.engine.activations import capture_stream

    ids, truncation = fit_to_context(model, prompt_token_ids(tokenizer, prompt), new_tokens)
    capture = capture_stream(model, ids)
    head.check_reproduces(capture.residual[-1, -1], capture.last_logits)
    grid = lens_of_stream(head, capture.residual, ids, [*ids[1:], -1], texts, target=target, top_k=top_k)
    return replace(grid, truncation=truncation)


def _check_options(head: LensHead, target: int | None, top_k: int) -> None:
    if top_k < 1:
        raise UserError("the number of top tokens must be at least 1; raise --top.", field="top")
    if target is not None and not 0 <= target < head.vocab:
        raise UserError(
            f"the target token id {target} is outside the vocabulary (0-{head.vocab - 1}); pass a token's text.",
            field="target",
        )


def lens_of_stream(
    head: LensHead,
    residual: torch.Tensor,
    token_ids: Sequence[int],
    next_ids: Sequence[int],
    texts: TokenTexts,
    *,
    target: int | None,
    top_k: int,
    final_logits: torch.Tensor | None = None,
) -> LensGrid:
    """The grid of a residual stream (layers + 1, T, hidden), in chunks of positions that bound the memory.

    `next_ids` holds the token after each position, -1 where it is not known yet; `final_logits` (T, vocab), the
    model's own output where the caller has it (the decoder does), spares computing the final row again.
    """
    import torch

    rows, positions = residual.shape[:2]
    chunk = max(1, LOGITS_BUDGET // (head.vocab * rows))
    next_tensor = torch.tensor(list(next_ids), dtype=torch.int64, device=residual.device)
    with torch.inference_mode():
        parts = [
            _cell_stats(
                head.stream_logits(
                    residual[:, start : start + chunk],
                    None if final_logits is None else final_logits[start : start + chunk],
                ),
                next_tensor[start : start + chunk],
                target,
                top_k,
            )
            for start in range(0, positions, chunk)
        ]
    stats = {name: torch.cat([part[name] for part in parts], dim=1).cpu().numpy() for name in parts[0]}
    every_id = {*token_ids, *next_ids, *np.unique(stats["top_ids"]).tolist()} - {-1}
    if target is not None:
        every_id.add(target)
    return LensGrid(
        token_ids=np.asarray(token_ids, dtype=np.int64),
        next_ids=np.asarray(next_ids, dtype=np.int64),
        top_ids=stats["top_ids"],
        top_probs=stats["top_probs"],
        entropy=stats["entropy"],
        kl_to_final=stats["kl_to_final"],
        next_prob=stats["next_prob"],
        target_id=target,
        target_rank=stats.get("target_rank"),
        target_prob=stats.get("target_prob"),
        texts={token: texts.get(token) for token in every_id},
    )


def _cell_stats(
    logits: torch.Tensor, next_ids: torch.Tensor, target: int | None, top_k: int
) -> dict[str, torch.Tensor]:
    """Per-cell statistics of logits (rows, P, vocab) float32, whose last row is the final layer (overwritten).

    Written for one position per generated token, where it runs once a step over (layers + 1) vocabulary rows:
    every pass over the logits counts, so the maximum comes from the top-k search, the probabilities are never
    normalised in place, and only the target token gets a rank (a full comparison pass per row).
    """
    import torch

    rows, positions, vocab = logits.shape
    stats = {}
    chosen_next = logits.gather(-1, next_ids.clamp_min(0).expand(rows, -1)[..., None])[..., 0]  # (rows, P)
    if target is not None:
        chosen_target = logits[..., target].clone()  # (rows, P), kept from the in-place shift below
        stats["target_rank"] = (logits > chosen_target[..., None]).sum(-1)  # tokens scoring strictly higher
    flat = logits.view(rows * positions, vocab)
    top_logits, top_ids = _row_top_k(flat, min(top_k, vocab))  # (rows P, k), largest first
    # Shifted so that each row's largest logit is 0: log Z and the expectations below stay small, and the
    # entropy and KL (differences of them) keep their precision in float32.
    top = top_logits[:, :1]  # (rows P, 1)
    shifted = flat.sub_(top)  # (rows P, vocab), <= 0
    weights = torch.exp(shifted)  # unnormalised probabilities
    total = weights.sum(dim=-1)  # (rows P,)
    log_z = torch.log(total)  # of the shifted logits
    # entropy = log Z - E_p[x]
    expected = torch.linalg.vecdot(weights, shifted) / total  # (rows P,)
    stats["entropy"] = (log_z - expected).clamp_min(0.0).view(rows, positions)
    # KL(final ‖ row) = E_f[x_f - log Z_f] - E_f[x_row - log Z_row]
    final = weights.view(rows, positions, vocab)[-1] / total.view(rows, positions)[-1, :, None]  # (P, vocab)
    shifted = shifted.view(rows, positions, vocab)
    cross = torch.bmm(shifted.transpose(0, 1), final[:, :, None])[..., 0].t() - log_z.view(rows, positions)
    stats["kl_to_final"] = (cross[-1] - cross).clamp_min(0.0)  # (rows, P)
    stats["top_ids"] = top_ids.view(rows, positions, -1)
    stats["top_probs"] = torch.exp(top_logits - top - log_z[:, None]).view(rows, positions, -1)
    shift = (top[:, 0] + log_z).view(rows, positions)  # log-probability = logit - shift
    known = next_ids >= 0  # (P,)
    stats["next_prob"] = torch.exp(chosen_next - shift).where(known, float("nan"))
    if target is not None:
        stats["target_prob"] = torch.exp(chosen_target - shift)
    return stats


def _row_top_k(values: torch.Tensor, k: int, width: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(values, k, dim=-1)` for rows (n, vocab), in two cheap passes (as token_stats.top_k does for
    one row): the k largest entries all lie in the blocks of `width` whose maxima are the k largest."""
    import torch

    n, vocab = values.shape
    blocks = vocab // width
    if blocks <= k:
        return torch.topk(values, k, dim=-1)
    block_max = values[:, : blocks * width].view(n, blocks, width).amax(dim=-1)  # (n, blocks)
    best = torch.topk(block_max, k, dim=-1).indices  # (n, k)
    offsets = torch.arange(width, device=values.device)
    candidates = (best[:, :, None] * width + offsets).view(n, k * width)
    if vocab > blocks * width:
        tail = torch.arange(blocks * width, vocab, device=values.device).expand(n, -1)
        candidates = torch.cat([candidates, tail], dim=1)
    top_values, at = torch.topk(values.gather(1, candidates), k, dim=-1)
    return top_values, candidates.gather(1, at)


def lens_while_generating(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[int],
    *,
    max_new_tokens: int,
    target: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    sampling: SamplerSettings | None = None,
    seed: int | None = None,
    stop_at_eos: bool = True,
    should_stop: Callable[[], bool] | threading.Event | None = None,
    precision: Precision = "auto",
) -> Iterator[LensEvent]:
    """Generate after `prompt` (greedy unless `sampling` says otherwise), growing the lens grid as it goes.

    Yields a PromptTruncated first when the prompt had to be cut, then a LensGrown with the prompt's grid, then
    a LensGrown per generated token, and last the decoder's DecodeFinished. The first token completes the
    prompt's last column (its next token is now known); every later one adds the column of the position that
    chose it. So a grid of P prompt tokens and N new ones ends with P + N - 1 columns, the last generated
    token being the last column's next token. Closing the generator stops the decoder and frees its cache.
    """
    if max_new_tokens < 1:
        raise UserError("the number of tokens to generate must be at least 1; raise it.", field="generate")
    head = LensHead(model, precision)
    _check_options(head, target, top_k)
    return _lens_while_generating(
        model, tokenizer, prompt, head, max_new_tokens=max_new_tokens, target=target, top_k=top_k,
        sampling=sampling, seed=seed, stop_at_eos=stop_at_eos, should_stop=should_stop,
    )  # fmt: skip


def _lens_while_generating(
    model, tokenizer, prompt, head, *, max_new_tokens, target, top_k, sampling, seed, stop_at_eos, should_stop
) -> Iterator[LensEvent]:
    from smoltui.engine.decoder import decode

    texts = TokenTexts(tokenizer)
    grid = _prompt_grid(model, head, texts, tokenizer, prompt, target, top_k, max_new_tokens)
    if grid.truncation is not None:
        yield grid.truncation
    yield LensGrown(grid, None)
    ids = grid.token_ids.tolist()
    events = decode(
        model,
        tokenizer,
        ids,
        max_new_tokens=max_new_tokens,
        sampling=sampling,
        seed=seed,
        stop_at_eos=stop_at_eos,
        top_n=0,  # the lens has its own top tokens
        should_stop=should_stop,
        capture_hidden=True,
    )
    try:
        for event in events:
            if isinstance(event, TokenGenerated):
                previous = ids[-1]
                ids.append(event.token_id)
                residual = event.hidden[:, None]  # (layers + 1, 1, hidden): the position that chose this token
                column = lens_of_stream(
                    head, residual, [previous], [event.token_id], texts, target=target, top_k=top_k,
                    final_logits=event.logits[None],  # the decoder's own logits: the final row costs nothing
                )  # fmt: skip
                kept = grid.columns(0, -1) if event.index == 0 else grid
                grid = kept.extended(column)
                yield LensGrown(grid, event)
            elif isinstance(event, DecodeFinished):
                yield event
    finally:
        events.close()
