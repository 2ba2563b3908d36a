"""The workbench tokenizer against Hugging Face's (the test-time oracle) on the embedded MiniLM checkpoint.

Ids, token types, masks, token strings, offsets and word ids must equal Hugging Face's on tricky inputs,
both from ``tokenizer.json`` and from a folder that holds only ``vocab.txt`` (WordPiece built by us).
"""

from __future__ import annotations

import shutil

import pytest
import torch

import workbench as wb

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")

TRICKY_TEXTS = {
    "accents": "Café naïve résumé",
    "accents_upper": "Ünïcödé ÅÉÎ, NAÏVE façade",
    "combining_accent": "nai\u0308ve cafe\u0301",
    "cjk_japanese": "日本語のテキスト",
    "cjk_chinese": "中文",
    "cjk_mixed_latin": "BERT处理中文和English混合",
    "emoji": "I ❤️ 🤗 emoji 👍🏽 rocks 🚀!",
    "empty": "",
    "whitespace_runs": "  a\t\tb\n\nc   d\r\ne  ",
    "only_whitespace": " \t\n ",
    "control_chars": "a\x00b\x07c\u200bd\ufeffe\x1bf",
    "nbsp_em_space": "\u00a0nbsp\u2003em\u3000ideographic",
    "mixed_case": "HeLLo WoRLD, iPhone and McDonald's",
    "punctuation_runs": "!!!...???,,,;;--((]]",
    "contractions_hyphens": "don't stop-believing: it's 3.14 e.g. U.S.A.",
    "special_token_text": "Paris is the [MASK] of France. a [SEP] b [CLS]",
    "lowercase_special_lookalike": "[mask] [unk]",
    "very_long_word": "x" * 150 + " ok",
    "cyrillic_arabic": "Привет мир ١٢٣ مرحبا",
    "fullwidth_ligature": "Ｆｕｌｌｗｉｄｔｈ ﬁ ½ ①",
    "numbers": "In 2024, 1,234,567.89 people paid $5 (or €4.50).",
}

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog, again and again."] * 43)


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(minilm_path))


@pytest.fixture(scope="module")
def tokenizer():
    return wb.AutoTokenizer.from_pretrained("minilm")


@pytest.fixture(scope="module")
def vocab_only_dir(minilm_path, tmp_path_factory):
    """A copy of MiniLM's tokenizer files without tokenizer.json: only vocab.txt and the settings."""
    folder = tmp_path_factory.mktemp("vocab_only")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path / name, folder / name)
    assert not (folder / "tokenizer.json").exists()
    return folder


@pytest.fixture(scope="module")
def vocab_tokenizer(vocab_only_dir):
    return wb.AutoTokenizer.from_pretrained(vocab_only_dir)


def assert_same_inputs(ours, theirs, keys=MODEL_INPUTS):
    assert set(keys) <= set(ours.keys()), f"missing model inputs: {set(keys) - set(ours.keys())}"
    for key in keys:
        mine, ref = ours[key], theirs[key]
        if isinstance(ref, torch.Tensor):
            assert isinstance(mine, torch.Tensor), f"{key}: expected a tensor, got {type(mine).__name__}"
            assert mine.dtype == torch.long, f"{key}: dtype {mine.dtype}"
            assert torch.equal(mine, ref), f"{key} differs:\nours={mine.tolist()}\nhf  ={ref.tolist()}"
        else:
            assert mine == ref, f"{key} differs:\nours={mine}\nhf  ={ref}"


# Single texts: ids, types, masks, token strings, offsets, word ids ---------------------------------------


@pytest.mark.parametrize("text", list(TRICKY_TEXTS.values()), ids=list(TRICKY_TEXTS))
def test_single_text_matches_hf(tokenizer, hf_tokenizer, text):
    ours = tokenizer(text)
    theirs = hf_tokenizer(text, return_offsets_mapping=True)
    assert_same_inputs(ours, theirs)
    assert ours.tokens() == hf_tokenizer.convert_ids_to_tokens(theirs["input_ids"])
    assert ours.offsets[0] == [tuple(span) for span in theirs["offset_mapping"]]
    assert ours.word_ids() == theirs.word_ids()


