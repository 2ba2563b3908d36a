"""Transformer-XL against golden outputs of Hugging Face transformers 4.35.2 (the last release that has it).

The fixtures (tests/fixtures/transfo_xl/, made by scripts/make_transfo_xl_fixtures.py) are tiny random
checkpoints saved by 4.35 and its outputs over two consecutive segments: the second segment runs with the
memory of the first.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import workbench as wb
from workbench.models.transfo_xl import TransfoXLConfig, TransfoXLLMHeadModel, relative_shift
from workbench.tokenizers.transfo_xl import (
    TransfoXLTokenizer,
    UnsafePickleError,
    load_vocab_pickle,
    read_vocab_txt,
)

FIXTURES = Path(__file__).parent / "fixtures" / "transfo_xl"
LM_CHECKPOINTS = ["adaptive", "projected", "plain"]
TOLERANCE = 1e-4


def reference(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / name / "reference.safetensors"))


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} != reference {tuple(theirs.shape)}"
    difference = (ours.float() - theirs.float()).abs().max().item()
    assert difference <= TOLERANCE, f"{what}: max abs difference {difference:.2e} > {TOLERANCE}"


@pytest.fixture(scope="module", params=LM_CHECKPOINTS)
def lm_case(request):
    model = TransfoXLLMHeadModel.from_pretrained(FIXTURES / request.param)
    return request.param, model, reference(request.param)


# Parity with Hugging Face 4.35 -----------------------------------------------------------------------


def test_checkpoints_load_without_missing_or_unexpected_keys(lm_case):
    _, model, _ = lm_case
    info = model.loading_info
    assert (info.missing_keys, info.unexpected_keys, info.mismatched_keys) == ([], [], [])


def test_two_segments_match_reference(lm_case):
    """Log-probs, every hidden state, every attention pattern and the new mems of both segments; the second
    segment gets the first one's mems, so this checks the recurrence too."""
    name, model, ref = lm_case
    mems = None
    for segment in range(2):
        prefix = f"segment{segment}."
        with torch.no_grad():
            out = model(
                ref[prefix + "input_ids"], mems=mems, output_hidden_states=True, output_attentions=True
            )
        assert_close(
            out.prediction_scores, ref[prefix + "prediction_scores"], f"{name} {prefix}prediction_scores"
        )
        assert len(out.hidden_states) == model.n_layers + 1
        for layer, hidden in enumerate(out.hidden_states):
            assert_close(
                hidden, ref[f"{prefix}hidden_states.{layer}"], f"{name} {prefix}hidden_states[{layer}]"
            )
        for layer, attention in enumerate(out.attentions):
            assert_close(attention, ref[f"{prefix}attentions.{layer}"], f"{name} {prefix}attentions[{layer}]")
        if model.config.mem_len == 0:
            assert out.mems is None
        else:
            assert len(out.mems) == model.n_layers
            for layer, mem in enumerate(out.mems):
                assert_close(mem, ref[f"{prefix}mems.{layer}"], f"{name} {prefix}mems[{layer}]")
        mems = out.mems


def test_losses_match_reference(lm_case):
    name, model, ref = lm_case
    first = model(ref["segment0.input_ids"])
    with torch.no_grad():
        out = model(ref["segment1.input_ids"], mems=first.mems, labels=ref["segment1.labels"])
    assert_close(out.losses, ref["segment1.losses_keep_order"], f"{name} losses (position order)")
    assert_close(out.loss, ref["segment1.loss"], f"{name} loss")
    if not model.config.cutoffs:  # a plain softmax: Hugging Face keeps position order
        assert_close(out.losses, ref["segment1.losses"], f"{name} losses")
        return
    # Hugging Face's default order with clusters: the positions of each cluster in turn (ignored labels last).
    labels = ref["segment1.labels"][:, 1:].flatten()
    ours = out.losses.flatten()
    grouped = [ours[(labels >= start) & (labels < end)] for start, end in model.config.cluster_bounds]
    grouped.append(torch.zeros(int((labels == -100).sum())))
    assert_close(
        torch.cat(grouped).view_as(out.losses), ref["segment1.losses"], f"{name} losses (cluster order)"
    )


def test_sequence_classifier_matches_reference():
    model = wb.AutoModelForSequenceClassification.from_pretrained(FIXTURES / "classifier")
    assert isinstance(model, wb.TransfoXLForSequenceClassification)
    assert model.loading_info.missing_keys == []
    ref = reference("classifier")
    out = model(ref["input_ids"], labels=ref["labels"])  # row 1 is right-padded with pad_token_id
    assert_close(out.logits, ref["logits"], "classifier logits")
    assert_close(out.loss, ref["loss"], "classifier loss")


