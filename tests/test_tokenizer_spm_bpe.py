"""Llama 2's and Gemma's tokenizers from ``tokenizer.model`` alone (a SentencePiece BPE model, no
tokenizer.json): the same pipeline, ids and decoded text as Hugging Face 5's ``LlamaTokenizerFast`` and
``GemmaTokenizer`` converting the same file, and as the ``sentencepiece`` library where they agree; corrupted
files are errors; dispatch picks the class.

The models are trained here in about a second on the committed EWT sample (the stand-ins' text).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sentencepiece")
import sentencepiece as spm  # noqa: E402
from transformers import GemmaTokenizer, LlamaTokenizerFast  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.tokenizers import SentencePieceBPETokenizer, Tokenizer, TokenizerFileError  # noqa: E402
from workbench.tokenizers.stand_in import training_sentences  # noqa: E402
from workbench.tokenizers.xlnet import XLNetTokenizer  # noqa: E402

# Text the trained vocabulary mostly lacks (byte fallback), spaces and newlines in every place, digits,
# accents (composed and combining), emoji, and text right before and after the special tokens.
TRICKY = [
    "Hello world",
    " Hello",
    "  two  spaces  between   ",
    "line\nbreak\n\nand\r\nwindows",
    "\t tab first",
    "12345 3.14159 2026-12-06",
    "café naïve Ünïcödé",
    "e\u0301 combining",
    "emoji 😀🎉 and 👍🏽",
    "中文字符 and Ελληνικά",
    "<s>right after bos",
    "x</s>y and </s> z",
    "a <mask>b<mask> c",
    "<unk> is special too",
    "",
    " ",
    "\n",
]
# Where Hugging Face and the sentencepiece library differ: a leading space (Metaspace skips the prefix
# space when there is one already) and special tokens (SentencePiece reads "<s>" as text).
SENTENCEPIECE_AGREES = [
    t for t in TRICKY if not t.startswith((" ", "\t", "<")) and "<" not in t and t not in ("", "\n")
]


def _train(folder, byte_fallback: bool = True, vocab_size: int = 420, model_type: str = "bpe", **options):
    """A tiny SentencePiece model written as ``folder/tokenizer.model``, as Llama 2's is trained: no
    normalization, spaces kept, byte fallback; ``<mask>`` a user-defined piece. ``options``: more of the
    trainer's."""
    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_sentences()[:600]),
        model_prefix=str(folder / "tokenizer"),
        model_type=model_type,
        byte_fallback=byte_fallback,
        vocab_size=vocab_size,
        character_coverage=0.995,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        user_defined_symbols=["<mask>"],
        minloglevel=2,
        **options,
    )
    (folder / "tokenizer.vocab").unlink()
    return folder / "tokenizer.model"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{"byte_fallback": model path, "no_byte_fallback": ..., "gemma": ...} (Gemma's: its special pieces
    first, no dummy prefix)."""
    root = tmp_path_factory.mktemp("spm_bpe")
    gemma_ids = {
        "pad_id": 0,
        "eos_id": 1,
        "bos_id": 2,
        "unk_id": 3,
        "bos_piece": "<bos>",
        "eos_piece": "<eos>",
    }
    return {
        "byte_fallback": _train(root / "bf"),
        "no_byte_fallback": _train(root / "nobf", byte_fallback=False, vocab_size=200),
        "gemma": _train(root / "gemma", add_dummy_prefix=False, **gemma_ids),
    }


def _folder(tmp_path, model, settings: dict | None, config: dict | None = None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tokenizer.model").write_bytes(model.read_bytes())
    if settings is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(settings))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


SETTINGS = {
    "bos only": {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True},
    "bos and eos": {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": True, "add_eos_token": True},
    "nothing added": {"tokenizer_class": "LlamaTokenizer"},
    "legacy": {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "legacy": True},
    "no prefix space": {
        "tokenizer_class": "LlamaTokenizer",
        "add_prefix_space": False,
        "add_bos_token": True,
    },
    "pad token": {"tokenizer_class": "LlamaTokenizer", "pad_token": "<pad>", "add_bos_token": True},
}


@pytest.mark.parametrize("model_name", ["byte_fallback", "no_byte_fallback"])
@pytest.mark.parametrize("settings_name", sorted(SETTINGS))
def test_pipeline_ids_and_text_equal_hugging_face(tmp_path, trained, model_name, settings_name):
    folder = _folder(tmp_path, trained[model_name], SETTINGS[settings_name])
    hf = LlamaTokenizerFast.from_pretrained(folder)
    ours = wb.AutoTokenizer.from_pretrained(folder)
    assert isinstance(ours, SentencePieceBPETokenizer)
    assert json.loads(ours.backend.to_str()) == json.loads(hf.backend_tokenizer.to_str())
    for text in TRICKY:
        ids = ours(text)["input_ids"]
        assert ids == hf(text)["input_ids"], text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), (
                text
            )
    pair = ours("first text", "second <mask> text")
    assert pair["input_ids"] == hf("first text", "second <mask> text")["input_ids"]
    assert ours.padding_side == hf.padding_side == "left"
    assert ours.model_input_names == tuple(hf.model_input_names)
    batch = ours(TRICKY[:4], padding=True)
    assert batch["attention_mask"][1][0] == 0  # left padding (with the eos token when there is no pad token)
    if hf.pad_token is not None:
        assert batch["input_ids"] == hf(TRICKY[:4], padding=True)["input_ids"]


def test_ids_equal_the_sentencepiece_library_where_it_agrees(tmp_path, trained):
    folder = _folder(tmp_path, trained["byte_fallback"], SETTINGS["bos only"])
    processor = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    ours = Tokenizer.from_pretrained(folder)
    assert len(SENTENCEPIECE_AGREES) >= 6
    for text in SENTENCEPIECE_AGREES:
        expected = processor.encode(text)
        assert ours(text)["input_ids"] == [processor.bos_id(), *expected], text
        assert ours.decode(expected) == processor.decode(expected) == text
    # byte fallback: the emoji are bytes, not the unknown token
    assert "<0xF0>" in ours.tokenize("😀")


def test_call_options_override_the_settings(tmp_path, trained):
    folder = _folder(tmp_path, trained["byte_fallback"], SETTINGS["bos only"])
    hf = LlamaTokenizerFast.from_pretrained(folder, add_bos_token=False, add_eos_token=True)
    ours = Tokenizer.from_pretrained(folder, add_bos_token=False, add_eos_token=True, padding_side="right")
    assert ours("some text")["input_ids"] == hf("some text")["input_ids"]
    assert ours("some text")["input_ids"][-1] == ours.eos_token_id == 2
    assert ours.padding_side == "right"


def test_config_json_alone_dispatches_and_equals_hugging_face(tmp_path, trained):
    """Only tokenizer.model and a Llama config.json: the Llama tokenizer, with Hugging Face's defaults."""
    folder = _folder(tmp_path, trained["byte_fallback"], None, {"model_type": "llama"})
    ours = wb.AutoTokenizer.from_pretrained(folder)
    assert isinstance(ours, SentencePieceBPETokenizer)
    assert Tokenizer.class_for(folder) is SentencePieceBPETokenizer
    hf = LlamaTokenizerFast.from_pretrained(folder)
    for text in TRICKY:
        assert ours(text)["input_ids"] == hf(text)["input_ids"], text


