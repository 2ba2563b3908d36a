"""Task heads of the encoders against Hugging Face's (token classification, question answering, multiple
choice), and fill_mask."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import save_tiny_hf_bert

import workbench as wb

TOL = 1e-4
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def padded_inputs(batch=3, length=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    types = torch.randint(0, 2, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def assert_close(ours, theirs, what):
    diff = (ours - theirs).abs().max().item()
    assert diff <= TOL, f"{what} differs from Hugging Face by {diff:.2e}"


def test_token_classification_matches(tmp_path):
    hf_model = save_tiny_hf_bert(tmp_path, "BertForTokenClassification", num_labels=5, **TINY)
    ours = wb.AutoModelForTokenClassification.from_pretrained(tmp_path)
    assert isinstance(ours, wb.BertForTokenClassification) and ours.loading_info.missing_keys == []
    inputs = padded_inputs()
    labels = torch.randint(0, 5, inputs["input_ids"].shape).masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        out, cache = ours.run_with_cache(inputs, names_filter="hook_logits", labels=labels, output_hidden_states=True)
    assert out.logits.shape == (3, 10, 5)
    assert_close(out.logits, expected.logits, "logits")
    assert_close(out.loss, expected.loss, "loss")
    assert torch.equal(cache["hook_logits"], out.logits)


def test_question_answering_matches(tmp_path):
    hf_model = save_tiny_hf_bert(tmp_path, "BertForQuestionAnswering", **TINY)
    ours = wb.AutoModelForQuestionAnswering.from_pretrained(tmp_path)
    inputs = padded_inputs()
    starts, ends = torch.tensor([1, 2, 30]), torch.tensor([3, 4, 40])  # the last is outside: ignored, as in HF
    with torch.no_grad():
        expected = hf_model(**inputs, start_positions=starts, end_positions=ends)
        got = ours(**inputs, start_positions=starts, end_positions=ends)
    assert got.start_logits.shape == got.end_logits.shape == (3, 10)
    assert_close(got.start_logits, expected.start_logits, "start_logits")
    assert_close(got.end_logits, expected.end_logits, "end_logits")
    assert_close(got.loss, expected.loss, "loss")


def test_multiple_choice_matches(tmp_path):
    hf_model = save_tiny_hf_bert(tmp_path, "BertForMultipleChoice", **TINY)
    ours = wb.AutoModelForMultipleChoice.from_pretrained(tmp_path)
    flat = padded_inputs(batch=6)
    inputs = {name: value.view(2, 3, 10) for name, value in flat.items()}  # [batch, choices, pos]
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_attentions=True)
        out, cache = ours.run_with_cache(inputs, names_filter="hook_logits", labels=labels, output_attentions=True)
    assert out.logits.shape == (2, 3) and cache["hook_logits"].shape == (2, 3)
    assert_close(out.logits, expected.logits, "logits")
    assert_close(out.loss, expected.loss, "loss")
    assert out.attentions[0].shape == (6, 4, 10, 10)  # the flattened choices, as Hugging Face returns them
    with pytest.raises(ValueError, match="num_choices"):
        ours(input_ids=flat["input_ids"])


def test_heads_round_trip_through_hugging_face(tmp_path):
    import transformers

    for name in ("BertForTokenClassification", "BertForQuestionAnswering", "BertForMultipleChoice"):
        folder = tmp_path / name
        save_tiny_hf_bert(folder, name, **TINY)
        ours = getattr(wb, name).from_pretrained(folder)
        ours.save_pretrained(folder / "saved")
        reloaded = getattr(transformers, name).from_pretrained(folder / "saved").eval()
        original = getattr(transformers, name).from_pretrained(folder).eval()
        ids = torch.randint(1, 99, (2, 3, 7) if "Multiple" in name else (2, 7))
        with torch.no_grad():
            a, b = reloaded(input_ids=ids), original(input_ids=ids)
        for key in a.keys():
            assert_close(a[key], b[key], f"{name}.{key} after save_pretrained")


def test_wb_load_picks_the_saved_head(tmp_path):
    save_tiny_hf_bert(tmp_path, "BertForQuestionAnswering", **TINY)
    assert isinstance(wb.load(tmp_path, device="cpu"), wb.BertForQuestionAnswering)


@pytest.fixture(scope="module")
def tiny_mlm_with_minilm_vocab(tmp_path_factory, minilm_path):
    """A random BERT MLM over MiniLM's real WordPiece vocabulary (so text goes in and words come out)."""
    folder = tmp_path_factory.mktemp("mlm")
    hf_model = save_tiny_hf_bert(folder, "BertForMaskedLM", vocab_size=30522, max_position_embeddings=64, **TINY)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_path / name, folder / name)
    return folder, hf_model


def test_fill_mask_ranks_tokens_like_the_logits(tiny_mlm_with_minilm_vocab):
    folder, hf_model = tiny_mlm_with_minilm_vocab
    mlm = wb.AutoModelForMaskedLM.from_pretrained(folder)
    text = "The capital of France is [MASK]."
    table = mlm.fill_mask(text, top_k=4)
    assert list(table.columns) == [
        "text_index", "mask_position", "rank", "token", "token_id", "probability", "filled",
        "head_initialized", "stand_in",
    ]
    assert not table["head_initialized"].any() and not table["stand_in"].any()  # a trained head, a checkpoint
    assert table.attrs["warning"] is None
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert table["probability"].is_monotonic_decreasing
    encoding = mlm.tokenize(text)
    position = int(table["mask_position"].iloc[0])
    with torch.no_grad():
        expected = hf_model(**encoding).logits[0, position].softmax(-1)
    top = torch.topk(expected, 4)
    assert list(table["token_id"]) == top.indices.tolist()
    assert torch.allclose(torch.tensor(table["probability"].tolist()), top.values, atol=1e-5)
    first = table.iloc[0]
    assert first["filled"] == text.replace("[MASK]", first["token"])
    assert wb.fill_mask(mlm, text, top_k=4).equals(table)


def test_fill_mask_handles_several_masks_and_names_errors(tiny_mlm_with_minilm_vocab):
    mlm = wb.AutoModelForMaskedLM.from_pretrained(tiny_mlm_with_minilm_vocab[0])
    table = mlm.fill_mask(["[MASK] keys are on the [MASK].", "A [MASK] day."], top_k=2)
    assert sorted(set(zip(table["text_index"], table["mask_position"]))) == [(0, 1), (0, 6), (1, 2)]
    second = table[(table["text_index"] == 0) & (table["mask_position"] == 6)].iloc[0]
    assert second["filled"] == f"[MASK] keys are on the {second['token']}."
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        mlm.fill_mask("Nothing to fill.")
    with pytest.raises(TypeError, match="masked-LM"):
        wb.fill_mask(wb.AutoModel.from_pretrained("minilm"), "The [MASK].")