@pytest.mark.parametrize("text", list(TRICKY_TEXTS.values()), ids=list(TRICKY_TEXTS))
def test_vocab_txt_only_matches_hf(vocab_tokenizer, tokenizer, hf_tokenizer, text):
    """Built from vocab.txt (no tokenizer.json): the same ids, tokens, offsets and word ids."""
    ours = vocab_tokenizer(text)
    theirs = hf_tokenizer(text, return_offsets_mapping=True)
    assert_same_inputs(ours, theirs)
    assert ours.tokens() == hf_tokenizer.convert_ids_to_tokens(theirs["input_ids"])
    assert ours.offsets[0] == [tuple(span) for span in theirs["offset_mapping"]]
    assert ours.word_ids() == theirs.word_ids()


def test_vocab_txt_only_matches_hf_reading_the_same_folder(vocab_only_dir, vocab_tokenizer):
    """HF, too, given only vocab.txt, agrees with our WordPiece on pairs, batches and truncation."""
    transformers = pytest.importorskip("transformers")
    hf_vocab = transformers.AutoTokenizer.from_pretrained(str(vocab_only_dir))
    texts = ["Café naïve résumé", "日本語のテキスト", LONG_TEXT]
    pairs = ["How old are you?", "I ❤️ 🤗", "short"]
    kwargs = dict(padding=True, truncation=True, max_length=48, return_tensors="pt")
    assert_same_inputs(vocab_tokenizer(texts, pairs, **kwargs), hf_vocab(texts, pairs, **kwargs))
    assert vocab_tokenizer.model_max_length == hf_vocab.model_max_length == 512
    assert vocab_tokenizer.pad_token_id == hf_vocab.pad_token_id
    assert vocab_tokenizer.mask_token_id == hf_vocab.mask_token_id
    assert len(vocab_tokenizer) == len(hf_vocab)


def test_without_special_tokens_matches_hf(tokenizer, hf_tokenizer):
    text = "Hello World, naïve café"
    assert_same_inputs(tokenizer(text, add_special_tokens=False), hf_tokenizer(text, add_special_tokens=False))
    assert tokenizer.tokenize(text) == hf_tokenizer.tokenize(text)
    assert tokenizer.encode(text) == hf_tokenizer.encode(text)


# Truncation -----------------------------------------------------------------------------------------------


def test_long_text_truncation_to_model_max_length(tokenizer, hf_tokenizer):
    untruncated = hf_tokenizer(LONG_TEXT)["input_ids"]
    assert 520 < len(untruncated) < 700, "the text should be a little over 512 tokens"
    ours = tokenizer(LONG_TEXT, truncation=True)
    assert len(ours["input_ids"]) == 512
    assert ours["input_ids"][-1] == tokenizer.sep_token_id
    assert_same_inputs(ours, hf_tokenizer(LONG_TEXT, truncation=True))


def test_long_text_without_truncation_is_kept_whole_and_warns(tokenizer, hf_tokenizer, caplog):
    with caplog.at_level("WARNING"):
        ours = tokenizer(LONG_TEXT)
    assert ours["input_ids"] == hf_tokenizer(LONG_TEXT)["input_ids"]
    assert "model_max_length" in caplog.text and "truncation=True" in caplog.text


@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first"])
def test_truncation_with_max_length_32(tokenizer, hf_tokenizer, truncation):
    ours = tokenizer(LONG_TEXT, truncation=truncation, max_length=32, return_tensors="pt")
    theirs = hf_tokenizer(LONG_TEXT, truncation=truncation, max_length=32, return_tensors="pt")
    assert ours["input_ids"].shape == (1, 32)
    assert_same_inputs(ours, theirs)
    assert ours.word_ids() == theirs.word_ids()


@pytest.mark.parametrize("truncation", [True, "only_first", "only_second"])
def test_pair_truncation_matches_hf(tokenizer, hf_tokenizer, truncation):
    first, second = LONG_TEXT, "A second, much shorter text. " * 3
    if truncation == "only_second":
        first, second = second, LONG_TEXT
    ours = tokenizer(first, second, truncation=truncation, max_length=40)
    theirs = hf_tokenizer(first, second, truncation=truncation, max_length=40)
    assert len(ours["input_ids"]) == 40
    assert_same_inputs(ours, theirs)


