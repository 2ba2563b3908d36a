"""XLNet against Hugging Face's on the same checkpoints: both streams' hidden states and attentions,
memories, logits and losses of every head (max abs diff <= 1e-4 in float32) for "bi" and "uni" attention,
with perm_mask/target_mapping, two segments with memory, left padding, segment ids, bi_data, clamp_len,
same_length; hooks (pinned names, equalities with the outputs, patching the memory); checkpoints both ways;
generation; and the SentencePiece tokenizer against Hugging Face's XLNetTokenizer."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from tiny_hf import save_tiny_hf, task_of

import workbench as wb
from workbench.models.xlnet import (
    XLNetConfig,
    XLNetForMultipleChoice,
    XLNetForQuestionAnsweringSimple,
    XLNetForSequenceClassification,
    XLNetForTokenClassification,
    XLNetLMHeadModel,
    XLNetModel,
    rel_shift,
    relative_sinusoids,
)
from workbench.tokenizers.xlnet import XLNetTokenizer, read_sentencepiece_model

TOL = 1e-4
VOCAB = 99
BATCH, LENGTH = 4, 9


def make_inputs(seed=0, padding=False, token_types=False, permutation=False, batch=BATCH, length=LENGTH):
    """Token ids, and optionally left padding (attention_mask), segment ids, a random factorization order
    (perm_mask) with two predicted positions per row (target_mapping)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {"input_ids": torch.randint(6, VOCAB, (batch, length), generator=generator)}
    if padding:
        attention_mask = torch.ones(batch, length, dtype=torch.long)
        for row, real in enumerate([length, length - 2, 3, length - 5][:batch]):
            attention_mask[row, : length - real] = 0
        inputs["input_ids"] = inputs["input_ids"].masked_fill(attention_mask == 0, 5)
        inputs["attention_mask"] = attention_mask
    if token_types:
        inputs["token_type_ids"] = torch.randint(0, 2, (batch, length), generator=generator)
    if permutation:
        order = torch.stack([torch.randperm(length, generator=generator) for _ in range(batch)])
        rank = order.argsort(dim=1)  # rank[b, t]: where token t comes in the factorization order
        # Token i may not see token j when j comes later in the order (or is j itself).
        inputs["perm_mask"] = (rank[:, None, :] >= rank[:, :, None]).float()
        target_mapping = torch.zeros(batch, 2, length)
        target_mapping[torch.arange(batch), 0, order[:, -1]] = 1.0
        target_mapping[torch.arange(batch), 1, order[:, -2]] = 1.0
        inputs["target_mapping"] = target_mapping
    return inputs


def hf_forward(hf_model, per_row=False, **kwargs):
    """Hugging Face's outputs; ``per_row`` runs one row at a time and concatenates: its "uni" attention fails
    on a batch of more than one row with padding or ``perm_mask`` (an in-place add that cannot broadcast)."""
    if not per_row:
        return hf_model(**kwargs)
    batch = kwargs["input_ids"].shape[0]
    rows = []
    for row in range(batch):
        row_kwargs = {}
        for key, value in kwargs.items():
            if key == "mems" and value is not None:
                row_kwargs[key] = tuple(m[:, row : row + 1] for m in value)
            elif isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
                row_kwargs[key] = value[row : row + 1]
            else:
                row_kwargs[key] = value
        rows.append(hf_model(**row_kwargs))

    def join(values, dim=0):
        if isinstance(values[0], tuple):
            return tuple(join([v[i] for v in values], dim) for i in range(len(values[0])))
        return torch.cat(values, dim=dim)

    out = {}
    for key in rows[0].keys():
        if key == "loss":
            continue
        out[key] = join([r[key] for r in rows], dim=1 if key == "mems" else 0)
    return type(rows[0])(**out)


def flat(tensors):
    """Hidden states / attentions as a flat list (Hugging Face pairs the two streams' attentions)."""
    out = []
    for item in tensors:
        out += list(item) if isinstance(item, tuple) else [item]
    return out


