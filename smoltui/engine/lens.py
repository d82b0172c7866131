"""The logit lens: what every layer of a model would predict if it were the last one, at every position.

The residual stream after each layer goes through the model's own output head (`LensHead`): the final norm,
the LM head and whatever the family does to its logits. A `LensGrid` holds the result: rows are the residual
stream (row 0 the embeddings as the first block sees them, row i the output of block i - 1, the last row the
final block's output, whose distribution is the model's own), columns are positions (the distribution at
position p predicts the token at p + 1). Per cell: the top-k tokens and probabilities, the entropy, the KL
divergence KL(final ‖ layer) to the final layer's distribution, and the rank and probability of the token that
came next and of a chosen target token.

`logit_lens` computes the grid of a prompt in one forward pass; `lens_while_generating` then grows it by one
column per generated token from the residual stream the decoder captures (`TokenGenerated.hidden`), so a
generation costs one decode step plus the lens of one position per token.

How the head reproduces each family's output exactly (the last row equals softmax(logits)):
- the final norm: applied to every row; a family without one (OPT built with post-norm blocks, whose block
  outputs are already normed) gets none. OPT's `project_out` (a smaller word-embedding size) follows it.
- Gemma's embedding scale (√hidden) is applied before the first block, so row 0 already carries it.
- the logits: Gemma 2/3 (and any config with `final_logit_softcapping`) are softcapped, tanh(x / c) · c;
  Cohere's are multiplied by `logit_scale`; Granite's divided by `logits_scaling`.
- a guard: on every prompt the last row at the last position is compared with the model's own logits, and a
  model whose output the head does not reproduce is refused with a UserError rather than shown wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from smoltui.engine.architecture import model_parts
from smoltui.engine.decode_events import DecodeFinished, PromptTruncated, TokenGenerated
from smoltui.engine.errors import UserError

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
    -1 in id and rank arrays and NaN in probability arrays.
    """

    token_ids: np.ndarray  # (T,) int64: the input token at each position
    next_ids: np.ndarray  # (T,) int64: the token that came next; -1 where not known yet
    top_ids: np.ndarray  # (layers + 1, T, k) int64, most probable first
    top_probs: np.ndarray  # (layers + 1, T, k) float32
    entropy: np.ndarray  # (layers + 1, T) float32, nats
    kl_to_final: np.ndarray  # (layers + 1, T) float32: KL(final ‖ row) in nats, 0 on the last row
    next_rank: np.ndarray  # (layers + 1, T) int64: rank of the token that came next (0 = top), -1 unknown
    next_prob: np.ndarray  # (layers + 1, T) float32
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
            next_rank=self.next_rank[:, cut],
            next_prob=self.next_prob[:, cut],
            target_rank=None if self.target_rank is None else self.target_rank[:, cut],
            target_prob=None if self.target_prob is None else self.target_prob[:, cut],
        )

    def extended(self, right: LensGrid) -> LensGrid:
        """This grid with the positions of `right` after it (same model, target and k)."""
        per_position = ("token_ids", "next_ids")
        per_cell = ("top_ids", "top_probs", "entropy", "kl_to_final", "next_rank", "next_prob")
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


class LensHead:
    """The model's own way from a residual-stream row to next-token logits (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        parts = model_parts(model)
        config = model.config.get_text_config(decoder=True)
        self.family = parts.family
        self.final_norm = parts.final_norm
        self.project_out = _project_out(model, parts.blocks)
        self.lm_head = parts.lm_head
        self.softcap = _number(config, "final_logit_softcapping")
        self.multiplier = _number(config, "logit_scale")
        self.divisor = _number(config, "logits_scaling")
        self.vocab = parts.lm_head.weight.shape[0]

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """Logits (..., vocab) float32 of residual rows (..., hidden), computed in the model's dtype."""
        import torch

        with torch.inference_mode():
            hidden = rows if self.final_norm is None else self.final_norm(rows)
            if self.project_out is not None:
                hidden = self.project_out(hidden)
            logits = self.lm_head(hidden).float()
            if self.softcap is not None:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            if self.multiplier is not None:
                logits = logits * self.multiplier
            if self.divisor is not None:
                logits = logits / self.divisor
            return logits

    def check_reproduces(self, last_row: torch.Tensor, model_logits: torch.Tensor) -> None:
        """UserError unless the lens of `last_row` (hidden,) gives the model's own `model_logits` (vocab,)."""
        import torch

        mine = self.logits(last_row)
        scale = float(model_logits.abs().max()) + 1.0
        tolerance = 8 * torch.finfo(last_row.dtype).eps * scale
        if float((mine - model_logits).abs().max()) > tolerance:
            raise UserError(
                f"not supported yet: the logit lens of {self.family} does not reproduce the model's own output "
                "(its logits are transformed in a way smoltui does not know); use another model."
            )