def test_truncation_of_a_batch_of_pairs_both_long(tokenizer, hf_tokenizer):
    texts, pairs = [LONG_TEXT, "tiny"], [LONG_TEXT, LONG_TEXT]
    ours = tokenizer(texts, pairs, truncation=True, max_length=41, padding=True)
    theirs = hf_tokenizer(texts, pairs, truncation=True, max_length=41, padding=True)
    assert_same_inputs(ours, theirs)


# Pairs: token_type_ids ------------------------------------------------------------------------------------


def test_text_pair_token_type_ids(tokenizer, hf_tokenizer):
    first, second = "How old are you?", "I am six years old."
    ours = tokenizer(first, second)
    theirs = hf_tokenizer(first, second, return_offsets_mapping=True)
    assert_same_inputs(ours, theirs)
    types = ours["token_type_ids"]
    assert types[0] == 0 and types[-1] == 1 and 0 < sum(types) < len(types)
    # [CLS] first [SEP] are segment 0, second [SEP] are segment 1
    first_sep = ours["input_ids"].index(tokenizer.sep_token_id)
    assert types == [0] * (first_sep + 1) + [1] * (len(types) - first_sep - 1)
    assert ours.sequence_ids() == theirs.sequence_ids()
    assert ours.word_ids() == theirs.word_ids()
    assert ours.offsets[0] == [tuple(span) for span in theirs["offset_mapping"]]


def test_batch_of_pairs_with_padding(tokenizer, hf_tokenizer):
    texts = ["q1", "the second question is longer", "Café?"]
    pairs = ["answer one answer one", "a2", "日本語"]
    ours = tokenizer(texts, pairs, padding=True, return_tensors="pt")
    theirs = hf_tokenizer(texts, pairs, padding=True, return_tensors="pt")
    assert_same_inputs(ours, theirs)
    for i in range(len(texts)):
        assert ours.word_ids(i) == theirs.word_ids(i)
        assert ours.sequence_ids(i) == theirs.sequence_ids(i)


def test_pair_count_mismatch_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="text_pair"):
        tokenizer(["a", "b"], ["only one"])


# Batches and padding --------------------------------------------------------------------------------------

BATCH = ["a", "hello there world", "Café naïve résumé and more words", "", "日本語"]


def test_batch_padding_true(tokenizer, hf_tokenizer):
    ours = tokenizer(BATCH, padding=True)
    theirs = hf_tokenizer(BATCH, padding=True, return_offsets_mapping=True)
    assert_same_inputs(ours, theirs)
    assert len({len(row) for row in ours["input_ids"]}) == 1
    for i in range(len(BATCH)):
        assert ours.tokens(i) == hf_tokenizer.convert_ids_to_tokens(theirs["input_ids"][i])
        assert ours.word_ids(i) == theirs.word_ids(i)
        assert ours.offsets[i] == [tuple(span) for span in theirs["offset_mapping"][i]]


def test_batch_padding_tensors(tokenizer, hf_tokenizer):
    ours = tokenizer(BATCH, padding=True, return_tensors="pt")
    theirs = hf_tokenizer(BATCH, padding=True, return_tensors="pt")
    assert_same_inputs(ours, theirs)
    assert ours["input_ids"].shape[0] == len(BATCH)
    # padding is [PAD] (id 0) with attention_mask 0, on the right by default
    mask = ours["attention_mask"]
    assert torch.equal(ours["input_ids"][mask == 0], torch.zeros(int((mask == 0).sum()), dtype=torch.long))
    assert mask[0, -1] == 0 and mask[0, 0] == 1


def test_padding_max_length(tokenizer, hf_tokenizer):
    ours = tokenizer(BATCH, padding="max_length", max_length=16, return_tensors="pt")
    theirs = hf_tokenizer(BATCH, padding="max_length", max_length=16, return_tensors="pt")
    assert ours["input_ids"].shape == (len(BATCH), 16)
    assert_same_inputs(ours, theirs)


