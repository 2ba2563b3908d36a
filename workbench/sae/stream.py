"""Activations for training, as a stream of shuffled batches that can be checkpointed and resumed exactly.

A *source* yields *chunks*: for texts, the activations of one batch of texts at the hook point(s) (the
real tokens only, padding dropped) taken with ``model.run_with_cache``; for anything else, the items of an
iterable of ``[n, d]`` tensors or arrays (``(x_in, x_out)`` pairs for a transcoder). The activation store of
``probes`` is one such iterable: ``ActivationStore.batches(layer)`` yields its rows (word vectors, pooled
over each word's tokens).

The stream keeps a buffer of at least ``buffer_size`` rows, shuffles it with its own generator whenever it
refills, and hands out ``batch_size`` rows from the front. Its state (chunks consumed, epoch, buffer,
generator) is small enough to checkpoint, so a resumed run sees the same batches as an uninterrupted one.
When a source ends it starts again (another epoch) if it can: texts always can, an iterable can when
``iter(data)`` gives a fresh iterator each time (a list, a store); a one-shot iterator ends the stream.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

# skip -> the rest of an epoch; each chunk is one [n, d] tensor per hook (input, then a transcoder's output)
Chunks = Callable[[int], Iterator[list[torch.Tensor]]]


def text_chunks(model, texts: Sequence[str], hooks: Sequence[str], text_batch_size: int) -> Chunks:
    """A source of chunks [n_tokens, sum of widths] from running ``model`` over ``texts`` in batches."""
    model.resolve_hook_names(list(hooks))  # a KeyError naming close hook points, before any work

    def chunks(skip: int) -> Iterator[torch.Tensor]:
        for start in range(skip * text_batch_size, len(texts), text_batch_size):
            yield activations_at(model, list(texts[start : start + text_batch_size]), hooks)

    return chunks


def activations_at(model, texts: list[str], hooks: Sequence[str]) -> list[torch.Tensor]:
    """The activations at ``hooks`` of the real (non-padding) tokens of ``texts``: one [n_tokens, d] per hook
    (hook points of shape [batch, pos, d] only)."""
    inputs, _ = model.prepare_inputs(texts)
    mask = inputs["attention_mask"].bool()
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=list(hooks))
    parts = []
    for name in hooks:
        act = cache[name]
        if act.dim() != 3 or act.shape[:2] != mask.shape:
            raise ValueError(
                f"the activation at {name!r} has shape {list(act.shape)}; a dictionary reads [batch, pos, d] "
                f"activations (batch and pos as the tokens, {list(mask.shape)})"
            )
        parts.append(act[mask.to(act.device)].float())
    return parts


def iterable_chunks(data: Iterable[Any]) -> Chunks:
    """A source of chunks from an iterable of tensors/arrays [..., d] or ``(x_in, x_out)`` pairs."""

    def chunks(skip: int) -> Iterator[torch.Tensor]:
        for index, item in enumerate(itertools.islice(data, skip, None), start=skip):
            yield _as_rows(item, index)

    return chunks


def _as_rows(item: Any, index: int) -> list[torch.Tensor]:
    parts = item if isinstance(item, (tuple, list)) else (item,)
    rows = []
    for part in parts:
        tensor = torch.as_tensor(np.asarray(part) if not isinstance(part, torch.Tensor) else part)
        if tensor.dim() < 2 or not tensor.is_floating_point():
            raise ValueError(
                f"item {index} of the activation data has shape {list(tensor.shape)} and dtype "
                f"{tensor.dtype}; "
                f"expected floating-point activations [n, d] (or an (x_in, x_out) pair of them)"
            )
        rows.append(tensor.reshape(-1, tensor.shape[-1]).float())
    if len({r.shape[0] for r in rows}) != 1:
        raise ValueError(
            f"item {index}: x_in and x_out have different numbers of rows {[r.shape[0] for r in rows]}"
        )
    return rows


class ActivationStream:
    """Shuffled batches [batch_size, width] from a source of chunks, with an exact checkpoint state.

    A chunk's tensors (input, and a transcoder's output) are kept side by side in one row; ``widths`` says
    how wide each is.

    Args:
        chunks: ``chunks(skip)`` returns a fresh iterator over the source's chunks (an epoch) after the first
            ``skip`` (which a text source skips without running the model).
        restartable: whether calling ``chunks`` again starts over (False: the stream ends with the source).
        batch_size, buffer_size: rows per batch; rows the buffer is filled to before each shuffle.
        seed: seeds the shuffling generator.
        device: where the buffer lives (the training device).
    """

    def __init__(
        self,
        chunks: Chunks,
        restartable: bool,
        batch_size: int,
        buffer_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        if batch_size < 1 or buffer_size < batch_size:
            raise ValueError(f"need 1 <= batch_size ({batch_size}) <= buffer_size ({buffer_size})")
        self._chunks, self.restartable = chunks, restartable
        self.batch_size, self.buffer_size, self.device = batch_size, buffer_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer: torch.Tensor | None = None
        self.epoch = 0
        self.position = 0  # chunks consumed in this epoch
        self.widths: list[int] | None = None
        self._iterator: Iterator[torch.Tensor] | None = None

    def next_batch(self) -> torch.Tensor:
        """The next batch [batch_size, width]. Raises StopIteration when a one-shot source is used up."""
        if self.buffer is None or len(self.buffer) < self.batch_size:
            self._refill()
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        return batch

    def peek(self) -> torch.Tensor:
        """The rows of the buffer now (filled first if empty): to estimate scales and initialise biases."""
        if self.buffer is None or len(self.buffer) < self.batch_size:
            self._refill()
        return self.buffer

    def _refill(self) -> None:
        parts = [] if self.buffer is None else [self.buffer]
        rows = sum(len(p) for p in parts)
        while rows < self.buffer_size:
            chunk = self._next_chunk()
            if chunk is None:
                if not self.restartable or self.position == 0:  # position 0: a fresh epoch gave nothing
                    break
                self.epoch, self.position, self._iterator = self.epoch + 1, 0, None
                continue
            widths = [part.shape[-1] for part in chunk]
            if self.widths is None:
                self.widths = widths
            elif widths != self.widths:
                raise ValueError(
                    f"chunk {self.position - 1} of epoch {self.epoch} has widths {widths}, "
                    f"the first had {self.widths}"
                )
            parts.append(torch.cat(chunk, dim=-1).to(self.device))
            rows += len(parts[-1])
        if rows < self.batch_size:
            raise StopIteration(
                f"the activation data ran out: {rows} rows left, fewer than batch_size={self.batch_size}"
            )
        buffer = torch.cat(parts)
        order = torch.randperm(len(buffer), generator=self.generator)
        self.buffer = buffer[order.to(buffer.device)]

    def _next_chunk(self) -> list[torch.Tensor] | None:
        if self._iterator is None:
            self._iterator = self._chunks(self.position)  # resuming: skip what this epoch had consumed
        chunk = next(self._iterator, None)
        if chunk is not None:
            self.position += 1
        return chunk

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "buffer": None if self.buffer is None else self.buffer.cpu(),
            "generator": self.generator.get_state(),
            "widths": torch.tensor(self.widths or []),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.buffer = None if state["buffer"] is None else state["buffer"].to(self.device)
        self.generator.set_state(state["generator"])
        self.widths = [int(w) for w in state["widths"]] or None
        self._iterator = None