def _project_out(model: nn.Module, blocks: nn.Module) -> nn.Module | None:
    """OPT's projection from the hidden size to a smaller word-embedding size, beside its blocks."""
    for module in model.modules():
        if any(child is blocks for child in module.children()):
            return getattr(module, "project_out", None)
    return None


def _number(config, name: str) -> float | None:
    value = getattr(config, name, None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def target_token(tokenizer: PreTrainedTokenizerBase, text: str) -> TargetToken:
    """The one token `text` is, or a UserError (field "target") that says how it splits and what to pass."""
    from smoltui.engine.token_text import TokenTexts

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


def prompt_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: str | Sequence[int]) -> list[int]:
    """The ids of `prompt` (text through the tokenizer, as the Sample screen does, or ids as they are)."""
    ids = list(tokenizer(prompt)["input_ids"]) if isinstance(prompt, str) else [int(token) for token in prompt]
    if ids:
        return ids
    if tokenizer.bos_token_id is not None:
        return [tokenizer.bos_token_id]
    raise UserError("the prompt is empty and this tokenizer has no start token; type a prompt.", field="prompt")


def fit_to_context(model: nn.Module, ids: list[int], new_tokens: int = 0) -> tuple[list[int], PromptTruncated | None]:
    """The prompt's most recent tokens that fit the context, leaving room for `new_tokens` as the decoder does."""
    from smoltui.engine.decoder import _fit_prompt, context_length

    context = context_length(model)
    if new_tokens:
        return _fit_prompt(ids, context, new_tokens)
    if context is None or len(ids) <= context:
        return ids, None
    message = (
        f"The prompt has {len(ids)} tokens but this model reads {context} at most, so only its last {context} "
        "were kept."
    )
    return ids[-context:], PromptTruncated(kept_tokens=context, dropped_tokens=len(ids) - context, message=message)


def logit_lens(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[int],
    *,
    target: int | None = None,
    top_k: int = DEFAULT_TOP_K,
    new_tokens: int = 0,
) -> LensGrid:
    """The lens grid of `prompt` (text or ids), in one forward pass of the model.

    `target` is a token id (see `target_token`). A prompt longer than the context keeps its most recent tokens
    (leaving room for `new_tokens` to come) and says so in `grid.truncation`.
    """
    from smoltui.engine.activations import capture_stream

    head = LensHead(model)
    _check_options(head, target, top_k)
    ids, truncation = fit_to_context(model, prompt_token_ids(tokenizer, prompt), new_tokens)
    capture = capture_stream(model, ids)
    head.check_reproduces(capture.residual[-1, -1], capture.last_logits)
    grid = lens_of_stream(head, capture.residual, ids, [*ids[1:], -1], tokenizer, target=target, top_k=top_k)
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
    tokenizer: PreTrainedTokenizerBase,
    *,
    target: int | None,
    top_k: int,
) -> LensGrid:
    """The grid of a residual stream (layers + 1, T, hidden), in chunks of positions that bound the memory."""
    import torch

    from smoltui.engine.token_text import TokenTexts

    rows, positions = residual.shape[:2]
    chunk = max(1, LOGITS_BUDGET // (head.vocab * rows))
    next_tensor = torch.tensor(list(next_ids), dtype=torch.int64, device=residual.device)
    with torch.inference_mode():
        parts = [
            _cell_stats(
                head.logits(residual[:, start : start + chunk]), next_tensor[start : start + chunk], target, top_k
            )
            for start in range(0, positions, chunk)
        ]
    stats = {name: torch.cat([part[name] for part in parts], dim=1).cpu().numpy() for name in parts[0]}
    texts = TokenTexts(tokenizer)
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
        next_rank=stats["next_rank"],
        next_prob=stats["next_prob"],
        target_id=target,
        target_rank=stats.get("target_rank"),
        target_prob=stats.get("target_prob"),
        texts={token: texts.get(token) for token in every_id},
    )


