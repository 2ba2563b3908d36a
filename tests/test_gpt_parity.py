"""Our GPT-2 and GPT against Hugging Face's on the same tiny random checkpoints: hidden states, attentions,
logits and losses (max abs diff <= 1e-4 in float32), with and without padding; batching that gives every
real token the activations it has alone (<= 1e-5); the key/value cache; the pinned hook names; saving
folders that Hugging Face loads back; tracing and export.

Hugging Face's GPT-2 and GPT number positions 0..n-1 whatever the padding, ours count the real tokens of
the attention mask: padded parity passes Hugging Face ``position_ids`` counted the same way and compares
real (non-padding) positions only.
"""

from __future__ import annotations

import json

import pytest
import torch
from tiny_hf import save_tiny_hf

import workbench as wb

TOL = 1e-4  # parity with Hugging Face
BATCH_TOL = 1e-5  # batched vs alone, cached vs full: the same model on the same numbers

# Tiny checkpoints: each name's prefix is its architecture.
VARIANTS = {
    "gpt2": {},
    "gpt2-3layers-inverse-layer-idx": dict(n_layers=3, scale_attn_by_inverse_layer_idx=True),
    "gpt2-unscaled-attention": dict(scale_attn_weights=False),
    "gpt2-relu-n_inner": dict(activation_function="relu", n_inner=37),
    "gpt": {},
    "gpt-3layers-relu": dict(n_layers=3, afn="relu"),
}
HF_CLASSES = {
    "gpt2": {"base": "GPT2Model", "lm": "GPT2LMHeadModel", "cls": "GPT2ForSequenceClassification"},
    "gpt": {"base": "OpenAIGPTModel", "lm": "OpenAIGPTLMHeadModel", "cls": "OpenAIGPTForSequenceClassification"},
}
OUR_CLASSES = {
    "gpt2": {"base": wb.GPT2Model, "lm": wb.GPT2LMHeadModel, "cls": wb.GPT2ForSequenceClassification},
    "gpt": {"base": wb.OpenAIGPTModel, "lm": wb.OpenAIGPTLMHeadModel, "cls": wb.OpenAIGPTForSequenceClassification},
}
AUTO = {
    "base": wb.AutoModel,
    "lm": wb.AutoModelForCausalLM,
    "cls": wb.AutoModelForSequenceClassification,
}
MODEL_TYPES = {"gpt2": "gpt2", "gpt": "openai-gpt"}
TASKS = {"base": "base", "lm": "causal_lm", "cls": "sequence_classification"}

PAD_ID = 0
LENGTHS = [9, 6, 2]  # real tokens per row; the first row has no padding

# Largest differences measured by the parity checks, by (architecture, what): for the record.
LARGEST_DIFFS: dict[tuple[str, str], float] = {}


def arch_of(variant: str) -> str:
    return "gpt2" if variant.startswith("gpt2") else "gpt"


def make_batch(padding: str, seed: int = 0):
    """-> (input_ids [3, 9], attention_mask or None, real [3, 9] bool). Padding is ``PAD_ID`` on the
    right or the left; ``"none"`` gives full rows and no mask."""
    generator = torch.Generator().manual_seed(seed)
    batch, length = len(LENGTHS), max(LENGTHS)
    sentences = torch.randint(1, 98, (batch, length), generator=generator)  # row r: its first LENGTHS[r] tokens
    real = torch.ones(batch, length, dtype=torch.bool)
    if padding == "none":
        return sentences, None, real
    input_ids = torch.full((batch, length), PAD_ID)
    for row, n in enumerate(LENGTHS):
        where = slice(0, n) if padding == "right" else slice(length - n, length)
        input_ids[row, where] = sentences[row, :n]
        real[row] = False
        real[row, where] = True
    return input_ids, real.long(), real


