"""Tokenizer: a thin class over the ``tokenizers`` library.

It reads ``tokenizer.json``, or builds the pipeline of one of four families from the vocabulary files
(what Hugging Face's converters build, so that the ids are the same):

* ``"wordpiece"``: BERT's WordPiece, from ``vocab.txt``;
* ``"byte_level_bpe"``: GPT-2's byte-level BPE, from ``vocab.json`` + ``merges.txt``;
* ``"roberta_bpe"``: RoBERTa's: GPT-2's byte-level BPE with ``<s> A </s>`` and ``<s> A </s></s> B </s>``
  around the texts, from ``vocab.json`` + ``merges.txt``;
* ``"word_end_bpe"``: GPT's (openai-gpt) lowercasing BPE with ``</w>`` word ends, from ``vocab.json`` +
  ``merges.txt``.

It returns an :class:`Encoding`: a mapping of the model inputs (``input_ids``, ``attention_mask`` and, for
BERT, ``token_type_ids``) that can be passed as ``model(**encoding)``, which also carries what the model
does not take but users need: token strings, character ``offsets`` and ``word_ids`` (which word each token
came from). Ids equal those of Hugging Face's tokenizer on the same files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as BackendTokenizer

logger = logging.getLogger(__name__)

TextInput = Union[str, Sequence[str]]
SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "bos_token", "eos_token")
# Hugging Face's "no limit" sentinel for model_max_length.
_VERY_LARGE_INTEGER = int(1e30)

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
# config.json's model_type -> family (when tokenizer_config.json names no tokenizer_class).
FAMILY_BY_MODEL_TYPE = {
    "bert": WORDPIECE,
    "gpt2": BYTE_LEVEL_BPE,
    "openai-gpt": WORD_END_BPE,
    "roberta": ROBERTA_BPE,
    "distilbert": WORDPIECE,
}
# Models whose inputs differ from their tokenizer family's default (DistilBERT: WordPiece, no token types).
MODEL_INPUTS_BY_TOKENIZER_CLASS = {
    "DistilBertTokenizer": ("input_ids", "attention_mask"),
    "DistilBertTokenizerFast": ("input_ids", "attention_mask"),
}
MODEL_INPUTS_BY_MODEL_TYPE = {"distilbert": ("input_ids", "attention_mask")}

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


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read as what it should be: ``tokenizer.json``, ``vocab.txt``,
    ``vocab.json``, ``merges.txt``, ``vocab.pkl``, ``spiece.model``, ``tokenizer_config.json`` or
    ``special_tokens_map.json``. The message names the file and where in it: the line for text formats, the
    byte offset for binary ones. Every tokenizer reader of the workbench raises it (or a subclass) for a
    malformed, truncated or non-UTF-8 file; nothing of such a file is used."""