def test_padding_max_length_with_truncation(tokenizer, hf_tokenizer):
    texts = [LONG_TEXT, "short"]
    kwargs = dict(padding="max_length", truncation=True, max_length=24, return_tensors="pt")
    ours = tokenizer(texts, **kwargs)
    assert ours["input_ids"].shape == (2, 24)
    assert_same_inputs(ours, hf_tokenizer(texts, **kwargs))


def test_pad_to_multiple_of(tokenizer, hf_tokenizer):
    ours = tokenizer(BATCH, padding=True, pad_to_multiple_of=8, return_tensors="pt")
    assert ours["input_ids"].shape[1] % 8 == 0
    assert_same_inputs(ours, hf_tokenizer(BATCH, padding=True, pad_to_multiple_of=8, return_tensors="pt"))


def test_padding_side_left(tokenizer, hf_tokenizer):
    ours = tokenizer(BATCH, padding=True, padding_side="left", return_tensors="pt")
    theirs = hf_tokenizer(BATCH, padding=True, padding_side="left", return_tensors="pt", return_offsets_mapping=True)
    assert_same_inputs(ours, theirs)
    assert ours["attention_mask"][0, 0] == 0 and ours["attention_mask"][0, -1] == 1
    for i in range(len(BATCH)):
        assert ours.tokens(i) == hf_tokenizer.convert_ids_to_tokens(theirs["input_ids"][i])
        assert ours.word_ids(i) == theirs.word_ids(i)
        assert ours.offsets[i] == [tuple(span) for span in theirs["offset_mapping"][i].tolist()]
    # the call's padding_side does not stick: the next call pads on the right again
    again = tokenizer(BATCH, padding=True, return_tensors="pt")
    assert again["attention_mask"][0, -1] == 0


def test_padding_side_left_set_on_the_tokenizer(minilm_path, hf_tokenizer):
    left = wb.AutoTokenizer.from_pretrained("minilm", padding_side="left")
    ours = left(BATCH, padding=True, return_tensors="pt")
    assert_same_inputs(ours, hf_tokenizer(BATCH, padding=True, padding_side="left", return_tensors="pt"))


def test_settings_do_not_leak_between_calls(tokenizer, hf_tokenizer):
    tokenizer(BATCH, padding="max_length", truncation=True, max_length=8)
    ours = tokenizer(LONG_TEXT)
    assert ours["input_ids"] == hf_tokenizer(LONG_TEXT)["input_ids"]


def test_bad_padding_value(tokenizer):
    with pytest.raises(ValueError, match="padding"):
        tokenizer(BATCH, padding="longest_please")


# Return types ---------------------------------------------------------------------------------------------


def test_return_lists_flat_for_one_text(tokenizer):
    enc = tokenizer("hello world")
    assert not enc.is_batched
    for key in MODEL_INPUTS:
        assert isinstance(enc[key], list) and all(isinstance(x, int) for x in enc[key]), key
    assert enc["input_ids"] == [101, 7592, 2088, 102]
    assert enc.input_ids == enc["input_ids"]  # attribute access, as on Hugging Face's BatchEncoding


def test_return_lists_nested_for_a_batch(tokenizer):
    enc = tokenizer(["hello world", "hi"])
    assert enc.is_batched
    assert enc["input_ids"] == [[101, 7592, 2088, 102], [101, 7632, 102]]
    assert [len(row) for row in enc["attention_mask"]] == [4, 3]