# Hooks -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adaptive():
    return TransfoXLLMHeadModel.from_pretrained(FIXTURES / "adaptive")


def test_hook_names_in_forward_order(adaptive):
    names = adaptive.hook_names
    assert names[:3] == ["hook_embed", "hook_rel_pos_embed", "blocks.0.hook_resid_pre"]
    block = [name[len("blocks.0.") :] for name in names if name.startswith("blocks.0.")]
    assert block == [
        "hook_resid_pre", "hook_mems", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_k_rel",
        "attn.hook_scores_content", "attn.hook_scores_position", "attn.hook_scores", "attn.hook_pattern",
        "attn.hook_z", "hook_attn_out", "ln1.hook_scale", "ln1.hook_normalized", "hook_resid_mid", "mlp.hook_pre",
        "mlp.hook_post", "hook_mlp_out", "ln2.hook_scale", "ln2.hook_normalized", "hook_resid_post",
    ]  # fmt: skip
    assert names[-1] == "hook_logits"
    projected = TransfoXLLMHeadModel.from_pretrained(FIXTURES / "projected")  # pre-norm: LayerNorms first
    block = [name[len("blocks.0.") :] for name in projected.hook_names if name.startswith("blocks.0.")]
    assert block.index("ln1.hook_normalized") < block.index("attn.hook_q")
    assert block.index("ln2.hook_normalized") < block.index("mlp.hook_pre")


def test_cache_equals_outputs_and_score_terms_add_up(adaptive):
    ref = reference("adaptive")
    first = adaptive(ref["segment0.input_ids"])
    out, cache = adaptive.run_with_cache(
        ref["segment1.input_ids"], mems=first.mems, output_hidden_states=True, output_attentions=True
    )
    batch, new, mem = 2, 5, adaptive.config.mem_len
    assert cache["blocks.0.hook_mems"].shape == (batch, mem, 16)
    assert cache["blocks.0.attn.hook_k"].shape == (batch, mem + new, 2, 8)
    assert cache["blocks.0.attn.hook_k_rel"].shape == (batch, mem + new, 2, 8)
    assert cache["hook_rel_pos_embed"].shape == (batch, mem + new, 16)
    assert cache["blocks.0.attn.hook_pattern"].shape == (batch, 2, new, mem + new)
    stacked = cache.stack("hook_resid_post")  # [layer, batch, pos, d_model]
    assert stacked.shape == (adaptive.n_layers, batch, new, 16)
    for layer in range(adaptive.n_layers):
        assert torch.equal(cache[f"blocks.{layer}.hook_resid_pre"], out.hidden_states[layer])
        assert torch.equal(cache[f"blocks.{layer}.attn.hook_pattern"], out.attentions[layer])
        assert torch.equal(cache[f"blocks.{layer}.hook_mems"], first.mems[layer].transpose(0, 1))
        scores = cache[f"blocks.{layer}.attn.hook_scores"]
        terms = (
            cache[f"blocks.{layer}.attn.hook_scores_content"]
            + cache[f"blocks.{layer}.attn.hook_scores_position"]
        )
        visible = out.attentions[layer] > 0
        assert torch.allclose(scores[visible], terms[visible])
    assert torch.equal(stacked[-1], out.hidden_states[-1])
    assert torch.equal(cache["hook_logits"], out.logits)


def test_position_term_uses_the_distance(adaptive):
    """relative_shift puts the embedding of distance i - j (row key_pos - 1 - (i - j) with mem = key_pos - pos)
    at [i, j]."""
    raw = torch.arange(4 * 6.0).view(4, 6)  # [query_pos, key_pos], rel rows indexed by m
    shifted = relative_shift(raw)
    for i in range(4):
        for j in range(2 + i + 1):  # visible keys: j <= mem + i, mem = 2
            distance = 2 + i - j
            assert shifted[i, j] == raw[i, 6 - 1 - distance]


