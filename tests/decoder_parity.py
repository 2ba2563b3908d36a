"""Batches and comparisons shared by the decoder parity tests (test_llama, test_mistral_qwen, test_gemma,
test_gpt_neox, test_phi3_olmo2): a helper module, not a test module."""

from __future__ import annotations

import torch

TOL = 1e-4  # parity with Hugging Face (float32)
PAD_ID = 0
LENGTHS = [9, 6, 2]  # real tokens per row; the first row has no padding


def make_batch(padding: str, seed: int = 0, lengths=LENGTHS):
    """-> (input_ids [rows, longest], attention_mask or None, real [rows, longest] bool): row r holds
    ``lengths[r]`` random tokens, padded with ``PAD_ID`` on the ``"right"`` or the ``"left"``; ``"none"``
    gives full rows and no mask."""
    generator = torch.Generator().manual_seed(seed)
    batch, length = len(lengths), max(lengths)
    sentences = torch.randint(1, 98, (batch, length), generator=generator)
    real = torch.ones(batch, length, dtype=torch.bool)
    if padding == "none":
        return sentences, None, real
    input_ids = torch.full((batch, length), PAD_ID)
    for row, n in enumerate(lengths):
        where = slice(0, n) if padding == "right" else slice(length - n, length)
        input_ids[row, where] = sentences[row, :n]
        real[row] = False
        real[row, where] = True
    return input_ids, real.long(), real


def hf_inputs(input_ids, attention_mask):
    """Hugging Face's inputs, with positions counted over the real tokens as ours are."""
    if attention_mask is None:
        return {"input_ids": input_ids}
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def assert_close(ours, theirs, what, tol=TOL):
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    diff = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    assert diff <= tol, f"{what} differs by {diff:.2e} (tolerance {tol:.0e})"


def real_query_rows(pattern, real):
    """[batch, head, query_pos, key_pos] -> [real queries, head, key_pos] (every key, padding included)."""
    return pattern.transpose(1, 2)[real]


def assert_greedy_generation_matches(ours, hf_model, prompts=("The keys to the cabinet", "A dog"), new=8):
    """Greedy ``generate`` on a left-padded batch: with the KV cache, without it, and Hugging Face's
    ``generate`` give the same new tokens."""
    prompts = list(prompts)
    result = ours.generate(prompts, max_new_tokens=new)
    assert result.new_token_ids == ours.generate(prompts, max_new_tokens=new, use_kv_cache=False).new_token_ids
    encoding = ours.tokenize(prompts, padding_side="left")
    assert encoding["attention_mask"][1, 0] == 0  # the second prompt is left-padded
    with torch.no_grad():
        expected = hf_model.generate(
            input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"], max_new_tokens=new,
            do_sample=False, pad_token_id=hf_model.config.pad_token_id,
        )
    assert result.new_token_ids == expected[:, encoding["input_ids"].shape[1] :].tolist()


def assert_rows_match_alone(ours, padding: str, tol: float):
    """A padded batch (:func:`make_batch`) gives each row's real tokens the logits that row gets alone."""
    input_ids, mask, real = make_batch(padding)
    with torch.no_grad():
        batched = ours(input_ids, mask).logits
        for row in range(len(LENGTHS)):
            alone = ours(input_ids[row][real[row]][None]).logits[0]
            assert_close(batched[row][real[row]], alone, f"row {row} batched vs alone", tol)


def assert_classifier_matches(hf_model, folder, expected_class, padding: str, check_unmasked: bool = False):
    """Our sequence classifier loaded from ``folder`` gives Hugging Face's logits and loss on a ``padding``
    batch (``check_unmasked``: also without the mask, where the last real token comes from pad_token_id)."""
    import workbench as wb

    ours = wb.AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(ours) is expected_class
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, _ = make_batch(padding)
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), labels=labels)
        got = ours(input_ids, mask, labels=labels)
        unmasked = ours(input_ids, labels=labels) if check_unmasked and padding == "right" else got
    assert_close(got.logits, expected.logits, "classifier logits")
    assert_close(got.loss, expected.loss, "classifier loss")
    assert_close(unmasked.logits, expected.logits, "classifier logits without a mask")


def assert_lm_loss_matches(hf_model, folder):
    """Our causal LM loaded from ``folder`` gives Hugging Face's loss on a right-padded batch."""
    import workbench as wb

    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("right")
    labels = input_ids.masked_fill(~real, -100)
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), labels=labels).loss
        got = ours(input_ids, mask, labels=labels).loss
    assert_close(got, expected, "lm loss")


def load_in_transformers(folder, hf_name: str):
    """The folder our ``save_pretrained`` wrote, loaded by transformers' ``hf_name`` class with every tensor
    used and none missing; in eval mode, eager attention."""
    import transformers

    hf_model, info = getattr(transformers, hf_name).from_pretrained(
        folder, attn_implementation="eager", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return hf_model.eval()


def assert_round_trip(ours, hf_model, head: str, tied: bool | None = None):
    """The model transformers loaded from our folder gives our outputs on a left-padded batch (``head``:
    base, lm or cls); ``tied``: whether its unembedding must share the token embedding's storage."""
    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask))
        got = ours(input_ids, mask)
    if head == "base":
        assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], "round-trip hidden state")
    elif head == "lm":
        if tied is not None:
            shared = hf_model.get_output_embeddings().weight.data_ptr() == hf_model.get_input_embeddings().weight.data_ptr()
            assert shared == tied
        assert_close(got.logits[real], expected.logits[real], "round-trip logits")
    else:
        assert_close(got.logits, expected.logits, "round-trip classifier logits")


def assert_reloads_cleanly(ours, folder):
    """Our class reads back the folder it saved with no missing or unexpected keys."""
    again = type(ours).from_pretrained(folder)
    assert again.loading_info.missing_keys == [] and again.loading_info.unexpected_keys == []