def read_text_file(path: Path, universal_newlines: bool = True) -> str:
    """The UTF-8 text of ``path``; with ``universal_newlines``, ``\r\n`` and ``\r`` read as ``\n``, as
    ``open(path, encoding="utf-8")`` reads them.

    Raises:
        TokenizerFileError: bytes that are not UTF-8, with the line and byte offset of the first.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise TokenizerFileError(
            f"{path}, line {line} (byte {err.start}): not UTF-8 text ({err.reason}: "
            f"{data[err.start : err.end]!r})"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if universal_newlines else text


def read_lines(path: Path, universal_newlines: bool = True) -> list[str]:
    """The lines of a UTF-8 text file, without their newlines (without ``universal_newlines``: split on
    ``\n`` only, a ``\r`` before it dropped, as the ``tokenizers`` library reads merges.txt).

    A non-empty file must end with a newline: one that does not was most likely cut off in the middle of its
    last line (every vocabulary and merges file written by the tokenizer libraries ends with one).

    Raises:
        TokenizerFileError: non-UTF-8 bytes, or no final newline (with the line number).
    """
    text = read_text_file(path, universal_newlines)
    if not text:
        return []
    lines = text.split("\n")
    if not universal_newlines:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if lines[-1]:
        raise TokenizerFileError(
            f"{path}, line {len(lines)}: the file ends in the middle of a line ({lines[-1][:80]!r}) without a "
            f"newline: was it cut off? A complete vocabulary or merges file ends with a newline; if this one is "
            f"complete, add the newline"
        )
    return lines[:-1]


def read_json_file(path: Path, *, duplicate_keys_allowed: bool = True) -> dict[str, Any]:
    """A JSON file that must hold an object.

    Raises:
        TokenizerFileError: non-UTF-8 bytes, invalid JSON (with line and column), something other than an
            object, or (with ``duplicate_keys_allowed=False``) a key written twice in one object.
    """
    text = read_text_file(path)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise TokenizerFileError(f"{path}: the key {key!r} is written twice")
                seen.add(key)
        return out

    try:
        value = json.loads(text, object_pairs_hook=None if duplicate_keys_allowed else unique)
    except json.JSONDecodeError as err:
        raise TokenizerFileError(
            f"{path}, line {err.lineno} column {err.colno}: not valid JSON: {err.msg}"
        ) from None
    except RecursionError:
        raise TokenizerFileError(f"{path}: the JSON is nested too deeply") from None
    if not isinstance(value, dict):
        raise TokenizerFileError(f"{path} must hold a JSON object, found a {type(value).__name__}")
    return value


def read_wordpiece_vocab(path: Path) -> dict[str, int]:
    """BERT's ``vocab.txt`` as Hugging Face reads it: token -> line number (0-based; a token written twice
    keeps its last line).

    Raises:
        TokenizerFileError: non-UTF-8 bytes or a last line cut off (no final newline), naming the line.
    """
    return {token: index for index, token in enumerate(read_lines(path))}


def read_token_ids(path: Path) -> dict[str, int]:
    """A ``vocab.json``: an object of token -> id (a non-negative int below 2**32), no token written twice.

    Raises:
        TokenizerFileError: naming the file and the first bad entry.
    """
    vocab = read_json_file(path, duplicate_keys_allowed=False)
    for token, index in vocab.items():
        if type(index) is not int or not 0 <= index < 1 << 32:
            raise TokenizerFileError(
                f"{path} must map every token to its id (a non-negative integer); found {token!r}: {index!r}"
            )
    return vocab


def read_bpe_files(vocab_path: Path, merges_path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``vocab.json`` + ``merges.txt`` as the ``tokenizers`` library reads them (``BPE.read_file``), checked
    line by line: ``#version`` lines are skipped; every other line is two symbols separated by one space,
    each of them and their concatenation in the vocabulary (what the BPE model requires).

    Raises:
        TokenizerFileError: naming the file and line (or entry) that is wrong.
    """
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    vocab = read_token_ids(vocab_path)
    merges = []
    for number, line in enumerate(read_lines(merges_path, universal_newlines=False), start=1):
        if line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerFileError(
                f"{merges_path}, line {number}: {line[:80]!r} is not a merge (two symbols separated by one space)"
            )
        for symbol in (*parts, parts[0] + parts[1]):
            if symbol not in vocab:
                raise TokenizerFileError(
                    f"{merges_path}, line {number}: the merge {line[:80]!r} needs the symbol {symbol[:80]!r}, "
                    f"which {vocab_path} lacks"
                )
        merges.append((parts[0], parts[1]))
    return vocab, merges


class Encoding(Mapping):
    """Tokenized inputs: a mapping of model inputs plus token strings, offsets and word ids.

    Keys (the model inputs): ``input_ids``, ``attention_mask`` and, where the tokenizer makes them,
    ``token_type_ids``; each [batch, pos] (a tensor with ``return_tensors="pt"``, else lists; one text
    without tensors gives flat lists, as Hugging Face does).
    """

    def __init__(self, data: dict[str, Any], encodings: list, is_batched: bool) -> None:
        self._data = data
        self.encodings = encodings  # the tokenizers.Encoding of each sequence
        self.is_batched = is_batched

    def __getitem__(self, key: str):
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str):
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in self.items()}
        return f"Encoding({shapes})"

    def tokens(self, index: int = 0) -> list[str]:
        """The token strings of sequence ``index`` (padding included)."""
        return list(self.encodings[index].tokens)

    def word_ids(self, index: int = 0) -> list[int | None]:
        """For each token of sequence ``index``, the index of the word it came from (None for special tokens)."""
        return list(self.encodings[index].word_ids)

    def sequence_ids(self, index: int = 0) -> list[int | None]:
        """For each token, 0 or 1 for the first or second text of a pair, None for special tokens."""
        return list(self.encodings[index].sequence_ids)

    @property
    def offsets(self) -> list[list[tuple[int, int]]]:
        """Character span (start, end) of every token in its text, per sequence; (0, 0) for special tokens."""
        return [list(e.offsets) for e in self.encodings]

    def to(self, device: torch.device | str) -> Encoding:
        """Move the tensors to ``device`` (in place) and return self."""
        self._data = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self._data.items()}
        return self