def hf_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens, as ours are (Hugging Face's default is 0..n-1 for every row)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def hf_inputs(input_ids, attention_mask):
    if attention_mask is None:
        return {"input_ids": input_ids}
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": hf_position_ids(attention_mask)}


def assert_close(ours, theirs, what, arch, tol=TOL):
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    diff = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    key = (arch, what.split("[")[0])
    LARGEST_DIFFS[key] = max(LARGEST_DIFFS.get(key, 0.0), diff)
    assert diff <= tol, f"{what} differs by {diff:.2e} (tolerance {tol:.0e})"


def at_real(tensor, real):
    """[batch, pos, ...] -> [real tokens, ...]"""
    return tensor[real]


def real_query_rows(pattern, real):
    """[batch, head, query_pos, key_pos] -> [real queries, head, key_pos] (every key, padding included)."""
    return pattern.transpose(1, 2)[real]


def perturb(model, seed=0):
    """Move every parameter off its initial value (LayerNorms 1/0, biases 0), as the Hugging Face models are."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(variant, head) -> (Hugging Face model, the folder it is saved in); made once per module."""
    made = {}

    def get(variant, head="lm", **fields):
        key = (variant, head, tuple(sorted(fields.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"{variant}-{head}")
            arch = arch_of(variant)
            hf_model = save_tiny_hf(folder, MODEL_TYPES[arch], TASKS[head], **{**VARIANTS[variant], **fields})
            made[key] = (hf_model, folder)
        return made[key]

    return get


# 1. Hidden states, attentions and logits -------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_hidden_states_attentions_and_logits_match(checkpoint, variant, padding):
    arch = arch_of(variant)
    hf_model, folder = checkpoint(variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert type(ours) is OUR_CLASSES[arch]["lm"]
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []

    input_ids, mask, real = make_batch(padding)
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), output_hidden_states=True, output_attentions=True)
        got = ours(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    n_layers = hf_model.config.n_layer
    assert len(got.hidden_states) == len(expected.hidden_states) == n_layers + 1
    assert len(got.attentions) == len(expected.attentions) == n_layers
    for i, (a, b) in enumerate(zip(got.hidden_states, expected.hidden_states)):
        assert_close(at_real(a, real), at_real(b, real), f"hidden_states[{i}]", arch)
    for i, (a, b) in enumerate(zip(got.attentions, expected.attentions)):
        assert a.shape == b.shape
        assert_close(real_query_rows(a, real), real_query_rows(b, real), f"attentions[{i}]", arch)
    assert_close(at_real(got.logits, real), at_real(expected.logits, real), "logits", arch)

    # The bare body from the same checkpoint (its "transformer." prefix stripped) gives Hugging Face's body output.
    body = wb.AutoModel.from_pretrained(folder)
    assert type(body) is OUR_CLASSES[arch]["base"]
    assert body.loading_info.missing_keys == [] and body.loading_info.unexpected_keys == []
    with torch.no_grad():
        expected_body = hf_model.transformer(**hf_inputs(input_ids, mask)).last_hidden_state
        got_body = body(input_ids=input_ids, attention_mask=mask).last_hidden_state
    assert_close(at_real(got_body, real), at_real(expected_body, real), "last_hidden_state", arch)


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
def test_bare_checkpoints_match(checkpoint, arch):
    """A checkpoint of the bare Hugging Face model (no prefix, no head), left-padded."""
    hf_model, folder = checkpoint(arch, "base")
    ours = wb.AutoModel.from_pretrained(folder)
    assert type(ours) is OUR_CLASSES[arch]["base"]
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), output_hidden_states=True, output_attentions=True)
        got = ours(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    for i, (a, b) in enumerate(zip(got.hidden_states, expected.hidden_states, strict=True)):
        assert_close(at_real(a, real), at_real(b, real), f"hidden_states[{i}]", arch)
    for i, (a, b) in enumerate(zip(got.attentions, expected.attentions, strict=True)):
        assert_close(real_query_rows(a, real), real_query_rows(b, real), f"attentions[{i}]", arch)
    assert_close(at_real(got.last_hidden_state, real), at_real(expected.last_hidden_state, real),
                 "last_hidden_state", arch)

    # The LM head on a bare checkpoint: the unembedding is tied to the embedding, so nothing is missing.
    lm = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert lm.loading_info.missing_keys == [] and lm.loading_info.unexpected_keys == []
    with torch.no_grad():
        logits = lm(input_ids=input_ids, attention_mask=mask).logits
    expected_logits = expected.last_hidden_state @ hf_model.get_input_embeddings().weight.T
    assert_close(at_real(logits, real), at_real(expected_logits, real), "logits", arch)


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
def test_hook_points_equal_hugging_face_outputs(checkpoint, arch):
    """blocks.0.hook_resid_pre = hidden_states[0]; blocks.i.hook_resid_post = hidden_states[i + 1], except that
    GPT-2's last hidden state is after its final LayerNorm (= ln_final.hook_normalized), as in Hugging Face;
    blocks.i.attn.hook_pattern = attentions[i]."""
    _, folder = checkpoint(arch, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, _ = make_batch("left")
    out, cache = ours.run_with_cache(
        {"input_ids": input_ids, "attention_mask": mask}, output_hidden_states=True, output_attentions=True
    )
    n = ours.n_layers
    assert torch.equal(cache["blocks.0.hook_resid_pre"], out.hidden_states[0])
    for i in range(n):
        assert torch.equal(cache[f"blocks.{i}.attn.hook_pattern"], out.attentions[i])
    for i in range(n - 1):
        assert torch.equal(cache[f"blocks.{i}.hook_resid_post"], out.hidden_states[i + 1])
    if arch == "gpt2":
        assert torch.equal(cache["ln_final.hook_normalized"], out.hidden_states[n])
        assert not torch.equal(cache[f"blocks.{n - 1}.hook_resid_post"], out.hidden_states[n])
    else:
        assert torch.equal(cache[f"blocks.{n - 1}.hook_resid_post"], out.hidden_states[n])
        # Post-norm: the stream a block hands on is its LayerNorms' output.
        assert torch.equal(cache["blocks.0.hook_resid_mid"], cache["blocks.0.ln1.hook_normalized"])
        assert torch.equal(cache["blocks.0.hook_resid_post"], cache["blocks.0.ln2.hook_normalized"])
    assert torch.equal(cache["hook_logits"], out.logits)


# 2. Batching ----------------------------------------------------------------------------------------------


BATCH_HOOKS = ("hook_resid_post", "attn.hook_pattern", "mlp.hook_post")


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_padded_batch_gives_every_real_token_its_activations_alone(checkpoint, arch, padding):
    """No position_ids passed: ours come from the attention mask, so padding on either side changes nothing."""
    _, folder = checkpoint(arch, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch(padding)
    names = lambda name: name.endswith(BATCH_HOOKS)  # noqa: E731
    with torch.no_grad():
        out, cache = ours.run_with_cache({"input_ids": input_ids, "attention_mask": mask}, names_filter=names)
        assert len(cache) == 3 * ours.n_layers
        for row in range(len(LENGTHS)):
            keep = real[row]
            alone_out, alone = ours.run_with_cache(input_ids[row, keep][None], names_filter=names)
            assert list(alone) == list(cache)
            for name, tensor in alone.items():
                batched = cache[name][row : row + 1]
                if name.endswith("hook_pattern"):
                    # Real queries give padding keys no attention at all.
                    assert torch.all(batched[:, :, keep][:, :, :, ~keep] == 0), name
                    batched = batched[:, :, keep][:, :, :, keep]
                else:
                    batched = batched[:, keep]
                assert_close(batched, tensor, f"batched {name} of row {row}", arch, BATCH_TOL)
            assert_close(out.logits[row : row + 1, keep], alone_out.logits, f"batched logits of row {row}", arch,
                         BATCH_TOL)


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
def test_hugging_face_without_position_ids_shifts_left_padded_rows(checkpoint, arch):
    """Why we count positions over real tokens: Hugging Face, given only the attention mask, numbers a left-padded
    row's tokens from the first padding, so they do not get the logits they have alone. With positions counted
    as ours are, it matches. (If this starts failing, Hugging Face changed its default position ids.)"""
    hf_model, _ = checkpoint(arch, "lm")
    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        default = hf_model(input_ids=input_ids, attention_mask=mask).logits
        counted = hf_model(input_ids=input_ids, attention_mask=mask, position_ids=hf_position_ids(mask)).logits
        for row in range(len(LENGTHS)):
            keep = real[row]
            alone = hf_model(input_ids=input_ids[row, keep][None]).logits[0]
            assert_close(counted[row, keep], alone, f"HF with counted positions, row {row}", arch, BATCH_TOL)
            shifted = (default[row, keep] - alone).abs().max().item()
            if keep.all():
                assert shifted <= BATCH_TOL
            else:
                assert shifted > 0.1, f"row {row}: HF's default positions changed the logits by only {shifted:.2e}"


# 3. Losses -------------------------------------------------------------------------------------------------


def lm_labels(input_ids, real):
    """Labels for next-token loss: -100 on padding, and on a token whose predecessor is padding (the first real
    token of a left-padded row), which would otherwise be predicted from a padding position. Padding positions'
    outputs are arbitrary: Hugging Face's GPT lets them attend to later real tokens, ours spread them uniformly."""
    labels = input_ids.masked_fill(~real, -100)
    labels[:, 1:] = labels[:, 1:].masked_fill(~real[:, :-1], -100)
    return labels


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_lm_loss_matches(checkpoint, arch, padding):
    hf_model, folder = checkpoint(arch, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch(padding)
    labels = lm_labels(input_ids, real)
    labels[0, 4] = -100  # a real token whose label is ignored too
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), labels=labels)
        got = ours(input_ids=input_ids, attention_mask=mask, labels=labels)
    assert_close(at_real(got.logits, real), at_real(expected.logits, real), "logits", arch)
    assert_close(got.loss, expected.loss, "lm loss", arch)
    assert got.loss.dim() == 0 and torch.isfinite(got.loss)


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
def test_lm_loss_does_not_depend_on_the_padding_side(checkpoint, arch):
    """The same sentences, padded left or right: the same (context, next token) pairs, the same loss."""
    _, folder = checkpoint(arch, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    losses = []
    for padding in ("right", "left"):
        input_ids, mask, real = make_batch(padding)
        with torch.no_grad():
            losses.append(ours(input_ids=input_ids, attention_mask=mask, labels=lm_labels(input_ids, real)).loss)
    right_ids, _, right_real = make_batch("right")
    left_ids, _, left_real = make_batch("left")
    assert torch.equal(right_ids[right_real], left_ids[left_real])  # the same sentences
    assert_close(losses[1], losses[0], "left- vs right-padded lm loss", arch, BATCH_TOL)


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
@pytest.mark.parametrize("num_labels", [1, 3])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_sequence_classification_logits_and_loss_match(checkpoint, arch, num_labels, padding):
    """Hugging Face finds each row's last real token from pad_token_id, ours from the attention mask."""
    hf_model, folder = checkpoint(arch, "cls", num_labels=num_labels, pad_token_id=PAD_ID)
    ours = wb.AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(ours) is OUR_CLASSES[arch]["cls"]
    assert ours.config.num_labels == num_labels and ours.config.pad_token_id == PAD_ID
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, _ = make_batch(padding)
    labels = torch.tensor([0.5, -1.0, 2.0]) if num_labels == 1 else torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), labels=labels)
        got = ours(input_ids=input_ids, attention_mask=mask, labels=labels)
    assert got.logits.shape == (3, num_labels)
    assert_close(got.logits, expected.logits, "classifier logits", arch)
    assert_close(got.loss, expected.loss, "classifier loss", arch)
    if padding == "right":
        # Without an attention mask our classifier finds the last real token from pad_token_id, as Hugging Face does.
        with torch.no_grad():
            unmasked = ours(input_ids=input_ids, labels=labels)
        assert_close(unmasked.logits, expected.logits, "classifier logits", arch)


# 4. Key/value cache ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
def test_kv_cache_gives_the_full_forwards_logits(checkpoint, arch):
    """A left-padded prefix with use_cache=True, then one token at a time with the mask of all positions so far."""
    _, folder = checkpoint(arch, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("left")  # the last row's prefix is padding only
    prefix = 4
    with torch.no_grad():
        full = ours(input_ids=input_ids, attention_mask=mask).logits
        out = ours(input_ids=input_ids[:, :prefix], attention_mask=mask[:, :prefix], use_cache=True)
        assert len(out.past_key_values) == prefix
        steps = [out.logits]
        for t in range(prefix, input_ids.shape[1]):
            out = ours(input_ids=input_ids[:, t : t + 1], attention_mask=mask[:, : t + 1],
                       past_key_values=out.past_key_values, use_cache=True)
            assert out.logits.shape == (3, 1, 99)
            assert len(out.past_key_values) == t + 1
            steps.append(out.logits)
    incremental = torch.cat(steps, dim=1)
    assert_close(at_real(incremental, real), at_real(full, real), "cached logits", arch, BATCH_TOL)


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
def test_hooks_fire_during_cached_steps_on_the_new_positions(checkpoint, arch):
    _, folder = checkpoint(arch, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, _ = make_batch("left")
    batch, length = input_ids.shape
    heads, d_head, d_model = 4, 8, 32
    with torch.no_grad():
        _, full = ours.run_with_cache({"input_ids": input_ids, "attention_mask": mask})
        prefix = ours(input_ids=input_ids[:, :-1], attention_mask=mask[:, :-1], use_cache=True)
        step_out, step = ours.run_with_cache(
            {"input_ids": input_ids[:, -1:], "attention_mask": mask},
            past_key_values=prefix.past_key_values, use_cache=True,
        )
    assert list(step) == ours.hook_names
    assert len(step_out.past_key_values) == length
    for name in ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z"):
        assert step[f"blocks.1.{name}"].shape == (batch, 1, heads, d_head), name  # the new position only
    for name in ("attn.hook_scores", "attn.hook_pattern"):
        assert step[f"blocks.1.{name}"].shape == (batch, heads, 1, length), name  # over all keys, cached too
    assert step["blocks.1.hook_resid_post"].shape == (batch, 1, d_model)
    assert step["blocks.1.mlp.hook_post"].shape == (batch, 1, 4 * d_model)
    assert step["blocks.1.ln2.hook_scale"].shape == (batch, 1, 1)
    assert step["hook_logits"].shape == (batch, 1, 99)
    # And each equals the full forward's activation at the last position.
    for name, tensor in step.items():
        if name.endswith(("hook_scores", "hook_pattern")):
            expected = full[name][:, :, -1:]
        else:
            expected = full[name][:, -1:]
        assert_close(tensor, expected, f"cached-step {name}", arch, BATCH_TOL)


# 5. Hook names ----------------------------------------------------------------------------------------------

GPT2_BLOCK_HOOKS = [
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]
GPT_BLOCK_HOOKS = [
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "hook_resid_mid",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "hook_resid_post",
]


def tiny_config(arch, **fields):
    base = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, pad_token_id=PAD_ID)
    if arch == "gpt2":
        base.update(bos_token_id=98, eos_token_id=98)
    return wb.AutoConfig.for_model(MODEL_TYPES[arch], **{**base, **fields})


def test_gpt2_hook_names_are_pinned():
    body = wb.GPT2Model.from_config(tiny_config("gpt2"))
    expected = (
        ["hook_embed", "hook_pos_embed"]
        + [f"blocks.{i}.{name}" for i in range(2) for name in GPT2_BLOCK_HOOKS]
        + ["ln_final.hook_scale", "ln_final.hook_normalized"]
    )
    assert body.hook_names == expected
    assert wb.GPT2LMHeadModel.from_config(tiny_config("gpt2")).hook_names == expected + ["hook_logits"]
    assert wb.GPT2ForSequenceClassification.from_config(tiny_config("gpt2")).hook_names == expected + ["hook_logits"]


def test_gpt_hook_names_are_pinned():
    body = wb.OpenAIGPTModel.from_config(tiny_config("gpt"))
    expected = ["hook_embed", "hook_pos_embed"] + [f"blocks.{i}.{name}" for i in range(2) for name in GPT_BLOCK_HOOKS]
    assert body.hook_names == expected  # post-norm, no final LayerNorm
    assert wb.OpenAIGPTLMHeadModel.from_config(tiny_config("gpt")).hook_names == expected + ["hook_logits"]
    classifier = wb.OpenAIGPTForSequenceClassification.from_config(tiny_config("gpt"))
    assert classifier.hook_names == expected + ["hook_logits"]


# 6. Saving, old checkpoints, input errors ----------------------------------------------------------------------


def gpt2_only_config_keys():
    import transformers

    return set(transformers.GPT2Config().to_dict()) - set(transformers.OpenAIGPTConfig().to_dict())


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
@pytest.mark.parametrize("head", ["base", "lm", "cls"])
def test_saved_folder_loads_in_hugging_face(tmp_path, arch, head):
    import transformers

    fields = dict(afn="relu") if arch == "gpt" else dict(activation_function="relu", n_inner=37)
    if head == "cls":
        fields["num_labels"] = 3
    ours = perturb(AUTO[head].from_config(tiny_config(arch, **fields), seed=0))
    ours.save_pretrained(tmp_path)

    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == MODEL_TYPES[arch]
    assert saved["architectures"] == [HF_CLASSES[arch][head]]
    if arch == "gpt":
        assert saved["afn"] == "relu"
        gpt2_only = gpt2_only_config_keys()
        assert {"activation_function", "n_inner", "scale_attn_weights", "scale_attn_by_inverse_layer_idx"} <= gpt2_only
        leaked = gpt2_only & set(saved)
        assert not leaked, f"GPT's config.json has GPT-2-only keys {sorted(leaked)}"
    else:
        assert saved["activation_function"] == "relu" and saved["n_inner"] == 37

    hf_class = getattr(transformers, HF_CLASSES[arch][head])
    hf_model, info = hf_class.from_pretrained(tmp_path, attn_implementation="eager", output_loading_info=True)
    hf_model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    if arch == "gpt":
        assert hf_model.config.afn == "relu"
    else:
        assert hf_model.config.activation_function == "relu" and hf_model.config.n_inner == 37

    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask))
        got = ours(input_ids=input_ids, attention_mask=mask)
    if head == "base":
        assert_close(at_real(got.last_hidden_state, real), at_real(expected.last_hidden_state, real),
                     "round-trip last_hidden_state", arch)
    elif head == "lm":
        assert_close(at_real(got.logits, real), at_real(expected.logits, real), "round-trip logits", arch)
    else:
        assert_close(got.logits, expected.logits, "round-trip classifier logits", arch)

    # And back: our loader reads the folder it wrote.
    again = AUTO[head].from_pretrained(tmp_path)
    assert again.loading_info.missing_keys == [] and again.loading_info.unexpected_keys == []


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
@pytest.mark.parametrize("head", ["base", "lm"])
def test_old_checkpoints_with_attention_buffers_load_with_no_unexpected_keys(checkpoint, tmp_path, arch, head):
    """Checkpoints saved by older transformers keep each layer's causal-mask buffers (``attn.bias``, and GPT-2's
    ``attn.masked_bias``): known, not loaded, not reported. Saved from a head model, they carry its
    ``transformer.`` prefix."""
    from safetensors.torch import load_file

    hf_model, folder = checkpoint(arch, head)
    state = load_file(str(folder / "model.safetensors"))
    prefix = "transformer." if head == "lm" else ""
    n = hf_model.config.n_positions
    for i in range(hf_model.config.n_layer):
        if arch == "gpt2":
            state[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
            state[f"{prefix}h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        else:
            state[f"{prefix}h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    torch.save(state, tmp_path / "pytorch_model.bin")

    for auto in (wb.AutoModel, wb.AutoModelForCausalLM):
        ours = auto.from_pretrained(tmp_path)
        assert ours.loading_info.unexpected_keys == [], f"{type(ours).__name__}: {ours.loading_info}"
        assert ours.loading_info.missing_keys == []
    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask)).last_hidden_state if head == "base" else (
            hf_model.transformer(**hf_inputs(input_ids, mask)).last_hidden_state
        )
        got = wb.AutoModel.from_pretrained(tmp_path)(input_ids=input_ids, attention_mask=mask).last_hidden_state
    assert_close(at_real(got, real), at_real(expected, real), "old-checkpoint last_hidden_state", arch)


@pytest.mark.parametrize("head", ["base", "lm", "cls"])
def test_gpt2_rejects_token_type_ids(head):
    model = AUTO[head].from_config(tiny_config("gpt2"), seed=0)
    input_ids, mask, _ = make_batch("right")
    with pytest.raises(ValueError, match="token_type_ids"):
        model(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids))


@pytest.mark.parametrize("arch", ["gpt2", "gpt"])
def test_input_longer_than_n_positions_raises(arch):
    model = wb.AutoModelForCausalLM.from_config(tiny_config(arch), seed=0)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=torch.ones(1, 65, dtype=torch.long))
    model(input_ids=torch.ones(1, 64, dtype=torch.long))  # exactly n_positions is fine
    # Cached positions count too: 60 cached + 5 new.
    with torch.no_grad():
        out = model(input_ids=torch.ones(1, 60, dtype=torch.long), use_cache=True)
        with pytest.raises(ValueError, match="max_position_embeddings"):
            model(input_ids=torch.ones(1, 5, dtype=torch.long), past_key_values=out.past_key_values, use_cache=True)


