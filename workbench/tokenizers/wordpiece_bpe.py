"""The four tokenizer families that :class:`~workbench.tokenizers.base.Tokenizer` loads itself: pipelines of
the ``tokenizers`` library, read from ``tokenizer.json`` or built from the vocabulary files as Hugging Face's
converters build them (so that the ids are the same):

* ``"wordpiece"``: BERT's WordPiece, from ``vocab.txt``;
* ``"byte_level_bpe"``: GPT-2's byte-level BPE, from ``vocab.json`` + ``merges.txt``;
* ``"roberta_bpe"``: RoBERTa's: GPT-2's byte-level BPE with ``<s> A </s>`` and ``<s> A </s></s> B </s>``
  around the texts, from ``vocab.json`` + ``merges.txt``;
* ``"word_end_bpe"``: GPT's (openai-gpt) lowercasing BPE with ``</w>`` word ends, from ``vocab.json`` +
  ``merges.txt``.

:func:`load_pipeline` chooses the family of a folder and builds its pipeline and settings; the builders
(``wordpiece_from_vocab``, ``byte_level_bpe_from_files``, ...) can be used on their own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as BackendTokenizer

from ..config import read_config_json
from .files import (
    SPECIAL_TOKEN_KEYS,
    TokenizerFileError,
    describe_folder,
    read_bpe_files,
    read_json_file,
    read_tokenizer_json,
    read_wordpiece_vocab,
    saved_settings_of,
    settings_model_max_length,
)

# Tokenizer families: the pipelines built from vocabulary files (tokenizer.json holds its own pipeline).
WORDPIECE = "wordpiece"
BYTE_LEVEL_BPE = "byte_level_bpe"
WORD_END_BPE = "word_end_bpe"
ROBERTA_BPE = "roberta_bpe"
FAMILIES = (WORDPIECE, BYTE_LEVEL_BPE, WORD_END_BPE, ROBERTA_BPE)
# Families whose pre-tokenizer is GPT-2's ByteLevel (tokens are bytes mapped to printable characters).
BYTE_LEVEL_FAMILIES = (BYTE_LEVEL_BPE, ROBERTA_BPE)

# tokenizer_config.json's tokenizer_class -> family.
FAMILY_BY_TOKENIZER_CLASS = {
    "BertTokenizer": WORDPIECE,
    "BertTokenizerFast": WORDPIECE,
    "GPT2Tokenizer": BYTE_LEVEL_BPE,
    "GPT2TokenizerFast": BYTE_LEVEL_BPE,
    "OpenAIGPTTokenizer": WORD_END_BPE,
    "OpenAIGPTTokenizerFast": WORD_END_BPE,
    "RobertaTokenizer": ROBERTA_BPE,
    "RobertaTokenizerFast": ROBERTA_BPE,
    "DistilBertTokenizer": WORDPIECE,
    "DistilBertTokenizerFast": WORDPIECE,
}
# Models whose inputs differ from their tokenizer family's default (DistilBERT: WordPiece, no token types).
MODEL_INPUTS_BY_TOKENIZER_CLASS = {
    "DistilBertTokenizer": ("input_ids", "attention_mask"),
    "DistilBertTokenizerFast": ("input_ids", "attention_mask"),
}


class ModelTypeTokenizers:
    """What config.json's ``model_type`` says about a folder's tokenizer when tokenizer_config.json names no
    ``tokenizer_class``: its family, and its model inputs (through the Hugging Face tokenizer class its
    checkpoints name, where that is not the family's usual one: DistilBERT's).

    The architecture records declare both (``tokenizer_family``, ``tokenizer_class``) and are the one place
    that says them. This package sits below the models and cannot import :mod:`workbench.registry`, so the
    registry hands its live views down when it is imported (:meth:`use`), as ``workbench.tokenizers`` hands
    ``Tokenizer.folder_classes`` to the base class; importing any ``workbench`` module imports the registry.
    """

    def __init__(self) -> None:
        self._families: Mapping[str, str] | None = None
        self._tokenizer_classes: Mapping[str, str] = {}

    def use(self, families: Mapping[str, str], tokenizer_classes: Mapping[str, str]) -> None:
        """``model_type -> family`` and ``model_type -> Hugging Face tokenizer class`` (the registry's views)."""
        self._families = families
        self._tokenizer_classes = tokenizer_classes

    def _table(self) -> Mapping[str, str]:
        if self._families is None:
            raise RuntimeError(
                "the tokenizer families by model_type are not set: import workbench.registry, which hands them "
                "down from the architecture records"
            )
        return self._families

    def family(self, model_type: str) -> str | None:
        """The family of ``model_type`` when it is one this module builds (not XLM's, XLNet's, ...), else None."""
        family = self._table().get(model_type)
        return family if family in FAMILIES else None

    def model_inputs(self, model_type: str | None) -> tuple[str, ...] | None:
        """The inputs of ``model_type``'s models when they differ from its family's default, else None."""
        return MODEL_INPUTS_BY_TOKENIZER_CLASS.get(self._tokenizer_classes.get(model_type))

    def supported(self) -> list[str]:
        """The model types whose family this module builds, sorted."""
        return sorted(model_type for model_type in self._table() if self.family(model_type) is not None)


MODEL_TYPES = ModelTypeTokenizers()

_FAMILY_FILES = {
    WORDPIECE: ("vocab.txt",),
    BYTE_LEVEL_BPE: ("vocab.json", "merges.txt"),
    WORD_END_BPE: ("vocab.json", "merges.txt"),
    ROBERTA_BPE: ("vocab.json", "merges.txt"),
}
_FAMILY_DESCRIPTIONS = {
    WORDPIECE: "WordPiece (BERT)",
    BYTE_LEVEL_BPE: "byte-level BPE (GPT-2)",
    WORD_END_BPE: "BPE with </w> word ends (GPT)",
    ROBERTA_BPE: "byte-level BPE with <s> and </s> (RoBERTa)",
}
# What Hugging Face's tokenizer class of each family uses when tokenizer_config.json does not say.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    WORDPIECE: {
        "tokenizer_class": "BertTokenizer",
        "model_input_names": ("input_ids", "token_type_ids", "attention_mask"),
        "special_tokens": {
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
    },
    # GPT-2 and GPT models would add an embedding for token_type_ids: their tokenizers never make them.
    BYTE_LEVEL_BPE: {
        "tokenizer_class": "GPT2Tokenizer",
        "model_input_names": ("input_ids", "attention_mask"),
        "special_tokens": dict.fromkeys(("unk_token", "bos_token", "eos_token"), "<|endoftext|>"),
    },
    WORD_END_BPE: {
        "tokenizer_class": "OpenAIGPTTokenizer",
        "model_input_names": ("input_ids", "attention_mask"),
        "special_tokens": {"unk_token": "<unk>"},
    },
    # In the order of RobertaTokenizer's arguments, which is the order missing ones get new ids in.
    ROBERTA_BPE: {
        "tokenizer_class": "RobertaTokenizer",
        "model_input_names": ("input_ids", "attention_mask"),
        "special_tokens": {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "cls_token": "<s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
    },
}


def load_pipeline(
    folder: Path, add_prefix_space: bool | None = None
) -> tuple[BackendTokenizer, dict[str, Any]]:
    """The pipeline of the tokenizer in ``folder`` and the constructor options of
    :class:`~workbench.tokenizers.base.Tokenizer` for it (special tokens, model_max_length, padding side,
    saved settings, family, model inputs); see :meth:`Tokenizer.from_pretrained
    <workbench.tokenizers.base.Tokenizer.from_pretrained>` for how the family is chosen.

    Raises:
        FileNotFoundError: no tokenizer of these families in ``folder``, or one without the files it needs.
        ValueError: a tokenizer_class or model_type without a tokenizer.json that none of them can build.
        TokenizerFileError: a malformed file.
    """
    settings = _read_tokenizer_settings(folder)
    family, source = _family_from_settings(folder, settings)
    from_settings = family is not None
    if (folder / "tokenizer.json").is_file():
        backend = read_tokenizer_json(folder / "tokenizer.json")
        _llama_class_pipeline(backend, settings)
        if family is None:
            family = _family_of_backend(backend)
        vocab = backend.get_vocab(with_added_tokens=True)
        special = _special_tokens_with_defaults(settings, family, vocab, from_settings)
        _add_missing_special_tokens(backend, special.values())
    else:
        if family is None and source:  # a tokenizer_class or model_type this module cannot build
            raise ValueError(
                f"no tokenizer.json in {folder}, and {source} is not one this tokenizer can build from "
                f"vocabulary files; supported tokenizer_class values: {sorted(FAMILY_BY_TOKENIZER_CLASS)}; "
                f"supported model_type values: {MODEL_TYPES.supported()}"
            )
        if family is None:
            family, source = _family_from_files(folder), "the files present"
        if family is None:
            raise FileNotFoundError(
                f"no tokenizer in {folder}: looked for tokenizer.json; for tokenizer_config.json's "
                f"tokenizer_class (one of {sorted(FAMILY_BY_TOKENIZER_CLASS)}) or config.json's model_type "
                f"(one of {MODEL_TYPES.supported()}); and for the vocabulary files vocab.json + "
                f"merges.txt (GPT-2 byte-level BPE or GPT BPE) or vocab.txt (WordPiece, BERT). "
                f"Found: {describe_folder(folder)}"
            )
        missing = [name for name in _FAMILY_FILES[family] if not (folder / name).is_file()]
        if missing:
            needs = " and ".join(_FAMILY_FILES[family])
            raise FileNotFoundError(
                f"no tokenizer in {folder}: {source} selects {_FAMILY_DESCRIPTIONS[family]}, which needs "
                f"{needs} (or a tokenizer.json); missing: {', '.join(missing)}. "
                f"Found: {describe_folder(folder)}"
            )
        backend, special = _build_backend(folder, family, settings, from_settings)
    _set_add_prefix_space(backend, family, settings, add_prefix_space, from_settings, folder, special)
    options = {
        "special_tokens": special,
        "model_max_length": settings.get("model_max_length"),
        "padding_side": settings.get("padding_side", "right"),
        "saved_settings": settings["original"],
        "family": family,
    }
    model_inputs = _model_inputs_of(folder, settings)
    if settings.get("model_input_names"):
        options["model_input_names"] = tuple(settings["model_input_names"])
    elif model_inputs is not None:
        options["model_input_names"] = model_inputs
    elif family is not None:
        options["model_input_names"] = _FAMILY_DEFAULTS[family]["model_input_names"]
    return backend, options


def tokenizer_class_of(family: str) -> str:
    """The Hugging Face tokenizer class of ``family`` (what ``save_pretrained`` writes when the settings name
    none)."""
    return _FAMILY_DEFAULTS[family]["tokenizer_class"]


def wordpiece_from_vocab(
    vocab_path: str | Path,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    special_tokens: dict[str, str] | None = None,
) -> BackendTokenizer:
    """Build BERT's WordPiece tokenizer from a ``vocab.txt`` (what Hugging Face's BertTokenizerFast builds)."""
    special = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", **(special_tokens or {})}
    vocab = read_wordpiece_vocab(Path(vocab_path))
    backend = BackendTokenizer(
        models.WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100)
    )
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=tokenize_chinese_chars,
        strip_accents=strip_accents,
        lowercase=lowercase,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_token, sep_token = special["cls_token"], special["sep_token"]
    for token in special.values():
        if token not in vocab:
            raise TokenizerFileError(f"{vocab_path} lacks the special token {token!r}")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, vocab[cls_token]), (sep_token, vocab[sep_token])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(list(special.values()))
    return backend