def test_dispatch_leaves_other_folders_alone(tmp_path, trained):
    """spiece.model is XLNet's; a tokenizer.json is the base class's; another class named is not this one's."""
    spiece = _folder(tmp_path / "xlnet", trained["byte_fallback"], None)
    (spiece / "tokenizer.model").rename(spiece / "spiece.model")
    assert Tokenizer.class_for(spiece) is XLNetTokenizer
    with_json = _folder(tmp_path / "json", trained["byte_fallback"], SETTINGS["bos only"])
    (with_json / "tokenizer.json").write_text("{}")
    assert not SentencePieceBPETokenizer.handles(with_json)
    other = _folder(tmp_path / "other", trained["byte_fallback"], {"tokenizer_class": "T5Tokenizer"})
    assert not SentencePieceBPETokenizer.handles(other)


def test_save_pretrained_reloads_in_both_libraries(tmp_path, trained):
    folder = _folder(tmp_path / "source", trained["byte_fallback"], SETTINGS["bos and eos"])
    ours = Tokenizer.from_pretrained(folder)
    ours.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "LlamaTokenizerFast"
    reloaded = Tokenizer.from_pretrained(tmp_path / "saved")
    hf = LlamaTokenizerFast.from_pretrained(tmp_path / "saved")
    for text in TRICKY:
        expected = ours(text)["input_ids"]
        assert reloaded(text)["input_ids"] == expected == hf(text)["input_ids"], text


