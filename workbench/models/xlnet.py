"""XLNet (Yang et al. 2019, "XLNet: Generalized Autoregressive Pretraining for Language Understanding").

What is distinctive about it:
- **two-stream self-attention**: the *content stream* ``h`` (one state per token, which sees its own token)
  and, when ``target_mapping`` selects tokens to predict, the *query stream* ``g`` (one state per prediction,
  starting from the learned ``mask_embed``, which knows *where* it predicts but not *what* is there). Both
  streams share every weight; the query stream's queries attend to the content stream's keys and values;
- **relative positions** (Transformer-XL, Dai et al. 2019): no position embedding is added to the tokens.
  Attention scores are ``(q + r_w_bias).k`` (content) + ``(q + r_r_bias).W_R r_{i-j}`` (position, with
  sinusoids ``r`` of the distance i - j) + ``(q + r_s_bias).s_ij`` (segment: one learned vector for "same
  segment", one for "different segment", from ``token_type_ids``), times 1/sqrt(d_head);
- **segment recurrence**: ``mems`` (the inputs of every layer on an earlier segment, ``mem_len`` positions)
  are prepended to the keys and values; with ``use_mems`` a forward returns the memory for the next segment;
- **permutation language modelling**: ``perm_mask`` [batch, pos, pos] says which token may not see which
  (a factorization order), ``target_mapping`` [batch, num_predict, pos] which tokens the query stream
  predicts; ``attn_type="uni"`` adds a causal mask (Transformer-XL style), ``"bi"`` (XLNet's) does not;
- post-norm blocks: attention -> dropout -> residual add -> ``ln1``; FFN (d_inner, dropout after the
  activation) -> residual add -> ``ln2``; no bias on the attention projections;
- heads read the content stream, or the query stream when there is one: the LM head (tied to the token
  embedding, with a bias), the sequence summary (the *last* token, a projection, tanh), token
  classification, span QA and multiple choice.

Shapes: everything the hooks see is batch-first, as in every workbench model. Hugging Face's XLNet works
time-first internally; its ``mems`` input and output ([mem_pos, batch, d_model] per layer) keep that layout
here too, so memories pass between the two libraries unchanged; ``blocks.{i}.hook_mems`` sees the same
memory batch-first, [batch, mem_pos, d_model].

Quirks kept for parity with Hugging Face:
- a position of the content stream always attends to itself, even when padding or ``perm_mask`` blocks it;
- masked scores get -1e30 added (not -inf), so a row with every key blocked attends uniformly;
- the relative shift is Transformer-XL's reshape trick: it reads the right distance for every key that
  is not masked (for ``attn_type="uni"`` the blocked future positions hold other distances' scores, as in
  Hugging Face);
- positions in memory have segment id 0 for the segment encodings;
- ``bi_data`` uses forward distances for the first half of the batch and backward ones for the second.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..architecture import Architecture
from ..components import MLP, LayerNorm, activation, heads
from ..components.attention import RelativeAttentionCore
from ..components.fused import FusedWeights, HeadShapedProjections
from ..components.positions import distance_sinusoids, inverse_frequencies, rel_shift
from ..components.summary import SUMMARY_TYPES, SequenceSummary
from ..config import ModelConfig
from ..hook_points import HookPoint
from ..loading import KeyMap
from ..model import GenerationMixin, HookedTransformer
from ..outputs import ModelOutput

# Configuration ---------------------------------------------------------------------------------------

ATTN_TYPES = ("bi", "uni")
# Scores of blocked keys get this subtracted (Hugging Face's value; 65500 in float16).
MASK_VALUE = 1e30
# XLNet has no position limit (relative positions): the value ``max_position_embeddings`` reports.
NO_POSITION_LIMIT = int(1e30)


@dataclass
class XLNetConfig(ModelConfig):
    """XLNet's hyper-parameters, with Hugging Face's names (``configuration_xlnet.py``).

    Canonical names: ``n_layers`` is ``n_layer``, ``n_heads`` is ``n_head``, ``d_mlp`` is ``d_inner``;
    ``d_model`` and ``d_head`` are fields.
    """

    model_type = "xlnet"

    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = ("vocab_size", "d_model", "n_layer", "n_head", "d_inner", "d_head", "start_n_top", "end_n_top")
    NON_NEGATIVE_FIELDS = ("mem_len", "reuse_len", "initializer_range", "layer_norm_eps", "pad_token_id",
                           "bos_token_id", "eos_token_id")
    PROBABILITY_FIELDS = ("dropout", "summary_last_dropout")

    # Canonical names (readable and writable; see workbench.config); d_model and d_head are fields, and
    # max_positions (no limit) is derived.
    ATTRIBUTE_MAP = {"n_layers": "n_layer", "n_heads": "n_head", "d_mlp": "d_inner"}
    # Hugging Face's other names (its attribute_map) and that of older config.json files.
    HF_ALIASES = {
        "hidden_size": "d_model", "num_attention_heads": "n_head", "num_hidden_layers": "n_layer",
        "n_token": "vocab_size",
    }

    vocab_size: int = 32000  #: tokens in the vocabulary (older files: ``n_token``).
    d_model: int = 1024  #: width of the residual stream.
    n_layer: int = 24  #: blocks.
    n_head: int = 16  #: heads per block.
    d_inner: int = 4096  #: width of the feed-forward layer (d_mlp).
    d_head: int | None = None  #: width of a head; must be ``d_model // n_head`` (None: that value).
    ff_activation: str = "gelu"  #: the feed-forward activation (``gelu``, ``relu``, ``gelu_new``, ...).
    attn_type: str = "bi"  #: ``"bi"`` (XLNet: no causal mask) or ``"uni"`` (causal, Transformer-XL style).
    initializer_range: float = 0.02  #: std of the normal initialization.
    layer_norm_eps: float = 1e-12  #: LayerNorm epsilon.
    #: dropout on embeddings, relative positions, attention patterns and sublayer outputs.
    dropout: float = 0.1
    mem_len: int | None = 512  #: positions kept in the memory a forward returns (None or 0: all of them).
    #: only the first ``reuse_len`` positions of a segment go into the memory (None: all).
    reuse_len: int | None = None
    use_mems_eval: bool = True  #: whether a forward returns ``mems`` by default in eval mode.
    use_mems_train: bool = False  #: whether a forward returns ``mems`` by default in train mode.
    #: forward relative distances for the first half of the batch, backward for the second (pretraining's
    #: bidirectional data pipeline); needs an even batch.
    bi_data: bool = False
    clamp_len: int = -1  #: relative distances beyond this are clamped (-1 or 0: no clamping).
    same_length: bool = False  #: with ``attn_type="uni"``, every position attends to the same number of keys.
    #: The sequence summary of the classification and multiple-choice heads. The state it takes: ``last``,
    #: ``first``, ``mean`` or ``cls_index`` (= last); ``extra["summary_first_dropout"]``: dropout before
    #: the projection.
    summary_type: str = "last"
    #: whether a linear projection follows the summary (to d_model, or to ``num_labels`` when
    #: ``extra["summary_proj_to_labels"]``).
    summary_use_proj: bool = True
    summary_activation: str | None = "tanh"  #: the activation after the projection (None: none).
    summary_last_dropout: float = 0.1  #: dropout on the head's summary, after the activation.
    start_n_top: int = 5  #: SQuAD beam setting, kept for round trips.
    end_n_top: int = 5  #: SQuAD beam setting, kept for round trips.
    pad_token_id: int | None = 5  #: padding token id.
    bos_token_id: int | None = 1  #: beginning-of-sequence token id.
    eos_token_id: int | list[int] | None = 2  #: end-of-sequence token id.

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_head is None:
            self.d_head = self.d_model // self.n_head


    @property
    def max_position_embeddings(self) -> int:
        """XLNet has no limit on the sequence length (relative positions): a very large number."""
        return NO_POSITION_LIMIT

    @property
    def summary_proj_to_labels(self) -> bool:
        return bool(self.extra.get("summary_proj_to_labels", False))

    @property
    def summary_first_dropout(self) -> float:
        return float(self.extra.get("summary_first_dropout") or 0.0)

    def validate(self) -> None:
        super().validate()
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_head={self.n_head}")
        if self.d_head != self.d_model // self.n_head:
            raise ValueError(
                f"d_head={self.d_head} must be d_model // n_head = {self.d_model // self.n_head}"
            )
        if self.attn_type not in ATTN_TYPES:
            raise ValueError(f"attn_type {self.attn_type!r} is not supported; supported: {ATTN_TYPES}")
        if self.summary_type not in SUMMARY_TYPES:
            raise ValueError(
                f"summary_type {self.summary_type!r} is not supported; supported: {SUMMARY_TYPES}"
            )
        activation(self.ff_activation)  # fails early, naming the activation
        if self.summary_activation and self.summary_activation != "linear":
            activation(self.summary_activation)


# Hugging Face parameter names <-> ours. Hugging Face stores each attention projection as one
# [d_model, head, d_head] tensor (``rel_attn.q``); the ``HEAD_PROJECTIONS`` rule turns them into nn.Linear
# weights named ``rel_attn.q.weight`` before this map applies (and back when saving).
XLNET_KEY_MAP = KeyMap(
    [
        ("word_embedding.weight", "embed.weight"),
        ("mask_emb", "mask_embed"),
        ("layer.{i}.rel_attn.q.weight", "blocks.{i}.attn.q.weight"),
        ("layer.{i}.rel_attn.k.weight", "blocks.{i}.attn.k.weight"),
        ("layer.{i}.rel_attn.v.weight", "blocks.{i}.attn.v.weight"),
        ("layer.{i}.rel_attn.r.weight", "blocks.{i}.attn.r.weight"),
        ("layer.{i}.rel_attn.o.weight", "blocks.{i}.attn.o.weight"),
        ("layer.{i}.rel_attn.r_w_bias", "blocks.{i}.attn.r_w_bias"),
        ("layer.{i}.rel_attn.r_r_bias", "blocks.{i}.attn.r_r_bias"),
        ("layer.{i}.rel_attn.r_s_bias", "blocks.{i}.attn.r_s_bias"),
        ("layer.{i}.rel_attn.seg_embed", "blocks.{i}.attn.seg_embed"),
        ("layer.{i}.rel_attn.layer_norm.{p}", "blocks.{i}.ln1.{p}"),
        ("layer.{i}.ff.layer_1.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("layer.{i}.ff.layer_2.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("layer.{i}.ff.layer_norm.{p}", "blocks.{i}.ln2.{p}"),
    ]
)
LM_KEY_MAP = KeyMap([("lm_loss.{p}", "unembed.{p}")])
SUMMARY_KEY_MAP = KeyMap(
    [("sequence_summary.summary.{p}", "summary.{p}"), ("logits_proj.{p}", "classifier.{p}")]
)
CLASSIFIER_KEY_MAP = KeyMap([("classifier.{p}", "classifier.{p}")])
QA_KEY_MAP = KeyMap([("qa_outputs.{p}", "qa_outputs.{p}")])
# The projections stored [d_model, head, d_head] by Hugging Face; "o" maps heads back to d_model.
HEAD_PROJECTIONS = HeadShapedProjections("rel_attn", names=("q", "k", "v", "r", "o"), outputs=("o",))


# Outputs (Hugging Face's field names and order, ``mems`` included) ------------------------------------


@dataclass
class XLNetModelOutput(ModelOutput):
    """Attributes:
    last_hidden_state: [batch, pos, d_model], or [batch, num_predict, d_model] (the query stream) with
        ``target_mapping``.
    mems: with ``use_mems``, one [mem_pos, batch, d_model] memory per layer (Hugging Face's layout).
    hidden_states: n_layers + 1 tensors [batch, pos, d_model]; with ``target_mapping``, 2 * (n_layers + 1):
        content and query stream alternating (h0, g0, h1, g1, ...), as in Hugging Face.
    attentions: n_layers patterns [batch, head, query_pos, key_pos]; with ``target_mapping``, n_layers
        pairs (content pattern, query-stream pattern).
    """

    last_hidden_state: torch.Tensor | None = None
    mems: tuple[torch.Tensor, ...] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple | None = None


@dataclass
class XLNetLMHeadModelOutput(ModelOutput):
    """Attributes: loss (with labels); logits [batch, pos or num_predict, vocab]; mems; hidden_states;
    attentions (as :class:`XLNetModelOutput`)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mems: tuple[torch.Tensor, ...] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple | None = None


@dataclass
class XLNetClassifierOutput(XLNetLMHeadModelOutput):
    """Sequence classification ([batch, num_labels]), token classification ([batch, pos, num_labels]) or
    multiple choice ([batch, num_choices]) logits, with loss, mems, hidden_states, attentions (the LM head's
    fields, in the same order)."""


@dataclass
class XLNetQuestionAnsweringOutput(ModelOutput):
    """Attributes: loss (with start/end positions); start_logits, end_logits [batch, pos]; mems;
    hidden_states; attentions."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    mems: tuple[torch.Tensor, ...] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple | None = None


# Relative positions, masks and segments: small pure functions ------------------------------------------


def relative_sinusoids(
    q_len: int, k_len: int, d_model: int, attn_type: str, clamp_len: int, bi_data: bool, batch: int
) -> torch.Tensor:
    """The sinusoids of the relative distances, [batch, rel_pos, d_model].

    Row t holds distance ``k_len - t`` (from ``k_len`` down to ``-q_len + 1`` for ``"bi"``, to 0 for
    ``"uni"``), encoded as ``[sin(d * f), cos(d * f)]`` with ``f = 1 / 10000^(2k / d_model)``
    (Vaswani et al.'s frequencies, sines first). With ``bi_data`` the second half of the batch gets the
    negated distances.
    """
    inv_freq = inverse_frequencies(d_model)
    end = -q_len if attn_type == "bi" else -1

    def encode(distances: torch.Tensor) -> torch.Tensor:
        if clamp_len > 0:
            distances = distances.clamp(-clamp_len, clamp_len)
        return distance_sinusoids(distances, inv_freq)  # [rel_pos, d_model]

    forward = encode(torch.arange(k_len, end, -1.0, dtype=torch.int64).float())
    if not bi_data:
        return forward[None].expand(batch, -1, -1)
    if batch % 2:
        raise ValueError(f"bi_data=True needs an even batch (forward and backward halves), got batch={batch}")
    backward = encode(torch.arange(-k_len, -end, 1.0, dtype=torch.int64).float())
    half = batch // 2
    return torch.cat([forward[None].expand(half, -1, -1), backward[None].expand(half, -1, -1)])


def causal_memory_mask(q_len: int, m_len: int, same_length: bool, device: torch.device) -> torch.Tensor:
    """[query_pos, key_pos] bool, True where query i (at absolute position m_len + i) may not see key j:
    the future (j > m_len + i) and, with ``same_length``, keys more than m_len positions back."""
    blocked = torch.ones(q_len, q_len + m_len, device=device).triu_(m_len + 1)
    if same_length:
        blocked[:, :q_len] += torch.ones(q_len, q_len, device=device).tril_(-1)
    return blocked > 0


def query_stream_mask(
    q_len: int,
    m_len: int,
    attn_type: str,
    same_length: bool,
    padding: torch.Tensor | None,
    perm_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Which key each query may not see, [batch or 1, query_pos, key_pos] bool, or None (nothing blocked).

    The union of the causal mask (``"uni"``), the padded keys (``padding`` [batch, pos], 1 = padding) and
    ``perm_mask`` [batch, pos, pos] (1: query i may not see key j). Memory positions are never blocked by
    padding or ``perm_mask``. This is the query stream's mask; :func:`content_stream_mask` derives the
    content stream's.
    """
    blocked = (
        causal_memory_mask(q_len, m_len, same_length, device).float()[None] if attn_type == "uni" else None
    )
    data = None
    if padding is not None:
        data = padding[:, None, :].float()
    if perm_mask is not None:
        data = perm_mask.float() if data is None else data + perm_mask.float()
    if data is not None:
        if m_len:
            data = torch.cat([data.new_zeros(data.shape[0], data.shape[1], m_len), data], dim=-1)
        blocked = data if blocked is None else blocked + data
    return None if blocked is None else blocked > 0


def content_stream_mask(blocked: torch.Tensor | None, q_len: int, m_len: int) -> torch.Tensor | None:
    """The query stream's mask with the diagonal opened: a token's content state always sees itself."""
    if blocked is None:
        return None
    own = torch.eye(q_len, dtype=torch.bool, device=blocked.device)
    own = F.pad(own, (m_len, 0), value=False)  # [query_pos, key_pos]: key m_len + i is query i itself
    return blocked & ~own


def segments_differ(token_type_ids: torch.Tensor, m_len: int) -> torch.Tensor:
    """[batch, pos] segment ids -> [batch, query_pos, key_pos] bool: query and key in different segments
    (memory positions count as segment 0)."""
    keys = F.pad(token_type_ids, (m_len, 0), value=0)
    return token_type_ids[:, :, None] != keys[:, None, :]


# The model, top to bottom ----------------------------------------------------------------------------


@dataclass
class Streams:
    """What every layer's attention reads besides its own inputs, built once per forward.

    Attributes:
        rel_pos: [batch, rel_pos, d_model], the relative sinusoids.
        segments: [batch, pos, key_pos] bool (different segments) or None.
        blocked_h, blocked_g: [batch or 1, pos, key_pos] bool masks of the content and query streams, or None.
        target_mapping: [batch, num_predict, pos] (with a query stream) or None.
    """

    rel_pos: torch.Tensor
    segments: torch.Tensor | None
    blocked_h: torch.Tensor | None
    blocked_g: torch.Tensor | None
    target_mapping: torch.Tensor | None


class RelativeAttention(RelativeAttentionCore):
    """Two-stream multi-head attention with relative positions and segments (XLNet, section 2.3 and 2.5), on
    Transformer-XL's relative attention (:class:`~workbench.components.attention.RelativeAttentionCore`).

    Parameters: ``q``, ``k``, ``v``, ``r`` (the positional key projection, W_R) and ``o`` without biases;
    ``r_w_bias``, ``r_r_bias``, ``r_s_bias`` [head, d_head] (Transformer-XL's u, v and XLNet's b);
    ``seg_embed`` [2, head, d_head] (s+ for the same segment, s- for different ones).

    Hooks, content stream:
        hook_q: [batch, pos, head, d_head]; hook_k, hook_v: [batch, key_pos, head, d_head] (memory first);
        hook_k_rel: [batch, rel_pos, head, d_head], the keys of the relative distances;
        hook_scores: [batch, head, query_pos, key_pos], scaled, with -1e30 at blocked keys;
        hook_pattern: [batch, head, query_pos, key_pos]; hook_z: [batch, pos, head, d_head].
    Query stream (with ``target_mapping``):
        hook_q_query: [batch, num_predict, head, d_head];
        hook_scores_query, hook_pattern_query: [batch, head, query_pos, key_pos], one row per *sequence*
            position (each prediction's query is placed at its target position by ``target_mapping``; rows
            no prediction targets hold the pattern of a zero query), as Hugging Face returns them;
        hook_z_query: [batch, num_predict, head, d_head].
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int, dropout: float) -> None:
        super().__init__(d_model, n_heads, d_head)
        self.r_s_bias = nn.Parameter(torch.zeros(n_heads, d_head))
        self.seg_embed = nn.Parameter(torch.zeros(2, n_heads, d_head))
        self.hook_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.hook_q_query = HookPoint()  # [batch, num_predict, head, d_head]
        self.hook_scores_query = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern_query = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z_query = HookPoint()  # [batch, num_predict, head, d_head]
        self.o = nn.Linear(n_heads * d_head, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def relative_scores(
        self, q: torch.Tensor, k: torch.Tensor, k_rel: torch.Tensor, segments: torch.Tensor | None
    ) -> torch.Tensor:
        """Scaled scores [batch, head, query_pos, key_pos] before masking: content + position (+ segment)
        terms.

        q: [batch, query_pos, head, d_head]; k: [batch, key_pos, head, d_head]; k_rel: [batch, rel_pos, head,
        d_head] (W_R times the sinusoids); segments: [batch, query_pos, key_pos] (True: different segments).
        """
        scores = self.content_scores(q, k) + rel_shift(self.position_scores(q, k_rel), k.shape[1])
        if segments is not None:
            # [batch, head, query_pos, 2]: the score of "same segment" and of "different segment"
            by_segment = torch.einsum("bind,snd->bnis", q + self.r_s_bias, self.seg_embed)
            scores = scores + torch.where(segments[:, None], by_segment[..., 1:], by_segment[..., :1])
        return scores * self.scale

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_rel: torch.Tensor,
        segments: torch.Tensor | None,
        blocked: torch.Tensor | None,
        hook_scores: HookPoint,
        hook_pattern: HookPoint,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q: [batch, query_pos, head, d_head] -> (z [batch, query_pos, head, d_head], pattern)."""
        scores = self.relative_scores(q, k, k_rel, segments)
        if blocked is not None:
            penalty = 65500.0 if scores.dtype == torch.float16 else MASK_VALUE
            scores = scores - penalty * blocked[:, None].to(scores.dtype)
        pattern = hook_pattern(hook_scores(scores).softmax(dim=-1))
        return self.mix_values(self.dropout(pattern), v), pattern

    def forward(
        self,
        h: torch.Tensor,
        g: torch.Tensor | None,
        memory: torch.Tensor | None,
        streams: Streams,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """
        Args:
            h: [batch, pos, d_model], the content stream; g: [batch, num_predict, d_model] or None.
            memory: [batch, mem_pos, d_model] or None, prepended to the keys and values.
            streams: the relative sinusoids, segments, both streams' masks and the target mapping.
            head_mask: [head], multiplies each head's output in both streams (1 keeps, 0 removes).

        Returns:
            (out_h [batch, pos, d_model], out_g [batch, num_predict, d_model] or None, pattern_h, pattern_g or
            None), the outputs before dropout and the residual add.
        """
        context = h if memory is None else torch.cat([memory, h], dim=1)
        k = self.hook_k(self.split_heads(self.k(context)))
        v = self.hook_v(self.split_heads(self.v(context)))
        k_rel = self.hook_k_rel(self.split_heads(self.r(streams.rel_pos)))
        q = self.hook_q(self.split_heads(self.q(h)))
        segments, target_mapping = streams.segments, streams.target_mapping
        z, pattern_h = self.attend(
            q, k, v, k_rel, segments, streams.blocked_h, self.hook_scores, self.hook_pattern
        )
        out_h = self.o(self.hook_z(self.mask_heads(z, head_mask)).flatten(-2))
        if g is None:
            return out_h, None, pattern_h, None
        q_g = self.hook_q_query(self.split_heads(self.q(g)))
        # Each prediction's query sits at the position it predicts (the relative distances are counted from
        # there); the values it gathers go back to its prediction slot.
        q_at_targets = torch.einsum("bmnd,bml->blnd", q_g, target_mapping)
        z_g, pattern_g = self.attend(
            q_at_targets, k, v, k_rel, segments, streams.blocked_g, self.hook_scores_query, self.hook_pattern_query
        )
        z_g = self.hook_z_query(
            self.mask_heads(torch.einsum("blnd,bml->bmnd", z_g, target_mapping), head_mask)
        )
        return out_h, self.o(z_g.flatten(-2)), pattern_h, pattern_g


class TwoStreamLayerNorm(LayerNorm):
    """A LayerNorm shared by both streams, with a second pair of hooks for the query stream.

    Hooks: hook_scale, hook_normalized (content stream); hook_scale_query, hook_normalized_query.
    """

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__(d_model, eps)
        self.hook_scale_query = HookPoint()  # [batch, num_predict, 1]
        self.hook_normalized_query = HookPoint()  # [batch, num_predict, d_model]

    def forward(self, x: torch.Tensor, query: bool = False) -> torch.Tensor:
        if not query:
            return super().forward(x)
        return self.normalize(x, self.hook_scale_query, self.hook_normalized_query)


class XLNetMLP(MLP):
    """XLNet's feed-forward network: fc_out(dropout(act(fc_in(x)))) -> dropout, shared by both streams.

    Hooks: hook_pre, hook_post [batch, pos, d_mlp] (content stream); hook_pre_query, hook_post_query
    [batch, num_predict, d_mlp].
    """

    def __init__(self, d_model: int, d_mlp: int, act: str, dropout: float) -> None:
        super().__init__(d_model, d_mlp, act)
        self.hook_pre_query = HookPoint()  # [batch, num_predict, d_mlp]
        self.hook_post_query = HookPoint()  # [batch, num_predict, d_mlp]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, query: bool = False) -> torch.Tensor:
        hook_pre, hook_post = (
            (self.hook_pre_query, self.hook_post_query) if query else (self.hook_pre, self.hook_post)
        )
        return self.dropout(self.fc_out(self.dropout(hook_post(self.act(hook_pre(self.fc_in(x)))))))


class XLNetBlock(nn.Module):
    """One XLNet layer: two-stream relative attention, then the feed-forward network, post-norm.

    Hooks (in forward order): hook_mems (the memory entering this layer, [batch, mem_pos, d_model], only when
    there is one); hook_resid_pre, hook_resid_pre_query; attn.*; hook_attn_out, hook_attn_out_query; ln1.*;
    hook_resid_mid, hook_resid_mid_query; mlp.*; hook_mlp_out, hook_mlp_out_query; ln2.*; hook_resid_post,
    hook_resid_post_query. Content-stream residual hooks are [batch, pos, d_model], query-stream ones
    [batch, num_predict, d_model].
    """

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__()
        d_model, eps = config.d_model, config.layer_norm_eps
        self.hook_mems = HookPoint()  # [batch, mem_pos, d_model]
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_pre_query = HookPoint()  # [batch, num_predict, d_model]
        self.attn = RelativeAttention(d_model, config.n_head, config.d_head, config.dropout)
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out_query = HookPoint()  # [batch, num_predict, d_model]
        self.ln1 = TwoStreamLayerNorm(d_model, eps)
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid_query = HookPoint()  # [batch, num_predict, d_model]
        self.mlp = XLNetMLP(d_model, config.d_inner, config.ff_activation, config.dropout)
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_mlp_out_query = HookPoint()  # [batch, num_predict, d_model]
        self.ln2 = TwoStreamLayerNorm(d_model, eps)
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post_query = HookPoint()  # [batch, num_predict, d_model]
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        h: torch.Tensor,
        g: torch.Tensor | None,
        memory: torch.Tensor | None,
        streams: Streams,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, torch.Tensor, torch.Tensor | None]:
        """Inputs as :meth:`RelativeAttention.forward`'s. Returns (h out, g out or None, (pattern_h, pattern_g), the block's input h, the memory it used),
        the last two after their hooks: what the next segment's memory is made of."""
        memory = self.hook_mems(memory) if memory is not None else None
        h = self.hook_resid_pre(h)
        g = self.hook_resid_pre_query(g) if g is not None else None
        out_h, out_g, pattern_h, pattern_g = self.attn(h, g, memory, streams, head_mask)
        h_out = self.feed_forward(h, out_h, query=False)
        g_out = self.feed_forward(g, out_g, query=True) if g is not None else None
        return h_out, g_out, (pattern_h, pattern_g), h, memory

    def feed_forward(self, resid_pre: torch.Tensor, attn_out: torch.Tensor, query: bool) -> torch.Tensor:
        """The rest of the block for one stream: residual add, ln1, MLP, residual add, ln2."""
        suffix = "_query" if query else ""
        attn_out = getattr(self, "hook_attn_out" + suffix)(self.dropout(attn_out))
        resid_mid = getattr(self, "hook_resid_mid" + suffix)(self.ln1(resid_pre + attn_out, query))
        mlp_out = getattr(self, "hook_mlp_out" + suffix)(self.mlp(resid_mid, query))
        return getattr(self, "hook_resid_post" + suffix)(self.ln2(resid_mid + mlp_out, query))


class XLNetModel(FusedWeights, HookedTransformer):
    """The XLNet transformer: token embeddings, relative sinusoids, two-stream post-norm blocks.

    Hooks before the blocks: hook_embed [batch, pos, d_model]; hook_embed_query [batch, num_predict, d_model]
    (the mask embedding the query stream starts from, with ``target_mapping``); hook_rel_pos_embed
    [batch, rel_pos, d_model] (the relative sinusoids, row t = distance key_len - t).
    """

    config_class = XLNetConfig
    body_key_map = XLNET_KEY_MAP
    base_model_prefix = "transformer"
    classifier_position = "last"
    fused_weights = (HEAD_PROJECTIONS,)

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, config.d_model))
        self.hook_embed_query = HookPoint()  # [batch, num_predict, d_model]
        self.hook_rel_pos_embed = HookPoint()  # [batch, rel_pos, d_model]
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(XLNetBlock(config) for _ in range(config.n_layer))

    # Weights ------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """As Hugging Face: linear layers and embeddings normal(initializer_range), zero biases, LayerNorms
        1/0, the relative-attention biases, segment vectors and the mask embedding normal too."""
        super().init_weights()
        std = self.config.initializer_range
        with torch.no_grad():
            for block in self.blocks:
                attn = block.attn
                for param in (attn.r_w_bias, attn.r_r_bias, attn.r_s_bias, attn.seg_embed):
                    nn.init.normal_(param, std=std)
            nn.init.normal_(self.mask_embed, std=std)

    # Inputs -------------------------------------------------------------------------------------------
    def memories(self, mems, batch: int) -> list[torch.Tensor | None]:
        """Hugging Face's ``mems`` (one [mem_pos, batch, d_model] per layer) -> batch-first, checked."""
        if mems is None or mems[0] is None:
            return [None] * self.n_layers
        if len(mems) != self.n_layers:
            raise ValueError(f"mems has {len(mems)} tensors; this model has {self.n_layers} layers")
        out = []
        for layer, memory in enumerate(mems):
            if memory.dim() != 3 or memory.shape[1:] != (batch, self.config.d_model):
                raise ValueError(
                    f"mems[{layer}] has shape {tuple(memory.shape)}; expected [mem_pos, batch, d_model] = "
                    f"[*, {batch}, {self.config.d_model}] (Hugging Face's layout, as returned in out.mems)"
                )
            out.append(memory.transpose(0, 1))
        return out

    def next_memory(self, block_input: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """The memory for the next segment: the last ``mem_len`` of (memory, the first ``reuse_len`` positions
        of the block's input), detached, as [mem_pos, batch, d_model] (Hugging Face's ``cache_mem``)."""
        reuse_len, mem_len = self.config.reuse_len, self.config.mem_len
        current = block_input[:, :reuse_len] if reuse_len else block_input
        new = current if memory is None else torch.cat([memory, current], dim=1)
        if mem_len:
            new = new[:, -mem_len:]
        return new.detach().transpose(0, 1)

    def padding_of(
        self, attention_mask: torch.Tensor | None, input_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """[batch, pos] with 1 at padding: ``1 - attention_mask``, or XLNet's own ``input_mask``."""
        if attention_mask is not None and input_mask is not None:
            raise ValueError("pass attention_mask (1 = real token) or input_mask (1 = padding), not both")
        if attention_mask is not None:
            return 1.0 - attention_mask.float()
        return input_mask

    def check_permutation_inputs(
        self, perm_mask: torch.Tensor | None, target_mapping: torch.Tensor | None, batch: int, length: int
    ) -> None:
        if perm_mask is not None and perm_mask.shape != (batch, length, length):
            raise ValueError(
                f"perm_mask has shape {tuple(perm_mask.shape)}; expected [batch, pos, pos] = "
                f"[{batch}, {length}, {length}]"
            )
        if target_mapping is not None and (
            target_mapping.dim() != 3 or target_mapping.shape[0] != batch or target_mapping.shape[2] != length
        ):
            raise ValueError(
                f"target_mapping has shape {tuple(target_mapping.shape)}; "
                f"expected [batch, num_predict, pos] = "
                f"[{batch}, *, {length}]"
            )

    # Forward ------------------------------------------------------------------------------------------
    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mems=None,
        perm_mask: torch.Tensor | None = None,
        target_mapping: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        input_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_mems: bool | None = None,
        head_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> XLNetModelOutput:
        """Run the embeddings and the blocks. Shapes as in :class:`XLNetModelOutput`.

        Args:
            attention_mask: [batch, pos], 1 for real tokens, 0 for padding (or ``input_mask``: 1 for padding).
            mems: the ``mems`` of the previous segment's output: one [mem_pos, batch, d_model] per layer.
            perm_mask: [batch, pos, pos]; 1 where token i may not see token j (a factorization order).
            target_mapping: [batch, num_predict, pos]; one-hot rows: the positions the query stream predicts.
            token_type_ids: [batch, pos] segment ids (only equal/different matters).
            use_mems: return the memory for the next segment (default: ``config.use_mems_eval`` in eval mode,
                ``use_mems_train`` in training).
            head_mask: [head] or [layer, head]; 1 keeps a head, 0 removes its output (both streams). Hugging
                Face's XLNet (transformers 5) has no head_mask; the workbench's convention (``hook_z`` times
                the mask) applies.

        Returns:
            :class:`XLNetModelOutput`.
        """
        config = self.config
        if use_mems is None:
            use_mems = config.use_mems_train if self.training else config.use_mems_eval
        token_embed = self.token_embeddings(input_ids, inputs_embeds)
        batch, q_len = token_embed.shape[:2]
        self.check_attention_mask(attention_mask, batch, q_len)
        self.check_attention_mask(input_mask, batch, q_len, name="input_mask")
        device, dtype = token_embed.device, token_embed.dtype
        self.check_permutation_inputs(perm_mask, target_mapping, batch, q_len)
        memories = self.memories(mems, batch)
        m_len = memories[0].shape[1] if memories[0] is not None else 0
        k_len = m_len + q_len

        padding = self.padding_of(attention_mask, input_mask)
        blocked_g = query_stream_mask(
            q_len, m_len, config.attn_type, config.same_length, padding, perm_mask, device
        )
        blocked_h = content_stream_mask(blocked_g, q_len, m_len)
        segments = segments_differ(token_type_ids, m_len) if token_type_ids is not None else None
        rel_pos = relative_sinusoids(
            q_len, k_len, config.d_model, config.attn_type, config.clamp_len, config.bi_data, batch
        ).to(device=device, dtype=dtype)
        rel_pos = self.dropout(self.hook_rel_pos_embed(rel_pos))

        h = self.dropout(self.hook_embed(token_embed))
        g = None
        if target_mapping is not None:
            target_mapping = target_mapping.to(dtype)
            mask_embed = self.mask_embed.expand(batch, target_mapping.shape[1], -1)
            g = self.dropout(self.hook_embed_query(mask_embed))
        streams = Streams(rel_pos, segments, blocked_h, blocked_g, target_mapping)

        new_mems = []
        hidden_states = [] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for block, memory, block_head_mask in zip(self.blocks, memories, self.layer_head_mask(head_mask)):
            if output_hidden_states:
                hidden_states += [h, g] if g is not None else [h]
            h, g, patterns, block_input, memory = block(h, g, memory, streams, block_head_mask)
            if use_mems:
                new_mems.append(self.next_memory(block_input, memory))
            if output_attentions:
                attentions.append(patterns if g is not None else patterns[0])
        if output_hidden_states:
            hidden_states += [h, g] if g is not None else [h]
        return XLNetModelOutput(
            last_hidden_state=self.dropout(g if g is not None else h),
            mems=tuple(new_mems) if use_mems else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    forward = heads.body_forward(encode)


class XLNetLMHeadModel(heads.CausalLMHead, XLNetModel, GenerationMixin):
    """XLNet with its language-modelling head: ``lm_loss``, a linear map with a bias whose weight is tied to
    the token embedding, on the query stream when there is one (else on the content stream).

    Adds ``hook_logits`` [batch, num_predict or pos, vocab]. ``forward`` is :meth:`LanguageModelHead.forward`:
    the inputs of :meth:`XLNetModel.forward` (``mems=``, ``perm_mask=``, ``target_mapping=``, ...) plus
    ``labels`` [batch, num_predict] (or [batch, pos] without ``target_mapping``; -100 = ignored), compared
    with logits[t] unshifted (they are the targets of the predictions, as in Hugging Face); it returns
    :class:`XLNetLMHeadModelOutput` (with ``mems``). :meth:`next_token_logits` predicts the token after a
    text the way Hugging Face's generation does (a dummy last token that nothing sees, predicted by the query
    stream); ``workbench.generate`` uses it.
    """

    head_key_map = LM_KEY_MAP
    head_output_class = XLNetLMHeadModelOutput
    shift_labels = False
    # generate() continues the bare prompt: no <sep> <cls> after it.
    prompt_special_tokens = False

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.add_unembed(config.d_model, config.vocab_size)  # no norm follows the last block

    def init_weights(self) -> None:
        super().init_weights()
        if self.config.tie_word_embeddings:  # the Linear init above overwrote the shared embedding
            with torch.no_grad():
                nn.init.normal_(self.embed.weight, std=self.config.initializer_range)

    def next_token_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits [batch, vocab] of the token after ``input_ids`` [batch, pos].

        As Hugging Face's ``prepare_inputs_for_generation``: a dummy token (id 0) is appended, ``perm_mask``
        hides it from every position, and ``target_mapping`` makes the query stream predict it, from all
        the real tokens (padding excluded through ``attention_mask``). Relative positions make left padding
        harmless. The whole sequence is recomputed (no memory reuse).
        """
        batch, length = input_ids.shape
        device = input_ids.device
        ids = torch.cat([input_ids, input_ids.new_zeros(batch, 1)], dim=1)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
        perm_mask = torch.zeros(batch, length + 1, length + 1, device=device)
        perm_mask[:, :, -1] = 1.0
        target_mapping = torch.zeros(batch, 1, length + 1, device=device)
        target_mapping[:, 0, -1] = 1.0
        out = self(
            input_ids=ids,
            attention_mask=attention_mask,
            perm_mask=perm_mask,
            target_mapping=target_mapping,
            use_mems=False,
        )
        return out.logits[:, 0]


class XLNetSequenceSummary(SequenceSummary):
    """Mixin of XLNet's sequence heads, named before the head mixin: a sequence is scored from its sequence
    summary (see :class:`SequenceSummary`; the last token, projected, tanh) by ``classifier`` (Hugging
    Face's ``logits_proj``), with no dropout in between."""

    def add_summary_classifier(self, config: XLNetConfig, n_out: int) -> None:
        """The summary's layers, then ``classifier`` (d_model -> n_out) and ``hook_logits``."""
        self.init_summary(config)
        self.add_sequence_classifier(config.d_model, n_out)

    def sequence_state(self, body: XLNetModelOutput, input_ids=None, attention_mask=None) -> torch.Tensor:
        return self.sequence_summary(body.last_hidden_state)  # [batch, d_model]


class XLNetForSequenceClassification(XLNetSequenceSummary, heads.SequenceClassificationHead, XLNetModel):
    """XLNet with the sequence summary -> ``classifier`` (Hugging Face's ``logits_proj``) to num_labels.

    Adds ``hook_logits`` [batch, num_labels]. XLNet's tokenizer puts ``<cls>`` last, which the summary reads.
    ``forward`` is :meth:`SequenceClassificationHead.forward`: the inputs of :meth:`XLNetModel.forward`
    (``mems=``, ``perm_mask=``, ...) plus ``labels`` [batch]; it returns :class:`XLNetClassifierOutput`
    (with ``mems``).
    """

    head_key_map = SUMMARY_KEY_MAP
    head_output_class = XLNetClassifierOutput

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.add_summary_classifier(config, config.num_labels)


class XLNetForTokenClassification(heads.TokenClassificationHead, XLNetModel):
    """XLNet with a linear ``classifier`` on every token (no dropout before it, as in Hugging Face).

    Adds ``hook_logits`` [batch, pos, num_labels]. ``forward`` is :meth:`TokenClassificationHead.forward`:
    the inputs of :meth:`XLNetModel.forward` (``mems=``, ``perm_mask=``, ...) plus ``labels`` [batch, pos]
    (-100 = ignored); it returns :class:`XLNetClassifierOutput` (with ``mems``).
    """

    head_key_map = CLASSIFIER_KEY_MAP
    head_output_class = XLNetClassifierOutput

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.add_token_classifier(config.d_model, config.num_labels, dropout=None)


class XLNetForQuestionAnsweringSimple(heads.QuestionAnsweringHead, XLNetModel):
    """XLNet with span start/end logits for extractive QA: a linear ``qa_outputs`` on every token.

    Hugging Face's name (its ``XLNetForQuestionAnswering``, the beam-search SQuAD 2.0 head, is not ported).
    Adds ``hook_logits`` [batch, pos, 2]: start, end. ``forward`` is :meth:`QuestionAnsweringHead.forward`:
    the inputs of :meth:`XLNetModel.forward` plus the answer's ``start_positions``/``end_positions`` [batch]
    (positions outside the input are ignored, as in Hugging Face); it returns
    :class:`XLNetQuestionAnsweringOutput` (with ``mems``).
    """

    head_key_map = QA_KEY_MAP
    head_output_class = XLNetQuestionAnsweringOutput

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        # Hugging Face sizes qa_outputs by num_labels, then splits it into 2: only 2 loads the same
        self.add_span_head(config.d_model, num_labels=config.num_labels)


class XLNetForMultipleChoice(XLNetSequenceSummary, heads.MultipleChoiceHead, XLNetModel):
    """XLNet scoring each choice: the sequence summary of the choice -> ``classifier`` (Hugging Face's
    ``logits_proj``) to one score.

    ``forward`` is :meth:`MultipleChoiceHead.forward`: the inputs of :meth:`XLNetModel.forward`, with
    ``input_ids``, ``token_type_ids``, ``attention_mask``, ``input_mask`` and ``inputs_embeds``
    [batch, num_choices, ...], plus ``labels`` [batch]; it returns :class:`XLNetClassifierOutput` (with
    ``mems``) and adds ``hook_logits`` [batch, num_choices].
    """

    head_key_map = SUMMARY_KEY_MAP
    choice_inputs = ("input_ids", "token_type_ids", "attention_mask", "input_mask", "inputs_embeds")
    head_output_class = XLNetClassifierOutput

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.add_summary_classifier(config, 1)


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in keeps no memory between calls (``mem_len`` None): each forward sees its input only."""
    return {"mem_len": None}


# XLNet scores a continuation as a permutation LM (workbench.bench.zeroshot), through its LM head.
ARCHITECTURE = Architecture(
    "XLNet", XLNetConfig, XLNetModel, causal_lm=XLNetLMHeadModel, zero_shot="permutation",
    default_task="causal_lm", token_classification=XLNetForTokenClassification,
    question_answering=XLNetForQuestionAnsweringSimple, multiple_choice=XLNetForMultipleChoice,
    sequence_classification=XLNetForSequenceClassification, tokenizer_family="xlnet",
    name_patterns=(r"^xlnet",), tiny_config=tiny_config,
)