def _cell_stats(
    logits: torch.Tensor, next_ids: torch.Tensor, target: int | None, top_k: int
) -> dict[str, torch.Tensor]:
    """Per-cell statistics of logits (rows, P, vocab) float32, whose last row is the final layer (overwritten)."""
    import torch

    stats = {}
    stats["next_rank"], chosen_next = _rank_and_logit(logits, next_ids)
    if target is not None:
        stats["target_rank"], chosen_target = _rank_and_logit(logits, torch.full_like(next_ids, target))
    # Shifted so that each row's largest logit is 0: log Z and the expectations below stay small, and the
    # entropy and KL (differences of them) keep their precision in float32.
    top = logits.amax(dim=-1, keepdim=True)  # (rows, P, 1)
    shifted = logits.sub_(top)  # (rows, P, vocab), <= 0
    probs = torch.exp(shifted)
    total = probs.sum(dim=-1)  # (rows, P)
    probs /= total[..., None]
    log_z = torch.log(total)  # (rows, P), of the shifted logits
    # entropy = log Z - E_p[x]; KL(final ‖ row) = E_f[x_f - log Z_f] - E_f[x_row - log Z_row]
    stats["entropy"] = (log_z - torch.linalg.vecdot(probs, shifted)).clamp_min(0.0)
    cross = torch.einsum("rpv,pv->rp", shifted, probs[-1]) - log_z  # (rows, P)
    stats["kl_to_final"] = (cross[-1] - cross).clamp_min(0.0)
    top_shifted, stats["top_ids"] = torch.topk(shifted, min(top_k, shifted.shape[-1]), dim=-1)  # (rows, P, k)
    stats["top_probs"] = torch.exp(top_shifted - log_z[..., None])
    known = next_ids >= 0  # (P,)
    stats["next_prob"] = torch.exp(chosen_next - top[..., 0] - log_z).where(known, float("nan"))
    if target is not None:
        stats["target_prob"] = torch.exp(chosen_target - top[..., 0] - log_z)
    return stats


def _rank_and_logit(logits: torch.Tensor, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank (how many tokens score strictly higher; -1 where the id is -1, not known yet) and logit of
    token_ids (P,) in every row of logits (rows, P, vocab)."""
    index = token_ids.clamp_min(0).expand(logits.shape[0], -1)[..., None]  # (rows, P, 1)
    chosen = logits.gather(-1, index)  # (rows, P, 1)
    rank = (logits > chosen).sum(-1)  # (rows, P)
    return rank.where(token_ids >= 0, -1), chosen[..., 0]


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
    head = LensHead(model)
    _check_options(head, target, top_k)
    return _lens_while_generating(
        model, tokenizer, prompt, head, max_new_tokens=max_new_tokens, target=target, top_k=top_k,
        sampling=sampling, seed=seed, stop_at_eos=stop_at_eos, should_stop=should_stop,
    )  # fmt: skip


def _lens_while_generating(
    model, tokenizer, prompt, head, *, max_new_tokens, target, top_k, sampling, seed, stop_at_eos, should_stop
) -> Iterator[LensEvent]:
    from smoltui.engine.decoder import decode

    grid = logit_lens(model, tokenizer, prompt, target=target, top_k=top_k, new_tokens=max_new_tokens)
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
                    head, residual, [previous], [event.token_id], tokenizer, target=target, top_k=top_k
                )
                kept = grid.columns(0, -1) if event.index == 0 else grid
                grid = kept.extended(column)
                yield LensGrown(grid, event)
            elif isinstance(event, DecodeFinished):
                yield event
    finally:
        events.close()