def test_return_tensors_pt(tokenizer):
    enc = tokenizer("hello world", return_tensors="pt")
    for key in MODEL_INPUTS:
        assert isinstance(enc[key], torch.Tensor) and enc[key].dtype == torch.long, key
        assert enc[key].shape == (1, 4), key
    batch = tokenizer(["hello world", "hi"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 4)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_uneven_batch_as_tensors_without_padding_raises(tokenizer):
    with pytest.raises(ValueError, match="padding"):
        tokenizer(["hello world", "hi"], return_tensors="pt")


def test_non_string_text_is_a_type_error(tokenizer):
    with pytest.raises(TypeError, match="str"):
        tokenizer(["fine", 3])


def test_encoding_feeds_the_model(tokenizer, minilm):
    """``model(**encoding)`` works: the keys are exactly the model's inputs."""
    enc = tokenizer(["hello world", "a longer second sentence"], padding=True, return_tensors="pt")
    assert set(enc) == set(MODEL_INPUTS)
    with torch.no_grad():
        out = minilm(**enc)
    assert out.last_hidden_state.shape == (*enc["input_ids"].shape, 384)


# Decoding -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", list(TRICKY_TEXTS.values()), ids=list(TRICKY_TEXTS))
@pytest.mark.parametrize("skip_special_tokens", [False, True])
def test_decode_matches_hf(tokenizer, hf_tokenizer, text, skip_special_tokens):
    ids = hf_tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=skip_special_tokens) == hf_tokenizer.decode(
        ids, skip_special_tokens=skip_special_tokens
    )


def test_decode_round_trip(tokenizer, vocab_tokenizer, hf_tokenizer):
    text = "the quick brown fox jumps over the lazy dog"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids) == f"[CLS] {text} [SEP]"
    assert tokenizer.decode(torch.tensor(ids)) == tokenizer.decode(ids)
    assert vocab_tokenizer.decode(ids) == hf_tokenizer.decode(ids)
    # lowercasing and accent stripping happen, as in Hugging Face
    accents = tokenizer("Café Naïve")["input_ids"]
    assert tokenizer.decode(accents, skip_special_tokens=True) == "cafe naive"


def test_batch_decode_matches_hf(tokenizer, hf_tokenizer):
    batch = tokenizer(BATCH, padding=True, return_tensors="pt")["input_ids"]
    for skip in (False, True):
        assert tokenizer.batch_decode(batch, skip_special_tokens=skip) == hf_tokenizer.batch_decode(
            batch, skip_special_tokens=skip
        )


def test_convert_ids_to_tokens_and_special_ids(tokenizer, hf_tokenizer):
    ids = hf_tokenizer("Paris is the [MASK] of France.")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == hf_tokenizer.convert_ids_to_tokens(ids)
    assert tokenizer.convert_ids_to_tokens(torch.tensor(ids)) == hf_tokenizer.convert_ids_to_tokens(ids)
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id", "unk_token_id"):
        assert getattr(tokenizer, name) == getattr(hf_tokenizer, name), name
    assert sorted(tokenizer.all_special_ids) == sorted(hf_tokenizer.all_special_ids)
    assert len(tokenizer) == len(hf_tokenizer)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tokenizer.token_to_id("definitely-not-a-token")


# Saving -------------------------------------------------------------------------------------------------


def test_save_pretrained_round_trip(tokenizer, hf_tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = wb.AutoTokenizer.from_pretrained(tmp_path)
    texts = [TRICKY_TEXTS["accents"], TRICKY_TEXTS["emoji"], LONG_TEXT]
    pairs = ["a second text", "日本語", "x"]
    kwargs = dict(padding=True, truncation=True, return_tensors="pt")
    assert_same_inputs(reloaded(texts, pairs, **kwargs), hf_tokenizer(texts, pairs, **kwargs))
    assert reloaded.model_max_length == 512
    assert reloaded.special_tokens == tokenizer.special_tokens


def test_saved_tokenizer_reads_in_hf_with_token_type_ids(tokenizer, hf_tokenizer, tmp_path):
    """The saved folder is "readable by Hugging Face too": a BERT tokenizer there must still give
    token_type_ids, or text pairs reach the model without their segment ids."""
    transformers = pytest.importorskip("transformers")
    tokenizer.save_pretrained(tmp_path)
    hf_reloaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    texts, pairs = ["How old are you?", "Café"], ["I am six years old.", "naïve résumé"]
    kwargs = dict(padding=True, return_tensors="pt")
    assert_same_inputs(hf_reloaded(texts, pairs, **kwargs), hf_tokenizer(texts, pairs, **kwargs))