# 7. Tracing and export ------------------------------------------------------------------------------------------


def test_gpt2_lm_traces_and_exports_with_no_hooks():
    model = perturb(wb.GPT2LMHeadModel.from_config(tiny_config("gpt2"), seed=0))
    input_ids, mask, _ = make_batch("left")
    with torch.no_grad():
        expected = model(input_ids, mask).logits
        traced = torch.jit.trace(model, (input_ids, mask))
        torch.testing.assert_close(traced(input_ids, mask)[0], expected, atol=BATCH_TOL, rtol=0)
        exported = torch.export.export(model, (input_ids, mask))
        out = exported.module()(input_ids, mask)
    torch.testing.assert_close(out.logits, expected, atol=BATCH_TOL, rtol=0)
    # Other inputs of the same shape go through the traced and exported graphs correctly (nothing was baked in).
    other_ids, other_mask, _ = make_batch("right", seed=1)
    with torch.no_grad():
        other_expected = model(other_ids, other_mask).logits
        torch.testing.assert_close(traced(other_ids, other_mask)[0], other_expected, atol=BATCH_TOL, rtol=0)
        torch.testing.assert_close(exported.module()(other_ids, other_mask).logits, other_expected,
                                   atol=BATCH_TOL, rtol=0)
    # The model still hooks normally afterwards.
    _, cache = model.run_with_cache(input_ids, names_filter="blocks.0.hook_resid_post")
    assert list(cache) == ["blocks.0.hook_resid_post"]


def test_a_gpt_folder_with_vocab_json_and_merges_gets_its_tokenizer(tmp_path):
    """Checkpoints of the GPT era ship vocab.json + merges.txt and no tokenizer.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(["the cat sat on the mat ."] * 10,
                                trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>"], end_of_word_suffix="</w>"))
    backend.model.save(str(tmp_path))  # vocab.json + merges.txt
    save_tiny_hf(tmp_path, "openai-gpt", "causal_lm", vocab_size=backend.get_vocab_size())
    model = wb.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.tokenizer.tokenize("the cat") == ["the</w>", "cat</w>"]
    assert "token_type_ids" not in model.tokenize("the cat sat")
