"""What the encoders with absolute positions (BERT, DistilBERT, XLM) share around their own embeddings and
blocks: the checked token embeddings with their position ids, and the loop over the blocks that collects what
Hugging Face returns."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def tokens_and_positions(
    model: nn.Module,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    **embedding_ids: tuple[torch.Tensor | None, nn.Module],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token embeddings [batch, pos, d_model], position ids [batch, pos]), after ``model``'s checks of the
    length and of every id input against its table: ``position_ids`` against ``model.pos_embed``, and
    ``embedding_ids`` (``token_type_ids=(ids, table)``). Position ids not given are 0..pos-1."""
    token_embed = model.token_embeddings(input_ids, inputs_embeds)
    batch, length = token_embed.shape[:2]
    model.check_sequence_length(length)
    model.check_embedding_ids(position_ids=(position_ids, model.pos_embed), **embedding_ids)
    if position_ids is None:
        position_ids = torch.arange(length, device=token_embed.device).expand(batch, length)
    return token_embed, position_ids


def run_encoder_blocks(
    blocks: Iterable[nn.Module],
    resid: torch.Tensor,
    head_masks: Iterable[torch.Tensor | None],
    output_hidden_states: bool,
    output_attentions: bool,
    *block_inputs,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
    """Each block in turn, called ``block(resid, *block_inputs, head_mask, need_pattern=output_attentions)``
    and returning (resid, pattern).

    Args:
        resid: [batch, pos, d_model], the embeddings.
        head_masks: one per block (``HookedTransformer.layer_head_mask``).
        block_inputs: what every block takes after the residual stream (the attention mask; XLM: also the
            padding keep-mask).

    Returns:
        (the last block's output [batch, pos, d_model], hidden_states: the embeddings then every block's
        output, attentions: every block's pattern [batch, head, query_pos, key_pos]); each of the last two
        None unless asked for.
    """
    hidden_states = [resid] if output_hidden_states else None
    attentions = [] if output_attentions else None
    for block, head_mask in zip(blocks, head_masks):
        resid, pattern = block(resid, *block_inputs, head_mask, need_pattern=output_attentions)
        if output_hidden_states:
            hidden_states.append(resid)
        if output_attentions:
            attentions.append(pattern)
    return (
        resid,
        tuple(hidden_states) if output_hidden_states else None,
        tuple(attentions) if output_attentions else None,
    )
