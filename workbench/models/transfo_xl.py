"""Transformer-XL (Dai et al. 2019, "Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context").

What is distinctive about it:
- segment-level recurrence: each layer also attends to a memory, the inputs that layer saw over the last
  ``mem_len`` positions of earlier segments (``mems`` in, new ``mems`` out; no gradient flows into them);
- relative positions instead of absolute ones: a sinusoid of the distance between query and key (clamped to
  ``clamp_len``), projected per layer, and two learned biases, so that a score is the sum of a content term
  ``(q + r_w_bias) . k`` and a position term ``(q + r_r_bias) . W_r R[i - j]`` (the paper's (a)+(c) and
  (b)+(d); section 3.3);
- ``same_length``: every query attends to the same number of keys (``mem_len``), as in training;
- adaptive input embeddings and an adaptive softmax (Baevski & Auli 2019; Grave et al. 2017): the vocabulary
  is cut into clusters (``cutoffs``) whose embedding size shrinks by ``div_val`` per cluster; the output layer
  shares those embeddings and projections (``tie_word_embeddings``, ``tie_projs``) and returns
  log-probabilities, not logits;
- post-norm blocks by default (``pre_lnorm`` for pre-norm), ReLU MLP, no biases in the attention projections.

Only ``attn_type=0`` (the relative attention of the released checkpoints) exists, as in Hugging Face 4.35,
whose ``TransfoXLLMHeadModel`` is the reference (transformers 5 deleted the architecture).

Dimensions: ``mem`` (memory positions), ``pos`` (new positions), ``key_pos = mem + pos``.
The ``mems`` input and output keep Hugging Face's time-first layout, [mem, batch, d_model] per layer (as
XLNet's do), so that memories pass between the libraries; the hooks are batch-first, as everywhere. As in
Hugging Face, a call without ``mems`` starts from a memory of ``mem_len`` zero vectors, which the new positions
attend to (their values are 0, but they take a share of the attention).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..architecture import Architecture
from ..components import MLP, LayerNorm
from ..components.attention import RelativeAttentionCore
from ..components.fused import FusedSplit, FusedWeights
from ..components.heads import CausalLMHead, SequenceClassificationHead, body_forward
from ..components.positions import distance_sinusoids, inverse_frequencies, rel_shift
from ..config import ModelConfig
from ..hook_points import HookPoint
from ..loading import KeyMap
from ..model import GenerationMixin, HookedTransformer
from ..outputs import ModelOutput

Mems = list[torch.Tensor]  # one [mem, batch, d_model] tensor per layer (Hugging Face's layout)

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class TransfoXLConfig(ModelConfig):
    """Transformer-XL's hyper-parameters, with Hugging Face's names (defaults: transfo-xl-wt103)."""

    model_type = "transfo-xl"

    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = ("vocab_size", "d_model", "d_embed", "n_head", "d_head", "d_inner", "div_val", "n_layer")
    NON_NEGATIVE_FIELDS = ("mem_len", "init_range", "proj_init_std", "init_std", "layer_norm_epsilon",
                           "eos_token_id", "pad_token_id")
    PROBABILITY_FIELDS = ("dropout", "dropatt")

    # Canonical names (readable and writable; see workbench.config); d_model and d_head are fields, and
    # max_positions (no limit) is derived.
    ATTRIBUTE_MAP = {"n_layers": "n_layer", "n_heads": "n_head", "d_mlp": "d_inner"}
    # The original checkpoints' name (Hugging Face's attribute_map keeps it).
    HF_ALIASES = {"n_token": "vocab_size"}

    vocab_size: int = 267735  #: words in the vocabulary (``n_token`` in old config.json files).
    #: where the adaptive clusters start: [c1, c2, ...] gives clusters [0, c1), [c1, c2), ...
    cutoffs: list[int] = field(default_factory=lambda: [20000, 40000, 200000])
    d_model: int = 1024  #: width of the residual stream.
    d_embed: int = 1024  #: width of the first cluster's embeddings (later ones: ``d_embed // div_val**i``).
    n_head: int = 16  #: heads per layer.
    d_head: int = 64  #: width of a head (n_head * d_head need not be d_model).
    d_inner: int = 4096  #: d_mlp.
    div_val: int = 4  #: how much narrower each cluster's embeddings are than the previous one's.
    pre_lnorm: bool = False  #: pre-norm blocks (LayerNorm before attention and MLP) instead of post-norm.
    n_layer: int = 18  #: blocks.
    mem_len: int = 1600  #: how many positions of memory each layer keeps; 0: no recurrence.
    clamp_len: int = 1000  #: distances beyond it use the embedding of ``clamp_len`` (0 or less: no clamping).
    same_length: bool = True  #: every query attends to exactly ``mem_len`` keys (as in training).
    #: default of ``tie_projs`` (the output projections of all clusters but the first share the input ones).
    proj_share_all_but_first: bool = True
    tie_projs: list[bool] | None = None  #: per cluster, whether the softmax's projection is the embedding's.
    attn_type: int = 0  #: 0 (relative attention): the only one the checkpoints use, the only one supported.
    sample_softmax: int = -1  #: must be -1 (sampled softmax is not supported, as in Hugging Face).
    adaptive: bool = True  #: kept for round trips (the softmax is always adaptive, as in Hugging Face).
    dropout: float = 0.1  #: dropout on sublayer outputs and embeddings.
    dropatt: float = 0.0  #: dropout on attention patterns.
    untie_r: bool = True  #: one pair of relative biases per layer (else one pair shared by all layers).
    #: random initialization, as Hugging Face's: ``"uniform"`` (+-``init_range``) weights, else normal ones.
    init: str = "normal"
    init_range: float = 0.01  #: the bound of the uniform initialization.
    proj_init_std: float = 0.01  #: initial std of the adaptive embedding's and softmax's projections.
    init_std: float = 0.02  #: std of the normal initialization (weights; LayerNorm weights: around 1).
    layer_norm_epsilon: float = 1e-5  #: LayerNorm epsilon.
    eos_token_id: int | None = 0  #: end-of-sequence token id.
    pad_token_id: int | None = None  #: padding token id (the classifier reads the last token before it).

    def __post_init__(self) -> None:
        super().__post_init__()
        self.cutoffs = list(self.cutoffs)
        if self.tie_projs is None:
            self.tie_projs = [False] + [self.proj_share_all_but_first] * len(self.cutoffs)

    @property
    def max_position_embeddings(self) -> int:
        """Relative positions set no length limit (Hugging Face's config says -1)."""
        return 2**62

    @property
    def cluster_bounds(self) -> list[tuple[int, int]]:
        """[start, end) of every cluster of the adaptive embedding and softmax."""
        ends = [0, *self.cutoffs, self.vocab_size]
        return list(zip(ends[:-1], ends[1:]))

    def validate(self) -> None:
        super().validate()
        if self.attn_type != 0:
            raise ValueError(
                f"attn_type={self.attn_type} is not supported: only 0 (Transformer-XL's relative attention, the one "
                f"the released checkpoints use) is, as in Hugging Face"
            )
        if self.sample_softmax > 0:
            raise ValueError(f"sample_softmax={self.sample_softmax}: the sampled softmax is not supported")
        bounds = [0, *self.cutoffs, self.vocab_size]
        if any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(
                f"cutoffs {self.cutoffs} must increase strictly and stay below vocab_size={self.vocab_size}"
            )
        if len(self.tie_projs) != len(self.cutoffs) + 1:
            raise ValueError(
                f"tie_projs {self.tie_projs} needs one entry per cluster ({len(self.cutoffs) + 1})"
            )
        if self.div_val > 1 and self.d_embed // self.div_val ** len(self.cutoffs) < 1:
            raise ValueError(
                f"d_embed={self.d_embed} is too small for {len(self.cutoffs)} cutoffs at div_val={self.div_val}"
            )
        if self.init not in ("normal", "uniform"):
            raise ValueError(f"init must be 'normal' or 'uniform', got {self.init!r}")


# Hugging Face parameter names <-> ours. The fused qkv_net is split into q, k and v by `FUSED_QKV` first.
TRANSFO_XL_KEY_MAP = KeyMap(
    [
        ("word_emb.emb_layers.{i}.weight", "embed.layers.{i}.weight"),
        ("word_emb.emb_projs.{i}", "embed.projs.{i}"),
        ("pos_emb.inv_freq", "rel_pos_embed.inv_freq"),
        ("r_w_bias", "r_w_bias"),
        ("r_r_bias", "r_r_bias"),
        ("layers.{i}.dec_attn.qkv_net.q.weight", "blocks.{i}.attn.q.weight"),
        ("layers.{i}.dec_attn.qkv_net.k.weight", "blocks.{i}.attn.k.weight"),
        ("layers.{i}.dec_attn.qkv_net.v.weight", "blocks.{i}.attn.v.weight"),
        ("layers.{i}.dec_attn.r_net.weight", "blocks.{i}.attn.r.weight"),
        ("layers.{i}.dec_attn.r_w_bias", "blocks.{i}.attn.r_w_bias"),
        ("layers.{i}.dec_attn.r_r_bias", "blocks.{i}.attn.r_r_bias"),
        ("layers.{i}.dec_attn.o_net.weight", "blocks.{i}.attn.o.weight"),
        ("layers.{i}.dec_attn.layer_norm.{p}", "blocks.{i}.ln1.{p}"),
        ("layers.{i}.pos_ff.CoreNet.0.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("layers.{i}.pos_ff.CoreNet.3.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("layers.{i}.pos_ff.layer_norm.{p}", "blocks.{i}.ln2.{p}"),
    ]
)
LM_HEAD_KEY_MAP = KeyMap(
    [
        ("crit.cluster_weight", "lm_head.cluster_weight"),
        ("crit.cluster_bias", "lm_head.cluster_bias"),
        ("crit.out_layers.{i}.{p}", "lm_head.layers.{i}.{p}"),
        ("crit.out_projs.{i}", "lm_head.projs.{i}"),
    ]
)
SCORE_KEY_MAP = KeyMap([("score.weight", "classifier.weight")])


# ``...dec_attn.qkv_net.weight`` [3 * head * d_head, d_model] <-> ``...qkv_net.{q,k,v}.weight``.
FUSED_QKV = FusedSplit("dec_attn.qkv_net", dim=0, params=("weight",))


# Outputs ---------------------------------------------------------------------------------------------


@dataclass
class TransfoXLModelOutput(ModelOutput):
    """Attributes: last_hidden_state [batch, pos, d_model]; mems (n_layers tensors [mem, batch, d_model], the
    memory for the next segment; None when mem_len is 0); hidden_states (n_layers + 1 [batch, pos, d_model]);
    attentions (n_layers [batch, head, pos, key_pos])."""

    last_hidden_state: torch.Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    @property
    def past_key_values(self) -> Mems | None:
        return self.mems


@dataclass
class TransfoXLLMHeadModelOutput(ModelOutput):
    """Hugging Face's fields, in its order.

    Attributes:
        losses: [batch, pos - 1], the negative log-likelihood of token t + 1 at position t (0 where the label
            is -100), in position order (Hugging Face 4.35 orders them by cluster instead: see the class).
        prediction_scores: [batch, pos, vocab] log-probabilities (``logits`` is an alias).
        mems, hidden_states, attentions: as :class:`TransfoXLModelOutput`.
        loss: the mean of ``losses`` over the labels that are not -100.
    """

    losses: torch.Tensor | None = None
    prediction_scores: torch.Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    loss: torch.Tensor | None = None

    @property
    def logits(self) -> torch.Tensor | None:
        """The log-probabilities: a softmax of them gives the probabilities, as of logits."""
        return self.prediction_scores

    @property
    def past_key_values(self) -> Mems | None:
        return self.mems


@dataclass
class TransfoXLSequenceClassifierOutput(ModelOutput):
    """Attributes: loss (with labels); logits [batch, num_labels]; mems; hidden_states; attentions."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# Embeddings ------------------------------------------------------------------------------------------


class AdaptiveEmbedding(nn.Module):
    """Adaptive input embeddings: cluster i embeds its words in ``d_embed // div_val**i`` dimensions and
    projects them to d_model; the result is scaled by sqrt(d_model).

    With ``div_val == 1`` there is one embedding table for the whole vocabulary (and a projection only when
    d_embed != d_model).
    """

    def __init__(self, config: TransfoXLConfig) -> None:
        super().__init__()
        self.vocab_size = config.vocab_size
        self.d_model = config.d_model
        self.bounds = config.cluster_bounds
        self.scale = config.d_model**0.5
        self.layers = nn.ModuleList()
        self.projs = nn.ParameterList()
        if config.div_val == 1:
            self.layers.append(nn.Embedding(config.vocab_size, config.d_embed))
            if config.d_model != config.d_embed:
                self.projs.append(nn.Parameter(torch.empty(config.d_model, config.d_embed)))
        else:
            for i, (start, end) in enumerate(self.bounds):
                d_cluster = config.d_embed // config.div_val**i
                self.layers.append(nn.Embedding(end - start, d_cluster))
                self.projs.append(nn.Parameter(torch.empty(config.d_model, d_cluster)))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [batch, pos] -> [batch, pos, d_model]"""
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_ids(input_ids)
        if len(self.layers) == 1:
            embed = self.layers[0](input_ids)
            if len(self.projs):
                embed = F.linear(embed, self.projs[0])
            return embed * self.scale
        embed = torch.zeros(
            (*input_ids.shape, self.d_model), dtype=self.projs[0].dtype, device=input_ids.device
        )
        for (start, end), layer, proj in zip(self.bounds, self.layers, self.projs):
            # Every cluster embeds every token (ids clamped into its range) and keeps its own tokens': no
            # data-dependent shapes, so the model traces and exports; the added zeros leave the sum exact.
            in_cluster = ((input_ids >= start) & (input_ids < end)).unsqueeze(-1)
            local = (input_ids - start).clamp(0, end - start - 1)
            embed = embed + F.linear(layer(local), proj) * in_cluster
        return embed * self.scale

    def check_ids(self, input_ids: torch.Tensor) -> None:
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.vocab_size):
            raise ValueError(
                f"input_ids hold ids from {int(input_ids.min())} to {int(input_ids.max())}, but the vocabulary has "
                f"{self.vocab_size} words (ids 0..{self.vocab_size - 1})"
            )


class RelativePositions(nn.Module):
    """The sinusoid of relative distances (Vaswani et al.'s, of a distance rather than a position)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        # Saved in Hugging Face's checkpoints (a persistent buffer there): kept so that round trips are clean.
        self.register_buffer("inv_freq", inverse_frequencies(d_model))

    def forward(self, key_len: int, clamp_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """-> [key_pos, d_model]: row m embeds the distance key_len - 1 - m (clamped to clamp_len when > 0),
        i.e. the distance from the newest position to key m. The same for every row of a batch."""
        distances = torch.arange(key_len - 1, -1, -1.0, device=device, dtype=dtype)
        if clamp_len > 0:
            distances = distances.clamp(max=clamp_len)
        return distance_sinusoids(distances, self.inv_freq.to(dtype))


# Attention -------------------------------------------------------------------------------------------


def relative_shift(x: torch.Tensor) -> torch.Tensor:
    """[..., query_pos, key_pos] scores against relative embeddings ordered by *row m = distance key_pos - 1 - m*
    -> the same scores indexed by key: out[..., i, j] = x[..., i, j + query_pos - 1 - i] (the paper's
    appendix B: pad one zero column, reshape, drop the first row).

    Entries with j > i + mem (keys in the future of query i) receive values of no meaning: they are always masked.
    """
    return rel_shift(F.pad(x, (1, 0)), x.shape[-1])  # one zero column: [..., query_pos, key_pos + 1]


class RelativeAttention(RelativeAttentionCore):
    """Transformer-XL's relative multi-head attention ("RelPartialLearnable"), on the shared
    :class:`~workbench.components.attention.RelativeAttentionCore`.

    score(i, j) = [(q_i + r_w_bias) . k_j  +  (q_i + r_r_bias) . W_r R_(i-j)] / sqrt(d_head)

    Hooks:
        hook_q: [batch, pos, head, d_head], queries of the new positions.
        hook_k, hook_v: [batch, key_pos, head, d_head], keys and values of memory + new positions.
        hook_k_rel: [batch, key_pos, head, d_head], the keys of the relative distances, W_r R (row m: distance
            key_pos - 1 - m).
        hook_scores_content: [batch, head, pos, key_pos], (q + r_w_bias) . k / sqrt(d_head).
        hook_scores_position: [batch, head, pos, key_pos], (q + r_r_bias) . W_r R_(i-j) / sqrt(d_head)
            (meaningless where the key is in the query's future; those are masked).
        hook_scores: [batch, head, pos, key_pos], their sum, masked positions set to dtype's minimum.
        hook_pattern: [batch, head, pos, key_pos], softmax of the scores (Hugging Face's attentions).
        hook_z: [batch, pos, head, d_head], the pattern-weighted values of each head.
    """

    def __init__(self, config: TransfoXLConfig, r_w_bias: nn.Parameter | None, r_r_bias: nn.Parameter | None):
        # r_w_bias, r_r_bias: shared by every layer when untie_r is False (the model owns them then).
        super().__init__(config.d_model, config.n_head, config.d_head, r_w_bias, r_r_bias)
        self.scale = 1 / config.d_head**0.5
        self.hook_scores_content = HookPoint()  # [batch, head, pos, key_pos]
        self.hook_scores_position = HookPoint()  # [batch, head, pos, key_pos]
        self.hook_scores = HookPoint()  # [batch, head, pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.o = nn.Linear(config.n_head * config.d_head, config.d_model, bias=False)
        self.dropatt = nn.Dropout(config.dropatt)

    def forward(
        self,
        keys_input: torch.Tensor,
        query_len: int,
        rel: torch.Tensor,
        mask: torch.Tensor,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            keys_input: [batch, key_pos, d_model], memory then new positions (layer-normed in pre-norm blocks).
            query_len: how many of them (the last ones) are new and ask queries.
            rel: [batch, key_pos, d_model], the relative position embeddings.
            mask: bool, broadcastable to [batch, head, pos, key_pos]; True where a query may not look.
            head_mask: [head]; multiplies each head's output (1 keeps, 0 removes).

        Returns:
            out: [batch, pos, d_model], before the residual add; pattern: [batch, head, pos, key_pos].
        """
        q = self.hook_q(self.split_heads(self.q(keys_input[:, -query_len:])))
        k = self.hook_k(self.split_heads(self.k(keys_input)))
        v = self.hook_v(self.split_heads(self.v(keys_input)))
        if rel.stride(0) == 0:  # one embedding expanded over the batch (no hook edited it): project it once
            k_rel = self.split_heads(self.r(rel[0])).expand(rel.shape[0], -1, -1, -1)
        else:
            k_rel = self.split_heads(self.r(rel))
        k_rel = self.hook_k_rel(k_rel)
        content = self.content_scores(q, k) * self.scale
        position = relative_shift(self.position_scores(q, k_rel)) * self.scale
        content = self.hook_scores_content(content)
        position = self.hook_scores_position(position)
        scores = self.hook_scores((content + position).masked_fill(mask, torch.finfo(content.dtype).min))
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = self.hook_z(self.mask_heads(self.mix_values(self.dropatt(pattern), v), head_mask))
        return self.o(z.flatten(-2)), pattern


class TransfoXLMLP(MLP):
    """The position-wise ReLU MLP, with Transformer-XL's dropout between its two layers."""

    def __init__(self, d_model: int, d_mlp: int, dropout: float) -> None:
        super().__init__(d_model, d_mlp, "relu")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.dropout(self.hook_post(self.act(self.hook_pre(self.fc_in(x))))))


class TransfoXLBlock(nn.Module):
    """One layer: relative attention over memory + new positions, then the MLP.

    Post-norm (default): ``resid_mid = LN1(resid_pre + attn_out)``, ``resid_post = LN2(resid_mid + mlp_out)``.
    Pre-norm (``pre_lnorm``): the attention reads ``LN1(memory + resid_pre)``, ``resid_mid = resid_pre +
    attn_out``, ``resid_post = resid_mid + MLP(LN2(resid_mid))``.

    Hooks: hook_resid_pre [batch, pos, d_model]; hook_mems [batch, mem, d_model], the memory entering this layer
    (edit it to change what the layer remembers: the edit also goes into the new mems); attn.*; hook_attn_out;
    hook_resid_mid; mlp.*; hook_mlp_out; hook_resid_post; ln1.*, ln2.* where they apply (pre-norm ln1 sees
    [batch, key_pos, d_model]).
    """

    def __init__(self, config: TransfoXLConfig, r_w_bias=None, r_r_bias=None) -> None:
        super().__init__()
        self.pre_norm = config.pre_lnorm
        eps = config.layer_norm_epsilon
        # Registered in forward order, so that hook_names lists them as they run.
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_mems = HookPoint()  # [batch, mem, d_model]
        if self.pre_norm:
            self.ln1 = LayerNorm(config.d_model, eps)
        self.attn = RelativeAttention(config, r_w_bias, r_r_bias)
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        if not self.pre_norm:
            self.ln1 = LayerNorm(config.d_model, eps)
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        if self.pre_norm:
            self.ln2 = LayerNorm(config.d_model, eps)
        self.mlp = TransfoXLMLP(config.d_model, config.d_inner, config.dropout)
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        if not self.pre_norm:
            self.ln2 = LayerNorm(config.d_model, eps)
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        resid_pre: torch.Tensor,
        mems: torch.Tensor | None,
        rel: torch.Tensor,
        mask: torch.Tensor,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """resid_pre [batch, pos, d_model], mems [batch, mem, d_model] or None ->
        (resid_post [batch, pos, d_model], pattern [batch, head, pos, key_pos], keys_input [batch, key_pos,
        d_model]: memory + resid_pre, from which the next segment's memory is cut)."""
        resid_pre = self.hook_resid_pre(resid_pre)
        keys_input = resid_pre if mems is None else torch.cat([self.hook_mems(mems), resid_pre], dim=1)
        attn_in = self.ln1(keys_input) if self.pre_norm else keys_input
        attn_out, pattern = self.attn(attn_in, resid_pre.shape[1], rel, mask, head_mask)
        attn_out = self.hook_attn_out(self.dropout(attn_out))
        if self.pre_norm:
            resid_mid = self.hook_resid_mid(resid_pre + attn_out)
            mlp_out = self.hook_mlp_out(self.dropout(self.mlp(self.ln2(resid_mid))))
            resid_post = self.hook_resid_post(resid_mid + mlp_out)
        else:
            resid_mid = self.hook_resid_mid(self.ln1(resid_pre + attn_out))
            mlp_out = self.hook_mlp_out(self.dropout(self.mlp(resid_mid)))
            resid_post = self.hook_resid_post(self.ln2(resid_mid + mlp_out))
        return resid_post, pattern, keys_input


def attention_mask_for(
    query_len: int,
    mem_len_now: int,
    config: TransfoXLConfig,
    attention_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """Bool mask [batch or 1, 1, pos, key_pos], True where query i may not look at key j.

    Causal over memory + new positions (key j is visible to query i when j <= mem + i); with ``same_length``
    also no further back than ``config.mem_len`` keys. ``attention_mask`` ([batch, L], 1 real / 0 padding)
    masks padding keys: its last columns are the newest positions; memory positions it does not cover count as
    real (Hugging Face attends to all memory).
    """
    key_len = mem_len_now + query_len
    ones = torch.ones(query_len, key_len, dtype=torch.bool, device=device)
    mask = torch.triu(ones, diagonal=1 + mem_len_now)
    if config.same_length:
        too_old = key_len - config.mem_len
        shift = query_len - too_old if too_old > 0 else query_len
        mask = mask | torch.tril(ones, diagonal=-shift)
    mask = mask[None, None]
    if attention_mask is not None:
        real = attention_mask.to(device=device, dtype=torch.bool)[:, -key_len:]
        if real.shape[1] < key_len:
            real = F.pad(real, (key_len - real.shape[1], 0), value=True)
        mask = mask | ~real[:, None, None, :]
    return mask


# The model, top to bottom ----------------------------------------------------------------------------


class TransfoXLModel(FusedWeights, HookedTransformer):
    """The Transformer-XL body: adaptive embeddings, relative-attention blocks with memory. No final norm.

    Hooks before the blocks: hook_embed [batch, pos, d_model] (scaled adaptive embeddings);
    hook_rel_pos_embed [batch, key_pos, d_model] (the sinusoid of distances key_pos - 1 .. 0, clamped).
    """

    config_class = TransfoXLConfig
    body_key_map = TRANSFO_XL_KEY_MAP
    base_model_prefix = "transformer"
    classifier_position = "last"
    fused_weights = (FUSED_QKV,)

    def __init__(self, config: TransfoXLConfig) -> None:
        super().__init__(config)
        self.embed = AdaptiveEmbedding(config)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.rel_pos_embed = RelativePositions(config.d_model)
        self.hook_rel_pos_embed = HookPoint()  # [batch, key_pos, d_model]
        self.dropout = nn.Dropout(config.dropout)
        shared = not config.untie_r
        self.r_w_bias = nn.Parameter(torch.empty(config.n_head, config.d_head)) if shared else None
        self.r_r_bias = nn.Parameter(torch.empty(config.n_head, config.d_head)) if shared else None
        self.blocks = nn.ModuleList(
            TransfoXLBlock(config, self.r_w_bias, self.r_r_bias) for _ in range(config.n_layer)
        )

    def tied_parameter_names(self) -> set[str]:
        if self.config.untie_r:
            return set()
        return {f"blocks.{i}.attn.{name}" for i in range(self.n_layers) for name in ("r_w_bias", "r_r_bias")}

    def init_weights(self) -> None:
        """Hugging Face's initialization: normal(0, init_std) (or uniform(+-init_range)) weights, zero biases,
        normal(0, proj_init_std) projections, LayerNorm weights normal(1, init_std)."""
        config = self.config

        def init_weight(weight: torch.Tensor) -> None:
            if config.init == "uniform":
                nn.init.uniform_(weight, -config.init_range, config.init_range)
            else:
                nn.init.normal_(weight, 0.0, config.init_std)

        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                init_weight(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, LayerNorm):
                nn.init.normal_(module.weight, 1.0, config.init_std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (AdaptiveEmbedding, AdaptiveLogSoftmax)):
                for proj in module.projs:
                    nn.init.normal_(proj, 0.0, config.proj_init_std)
                if isinstance(module, AdaptiveLogSoftmax) and module.cluster_weight is not None:
                    init_weight(module.cluster_weight)
                    nn.init.zeros_(module.cluster_bias)
            elif isinstance(module, RelativeAttention):
                init_weight(module.r_w_bias)
                init_weight(module.r_r_bias)

    def init_mems(self, batch: int) -> Mems | None:
        """The memory a first segment starts from, as Hugging Face's: ``mem_len`` zero vectors per layer,
        [mem_len, batch, d_model] (None when mem_len is 0)."""
        if self.config.mem_len <= 0:
            return None
        return [
            torch.zeros(self.config.mem_len, batch, self.config.d_model, dtype=self.dtype, device=self.device)
            for _ in range(self.n_layers)
        ]

    def empty_mems(self, batch: int) -> Mems:
        """A memory of no positions, [0, batch, d_model] per layer: pass it as ``mems`` to run a segment that
        attends to itself only (square attention patterns), unlike Hugging Face's default zero memory."""
        return [
            torch.zeros(0, batch, self.config.d_model, dtype=self.dtype, device=self.device)
            for _ in range(self.n_layers)
        ]

    def check_mems(self, mems: Mems, batch: int) -> Mems:
        if len(mems) != self.n_layers:
            raise ValueError(f"mems has {len(mems)} tensors; expected one per layer ({self.n_layers})")
        expected = (batch, self.config.d_model)
        for layer, mem in enumerate(mems):
            if mem.dim() != 3 or tuple(mem.shape[1:]) != expected or mem.shape[0] != mems[0].shape[0]:
                raise ValueError(
                    f"mems[{layer}] has shape {tuple(mem.shape)}; expected [mem, batch={batch}, d_model="
                    f"{self.config.d_model}] (Hugging Face's time-first layout, as the model returns them) with "
                    f"the same mem in every layer"
                )
        return [mem.to(self.device) for mem in mems]

    def decode(
        self,
        input_ids: torch.Tensor | None = None,
        mems: Mems | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        past_key_values: Mems | None = None,
        use_cache: bool = True,
        token_type_ids: torch.Tensor | None = None,
    ) -> TransfoXLModelOutput:
        """Run embeddings and blocks over one segment. Shapes as in :class:`TransfoXLModelOutput`; the inputs in
        Hugging Face's order.

        Args:
            mems: the ``mems`` of the previous segment's output, n_layers tensors [mem, batch, d_model]
                (Hugging Face's layout); None starts from ``mem_len`` zero vectors, as Hugging Face does;
                :meth:`empty_mems` starts from no memory at all.
            attention_mask: [batch, L], 1 real / 0 padding; its last columns are the newest positions (L may
                cover memory too; uncovered memory counts as real). Hugging Face's model takes none.
            past_key_values: an alias of ``mems`` (what generation code passes); ``use_cache`` is accepted for
                the same reason: mems are always returned when mem_len > 0.

        Returns:
            :class:`TransfoXLModelOutput`.
        """
        if past_key_values is not None:
            if mems is not None:
                raise ValueError("pass mems or past_key_values (its alias, for generation code), not both")
            mems = past_key_values
        if token_type_ids is not None:
            raise ValueError(
                f"{type(self).__name__} takes no token_type_ids (a tokenizer for another architecture made them?)"
            )
        word_embed = self.hook_embed(self.token_embeddings(input_ids, inputs_embeds))
        batch, new = word_embed.shape[:2]
        mems = self.check_mems(mems, batch) if mems is not None else self.init_mems(batch)
        past = mems[0].shape[0] if mems is not None else 0
        self.check_attention_mask(attention_mask, batch, new, at_least=True)
        mask = attention_mask_for(new, past, self.config, attention_mask, word_embed.device)
        rel = self.rel_pos_embed(past + new, self.config.clamp_len, word_embed.dtype, word_embed.device)
        rel = self.dropout(self.hook_rel_pos_embed(rel.expand(batch, -1, -1)))
        resid = self.dropout(word_embed)

        hidden_states = [] if output_hidden_states else None
        attentions = [] if output_attentions else None
        new_mems = [] if mems is not None and self.config.mem_len > 0 else None
        for layer, (block, block_head_mask) in enumerate(zip(self.blocks, self.layer_head_mask(head_mask))):
            if output_hidden_states:
                hidden_states.append(resid)
            layer_mems = mems[layer].transpose(0, 1) if mems is not None else None  # batch-first inside
            resid, pattern, keys_input = block(resid, layer_mems, rel, mask, block_head_mask)
            if new_mems is not None:
                # The next segment remembers the last mem_len inputs of this layer (no gradient through them).
                new_mems.append(keys_input[:, -self.config.mem_len :].transpose(0, 1).detach())
            if output_attentions:
                attentions.append(pattern)
        resid = self.dropout(resid)
        if output_hidden_states:
            hidden_states.append(resid)
        return TransfoXLModelOutput(
            last_hidden_state=resid,
            mems=new_mems,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    forward = body_forward(decode)


# Adaptive softmax ------------------------------------------------------------------------------------


class AdaptiveLogSoftmax(nn.Module):
    """The projected adaptive softmax (Grave et al. 2017): log p(w) for every word.

    The head cluster scores its words and one "go to cluster i" entry per tail cluster; a word of tail cluster i
    has log p = log p_head(cluster i) + log p_i(word). Each cluster projects the hidden state down to its
    embedding width first (``projs``, tied to the input ones where ``tie_projs`` says so).
    """

    def __init__(self, config: TransfoXLConfig) -> None:
        super().__init__()
        self.bounds = config.cluster_bounds
        self.div_val = config.div_val
        n_clusters = len(config.cutoffs)
        self.cluster_weight = nn.Parameter(torch.empty(n_clusters, config.d_embed)) if n_clusters else None
        self.cluster_bias = nn.Parameter(torch.empty(n_clusters)) if n_clusters else None
        self.layers = nn.ModuleList()
        self.projs = nn.ParameterList()
        if config.div_val == 1:
            self.layers.append(nn.Linear(config.d_embed, config.vocab_size))
            if config.d_model != config.d_embed:
                for _ in self.bounds:
                    self.projs.append(nn.Parameter(torch.empty(config.d_model, config.d_embed)))
        else:
            for i, (start, end) in enumerate(self.bounds):
                d_cluster = config.d_embed // config.div_val**i
                self.layers.append(nn.Linear(d_cluster, end - start))
                self.projs.append(nn.Parameter(torch.empty(config.d_model, d_cluster)))

    def cluster_logits(self, hidden: torch.Tensor, cluster: int) -> torch.Tensor:
        """hidden [..., d_model] -> logits [..., words of the cluster (+ one per tail cluster for cluster 0)]."""
        start, end = self.bounds[cluster]
        if self.div_val == 1:
            weight, bias = self.layers[0].weight[start:end], self.layers[0].bias[start:end]
        else:
            weight, bias = self.layers[cluster].weight, self.layers[cluster].bias
        if cluster == 0 and self.cluster_weight is not None:
            weight = torch.cat([weight, self.cluster_weight])
            bias = torch.cat([bias, self.cluster_bias])
        if len(self.projs):
            hidden = F.linear(hidden, self.projs[cluster].t())  # [..., d_cluster]
        return F.linear(hidden, weight, bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., d_model] -> log-probabilities [..., vocab]."""
        head = self.cluster_logits(hidden, 0).log_softmax(-1)
        if len(self.bounds) == 1:
            return head
        head_words = self.bounds[0][1]
        parts = [head[..., :head_words]]
        for cluster in range(1, len(self.bounds)):
            tail = self.cluster_logits(hidden, cluster).log_softmax(-1)
            parts.append(head[..., head_words + cluster - 1, None] + tail)
        return torch.cat(parts, dim=-1)


def token_losses(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of labels[:, t + 1] under log_probs[:, t]: [batch, pos - 1], 0 where the label
    is -100."""
    targets = labels[:, 1:].to(log_probs.device)
    ignored = targets == -100
    picked = log_probs[:, :-1].gather(-1, targets.masked_fill(ignored, 0)[..., None]).squeeze(-1)
    return (-picked).masked_fill(ignored, 0.0)


class TransfoXLLMHeadModel(CausalLMHead, TransfoXLModel, GenerationMixin):
    """Transformer-XL with its adaptive softmax, as Hugging Face's ``TransfoXLLMHeadModel``.

    Adds ``hook_logits`` [batch, pos, vocab]: the **log-probabilities** (``prediction_scores``; the adaptive
    softmax has no single logit vector). ``forward`` is :meth:`LanguageModelHead.forward`: the inputs of
    :meth:`TransfoXLModel.forward` (``mems=``, ...) plus ``labels`` [batch, pos] (-100 = ignored; position t
    predicts token t + 1); it returns :class:`TransfoXLLMHeadModelOutput`. With labels the output also has
    ``losses`` [batch, pos - 1] in position order and their mean ``loss``; Hugging Face 4.35 (its
    ``keep_order=False``) lists ``losses`` grouped by cluster instead, which only coincides when all labels
    fall in the first cluster, and sets its ``prediction_scores`` to ``()``; here they are always returned.
    """

    head_key_map = LM_HEAD_KEY_MAP
    head_output_class = TransfoXLLMHeadModelOutput

    def __init__(self, config: TransfoXLConfig) -> None:
        super().__init__(config)
        self.lm_head = AdaptiveLogSoftmax(config)
        self.hook_logits = HookPoint()  # [batch, pos, vocab], log-probabilities
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the softmax's word vectors and projections with the embedding's, as the config says."""
        config = self.config
        if config.tie_word_embeddings:
            for out_layer, embedding in zip(self.lm_head.layers, self.embed.layers):
                out_layer.weight = embedding.weight
        for cluster, tie in enumerate(config.tie_projs):
            if tie and len(self.lm_head.projs):
                self.lm_head.projs[cluster] = self.embed.projs[0 if config.div_val == 1 else cluster]

    def tied_parameter_names(self) -> set[str]:
        names = set(super().tied_parameter_names())
        if self.config.tie_word_embeddings:
            names |= {f"lm_head.layers.{i}.weight" for i in range(len(self.lm_head.layers))}
        if len(self.lm_head.projs):
            names |= {f"lm_head.projs.{i}" for i, tie in enumerate(self.config.tie_projs) if tie}
        return names

    def init_weights(self) -> None:
        super().init_weights()
        self.tie_weights()

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [..., vocab] of a state [..., d_model]: the adaptive softmax (no final norm, so
        this is also the logit lens)."""
        return self.lm_head(hidden)

    def lm_fields(self, log_probs: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """Hugging Face's fields: ``prediction_scores`` and, with labels, ``losses`` (per position) and their
        mean ``loss`` over the labels that are not -100."""
        losses = loss = None
        if labels is not None:
            losses = token_losses(log_probs, labels)
            counted = (labels[:, 1:] != -100).to(losses.device)
            loss = losses.sum() / counted.sum()
        return {"losses": losses, "prediction_scores": log_probs, "loss": loss}


class TransfoXLForSequenceClassification(SequenceClassificationHead, TransfoXLModel):
    """Transformer-XL with a linear classifier (``score``, no bias) read at the last real token of each row
    (from the attention mask, else the last token before ``pad_token_id``), as Hugging Face's.

    Adds ``hook_logits`` [batch, num_labels]. ``forward`` is :meth:`SequenceClassificationHead.forward`: the
    inputs of :meth:`TransfoXLModel.forward` (``mems=``, ...) plus ``labels`` [batch]; it returns
    :class:`TransfoXLSequenceClassifierOutput` (with ``mems``).
    """

    head_key_map = SCORE_KEY_MAP
    head_output_class = TransfoXLSequenceClassifierOutput

    def __init__(self, config: TransfoXLConfig) -> None:
        super().__init__(config)
        if config.d_embed != config.d_model:
            raise ValueError(
                f"TransfoXLForSequenceClassification needs d_embed == d_model (Hugging Face's classifier reads "
                f"d_embed={config.d_embed} features from a d_model={config.d_model} state)"
            )
        self.add_sequence_classifier(config.d_model, config.num_labels, bias=False)


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: an adaptive softmax with two cutoffs (the released model has three), one embedding
    width, and a memory of a quarter of the positions."""
    cutoffs = [vocabulary.size // 8, vocabulary.size // 2]
    return dict(cutoffs=cutoffs, d_embed=size.d_model, d_head=size.d_model // size.n_heads, div_val=1,
                mem_len=size.n_positions // 4, clamp_len=size.n_positions, tie_projs=[False, True, True])


ARCHITECTURE = Architecture(
    "Transformer-XL", TransfoXLConfig, TransfoXLModel, causal_lm=TransfoXLLMHeadModel,
    sequence_classification=TransfoXLForSequenceClassification, default_task="causal_lm",
    tokenizer_family="transfo_xl", name_patterns=(r"^transfo-xl",), tiny_config=tiny_config,
)