def byte_level_bpe_from_files(
    vocab_path: str | Path,
    merges_path: str | Path,
    add_prefix_space: bool = False,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
) -> BackendTokenizer:
    """Build GPT-2's byte-level BPE from ``vocab.json`` + ``merges.txt`` (what Hugging Face's GPT2Converter builds).

    No special tokens go around the text; ``special_tokens`` are matched whole in the text and skipped by
    ``decode(..., skip_special_tokens=True)`` (a token missing from the vocabulary gets the next id).
    """
    vocab, merges = read_bpe_files(vocab_path, merges_path)
    return _byte_level_bpe(vocab, merges, add_prefix_space, special_tokens)


def _byte_level_bpe(
    vocab, merges, add_prefix_space: bool, special_tokens: Sequence[str | AddedToken]
) -> BackendTokenizer:
    backend = BackendTokenizer(
        models.BPE(
            vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False
        )
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    # trim_offsets=False: offsets keep the leading space of a token, as Hugging Face's.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    _add_missing_special_tokens(backend, special_tokens)
    return backend


def roberta_bpe_from_files(
    vocab_path: str | Path,
    merges_path: str | Path,
    add_prefix_space: bool = False,
    trim_offsets: bool = True,
    special_tokens: Sequence[str | AddedToken] | None = None,
    cls_token: str = "<s>",
    sep_token: str = "</s>",
) -> BackendTokenizer:
    """Build RoBERTa's tokenizer from ``vocab.json`` + ``merges.txt`` (Hugging Face's RobertaConverter).

    GPT-2's byte-level BPE, with ``cls_token A sep_token`` around a text and ``cls_token A sep_token
    sep_token B sep_token`` around a pair (``RobertaProcessing``; ``trim_offsets``: offsets leave out a
    token's leading space). ``special_tokens`` are matched whole in the text, with their options when given
    as ``AddedToken``; one missing from the vocabulary gets the next id. Default: ``<s>``, ``</s>``,
    ``<unk>``, ``<pad>`` and ``<mask>`` with ``lstrip=True`` (it swallows the spaces before it), as in the
    released RoBERTa tokenizers.
    """
    if special_tokens is None:
        mask = AddedToken("<mask>", lstrip=True, normalized=False)
        special_tokens = ["<s>", "</s>", "<unk>", "<pad>", mask]
    vocab, merges = read_bpe_files(vocab_path, merges_path)
    return _roberta_bpe(vocab, merges, add_prefix_space, trim_offsets, special_tokens, cls_token, sep_token)


def _roberta_bpe(
    vocab, merges, add_prefix_space: bool, trim_offsets: bool, special_tokens, cls_token: str, sep_token: str
) -> BackendTokenizer:
    backend = _byte_level_bpe(vocab, merges, add_prefix_space, special_tokens)
    backend.post_processor = _roberta_processing(
        backend, cls_token, sep_token, trim_offsets=trim_offsets, add_prefix_space=add_prefix_space
    )
    return backend


def _roberta_processing(
    backend: BackendTokenizer,
    cls_token: str | None,
    sep_token: str | None,
    trim_offsets: bool,
    add_prefix_space: bool,
) -> processors.RobertaProcessing:
    """``<s> A </s>`` and ``<s> A </s></s> B </s>``; the two tokens must be in the vocabulary."""
    ids = {}
    for name, token in (("cls_token", cls_token), ("sep_token", sep_token)):
        token_id = backend.token_to_id(token) if token is not None else None
        if token_id is None:
            raise ValueError(f"RoBERTa's tokenizer puts its {name} around every text, but it is {token!r}")
        ids[name] = token_id
    return processors.RobertaProcessing(
        (sep_token, ids["sep_token"]), (cls_token, ids["cls_token"]), trim_offsets, add_prefix_space
    )


def word_end_bpe_from_files(
    vocab_path: str | Path,
    merges_path: str | Path,
    unk_token: str = "<unk>",
    special_tokens: Sequence[str] = (),
) -> BackendTokenizer:
    """Build GPT's (openai-gpt) BPE from ``vocab.json`` + ``merges.txt`` (Hugging Face's OpenAIGPTConverter).

    The text is cleaned, lowercased and stripped of accents, and split on whitespace and punctuation (and
    around CJK characters) as BERT's BasicTokenizer does: what Hugging Face's OpenAIGPTTokenizer does when
    ``ftfy`` and ``spacy`` are not installed (with them, its slow version used spaCy's English tokenizer).
    The last symbol of every word carries ``</w>``; a character missing from the vocabulary is ``unk_token``.
    """
    vocab, merges = read_bpe_files(vocab_path, merges_path)
    return _word_end_bpe(vocab, merges, unk_token, special_tokens)


def _word_end_bpe(vocab, merges, unk_token: str, special_tokens: Sequence[str]) -> BackendTokenizer:
    backend = BackendTokenizer(
        models.BPE(
            vocab, merges, dropout=None, unk_token=unk_token, end_of_word_suffix="</w>", fuse_unk=False
        )
    )
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.BPEDecoder(suffix="</w>")
    # Nothing goes around the texts; a pair is A then B (token types 0 and 1). Hugging Face's converter sets
    # no post-processor, its v5 class this template: with it, sequence_ids() is None on padding, as theirs.
    backend.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    _add_missing_special_tokens(backend, [unk_token, *special_tokens])
    return backend


def _build_backend(
    folder: Path, family: str, settings: dict[str, Any], family_from_settings: bool
) -> tuple[BackendTokenizer, dict[str, str]]:
    """The pipeline of ``family`` from the vocabulary files in ``folder``, and its special tokens."""
    if family == WORDPIECE:
        vocab_path = folder / "vocab.txt"
        vocab = read_wordpiece_vocab(vocab_path)
        special = _special_tokens_with_defaults(settings, family, vocab, family_from_settings)
        backend = wordpiece_from_vocab(
            vocab_path,
            lowercase=settings.get("do_lower_case", True),
            strip_accents=settings.get("strip_accents"),
            tokenize_chinese_chars=settings.get("tokenize_chinese_chars", True),
            special_tokens=special,
        )
        return backend, special
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab, merges = read_bpe_files(vocab_path, merges_path)
    special = _special_tokens_with_defaults(settings, family, vocab, family_from_settings)
    if family == BYTE_LEVEL_BPE:
        backend = _byte_level_bpe(vocab, merges, False, list(special.values()))
    elif family == ROBERTA_BPE:  # its post-processor is set with add_prefix_space (_set_add_prefix_space)
        tokens = [_added_special_token(token, settings) for token in special.values()]
        backend = _roberta_bpe(
            vocab, merges, False, True, tokens, special.get("cls_token"), special.get("sep_token")
        )
    else:
        backend = _word_end_bpe(vocab, merges, special.get("unk_token", "<unk>"), list(special.values()))
    return backend, special


def _family_from_settings(folder: Path, settings: dict[str, Any]) -> tuple[str | None, str]:
    """The family named by tokenizer_config.json's tokenizer_class, else by config.json's model_type.

    Returns (family or None, what decided it, e.g. "tokenizer_config.json's tokenizer_class 'GPT2Tokenizer'";
    "" when neither file says anything).
    """
    tokenizer_class = settings["original"].get("tokenizer_class")
    if tokenizer_class:
        source = f"tokenizer_config.json's tokenizer_class {tokenizer_class!r}"
        if tokenizer_class in FAMILY_BY_TOKENIZER_CLASS:
            return FAMILY_BY_TOKENIZER_CLASS[tokenizer_class], source
        if not (folder / "tokenizer.json").is_file():
            return None, source  # an unknown class: its pipeline cannot be guessed from the files
    model_type = _read_model_type(folder)
    if model_type is not None:
        return MODEL_TYPES.family(model_type), f"config.json's model_type {model_type!r}"
    return None, ""


def _model_inputs_of(folder: Path, settings: dict[str, Any]) -> tuple[str, ...] | None:
    """Model inputs fixed by the tokenizer class or model type (DistilBERT's), else None."""
    tokenizer_class = settings.get("tokenizer_class")
    if tokenizer_class is not None:
        return MODEL_INPUTS_BY_TOKENIZER_CLASS.get(tokenizer_class)
    return MODEL_TYPES.model_inputs(_read_model_type(folder))


def _read_model_type(folder: Path) -> str | None:
    if not (folder / "config.json").is_file():
        return None
    model_type = read_config_json(folder / "config.json").get("model_type")
    return model_type if isinstance(model_type, str) else None


def _family_from_files(folder: Path) -> str | None:
    """vocab.json + merges.txt: ``</w>`` BPE or byte-level BPE, by the vocabulary; vocab.txt: WordPiece."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        vocab = read_json_file(folder / "vocab.json")
        # GPT's vocabulary has every word-final symbol with </w>; GPT-2's marks word starts with "Ġ" (a space).
        word_ends = sum(1 for token in vocab if token.endswith("</w>"))
        word_starts = sum(1 for token in vocab if token.startswith("\u0120"))
        return WORD_END_BPE if word_ends > word_starts else BYTE_LEVEL_BPE
    if (folder / "vocab.txt").is_file():
        return WORDPIECE
    return None


def _family_of_backend(backend: BackendTokenizer) -> str | None:
    """The family that a tokenizer.json pipeline belongs to (for the defaults), or None."""
    model = backend.model
    if isinstance(model, models.WordPiece):
        return WORDPIECE
    if isinstance(model, models.BPE):
        if model.end_of_word_suffix == "</w>":
            return WORD_END_BPE
        if isinstance(backend.pre_tokenizer, pre_tokenizers.ByteLevel):
            if isinstance(backend.post_processor, processors.RobertaProcessing):
                return ROBERTA_BPE
            return BYTE_LEVEL_BPE
    return None


def _special_tokens_with_defaults(
    settings: dict[str, Any], family: str | None, vocab: Collection[str], family_from_settings: bool
) -> dict[str, str]:
    """The special tokens of the settings, plus the family's defaults for the keys the settings lack.

    A key present in the settings with the value null means "none" and gets no default. A default missing
    from ``vocab`` is taken (and added with a new id) only where Hugging Face's class would take it: for a BPE
    family named by tokenizer_class or model_type; not for WordPiece, nor for a family guessed from the files.
    """
    special = {}
    defaults = _FAMILY_DEFAULTS[family]["special_tokens"] if family is not None else {}
    add_missing = family_from_settings and family != WORDPIECE
    for key, token in defaults.items():
        if key in settings or not (add_missing or token in vocab):
            continue
        special[key] = token
    special.update(settings["special_tokens"])
    return special


def _add_missing_special_tokens(backend: BackendTokenizer, tokens) -> None:
    """Make ``tokens`` (strings or ``AddedToken``) special added tokens (matched whole in text, skippable in
    decode), unless they are."""
    added = {token.content for token in backend.get_added_tokens_decoder().values()}
    missing, seen = [], set()
    for token in tokens:
        content = token.content if isinstance(token, AddedToken) else token
        if content not in added and content not in seen:
            seen.add(content)
            missing.append(token)
    if missing:
        backend.add_special_tokens(missing)


_ADDED_TOKEN_OPTIONS = ("single_word", "lstrip", "rstrip", "normalized")


def _added_special_token(content: str, settings: dict[str, Any]) -> AddedToken:
    """``content`` as a special ``AddedToken`` with the options the settings give it, as Hugging Face reads
    them: ``tokenizer_config.json``'s ``added_tokens_decoder`` first, then a special token written as a dict
    (``{"content": "<mask>", "lstrip": true, ...}``, as in ``special_tokens_map.json``); else no options."""
    options: dict[str, Any] = {}
    decoder = settings.get("added_tokens_decoder")
    special_tokens_map = settings.get("special_tokens_map") or {}
    entries = list(decoder.values()) if isinstance(decoder, dict) else []
    entries += [special_tokens_map.get(key) for key in SPECIAL_TOKEN_KEYS]
    entries += [settings.get(key) for key in SPECIAL_TOKEN_KEYS]
    entries = [entry for entry in entries if isinstance(entry, dict)]
    for entry in entries:
        if entry.get("content") == content:
            options = {key: bool(entry[key]) for key in _ADDED_TOKEN_OPTIONS if key in entry}
            break
    options.setdefault("normalized", False)
    return AddedToken(content, special=True, **options)


def _set_add_prefix_space(
    backend: BackendTokenizer,
    family: str | None,
    settings: dict[str, Any],
    requested: bool | None,
    family_from_settings: bool,
    folder: Path,
    special: dict[str, str],
) -> None:
    """Set the ByteLevel pre-tokenizer's add_prefix_space as Hugging Face's GPT2Tokenizer and RobertaTokenizer
    do.

    The argument wins, then tokenizer_config.json's value; Hugging Face's GPT2Tokenizer and RobertaTokenizer
    (chosen by the tokenizer_class or model_type) default to False even over tokenizer.json's value. A
    tokenizer.json of no known class keeps its own value. RobertaTokenizer also rebuilds its post-processor
    from the settings (cls and sep tokens, ``trim_offsets``, default True; add_prefix_space), which decides
    how offsets are trimmed.
    """
    pre_tokenizer = backend.pre_tokenizer
    if not isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
        if requested is not None:
            raise ValueError(
                f"add_prefix_space applies to byte-level BPE tokenizers; the tokenizer in {folder} has "
                f"pre-tokenizer {type(pre_tokenizer).__name__}"
            )
        return
    value = requested if requested is not None else settings.get("add_prefix_space")
    if value is None and family in BYTE_LEVEL_FAMILIES and family_from_settings:
        value = False
    if value is not None:
        pre_tokenizer.add_prefix_space = bool(value)
    post_processor = backend.post_processor
    if family == ROBERTA_BPE and family_from_settings:
        trim_offsets = bool(settings.get("trim_offsets", True))
        backend.post_processor = _roberta_processing(
            backend, special.get("cls_token"), special.get("sep_token"), trim_offsets, bool(value)
        )
    elif value is not None and isinstance(post_processor, processors.RobertaProcessing):
        backend.post_processor = processors.RobertaProcessing(
            tuple(post_processor.sep), tuple(post_processor.cls), post_processor.trim_offsets, bool(value)
        )


# Hugging Face's classes that rebuild the text steps of a tokenizer.json's SentencePiece-style BPE (Llama 2,
# Mistral, TinyLlama name them in tokenizer_config.json).
_LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")


def _llama_class_pipeline(backend: BackendTokenizer, settings: dict[str, Any]) -> None:
    """What Hugging Face 5's LlamaTokenizer keeps of a tokenizer.json: the BPE model, added tokens and
    post-processor; it rebuilds the rest. No normalizer (released tokenizer.json files prepend "▁" and replace
    spaces in one); a Metaspace pre-tokenizer that prepends "▁" to the first piece (``legacy=False``, the
    default), to every piece between special tokens (``legacy=True``) or never (``add_prefix_space=False``);
    the decoder to match. So " hello" and text right after a special token get the ids Hugging Face gives."""
    if settings["original"].get("tokenizer_class") not in _LLAMA_CLASSES:
        return
    if not isinstance(backend.model, models.BPE):
        return
    add_prefix_space = settings.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    prepend_scheme = ("always" if settings.get("legacy", False) else "first") if add_prefix_space else "never"
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=prepend_scheme, split=False)
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    backend.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if add_prefix_space else []))


def _read_tokenizer_settings(folder: Path) -> dict[str, Any]:
    """tokenizer_config.json and special_tokens_map.json, merged; special tokens as plain strings."""
    settings: dict[str, Any] = {}
    original: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            values = read_json_file(path)
            settings.update(values)
            if name == "special_tokens_map.json":
                settings["special_tokens_map"] = (
                    values  # its dicts keep options a string in tokenizer_config hides
                )
            if name == "tokenizer_config.json":
                original = saved_settings_of(values)
    settings["original"] = original
    special = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = settings.get(key)
        if isinstance(value, dict):  # {"content": "[CLS]", "lstrip": false, ...}
            value = value.get("content")
        if isinstance(value, str):
            special[key] = value
    settings["special_tokens"] = special
    settings["model_max_length"] = settings_model_max_length(settings.get("model_max_length"), folder)
    return settings