def test_a_unigram_tokenizer_model_is_refused(tmp_path):
    model = _train(tmp_path / "unigram", model_type="unigram", vocab_size=420)
    folder = _folder(tmp_path / "folder", model, SETTINGS["bos only"])
    with pytest.raises(TokenizerFileError, match="type 1 .*BPE"):
        Tokenizer.from_pretrained(folder)


def _corruptions(data: bytes) -> dict[str, bytes]:
    """Truncated at several places, a piece's length made to run past the end, the first key zeroed."""
    long_length = data[:2] + b"\xff\xff\xff\x0f" + data[3:]  # the first piece's length: 32 MB
    return {
        "truncated after the pieces": data[: len(data) - 40],
        "truncated in the middle": data[: len(data) // 2],
        "truncated to 3 bytes": data[:3],
        "length past the end": long_length,
        "field number 0": b"\x00" + data[1:],
        "empty": b"",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "truncated after the pieces",
        "truncated in the middle",
        "truncated to 3 bytes",
        "length past the end",
        "field number 0",
        "empty",
    ],
)
def test_corrupted_tokenizer_model_is_an_error_naming_file(tmp_path, trained, kind):
    folder = _folder(tmp_path, trained["byte_fallback"], SETTINGS["bos only"])
    path = folder / "tokenizer.model"
    path.write_bytes(_corruptions(path.read_bytes())[kind])
    with pytest.raises(TokenizerFileError) as caught:
        wb.AutoTokenizer.from_pretrained(folder)
    assert str(path) in str(caught.value)
    if kind != "empty":
        assert "byte" in str(caught.value)


GEMMA_FOLDERS = {
    "bos": ({"tokenizer_class": "GemmaTokenizer", "add_bos_token": True}, None),
    "bos and eos, fast name": (
        {"tokenizer_class": "GemmaTokenizerFast", "add_bos_token": True, "add_eos_token": True},
        None,
    ),
    "config.json alone": (None, {"model_type": "gemma"}),
}


@pytest.mark.parametrize("name", sorted(GEMMA_FOLDERS))
def test_gemma_equals_hugging_face(tmp_path, trained, name):
    """Gemma's text steps: spaces become "▁" in the normalizer, no prefix space; <mask> a special token."""
    folder = _folder(tmp_path, trained["gemma"], *GEMMA_FOLDERS[name])
    hf = GemmaTokenizer.from_pretrained(folder)
    ours = wb.AutoTokenizer.from_pretrained(folder)
    assert isinstance(ours, SentencePieceBPETokenizer)
    assert json.loads(ours.backend.to_str()) == json.loads(hf.backend_tokenizer.to_str())
    texts = [text.replace("<s>", "<bos>").replace("</s>", "<eos>") for text in TRICKY]
    for text in texts:
        ids = ours(text)["input_ids"]
        assert ids == hf(text)["input_ids"], text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), (
                text
            )
    assert (
        ours("a text", padding="max_length", max_length=8)["input_ids"]
        == hf("a text", padding="max_length", max_length=8)["input_ids"]
    )
    processor = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    for text in SENTENCEPIECE_AGREES:
        assert ours(text, add_special_tokens=False)["input_ids"] == processor.encode(text), text