def max_diff(ours, theirs, what):
    ours, theirs = flat(ours), flat(theirs)
    assert len(ours) == len(theirs), f"{what}: {len(ours)} tensors vs Hugging Face's {len(theirs)}"
    worst = 0.0
    for index, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"{what}[{index}]: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        worst = max(worst, (a - b).abs().max().item())
    return worst


def assert_close(ours, theirs, what):
    diff = max_diff(ours, theirs, what)
    assert diff <= TOL, f"{what} differs from Hugging Face by {diff:.2e}"


CONFIGS = {
    "bi": dict(),
    "uni": dict(attn_type="uni"),
    "uni-same-length": dict(attn_type="uni", same_length=True),
    "bi-data-clamp": dict(bi_data=True, clamp_len=3),
    "relu-1layer-1head": dict(n_layers=1, n_heads=1, ff_activation="relu", d_mlp=16),
}
INPUTS = {
    "plain": dict(),
    "padded-segments": dict(padding=True, token_types=True),
    "permutation": dict(permutation=True),
    "all": dict(padding=True, token_types=True, permutation=True),
}


# Parity ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("inputs", sorted(INPUTS))
def test_both_streams_attentions_and_mems_match(tmp_path, config, inputs):
    hf_model = save_tiny_hf(tmp_path, "xlnet", **CONFIGS[config])
    ours = XLNetModel.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    kwargs = make_inputs(**INPUTS[inputs])
    per_row = ours.config.attn_type == "uni" and ("perm_mask" in kwargs or "attention_mask" in kwargs)
    with torch.no_grad():
        expected = hf_forward(hf_model, per_row, **kwargs, output_hidden_states=True, output_attentions=True)
        got = ours(**kwargs, output_hidden_states=True, output_attentions=True)
    two_streams = "target_mapping" in kwargs
    n_states = (ours.n_layers + 1) * (2 if two_streams else 1)
    assert len(got.hidden_states) == n_states
    assert_close(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close(got.attentions, expected.attentions, "attentions")
    assert_close([got.last_hidden_state], [expected.last_hidden_state], "last_hidden_state")
    assert_close(got.mems, expected.mems, "mems")
    if two_streams:
        heads = ours.config.n_head
        assert isinstance(got.attentions[0], tuple) and got.attentions[0][1].shape == (
            BATCH,
            heads,
            LENGTH,
            LENGTH,
        )


@pytest.mark.parametrize("attn_type", ["bi", "uni"])
@pytest.mark.parametrize("reuse_len", [None, 4])
def test_two_segments_with_memory_match(tmp_path, attn_type, reuse_len):
    hf_model = save_tiny_hf(tmp_path, "xlnet", "causal_lm", attn_type=attn_type, reuse_len=reuse_len, mem_len=7)
    ours = XLNetLMHeadModel.from_pretrained(tmp_path)
    first = make_inputs(seed=1, token_types=True)
    second = make_inputs(seed=2, token_types=True, permutation=True, length=5)
    with torch.no_grad():
        hf_first, our_first = hf_model(**first, use_mems=True), ours(**first, use_mems=True)
        assert_close(our_first.mems, hf_first.mems, "first segment mems")
        expected = hf_forward(
            hf_model,
            attn_type == "uni",
            **second,
            mems=hf_first.mems,
            output_hidden_states=True,
            output_attentions=True,
        )
        got = ours(**second, mems=our_first.mems, output_hidden_states=True, output_attentions=True)
    assert got.attentions[0][0].shape[-1] == our_first.mems[0].shape[0] + 5  # keys: memory + segment
    assert_close(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close(got.attentions, expected.attentions, "attentions")
    assert_close([got.logits], [expected.logits], "logits")
    assert_close(got.mems, expected.mems, "second segment mems")


def test_input_mask_and_inputs_embeds_match(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "xlnet")
    ours = XLNetModel.from_pretrained(tmp_path)
    kwargs = make_inputs(padding=True)
    input_mask = 1.0 - kwargs.pop("attention_mask").float()
    embeds = ours.embed(kwargs.pop("input_ids")).detach()
    with torch.no_grad():
        expected = hf_model(inputs_embeds=embeds, input_mask=input_mask, output_hidden_states=True)
        got = ours(inputs_embeds=embeds, input_mask=input_mask, output_hidden_states=True)
    assert_close(got.hidden_states, expected.hidden_states, "hidden_states")
    with pytest.raises(ValueError, match="not both"):
        ours(inputs_embeds=embeds, input_mask=input_mask, attention_mask=1 - input_mask)


@pytest.mark.parametrize("inputs", ["padded-segments", "all"])
def test_lm_head_logits_and_loss_match(tmp_path, inputs):
    hf_model = save_tiny_hf(tmp_path, "xlnet", "causal_lm")
    ours = XLNetLMHeadModel.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    assert ours.unembed.weight is ours.embed.weight  # tied, as in Hugging Face
    kwargs = make_inputs(**INPUTS[inputs])
    width = kwargs["target_mapping"].shape[1] if "target_mapping" in kwargs else LENGTH
    labels = torch.randint(0, VOCAB, (BATCH, width), generator=torch.Generator().manual_seed(3))
    labels[0, 0] = -100
    with torch.no_grad():
        expected = hf_model(**kwargs, labels=labels, output_hidden_states=True, output_attentions=True)
        got = ours(**kwargs, labels=labels, output_hidden_states=True, output_attentions=True)
        lens_last = ours.decode_residual(got.hidden_states[-1])  # the last query (or content) state
    assert got.logits.shape == (BATCH, width, VOCAB)
    assert_close([got.logits, lens_last], [expected.logits] * 2, "logits")
    assert_close([got.loss], [expected.loss], "loss")
    assert_close(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close(got.attentions, expected.attentions, "attentions")


HEADS = {
    "XLNetForSequenceClassification": (XLNetForSequenceClassification, dict(num_labels=3)),
    "XLNetForTokenClassification": (XLNetForTokenClassification, dict(num_labels=5)),
    "XLNetForQuestionAnsweringSimple": (XLNetForQuestionAnsweringSimple, dict()),
    "XLNetForMultipleChoice": (XLNetForMultipleChoice, dict()),
}


def head_labels(name, generator):
    if name == "XLNetForSequenceClassification":
        return {"labels": torch.randint(0, 3, (BATCH,), generator=generator)}
    if name == "XLNetForTokenClassification":
        return {"labels": torch.randint(0, 5, (BATCH, LENGTH), generator=generator)}
    if name == "XLNetForQuestionAnsweringSimple":
        return {
            "start_positions": torch.tensor([0, 3, 8, 20]),  # 20 is outside: ignored, as in Hugging Face
            "end_positions": torch.tensor([2, 5, 8, 1]),
        }
    return {"labels": torch.randint(0, 3, (BATCH,), generator=generator)}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_logits_and_losses_match(tmp_path, name):
    our_class, fields = HEADS[name]
    hf_model = save_tiny_hf(tmp_path, "xlnet", task_of("xlnet", name), **fields)
    ours = our_class.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    kwargs = make_inputs(padding=True, token_types=True)
    if (
        name == "XLNetForMultipleChoice"
    ):  # [batch, num_choices, pos]: 4 choices of 3 pairs... as [1 or 4, 3, pos]
        kwargs = {k: torch.stack([v, v.roll(1, 0), v.roll(2, 0)], dim=1) for k, v in kwargs.items()}
    labels = head_labels(name, torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = hf_model(**kwargs, **labels, output_hidden_states=True)
        got = ours(**kwargs, **labels, output_hidden_states=True)
    for field in ("logits", "start_logits", "end_logits", "loss"):
        if field in expected and expected[field] is not None:
            assert_close([got[field]], [expected[field]], field)
    assert_close(got.hidden_states, expected.hidden_states, "hidden_states")


def test_regression_loss_matches(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "xlnet", "sequence_classification", num_labels=1)
    ours = XLNetForSequenceClassification.from_pretrained(tmp_path)
    kwargs = make_inputs(token_types=True)
    labels = torch.randn(BATCH)
    with torch.no_grad():
        expected, got = hf_model(**kwargs, labels=labels), ours(**kwargs, labels=labels)
    assert_close([got.logits, got.loss], [expected.logits, expected.loss], "regression")


# The parts, against their formulas -----------------------------------------------------------------


@pytest.mark.parametrize("m_len", [0, 3])
def test_rel_shift_reads_the_distance_of_each_pair(m_len):
    q_len = 4
    k_len = m_len + q_len
    table = torch.randn(2, 3, q_len, k_len + q_len)  # [batch, head, query, rel_pos]: "bi" distances
    shifted = rel_shift(table, k_len)
    for i in range(q_len):
        for j in range(k_len):
            # Row t of the relative table holds distance k_len - t; pair (i, j) is at distance m_len + i - j.
            t = k_len - (m_len + i - j)
            assert torch.equal(shifted[..., i, j], table[..., i, t])


def test_relative_sinusoids_follow_the_paper():
    table = relative_sinusoids(3, 5, 8, "bi", -1, False, batch=2)
    assert table.shape == (2, 8, 8)
    distances = torch.arange(5, -3, -1).float()
    inv_freq = 1 / 10000 ** (torch.arange(0, 8, 2).float() / 8)
    expected = torch.cat(
        [torch.sin(distances[:, None] * inv_freq), torch.cos(distances[:, None] * inv_freq)], -1
    )
    assert torch.allclose(table[0], expected) and torch.equal(table[0], table[1])
    clamped = relative_sinusoids(3, 5, 8, "uni", 2, True, batch=2)
    assert clamped.shape == (2, 6, 8)  # "uni": distances 5..0
    assert torch.equal(clamped[0, 0], clamped[0, 3])  # 5 and 2 clamp to 2
    with pytest.raises(ValueError, match="even batch"):
        relative_sinusoids(3, 5, 8, "bi", -1, True, batch=3)


# Hooks -----------------------------------------------------------------------------------------------


def test_hook_names_are_pinned():
    model = XLNetLMHeadModel.from_config(
        XLNetConfig(vocab_size=11, d_model=8, n_layer=1, n_head=2, d_inner=16)
    )
    block = [
        "hook_mems",
        "hook_resid_pre",
        "hook_resid_pre_query",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_k_rel",
        "attn.hook_scores",
        "attn.hook_pattern",
        "attn.hook_z",
        "attn.hook_q_query",
        "attn.hook_scores_query",
        "attn.hook_pattern_query",
        "attn.hook_z_query",
        "hook_attn_out",
        "hook_attn_out_query",
        "ln1.hook_scale",
        "ln1.hook_normalized",
        "ln1.hook_scale_query",
        "ln1.hook_normalized_query",
        "hook_resid_mid",
        "hook_resid_mid_query",
        "mlp.hook_pre",
        "mlp.hook_post",
        "mlp.hook_pre_query",
        "mlp.hook_post_query",
        "hook_mlp_out",
        "hook_mlp_out_query",
        "ln2.hook_scale",
        "ln2.hook_normalized",
        "ln2.hook_scale_query",
        "ln2.hook_normalized_query",
        "hook_resid_post",
        "hook_resid_post_query",
    ]
    expected = ["hook_embed", "hook_embed_query", "hook_rel_pos_embed"] + [f"blocks.0.{n}" for n in block]
    assert model.hook_names == expected + ["hook_logits"]


def test_cache_equals_outputs_for_both_streams(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "xlnet", "causal_lm")
    ours = XLNetLMHeadModel.from_pretrained(tmp_path)
    kwargs = make_inputs(padding=True, token_types=True, permutation=True)
    with torch.no_grad():
        expected = hf_model(**kwargs, output_hidden_states=True, output_attentions=True)
        out, cache = ours.run_with_cache(kwargs)
    n = ours.n_layers
    assert cache["blocks.0.attn.hook_pattern_query"].shape == (BATCH, 4, LENGTH, LENGTH)
    assert cache["blocks.0.hook_resid_post_query"].shape == (BATCH, 2, 32)
    assert cache["blocks.0.attn.hook_z_query"].shape == (BATCH, 2, 4, 8)
    assert cache["hook_rel_pos_embed"].shape == (BATCH, 2 * LENGTH, 32)
    assert cache.stack("hook_resid_post_query").shape == (n, BATCH, 2, 32)
    content = [cache["blocks.0.hook_resid_pre"]] + list(cache.stack("hook_resid_post"))
    query = [cache["blocks.0.hook_resid_pre_query"]] + list(cache.stack("hook_resid_post_query"))
    assert_close(content, expected.hidden_states[0::2], "content stream hooks")
    assert_close(query, expected.hidden_states[1::2], "query stream hooks")
    assert_close(list(cache.stack("attn.hook_pattern")), [a[0] for a in expected.attentions], "hook_pattern")
    assert_close(
        list(cache.stack("attn.hook_pattern_query")), [a[1] for a in expected.attentions], "pattern_query"
    )
    assert_close([cache["hook_logits"], out.logits], [expected.logits] * 2, "hook_logits")
    # Post-norm: the residual stream a block hands on is its LayerNorm's output, in both streams.
    assert torch.equal(cache["blocks.0.hook_resid_post_query"], cache["blocks.0.ln2.hook_normalized_query"])
    assert "blocks.0.hook_mems" not in cache  # no memory was given


def test_patching_hook_mems_changes_the_output_like_other_memories(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "xlnet")
    ours = XLNetModel.from_pretrained(tmp_path)
    first, second = make_inputs(seed=1), make_inputs(seed=2, length=5)
    with torch.no_grad():
        mems = ours(**first, use_mems=True).mems
        plain, cache = ours.run_with_cache({**second, "mems": mems})
        assert cache["blocks.1.hook_mems"].shape == (BATCH, 6, 32)  # batch-first view of mems[1]
        assert torch.equal(cache["blocks.1.hook_mems"], mems[1].transpose(0, 1))

        def zero_memory(memory, hook):
            return torch.zeros_like(memory)

        patched = ours.run_with_hooks(
            {**second, "mems": mems}, fwd_hooks=[("blocks.1.hook_mems", zero_memory)]
        )
        zero_mems = (mems[0], torch.zeros_like(mems[1]))
        expected = hf_model(**second, mems=zero_mems)
    assert (patched.last_hidden_state - plain.last_hidden_state).abs().max() > 1e-3
    assert_close([patched.last_hidden_state], [expected.last_hidden_state], "patched memory")
    # The memory handed on is made of the patched memory too (Hugging Face's cache_mem of what was used).
    assert_close(patched.mems, expected.mems, "mems after patching")


def test_editing_the_query_stream_changes_only_the_predictions(tmp_path):
    save_tiny_hf(tmp_path, "xlnet", "causal_lm")
    ours = XLNetLMHeadModel.from_pretrained(tmp_path)
    kwargs = make_inputs(permutation=True)

    def double(resid, hook):
        return resid * 2

    with torch.no_grad():
        plain = ours(**kwargs, output_hidden_states=True)
        edited = ours.run_with_hooks(
            kwargs, fwd_hooks=[("blocks.0.hook_resid_post_query", double)], output_hidden_states=True
        )
    assert torch.equal(edited.hidden_states[-2], plain.hidden_states[-2])  # content stream untouched
    assert (edited.logits - plain.logits).abs().max() > 1e-3


def test_head_mask_zeroes_hook_z_in_both_streams(tmp_path):
    save_tiny_hf(tmp_path, "xlnet", "causal_lm")
    ours = XLNetLMHeadModel.from_pretrained(tmp_path)
    kwargs = make_inputs(permutation=True)
    head_mask = torch.ones(2, 4)
    head_mask[1, 2] = 0

    def zero_head_2(z, hook):
        z[:, :, 2] = 0
        return z

    hooks = [("blocks.1.attn.hook_z", zero_head_2), ("blocks.1.attn.hook_z_query", zero_head_2)]
    with torch.no_grad():
        masked = ours(**kwargs, head_mask=head_mask).logits
        hooked = ours.run_with_hooks(kwargs, fwd_hooks=hooks).logits
        plain = ours(**kwargs).logits
    assert torch.allclose(masked, hooked, atol=1e-6) and (masked - plain).abs().max() > 1e-4


# Checkpoints both ways, the Auto classes, wb.load --------------------------------------------------


@pytest.mark.parametrize("name", ["XLNetLMHeadModel", "XLNetForSequenceClassification", "XLNetModel"])
def test_saved_checkpoint_loads_in_hugging_face(tmp_path, name):
    import transformers

    our_class = getattr(wb, name)
    ours = our_class.from_config(
        XLNetConfig(vocab_size=VOCAB, d_model=32, n_layer=2, n_head=4, d_inner=37), seed=0
    )
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    ours.save_pretrained(tmp_path / "saved")
    theirs = getattr(transformers, name).from_pretrained(tmp_path / "saved").eval()
    kwargs = make_inputs(padding=True, token_types=True)
    with torch.no_grad():
        expected, got = theirs(**kwargs, output_hidden_states=True), ours(**kwargs, output_hidden_states=True)
    assert_close(got.hidden_states, expected.hidden_states, "hidden_states")
    if name != "XLNetModel":
        assert_close([got.logits], [expected.logits], "logits")
    reloaded = our_class.from_pretrained(tmp_path / "saved")
    assert reloaded.loading_info.missing_keys == [] and reloaded.loading_info.unexpected_keys == []
    for key, value in ours.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_config_round_trip_and_aliases(tmp_path):
    save_tiny_hf(tmp_path, "xlnet", attn_type="uni", clamp_len=4, same_length=True, reuse_len=3)
    config = wb.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, XLNetConfig)
    assert (config.attn_type, config.clamp_len, config.same_length, config.reuse_len) == ("uni", 4, True, 3)
    assert (config.n_layers, config.n_heads, config.d_head, config.d_mlp) == (2, 4, 8, 37)
    old = XLNetConfig.from_dict(
        {"n_token": 50, "hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1}
    )
    assert (old.vocab_size, old.d_model, old.n_head, old.n_layer, old.d_head) == (50, 16, 2, 1, 8)
    with pytest.raises(ValueError, match="attn_type"):
        XLNetConfig(attn_type="left").validate()


@pytest.fixture
def tiny_tokenizer_folder(tmp_path):
    """A Hugging Face XLNetTokenizer over a small hand-made Unigram vocabulary, saved (tokenizer.json)."""
    import transformers

    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    words = [
        "▁the",
        "▁keys",
        "▁to",
        "▁cabinet",
        "▁are",
        "▁on",
        "▁table",
        "▁cat",
        "▁sat",
        "▁a",
        "▁I",
        "▁think",
        "▁that",
        "▁is",
        "▁in",
        "▁Paris",
        "ing",
        "s",
        "ed",
        "▁",
        ".",
        ",",
    ]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [
        chr(c) for c in range(ord("A"), ord("Z") + 1)
    ]
    vocab = [(t, 0.0) for t in specials] + [(w, -2.0 - 0.1 * i) for i, w in enumerate(words)]
    vocab += [(c, -8.0) for c in letters]
    tokenizer = transformers.XLNetTokenizer(vocab=vocab)
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    return folder, tokenizer, len(vocab)


TRICKY = [
    "The keys to the cabinet are on the table.",
    "  leading and   repeated   spaces ",
    "Café naïve ``quoted'' text",
    "Ｆｕｌｌ-width ﬁ ligature",
    "the <mask> sat<sep>on a mat",
    "",
    "tab\tand\nnewline",
    "<cls> in the middle <eod>",
]


def test_tokenizer_matches_hugging_face(tiny_tokenizer_folder):
    folder, theirs, _ = tiny_tokenizer_folder
    ours = wb.AutoTokenizer.from_pretrained(folder)
    assert isinstance(ours, XLNetTokenizer) and ours.padding_side == "left"
    for text in TRICKY:
        expected = theirs(text, return_token_type_ids=True)
        got = ours(text)
        assert got["input_ids"] == expected["input_ids"], text
        assert got["token_type_ids"] == expected["token_type_ids"], text
        assert got.tokens()[-2:] == ["<sep>", "<cls>"]
        assert ours.decode(got["input_ids"]) == theirs.decode(expected["input_ids"])
        assert ours.decode(got["input_ids"], skip_special_tokens=True) == theirs.decode(
            expected["input_ids"], skip_special_tokens=True
        )
    expected = theirs(TRICKY[:3], TRICKY[3:6], padding=True, return_token_type_ids=True)
    got = ours(TRICKY[:3], TRICKY[3:6], padding=True)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert got[key] == expected[key], key
    assert got["token_type_ids"][0][-1] == 2 and got["attention_mask"][1][0] == 0  # <cls> last, left padding


def test_tokenizer_saves_for_hugging_face(tiny_tokenizer_folder, tmp_path):
    import transformers

    folder, theirs, _ = tiny_tokenizer_folder
    wb.AutoTokenizer.from_pretrained(folder).save_pretrained(tmp_path / "again")
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "again")
    assert type(reloaded).__name__ == "XLNetTokenizer" and reloaded.padding_side == "left"
    for text in TRICKY:
        assert reloaded(text)["input_ids"] == theirs(text)["input_ids"]


@pytest.mark.skipif(
    importlib.util.find_spec("sentencepiece") is None or importlib.util.find_spec("google.protobuf") is None,
    reason="training a spiece.model and Hugging Face's conversion of it need sentencepiece and protobuf",
)
def test_spiece_model_reads_like_hugging_face(tmp_path):
    import sentencepiece as spm
    import transformers

    words = "the quick brown fox jumps over lazy dog café naïve résumé Hello world don't 1999 York".split()
    generator = torch.Generator().manual_seed(0)
    lines = [
        " ".join(words[i] for i in torch.randint(0, len(words), (12,), generator=generator))
        for _ in range(300)
    ]
    (tmp_path / "corpus.txt").write_text("\n".join(lines))
    (tmp_path / "spm").mkdir()
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "corpus.txt"),
        model_prefix=str(tmp_path / "spm" / "spiece"),
        vocab_size=50,
        model_type="unigram",
        user_defined_symbols=["<sep>", "<cls>", "<eod>", "<eop>", "<mask>"],
        pad_id=-1,
        character_coverage=1.0,
        minloglevel=2,
    )
    model_file = tmp_path / "spm" / "spiece.model"
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    read = read_sentencepiece_model(model_file)
    assert [p for p, _, _ in read["pieces"]] == [
        processor.id_to_piece(i) for i in range(processor.get_piece_size())
    ]
    assert [s for _, s, _ in read["pieces"]] == pytest.approx(
        [processor.get_score(i) for i in range(processor.get_piece_size())]
    )
    theirs = transformers.XLNetTokenizer.from_pretrained(tmp_path / "spm")
    ours = wb.AutoTokenizer.from_pretrained(tmp_path / "spm")  # no config: a bare spiece.model is XLNet's
    for text in TRICKY + ["Hello world, the café!", "New York<sep>e-mail"]:
        expected = theirs(text, return_token_type_ids=True)
        got = ours(text)
        assert got["input_ids"] == expected["input_ids"], text
        assert got["token_type_ids"] == expected["token_type_ids"], text
        assert ours.decode(got["input_ids"], skip_special_tokens=True) == theirs.decode(
            expected["input_ids"], skip_special_tokens=True
        )
    # The sentencepiece library is the second oracle: a user-defined piece that is no named special token
    # (<eod>, <eop>) is matched inside the text as SentencePiece matches it, its "▁" kept before it.
    for text in ["a <eod>b", "a  <eod>  b", "<eod>", "tab\t<eod>\nx", "in the middle <eod>", "x<eop> y"]:
        pieces = ours.convert_ids_to_tokens(ours(text, add_special_tokens=False)["input_ids"])
        assert pieces == processor.encode(text, out_type=str), text


def test_wb_load_runs_on_text_and_generates(tmp_path, tiny_tokenizer_folder):
    import transformers

    folder, theirs, vocab_size = tiny_tokenizer_folder
    hf_model = save_tiny_hf(tmp_path / "model", "xlnet", "causal_lm", vocab_size=vocab_size)
    theirs.save_pretrained(tmp_path / "model")
    lm = wb.load(tmp_path / "model", device="cpu")
    assert isinstance(lm, XLNetLMHeadModel) and isinstance(lm.tokenizer, XLNetTokenizer)
    assert isinstance(wb.AutoModelForCausalLM.from_pretrained(tmp_path / "model"), XLNetLMHeadModel)
    out, cache = lm.run_with_cache(["The keys are on the table.", "I think"])
    assert cache.tokens[1][:3] == ["<pad>"] * 3 and cache.tokens[0][-2:] == ["<sep>", "<cls>"]
    assert cache.stack("attn.hook_pattern").shape[:3] == (2, 2, 4)

    # One step, as Hugging Face's generation builds it: a dummy last token predicted by the query stream.
    prompt = torch.tensor([theirs("I think that the", add_special_tokens=False)["input_ids"]])
    dummy = torch.cat([prompt, torch.zeros(1, 1, dtype=torch.long)], dim=1)
    perm_mask = torch.zeros(1, dummy.shape[1], dummy.shape[1])
    perm_mask[:, :, -1] = 1
    target_mapping = torch.zeros(1, 1, dummy.shape[1])
    target_mapping[0, 0, -1] = 1
    with torch.no_grad():
        expected = hf_model(dummy, perm_mask=perm_mask, target_mapping=target_mapping).logits[:, 0]
        got = lm.next_token_logits(prompt)
    assert_close([got], [expected], "next-token logits")

    # Greedy generation: each step is the argmax of next_token_logits over the sequence so far.
    result = lm.generate("I think that the", max_new_tokens=4, stop_at_eos=False)
    ids = prompt
    for _ in range(4):
        with torch.no_grad():
            ids = torch.cat([ids, lm.next_token_logits(ids).argmax(-1, keepdim=True)], dim=1)
    assert result.new_token_ids[0] == ids[0, prompt.shape[1] :].tolist()
    assert isinstance(
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "model"), transformers.XLNetLMHeadModel
    )