class Tokenizer:
    """A tokenizer over a ``tokenizers.Tokenizer`` backend.

    Args:
        backend: the ``tokenizers.Tokenizer``; its own padding and truncation settings are switched off and
            set per call instead, as Hugging Face does.
        special_tokens: e.g. ``{"cls_token": "[CLS]", "pad_token": "[PAD]", ...}``.
        model_max_length: the longest input the model takes, in tokens (truncation's default).
        model_input_names: which inputs the model takes (GPT-2, RoBERTa and GPT: no ``token_type_ids``).
        padding_side: ``"right"`` or ``"left"``.
        family: ``"wordpiece"``, ``"byte_level_bpe"``, ``"roberta_bpe"``, ``"word_end_bpe"`` or None
            (unknown); what :meth:`save_pretrained` writes as ``tokenizer_class`` when the settings do not
            name one.

    Padding: without a ``pad_token`` (GPT-2 and GPT have none), padding uses the ``eos_token`` instead, with
    ``attention_mask`` 0 on those positions (the usual ``tokenizer.pad_token = tokenizer.eos_token``, where
    Hugging Face raises an error); ``tokenizer.pad_token`` itself stays None. With neither token, padding is an
    error.
    """

    def __init__(
        self,
        backend: BackendTokenizer,
        special_tokens: dict[str, str] | None = None,
        model_max_length: int | None = None,
        model_input_names: Sequence[str] = ("input_ids", "token_type_ids", "attention_mask"),
        padding_side: str = "right",
        name_or_path: str = "",
        saved_settings: dict[str, Any] | None = None,
        family: str | None = None,
    ) -> None:
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES} or None, got {family!r}")
        self.backend = backend
        self.backend.no_padding()
        self.backend.no_truncation()
        self.special_tokens = dict(special_tokens or {})
        self.model_max_length = model_max_length if model_max_length is not None else _VERY_LARGE_INTEGER
        self.model_input_names = tuple(model_input_names)
        self.padding_side = padding_side
        self.name_or_path = name_or_path
        self.family = family
        # tokenizer_config.json keys this class does not use (tokenizer_class, do_lower_case, ...),
        # written back by save_pretrained so that other libraries read the folder as before.
        self.saved_settings = dict(saved_settings or {})
        self._warned_split_words_without_prefix_space = False

    # Construction ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, add_prefix_space: bool | None = None, **kwargs: Any
    ) -> Tokenizer:
        """Load from a folder, alias or hub id.

        ``tokenizer.json`` is used when present (it holds the whole pipeline). Without it, the pipeline is
        built from the vocabulary files, as Hugging Face's converters build it, for the family chosen by, in
        order:

        1. ``tokenizer_config.json``'s ``tokenizer_class``: ``BertTokenizer(Fast)`` -> WordPiece from
           ``vocab.txt``; ``GPT2Tokenizer(Fast)`` -> byte-level BPE from ``vocab.json`` + ``merges.txt``;
           ``RobertaTokenizer(Fast)`` -> the same with ``<s>``/``</s>`` around the texts (Hugging Face's
           ``RobertaProcessing``); ``OpenAIGPTTokenizer(Fast)`` -> BPE with ``</w>`` word ends from the same
           two files;
        2. else ``config.json``'s ``model_type``: ``"bert"``, ``"gpt2"``, ``"roberta"``, ``"openai-gpt"``;
        3. else the files present: ``vocab.json`` + ``merges.txt`` (``</w>`` BPE when more of the vocabulary's
           tokens end in ``</w>`` than start with ``Ġ``, GPT-2's mark of a space; else byte-level), or
           ``vocab.txt`` (WordPiece).

        The family also gives the defaults that the settings do not override: the special tokens
        (GPT-2: ``<|endoftext|>`` as unk, bos and eos, no pad; RoBERTa: ``<s>`` as bos and cls, ``</s>`` as
        eos and sep, ``<unk>``, ``<pad>``, ``<mask>``; GPT: ``<unk>``) and ``model_input_names`` (GPT-2,
        RoBERTa and GPT: ``input_ids`` and ``attention_mask`` only), as Hugging Face's classes have them.

        RoBERTa built from vocabulary files takes the special tokens' matching options (``lstrip``: ``<mask>``
        swallows the spaces before it) from ``tokenizer_config.json``'s ``added_tokens_decoder``, else from
        ``special_tokens_map.json``, as Hugging Face does; and ``trim_offsets`` (default True: offsets leave
        out a token's leading space) from ``tokenizer_config.json``.

        Args:
            add_prefix_space: byte-level BPE only (GPT-2, RoBERTa): put a space before the text (and, with
                ``is_split_into_words=True``, before every word), so that the first word is tokenized as the
                following ones are. Default: ``tokenizer_config.json``'s value, else False (Hugging Face's
                GPT2Tokenizer and RobertaTokenizer default, which also overrides the value stored in
                ``tokenizer.json``).
            kwargs: constructor options (``padding_side``, ``model_max_length``, ``special_tokens``,
                ``model_input_names``), which override the saved settings.
        """
        from .hub import resolve_checkpoint

        folder = resolve_checkpoint(name_or_path)
        if cls is Tokenizer:
            from .xlm_tokenizer import XLMTokenizer  # imported here: xlm_tokenizer imports this module

            if XLMTokenizer.handles(folder):  # tokenizer_class "XLMTokenizer", or none and model_type "xlm"
                if add_prefix_space is not None:
                    raise ValueError("add_prefix_space applies to byte-level BPE tokenizers, not to XLM's")
                return XLMTokenizer.from_pretrained(name_or_path, **kwargs)
            from .xlnet_tokenizer import XLNetTokenizer  # SentencePiece Unigram, <cls> last, left padding

            if XLNetTokenizer.handles(folder):  # tokenizer_class "XLNetTokenizer", or model_type "xlnet"
                if add_prefix_space is not None:
                    raise ValueError("add_prefix_space applies to byte-level BPE tokenizers, not to XLNet's")
                return XLNetTokenizer.from_pretrained(name_or_path, **kwargs)
            from .transfo_xl_tokenizer import TransfoXLTokenizer  # word-level, Moses pre-tokenization

            if TransfoXLTokenizer.handles(folder):  # its tokenizer_class, model_type or a vocab.pkl
                if add_prefix_space is not None:
                    raise ValueError("add_prefix_space is for byte-level BPE, not Transformer-XL's tokenizer")
                return TransfoXLTokenizer.from_pretrained(name_or_path, **kwargs)
        settings = _read_tokenizer_settings(folder)
        family, source = _family_from_settings(folder, settings)
        from_settings = family is not None
        if (folder / "tokenizer.json").is_file():
            backend = read_tokenizer_json(folder / "tokenizer.json")
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
                    f"supported model_type values: {sorted(FAMILY_BY_MODEL_TYPE)}"
                )
            if family is None:
                family, source = _family_from_files(folder), "the files present"
            if family is None:
                raise FileNotFoundError(
                    f"no tokenizer in {folder}: looked for tokenizer.json; for tokenizer_config.json's "
                    f"tokenizer_class (one of {sorted(FAMILY_BY_TOKENIZER_CLASS)}) or config.json's model_type "
                    f"(one of {sorted(FAMILY_BY_MODEL_TYPE)}); and for the vocabulary files vocab.json + "
                    f"merges.txt (GPT-2 byte-level BPE or GPT BPE) or vocab.txt (WordPiece, BERT). "
                    f"Found: {_describe_folder(folder)}"
                )
            missing = [name for name in _FAMILY_FILES[family] if not (folder / name).is_file()]
            if missing:
                needs = " and ".join(_FAMILY_FILES[family])
                raise FileNotFoundError(
                    f"no tokenizer in {folder}: {source} selects {_FAMILY_DESCRIPTIONS[family]}, which needs "
                    f"{needs} (or a tokenizer.json); missing: {', '.join(missing)}. "
                    f"Found: {_describe_folder(folder)}"
                )
            backend, special = _build_backend(folder, family, settings, from_settings)
        _set_add_prefix_space(backend, family, settings, add_prefix_space, from_settings, folder, special)
        options = {
            "special_tokens": special,
            "model_max_length": settings.get("model_max_length"),
            "padding_side": settings.get("padding_side", "right"),
            "name_or_path": str(name_or_path),
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
        options.update(kwargs)
        return cls(backend, **options)

    @property
    def add_prefix_space(self) -> bool | None:
        """Byte-level BPE: whether a space is put before the text (None for other pre-tokenizers)."""
        pre_tokenizer = self.backend.pre_tokenizer
        if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
            return bool(pre_tokenizer.add_prefix_space)
        return None

    # Encoding ----------------------------------------------------------------------------------------
    def __call__(
        self,
        text: TextInput | Sequence[Sequence[str]],
        text_pair: TextInput | Sequence[Sequence[str]] | None = None,
        *,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        add_special_tokens: bool = True,
        return_tensors: str | None = None,
        padding_side: str | None = None,
        is_split_into_words: bool = False,
    ) -> Encoding:
        """Tokenize one text, a pair, or a batch of texts (or pairs).

        Args:
            padding: False; True or ``"longest"`` (to the longest in the batch); ``"max_length"``. Without a
                ``pad_token``, the ``eos_token`` pads (attention_mask 0 there).
            truncation: False; True or ``"longest_first"``; ``"only_first"``; ``"only_second"``.
            max_length: the length to truncate or pad to; default ``model_max_length``.
            return_tensors: ``"pt"`` for torch tensors, ``"np"`` for numpy arrays, None for lists.
            padding_side: ``"right"`` or ``"left"`` for this call; default ``self.padding_side``.
            is_split_into_words: the input is already split into words: one text is a list of words, a batch
                a list of lists of words. Each word is then tokenized on its own (a word may still become
                several tokens, and punctuation inside a word is split off by BERT's and GPT's
                pre-tokenizers), ``word_ids()`` gives the index of the input word of every token, and
                ``offsets`` are character spans within that word.
                Byte-level BPE (GPT-2) marks a word start by a preceding space: load it with
                ``add_prefix_space=True`` so that every word, the first included, gets one, as Hugging Face
                recommends; without it the words are tokenized as if glued together (Hugging Face does the
                same, with the ids below, and this logs a warning once).
        """
        if is_split_into_words:
            is_batched, texts = _split_words_input(text, "text")
            pair_texts = None
            if text_pair is not None:
                pair_texts = _split_words_input(text_pair, "text_pair", is_batched)[1]
            self._warn_split_words_without_prefix_space()
            check_texts(text, "text", is_split_into_words=True)
            check_texts(text_pair, "text_pair", is_split_into_words=True)
        else:
            is_batched = not isinstance(text, str)
            check_texts(text, "text")
            check_texts(text_pair, "text_pair")
            texts = [text] if not is_batched else list(text)
            pair_texts = None
            if text_pair is not None:
                pair_texts = [text_pair] if isinstance(text_pair, str) else list(text_pair)
        if pair_texts is not None:
            if len(pair_texts) != len(texts):
                raise ValueError(f"text has {len(texts)} items but text_pair has {len(pair_texts)}")
            inputs: list = list(zip(texts, pair_texts))
        else:
            inputs = texts

        self._configure_backend(padding, truncation, max_length, pad_to_multiple_of, padding_side)
        can_pad = self.backend.padding is not None
        try:
            encodings = self.backend.encode_batch(
                inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words
            )
        finally:
            self.backend.no_padding()
            self.backend.no_truncation()
        if padding and not can_pad and self._needs_padding(encodings, padding, pad_to_multiple_of):
            raise ValueError(
                "this tokenizer has neither a pad_token nor an eos_token to pad with; "
                "set tokenizer.special_tokens['pad_token']"
            )
        if not truncation:
            longest = max((len(e.ids) for e in encodings), default=0)
            if longest > self.model_max_length:
                logger.warning(
                    "a sequence has %d tokens, more than model_max_length=%d; the model will refuse it. "
                    "Pass truncation=True to cut it.",
                    longest,
                    self.model_max_length,
                )
        data = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        data = {k: v for k, v in data.items() if k in self.model_input_names}
        data = _as_tensors(data, return_tensors, is_batched)
        return Encoding(data, encodings, is_batched)

    @staticmethod
    def _needs_padding(encodings: list, padding, pad_to_multiple_of: int | None) -> bool:
        """Whether padding would change anything (texts of different lengths, a fixed length, a multiple)."""
        return padding == "max_length" or pad_to_multiple_of is not None or len({len(e.ids) for e in encodings}) > 1

    def _warn_split_words_without_prefix_space(self) -> None:
        if self.add_prefix_space is False and not self._warned_split_words_without_prefix_space:
            self._warned_split_words_without_prefix_space = True
            logger.warning(
                "is_split_into_words=True with a byte-level BPE tokenizer loaded with add_prefix_space=False: "
                "the words get no leading space, so they are tokenized as if written without spaces between "
                "them; load it with from_pretrained(..., add_prefix_space=True)"
            )

    def _configure_backend(self, padding, truncation, max_length, pad_to_multiple_of, padding_side) -> None:
        if truncation:
            strategy = "longest_first" if truncation is True else str(truncation)
            limit = max_length if max_length is not None else self.model_max_length
            if limit >= _VERY_LARGE_INTEGER:
                raise ValueError("truncation=True needs max_length: this tokenizer has no model_max_length")
            self.backend.enable_truncation(limit, strategy=strategy)
        if padding:
            if padding not in (True, "longest", "max_length"):
                raise ValueError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
            pad_token = self.special_tokens.get("pad_token") or self.special_tokens.get("eos_token")
            if pad_token is None:
                return  # fine as long as nothing needs padding: checked after encoding
            direction = padding_side or self.padding_side
            if direction not in ("right", "left"):
                raise ValueError(f"padding_side must be 'right' or 'left', got {direction!r}")
            length = None
            if padding == "max_length":
                length = max_length if max_length is not None else self.model_max_length
            self.backend.enable_padding(
                direction=direction,
                pad_id=self.token_to_id(pad_token),
                pad_token=pad_token,
                length=length,
                pad_to_multiple_of=pad_to_multiple_of,
            )

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """The token ids of one text (or pair)."""
        return list(self(text, text_pair, add_special_tokens=add_special_tokens)["input_ids"])

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[str]:
        """The token strings of one text."""
        return self(text, add_special_tokens=add_special_tokens).tokens()

    # Decoding ----------------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = False):
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in batch]

    def display_tokens(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """Token strings for people: byte-level BPE tokens decoded one by one (``" the"``, not ``"Ġthe"``);
        other families' tokens as they are (``"##ing"``, ``"the</w>"``), since their marks carry meaning."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if self.family in BYTE_LEVEL_FAMILIES:
            return [self.backend.decode([i], skip_special_tokens=False) for i in ids]
        return self.convert_ids_to_tokens(ids)

    def convert_ids_to_tokens(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.backend.id_to_token(i) for i in ids]

    def token_to_id(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise KeyError(f"{token!r} is not in the vocabulary of {self.name_or_path or 'this tokenizer'}")
        return token_id

    # Vocabulary --------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def __getattr__(self, name: str):
        # pad_token, pad_token_id, cls_token_id, mask_token_id, ...: read from special_tokens.
        special = self.__dict__.get("special_tokens", {})
        if name in SPECIAL_TOKEN_KEYS:
            return special.get(name)
        if name.endswith("_id") and name[:-3] in SPECIAL_TOKEN_KEYS:
            token = special.get(name[:-3])
            return None if token is None else self.token_to_id(token)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({self.token_to_id(t) for t in self.special_tokens.values()})

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` (readable by Hugging Face too).

        ``tokenizer_config.json`` keeps the settings read at loading, and names the ``tokenizer_class`` of
        the family when they did not, and ``add_prefix_space`` for byte-level BPE (Hugging Face's
        GPT2Tokenizer rebuilds its pre-tokenizer from that value).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        settings = dict(self.saved_settings)
        if self.family is not None and "tokenizer_class" not in settings:
            settings["tokenizer_class"] = _FAMILY_DEFAULTS[self.family]["tokenizer_class"]
        if self.add_prefix_space is not None:
            settings["add_prefix_space"] = self.add_prefix_space
        if isinstance(self.backend.post_processor, processors.RobertaProcessing):
            settings["trim_offsets"] = self.backend.post_processor.trim_offsets
        settings.update(
            {
                **self.special_tokens,
                "padding_side": self.padding_side,
                "model_input_names": list(self.model_input_names),
            }
        )
        if self.model_max_length < _VERY_LARGE_INTEGER:
            settings["model_max_length"] = self.model_max_length
        (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")

    def __repr__(self) -> str:
        return (
            f"Tokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r})"
        )


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
    backend = BackendTokenizer(models.WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents, lowercase=lowercase
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
        models.BPE(vocab, merges, dropout=None, unk_token=unk_token, end_of_word_suffix="</w>", fuse_unk=False)
    )
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.BPEDecoder(suffix="</w>")
    # Nothing goes around the texts; a pair is A then B (token types 0 and 1). Hugging Face's converter sets
    # no post-processor, its v5 class this template: with it, sequence_ids() is None on padding, as theirs.
    backend.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    _add_missing_special_tokens(backend, [unk_token, *special_tokens])
    return backend


def read_tokenizer_json(path: Path) -> BackendTokenizer:
    """A ``tokenizers`` pipeline from ``tokenizer.json``. A SentencePiece normalization table in it
    (``Precompiled``) is checked too: the ``tokenizers`` library loads some corrupted ones and then crashes
    (a Rust panic) on the first text that reaches the damage.

    Raises:
        TokenizerFileError: non-UTF-8 bytes (line and byte offset), JSON that is not a tokenizer (the
            ``tokenizers`` library's reason, with line and column), or a corrupted normalization table.
    """
    text = read_text_file(path, universal_newlines=False)
    try:
        backend = BackendTokenizer.from_str(text)
    except Exception as err:  # the tokenizers library's messages do not name the file
        raise TokenizerFileError(f"{path} is not a readable tokenizer.json: {err}") from None
    if "Precompiled" in text:
        import base64

        from .xlnet_tokenizer import check_precompiled_charsmap  # imported here: it imports this module

        normalizer = json.loads(text).get("normalizer") or {}
        steps = normalizer.get("normalizers") or [] if normalizer.get("type") == "Sequence" else [normalizer]
        for step in steps:
            if isinstance(step, dict) and step.get("type") == "Precompiled" and step.get("precompiled_charsmap"):
                check_precompiled_charsmap(base64.b64decode(step["precompiled_charsmap"]), str(path))
    return backend


def has_tokenizer_files(folder: str | Path) -> bool:
    """Whether ``folder`` holds a tokenizer of any family (``tokenizer.json``, ``vocab.txt``, ``vocab.json``)."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file():
        return True
    if (folder / "spiece.model").is_file():  # SentencePiece (XLNet)
        return True
    if (folder / "vocab.pkl").is_file():  # Transformer-XL's pickled vocabulary (read without executing it)
        return True
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


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
        return FAMILY_BY_MODEL_TYPE.get(model_type), f"config.json's model_type {model_type!r}"
    return None, ""


def _model_inputs_of(folder: Path, settings: dict[str, Any]) -> tuple[str, ...] | None:
    """Model inputs fixed by the tokenizer class or model type (DistilBERT's), else None."""
    tokenizer_class = settings.get("tokenizer_class")
    if tokenizer_class is not None:
        return MODEL_INPUTS_BY_TOKENIZER_CLASS.get(tokenizer_class)
    return MODEL_INPUTS_BY_MODEL_TYPE.get(_read_model_type(folder))


def _read_model_type(folder: Path) -> str | None:
    if not (folder / "config.json").is_file():
        return None
    from .config import read_config_json

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


def _describe_folder(folder: Path) -> str:
    names = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    return ", ".join(names) if names else "nothing"


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


def check_texts(text: Any, name: str = "text", is_split_into_words: bool = False) -> None:
    """Refuse what is not text before it reaches the tokenizer: one str or a list of str (with
    ``is_split_into_words``: a list of words or a list of such lists), each encodable as UTF-8.

    Raises:
        TypeError: None, bytes or another non-text value, or an item that is not a str; the message names the
            item's index (``text[2]``, ``text[2][5]`` for a word).
        ValueError: a lone surrogate such as ``"\\ud800"`` (what ``bytes.decode(errors="surrogateescape")``
            leaves of undecodable bytes): the message names the item and the character index.
    """
    if text is None and name != "text":
        return  # no text_pair
    hint = " (for text split into words, pass is_split_into_words=True)" if not is_split_into_words else ""
    if isinstance(text, str):
        _check_unicode(text, name)
        return
    if text is None or isinstance(text, (bytes, bytearray, Mapping)) or not isinstance(text, Iterable):
        what = "a list of words or a list of such lists" if is_split_into_words else "a str or a list of str"
        extra = "; decode bytes first, e.g. data.decode('utf-8')" if isinstance(text, (bytes, bytearray)) else ""
        raise TypeError(f"{name} must be {what}, got {type(text).__name__}{extra}")
    for index, item in enumerate(text):
        where = f"{name}[{index}]"
        if isinstance(item, str):
            _check_unicode(item, where)
        elif is_split_into_words and isinstance(item, (list, tuple)):
            for word_index, word in enumerate(item):
                if not isinstance(word, str):
                    raise TypeError(f"{where}[{word_index}] has type {type(word).__name__}; a word must be a str")
                _check_unicode(word, f"{where}[{word_index}]")
        else:
            raise TypeError(
                f"{name} must be a str or a list of str, but {where} has type {type(item).__name__}"
                f"{': ' + repr(item)[:40] if item is None or isinstance(item, (int, float, list)) else ''}{hint}"
            )


def _check_unicode(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = text[err.start]
        after = f" (after {text[max(0, err.start - 10) : err.start]!r})" if err.start else ""
        raise ValueError(
            f"{where} is not valid Unicode: a lone surrogate U+{ord(char):04X} at character {err.start}{after}; "
            f"it usually comes from bytes decoded with errors='surrogateescape': decode them with "
            f"errors='replace' or fix the source"
        ) from None


def _split_words_input(text: Any, name: str, is_batched: bool | None = None) -> tuple[bool, list[list[str]]]:
    """Words input (``is_split_into_words=True``): one list of words, or a batch of them (as Hugging Face)."""

    def words_of(item: Any) -> list[str]:
        if isinstance(item, str) or not isinstance(item, (list, tuple)):
            raise TypeError(
                f"with is_split_into_words=True, {name} must be a list of words (str) or a list of such lists, "
                f"got {type(item).__name__}"
            )
        for word in item:
            if not isinstance(word, str):
                raise TypeError(
                    f"with is_split_into_words=True, every word must be a str, "
                    f"got {type(word).__name__} in {name}"
                )
        return list(item)

    if isinstance(text, str) or not isinstance(text, (list, tuple)):
        words_of(text)  # raises
    batched = len(text) > 0 and isinstance(text[0], (list, tuple)) if is_batched is None else is_batched
    return batched, [words_of(item) for item in text] if batched else [words_of(text)]


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
                settings["special_tokens_map"] = values  # its dicts keep options a string in tokenizer_config hides
            if name == "tokenizer_config.json":
                original = {k: v for k, v in values.items() if k not in ("added_tokens_decoder", "name_or_path")}
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


def settings_model_max_length(value: Any, folder: Path) -> int | None:
    """tokenizer_config.json's ``model_max_length``: a positive number, None for none or Hugging Face's "no
    limit" sentinel (about 1e30).

    Raises:
        TokenizerFileError: anything else (a string, a bool, zero, a negative number, NaN).
    """
    if value is None:
        return None
    if type(value) not in (int, float) or not value >= 1:
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'}: model_max_length must be a positive number, got {value!r}"
        )
    return None if value >= 1e29 else int(value)


def _as_tensors(data: dict[str, list], return_tensors: str | None, is_batched: bool) -> dict[str, Any]:
    if return_tensors is None:
        return data if is_batched else {k: v[0] for k, v in data.items()}
    lengths = {len(row) for row in data["input_ids"]}
    if len(lengths) > 1:
        raise ValueError(
            f"the sequences have different lengths ({sorted(lengths)}) and cannot form one tensor; "
            f"pass padding=True"
        )
    if return_tensors == "pt":
        return {k: torch.tensor(v, dtype=torch.long) for k, v in data.items()}
    if return_tensors == "np":
        import numpy as np

        return {k: np.asarray(v, dtype=np.int64) for k, v in data.items()}
    raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
