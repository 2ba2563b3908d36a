"""Hugging Face's sequence summary: one vector per sequence for the classification and multiple-choice heads
of XLM and XLNet."""

from __future__ import annotations

import torch
from torch import nn

from .activations import activation

SUMMARY_TYPES = ("first", "last", "mean", "cls_index")


class SequenceSummary:
    """A mixin for task heads: one state per sequence -> dropout (``first_dropout``) -> a linear projection
    (``use_proj``; to ``num_labels`` with ``proj_to_labels``, else to d_model) -> activation -> dropout
    (``last_dropout``), as Hugging Face's ``SequenceSummary``.

    The projection is stored under the attribute ``summary_projection`` names (XLNet: ``summary``, XLM:
    ``classifier``), so that parameter names, and the key maps built on them, stay each architecture's.
    """

    summary_projection = "summary"

    def init_summary(self, config) -> None:
        """Build the summary's layers from Hugging Face's ``summary_*`` config fields: ``summary_type``,
        ``summary_use_proj``, ``summary_proj_to_labels``, ``summary_activation``, ``summary_first_dropout``,
        ``summary_last_dropout`` (and ``d_model``, ``num_labels``)."""
        if config.summary_type not in SUMMARY_TYPES:
            raise ValueError(
                f"summary_type {config.summary_type!r} is not supported; supported: {SUMMARY_TYPES}"
            )
        self.summary_type = config.summary_type
        self.summary_first_dropout = nn.Dropout(config.summary_first_dropout)
        projection = None
        if config.summary_use_proj:
            projection = nn.Linear(
                config.d_model, config.num_labels if config.summary_proj_to_labels else config.d_model
            )
        setattr(self, self.summary_projection, projection)
        name = config.summary_activation
        self.summary_act = activation(name) if name and name != "linear" else None
        self.summary_last_dropout = nn.Dropout(config.summary_last_dropout)

    def summarize(self, resid: torch.Tensor) -> torch.Tensor:
        """[batch, pos, d_model] -> [batch, d_model]: the state the head reads. "mean" includes padding, and
        "last" and "cls_index" (Hugging Face's heads pass no cls_index) read the last position, padded or
        not, as Hugging Face does."""
        if self.summary_type == "first":
            return resid[:, 0]
        if self.summary_type == "mean":
            return resid.mean(dim=1)
        return resid[:, -1]

    def sequence_summary(self, resid: torch.Tensor) -> torch.Tensor:
        """[batch, pos, d_model] -> [batch, d_model or num_labels]."""
        summary = self.summary_first_dropout(self.summarize(resid))
        projection = getattr(self, self.summary_projection)
        if projection is not None:
            summary = projection(summary)
        if self.summary_act is not None:
            summary = self.summary_act(summary)
        return self.summary_last_dropout(summary)