def test_left_padding_does_not_change_real_tokens(tmp_path):
    save_tiny_hf(tmp_path, "xlnet", "causal_lm")
    lm = XLNetLMHeadModel.from_pretrained(tmp_path)
    ids = make_inputs(seed=5, batch=1, length=6)["input_ids"]
    padded = torch.cat([torch.full((1, 3), 5), ids], dim=1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        alone = lm(ids).logits
        with_padding = lm(padded, attention_mask=mask).logits[:, 3:]
        next_alone = lm.next_token_logits(ids)
        next_padded = lm.next_token_logits(padded, mask)
    # Relative positions: distances between real tokens do not move when padding is added on the left.
    assert_close([with_padding, next_padded], [alone, next_alone], "left padding")


def test_bad_inputs_are_named(tmp_path):
    model = XLNetModel.from_config(XLNetConfig(vocab_size=VOCAB, d_model=16, n_layer=2, n_head=2, d_inner=8))
    ids = make_inputs(length=5)["input_ids"]
    with pytest.raises(ValueError, match=r"mems\[0\] has shape"):
        model(ids, mems=(torch.zeros(3, 2, 16), torch.zeros(3, 2, 16)))
    with pytest.raises(ValueError, match="mems has 1 tensors"):
        model(ids, mems=(torch.zeros(3, BATCH, 16),))
    with pytest.raises(ValueError, match="perm_mask has shape"):
        model(ids, perm_mask=torch.zeros(BATCH, 5, 4))
    with pytest.raises(ValueError, match="target_mapping has shape"):
        model(ids, target_mapping=torch.zeros(BATCH, 1, 4))
    with pytest.raises(ValueError, match="d_head"):
        XLNetConfig(d_model=16, n_head=2, d_head=4).validate()