def test_score_terms_follow_the_paper(adaptive):
    """hook_scores_content = (q + u) . k_j and hook_scores_position = (q + v) . W_r R_(i-j), both over
    sqrt(d_head), recomputed from the cached q, k and relative keys for every visible key."""
    ref = reference("adaptive")
    first = adaptive(ref["segment0.input_ids"])
    _, cache = adaptive.run_with_cache(ref["segment1.input_ids"], mems=first.mems)
    attn = adaptive.blocks[1].attn
    q, k, k_rel = (cache[f"blocks.1.attn.{name}"] for name in ("hook_q", "hook_k", "hook_k_rel"))
    new, key_len, scale = q.shape[1], k.shape[1], attn.d_head**-0.5
    content = torch.einsum("bqhd,bkhd->bhqk", q + attn.r_w_bias, k) * scale
    assert torch.allclose(cache["blocks.1.attn.hook_scores_content"], content, atol=1e-6)
    position = cache["blocks.1.attn.hook_scores_position"]
    memory = key_len - new
    for i in range(new):
        for j in range(memory + i + 1):
            row = key_len - 1 - (memory + i - j)  # k_rel row m embeds the distance key_len - 1 - m
            expected = ((q[:, i] + attn.r_r_bias) * k_rel[:, row]).sum(-1) * scale  # [batch, head]
            assert torch.allclose(position[:, :, i, j], expected, atol=1e-6)


def test_hook_mems_can_read_and_patch_the_memory(adaptive):
    """Running segment 1 without mems but patching hook_mems with segment 0's memory gives the reference
    output of segment 1; patching it with something else changes the output."""
    ref = reference("adaptive")
    memory = [
        ref[f"segment0.mems.{layer}"].transpose(0, 1) for layer in range(adaptive.n_layers)
    ]  # batch-first
    hooks = [(f"blocks.{layer}.hook_mems", lambda mems, hook: memory[hook.layer]) for layer in range(2)]
    with torch.no_grad():
        patched = adaptive.run_with_hooks(ref["segment1.input_ids"], fwd_hooks=hooks)
        plain = adaptive(ref["segment1.input_ids"])
    assert_close(patched.prediction_scores, ref["segment1.prediction_scores"], "segment 1 with patched mems")
    assert (plain.prediction_scores - patched.prediction_scores).abs().max() > 1e-3
    # The patched memory is also what the next segment remembers.
    for layer in range(adaptive.n_layers):
        assert_close(patched.mems[layer], ref[f"segment1.mems.{layer}"], f"new mems[{layer}] after patching")


def test_empty_mems_attend_to_the_segment_only(adaptive):
    ids = torch.tensor([[5, 7, 9, 11]])
    out = adaptive(ids, mems=adaptive.empty_mems(1), output_attentions=True)
    assert out.attentions[0].shape == (1, 2, 4, 4)  # no memory keys
    assert torch.equal(out.attentions[0][0, :, 0, 1:], torch.zeros(2, 3))  # causal
    assert [tuple(mem.shape) for mem in out.mems] == [(4, 1, 16)] * 2  # what the next segment remembers
    prefix = adaptive(ids[:, :2], mems=adaptive.empty_mems(1)).logits
    assert_close(out.logits[:, :2], prefix, "a prefix does not see what follows")


def test_right_padding_leaves_real_tokens_unchanged(adaptive):
    ids = torch.tensor([[5, 7, 9, 11, 13], [6, 8, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        batched = adaptive(ids, attention_mask=mask).prediction_scores
        alone = adaptive(ids[1:, :3]).prediction_scores
    assert_close(batched[1, :3], alone[0], "right-padded row")


# The tracer warns about Python ints taken from shapes (the segment and memory lengths): a trace is for one shape.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traces_and_exports_with_no_hooks(adaptive):
    ids = torch.tensor([[1, 12, 30, 5, 39], [2, 3, 26, 11, 0]])  # every cluster of the adaptive embedding
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    other = torch.tensor([[9, 22, 31, 5, 38], [7, 3, 16, 11, 1]])
    with torch.no_grad():
        traced = torch.jit.trace(adaptive, example_kwarg_inputs={"input_ids": ids, "attention_mask": mask})
        exported = torch.export.export(adaptive, (ids,), kwargs={"attention_mask": mask}).module()
        for inputs in (ids, other):  # nothing of the example input is baked in
            expected = adaptive(inputs, attention_mask=mask).logits
            assert torch.equal(traced(input_ids=inputs, attention_mask=mask)[0], expected)
            assert torch.equal(exported(inputs, attention_mask=mask).logits, expected)


def test_random_init_ties_embeddings_and_projections():
    config = TransfoXLConfig.from_dict(
        dict(
            vocab_size=30,
            cutoffs=[10],
            div_val=2,
            d_model=8,
            d_embed=8,
            n_head=2,
            d_head=4,
            d_inner=16,
            n_layer=1,
        )
    )
    model = TransfoXLLMHeadModel.from_config(config, seed=0)
    for cluster in range(2):
        assert model.lm_head.layers[cluster].weight is model.embed.layers[cluster].weight
    assert model.lm_head.projs[1] is model.embed.projs[1]  # tie_projs [False, True]
    assert model.lm_head.projs[0] is not model.embed.projs[0]
    assert model.blocks[0].attn.r_w_bias.abs().sum() > 0  # initialized, not left empty


def test_bad_mems_name_the_shape(adaptive):
    with pytest.raises(
        ValueError, match=r"mems\[0\] has shape \(2, 6, 16\); expected \[mem, batch=2, d_model=16\]"
    ):
        adaptive(torch.zeros(2, 3, dtype=torch.long), mems=[torch.zeros(2, 6, 16)] * 2)
    with pytest.raises(ValueError, match="vocabulary has 40 words"):
        adaptive(torch.tensor([[1, 40]]))


# Loading, saving, Auto classes, generation -----------------------------------------------------------


def test_save_pretrained_writes_hugging_face_names(tmp_path, lm_case):
    name, model, _ = lm_case
    model.save_pretrained(tmp_path / name)
    with safe_open(str(FIXTURES / name / "model.safetensors"), "pt") as theirs:
        expected = set(theirs.keys())
    with safe_open(str(tmp_path / name / "model.safetensors"), "pt") as ours:
        assert set(ours.keys()) == expected
    again = TransfoXLLMHeadModel.from_pretrained(tmp_path / name)
    assert again.loading_info.missing_keys == [] and again.loading_info.unexpected_keys == []
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(again(ids).logits, model(ids).logits)
    saved = json.loads((tmp_path / name / "config.json").read_text())
    assert saved["model_type"] == "transfo-xl" and saved["architectures"] == ["TransfoXLLMHeadModel"]


def test_auto_classes_and_config():
    config = wb.AutoConfig.from_pretrained(FIXTURES / "adaptive")
    assert isinstance(config, TransfoXLConfig) and config.tie_projs == [False, True, True]
    assert config.n_layers == 2 and config.n_heads == 2 and config.d_mlp == 24
    assert isinstance(wb.AutoModel.from_pretrained(FIXTURES / "adaptive"), wb.TransfoXLModel)
    assert isinstance(wb.AutoModelForCausalLM.from_pretrained(FIXTURES / "plain"), wb.TransfoXLLMHeadModel)
    # The original checkpoints call vocab_size n_token.
    old = TransfoXLConfig.from_dict({"n_token": 33, "cutoffs": [10], "div_val": 1})
    assert old.vocab_size == 33 and old.tie_projs == [False, True]
    with pytest.raises(ValueError, match="attn_type=1"):
        TransfoXLConfig.from_dict({"attn_type": 1})


def small_vocab(size: int) -> dict[str, int]:
    """The fixture vocabulary cut to ``size - 1`` words, so that <formula> takes the last id."""
    vocab = read_vocab_txt(FIXTURES / "tokenizer" / "vocab.txt")
    return {symbol: index for symbol, index in vocab.items() if index < size - 1}


@pytest.fixture()
def lm_folder(tmp_path):
    """The adaptive checkpoint with a tokenizer of its 40 ids, as a folder wb.load reads."""
    folder = tmp_path / "adaptive"
    shutil.copytree(FIXTURES / "adaptive", folder)
    (folder / "reference.safetensors").unlink()
    TransfoXLTokenizer.from_vocab(small_vocab(40)).save_pretrained(folder)
    return folder


def test_wb_load_runs_text(lm_folder):
    lm = wb.load(lm_folder, device="cpu")
    assert isinstance(lm, wb.TransfoXLLMHeadModel) and isinstance(lm.tokenizer, TransfoXLTokenizer)
    out, cache = lm.run_with_cache("The cat sat on the mat.")
    assert cache.tokens == ["The", "cat", "sat", "on", "the", "mat", "."]
    assert out.logits.shape == (1, 7, 40)
    assert torch.allclose(out.logits.exp().sum(-1), torch.ones(1, 7), atol=1e-5)  # log-probabilities


def test_generate_carries_the_memory(lm_folder):
    lm = wb.load(lm_folder, device="cpu")
    seen = []
    hook = ("hook_embed", lambda embed, hook: seen.append(embed.shape[1]))
    result = lm.generate("The cat sat", max_new_tokens=4, fwd_hooks=[hook], stop_at_eos=False)
    assert seen == [3, 1, 1, 1]  # the prompt, then one new token per step: the rest comes from the memory
    # The same greedy loop by hand, passing mems.
    ids = lm.tokenize("The cat sat")["input_ids"]
    out = lm(ids)
    expected = []
    for _ in range(4):
        token = out.logits[:, -1].argmax(-1)
        expected.append(int(token))
        out = lm(token[:, None], mems=out.mems)
    assert result.new_token_ids[0] == expected
    recomputed = lm.generate("The cat sat", max_new_tokens=1, use_kv_cache=False, stop_at_eos=False)
    assert recomputed.new_token_ids[0] == expected[:1]
    sampled = lm.generate(["The cat sat", "the"], max_new_tokens=3, top_k=5, seed=0)
    assert len(sampled.new_token_ids) == 2 and sampled.steps["probability"].between(0, 1).all()


# Tokenizer -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected_ids():
    return json.loads((FIXTURES / "tokenizer" / "expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("lower_case", [False, True])
def test_tokenizer_ids_match_reference(expected_ids, lower_case):
    vocab = read_vocab_txt(FIXTURES / "tokenizer" / "vocab.txt")
    tokenizer = TransfoXLTokenizer.from_vocab(vocab, lower_case=lower_case)
    for text, expected in expected_ids["lower_case" if lower_case else "cased"].items():
        assert tokenizer.tokenize(text) == expected["tokens"], text
        assert tokenizer(text)["input_ids"] == expected["input_ids"], text


@pytest.mark.parametrize("folder", ["saved_by_4.35", "legacy"])
def test_vocab_pkl_loads_without_executing_it(expected_ids, folder):
    """Both pickles: 4.35's save_pretrained (its whole __dict__: Moses objects, regexes, a trie) and the
    original checkpoints' format (Counter, OrderedDict, lists)."""
    tokenizer = wb.AutoTokenizer.from_pretrained(FIXTURES / "tokenizer" / folder)
    assert isinstance(tokenizer, TransfoXLTokenizer)
    for text, ids in expected_ids[folder].items():
        assert tokenizer(text)["input_ids"] == ids, text


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_malicious_vocab_pkl_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned.txt"
    folder = tmp_path / "evil"
    folder.mkdir()
    payload = {"sym2idx": {"<unk>": 0}, "idx2sym": ["<unk>"], "hook": _Exploit(marker)}
    (folder / "vocab.pkl").write_bytes(pickle.dumps(payload))
    # Plain pickle would run the command: the control marker appears.
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(_Exploit(control)))
    assert control.exists()
    with pytest.raises(
        UnsafePickleError, match=r"evil/vocab\.pkl: refusing to load the global (os|posix)\.system"
    ):
        wb.AutoTokenizer.from_pretrained(folder)
    with pytest.raises(UnsafePickleError):
        load_vocab_pickle(folder / "vocab.pkl")
    assert not marker.exists()
    (folder / "vocab.pkl").write_bytes(pickle.dumps({"sym2idx": {"<unk>": 0}, "f": eval}))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_vocab_pickle(folder / "vocab.pkl")


def test_tokenizer_round_trip_and_options(tmp_path, expected_ids):
    tokenizer = TransfoXLTokenizer.from_pretrained(FIXTURES / "tokenizer" / "legacy")
    tokenizer.save_pretrained(tmp_path)
    again = wb.AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(again, TransfoXLTokenizer) and again.vocab == tokenizer.vocab
    for text, ids in expected_ids["legacy"].items():
        assert again(text)["input_ids"] == ids
    text = "It cost $5,000.50 in 1984 -- a well-known fact!"
    assert (
        tokenizer.decode(tokenizer(text)["input_ids"]) == "<unk> cost $5,000.50 in 1984 -- a well-known fact!"
    )
    with_eos = TransfoXLTokenizer.from_vocab(tokenizer.vocab, add_eos=True)
    assert with_eos("the cat")["input_ids"] == [2, 7, 1]
    plain = TransfoXLTokenizer.from_vocab(tokenizer.vocab, moses=False)
    assert plain.tokenize("the cat, sat") == ["the", "cat,", "sat"]  # whitespace only
    batch = tokenizer(["The cat sat", "the mat"], padding=True, return_tensors="pt")
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["input_ids"][1, 2] == tokenizer.token_to_id("<eos>")  # padding with <eos>
