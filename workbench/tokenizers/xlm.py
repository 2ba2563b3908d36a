"""XLM's tokenizer (Lample & Conneau 2019): Moses preprocessing in Python, then BPE with ``</w>`` word ends.

The same ids as Hugging Face's ``XLMTokenizer`` on the same ``vocab.json`` + ``merges.txt``:

1. the text is split on special tokens (``<s>``, ``</s>``, ``<pad>``, ``<unk>``, ``<special0>``..), which are
   kept whole;
2. every other piece goes through the Moses pipeline of its language (default ``"en"``): Hugging Face's
   replacement of CJK/full-width punctuation, Moses punctuation normalization, removal of non-printing
   characters (Unicode category C*), Sennrich's Romanian normalization for ``"ro"``, and the Moses tokenizer
   (without escaping), all from ``sacremoses`` (an optional dependency: ``pip install sacremoses``);
3. with ``do_lowercase_and_remove_accent`` (tokenizer_config.json; default True) the words are lowercased
   and stripped of combining marks (NFD, category Mn);
4. each word goes through BPE (a ``tokenizers`` backend run on the pre-split words), its last symbol
   carrying ``</w>``; a symbol missing from the vocabulary is ``<unk>``;
5. ``<s> A </s>`` for one text, ``<s> A </s> B </s>`` for a pair (no token types: XLM's tokenizer makes
   ``input_ids`` and ``attention_mask`` only).

``word_ids()`` indexes the Moses words (or, with ``is_split_into_words=True``, the input words) and
``offsets`` are character spans within each normalized word, not in the original text (Moses rewrites the
text). ``merges.txt`` is read as Hugging Face's class reads it (the first two fields of every line but the
last, which a final newline leaves empty); merges whose parts or result are not in ``vocab.json`` are still
applied, and the resulting symbol is ``<unk>``, as in Hugging Face's class: ``tokens()`` then shows the BPE
symbol while ``input_ids`` holds the ``<unk>`` id.

Chinese, Japanese and Thai (``lang="zh"``, ``"ja"``, ``"th"``), which Hugging Face segments with rjieba,
KyTea and PyThaiNLP, are not supported: segment such text first and pass ``is_split_into_words=True``.
Hugging Face's ``XLMTokenizer.__call__`` (transformers 5) always uses ``"en"``; here ``lang`` may be set per
tokenizer (``tokenizer.lang``) or per call.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors

from ..hub import resolve_checkpoint
from . import files
from .base import Encoding, Tokenizer, import_sacremoses
from .files import TokenizerFileError

TOKENIZER_CLASS = "XLMTokenizer"
# Hugging Face's XLMTokenizer defaults.
DEFAULT_SPECIAL_TOKENS = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "cls_token": "</s>",
    "mask_token": "<special1>",
}
DEFAULT_ADDITIONAL_SPECIAL_TOKENS = [f"<special{i}>" for i in range(10)]
UNSUPPORTED_LANGS = {"zh": "rjieba", "ja": "KyTea", "th": "PyThaiNLP"}


# The text pipeline (ports of Hugging Face's tokenization_xlm.py helpers) ------------------------------

_UNICODE_PUNCT = [
    ("、", ","),
    ("”", '"'),
    ("“", '"'),
    ("∶", ":"),
    ("：", ":"),
    ("？", "?"),
    ("《", '"'),
    ("》", '"'),
    ("）", ")"),
    ("！", "!"),
    ("（", "("),
    ("；", ";"),
    ("１", "1"),
    ("」", '"'),
    ("「", '"'),
    ("０", "0"),
    ("３", "3"),
    ("２", "2"),
    ("５", "5"),
    ("６", "6"),
    ("９", "9"),
    ("７", "7"),
    ("８", "8"),
    ("４", "4"),
]
_UNICODE_PUNCT_AFTER = [
    ("～", "~"),
    ("’", "'"),
    ("…", "..."),
    ("━", "-"),
    ("〈", "<"),
    ("〉", ">"),
    ("【", "["),
    ("】", "]"),
    ("％", "%"),
]


def replace_unicode_punct(text: str) -> str:
    """Moses' replace-unicode-punctuation.perl, in Hugging Face's order of replacements."""
    text = text.replace("，", ",")
    text = re.sub(r"。\s*", ". ", text)
    for old, new in _UNICODE_PUNCT:
        text = text.replace(old, new)
    text = re.sub(r"．\s*", ". ", text)
    for old, new in _UNICODE_PUNCT_AFTER:
        text = text.replace(old, new)
    return text


def remove_non_printing_char(text: str) -> str:
    """Moses' remove-non-printing-char.perl: drop every character of a Unicode category C*."""
    return "".join(char for char in text if not unicodedata.category(char).startswith("C"))


def romanian_preprocessing(text: str) -> str:
    """Sennrich's WMT16 Romanian normalization and diacritics removal (xlm-mlm-enro-1024)."""
    for old, new in (
        ("\u015e", "\u0218"),
        ("\u015f", "\u0219"),
        ("\u0162", "\u021a"),
        ("\u0163", "\u021b"),
        ("\u0218", "S"),
        ("\u0219", "s"),
        ("\u021a", "T"),
        ("\u021b", "t"),
        ("\u0102", "A"),
        ("\u0103", "a"),
        ("\u00c2", "A"),
        ("\u00e2", "a"),
        ("\u00ce", "I"),
        ("\u00ee", "i"),
    ):
        text = text.replace(old, new)
    return text


def lowercase_and_remove_accent(words: list[str]) -> list[str]:
    """XLM's lowercase_and_remove_accent.py: lowercase, NFD, drop combining marks (Mn), lowercase again."""
    text = unicodedata.normalize("NFD", " ".join(words).lower())
    return "".join(char for char in text if unicodedata.category(char) != "Mn").lower().split(" ")


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """merges.txt as Hugging Face's XLMTokenizer reads it: the first two fields of each line (XLM's BPE codes
    have a count as the third); a pair listed twice takes the rank of its last occurrence.

    Raises:
        TokenizerFileError: non-UTF-8 bytes, a line with fewer than two fields, or a last line without its
            newline (Hugging Face's class drops that line; here it is a cut-off file), naming the line.
    """
    path = Path(path)
    ranks = {}
    for rank, line in enumerate(files.read_lines(path)):
        fields = tuple(line.split()[:2])
        if len(fields) != 2:
            raise TokenizerFileError(
                f"{path}, line {rank + 1}: {line[:80]!r} is not a merge (two symbols separated by a space)"
            )
        ranks[fields] = rank
    return sorted(ranks, key=ranks.__getitem__)


def _moses():
    return import_sacremoses(
        "XLM's tokenizer needs sacremoses for Moses punctuation normalization and tokenization: "
        "pip install sacremoses (or pip install 'workbench[xlm]')"
    )


# The tokenizer ---------------------------------------------------------------------------------------


class XLMTokenizer(Tokenizer):
    """XLM's tokenizer: Moses preprocessing (in Python), then the ``tokenizers`` BPE backend on the words.

    Args (beyond :class:`~workbench.tokenizers.base.Tokenizer`'s):
        lang: the default Moses language (``"en"``); ``__call__(..., lang="fr")`` overrides it per call.
        do_lowercase_and_remove_accent: lowercase and strip accents after Moses.
        lang2id, id2lang: the model's languages (tokenizer_config.json), for :meth:`lang_ids`.
        unk_ids: backend ids of BPE symbols missing from ``vocab.json``, reported as the ``<unk>`` id.
        base_vocab_size: the size of the vocabulary without those symbols.
    """

    def __init__(
        self,
        backend: BackendTokenizer,
        *,
        lang: str = "en",
        do_lowercase_and_remove_accent: bool = True,
        lang2id: dict[str, int] | None = None,
        id2lang: dict[int, str] | None = None,
        additional_special_tokens: Sequence[str] = (),
        unk_ids: Sequence[int] = (),
        base_vocab_size: int | None = None,
        merges: Sequence[tuple[str, str]] = (),
        vocab: dict[str, int] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("model_input_names", ("input_ids", "attention_mask"))
        super().__init__(backend, **options)
        self.lang = lang
        self.do_lowercase_and_remove_accent = do_lowercase_and_remove_accent
        self.lang2id = lang2id
        self.id2lang = {int(k): v for k, v in id2lang.items()} if id2lang else id2lang
        self.additional_special_tokens = list(additional_special_tokens)
        self.unk_ids = frozenset(unk_ids)
        self.base_vocab_size = base_vocab_size
        self.merges = list(merges)
        self.vocab = dict(vocab) if vocab is not None else None
        tokens = {*self.special_tokens.values(), *self.additional_special_tokens}
        # Longest first, as Hugging Face's trie matches.
        self._special_split = (
            re.compile("(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + ")")
            if tokens
            else None
        )
        self._normalizers: dict[str, Any] = {}
        self._moses_tokenizers: dict[str, Any] = {}

    # Construction ------------------------------------------------------------------------------------
    @staticmethod
    def handles(folder: str | Path) -> bool:
        """Whether ``folder`` holds an XLM tokenizer: tokenizer_config.json's ``tokenizer_class`` is
        ``XLMTokenizer``, or it names none and config.json's ``model_type`` is ``xlm``."""
        folder = Path(folder)
        named = files.named_tokenizer_class(folder)
        if named:
            return named == TOKENIZER_CLASS
        return files.named_model_type(folder) == "xlm"

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, lang: str | None = None, **kwargs: Any
    ) -> XLMTokenizer:
        """Load ``vocab.json`` + ``merges.txt`` (and tokenizer_config.json / special_tokens_map.json) from a
        folder, alias or hub id. ``kwargs``: constructor options (``padding_side``, ``model_max_length``,
        ``do_lowercase_and_remove_accent``, ...), which override the saved settings."""
        folder = resolve_checkpoint(name_or_path)
        missing = [name for name in ("vocab.json", "merges.txt") if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"no XLM tokenizer in {folder}: it needs vocab.json and merges.txt; missing: "
                f"{', '.join(missing)}. Found: {files.describe_folder(folder)}"
            )
        settings = files.read_settings(folder)
        special = files.special_tokens_of(settings, DEFAULT_SPECIAL_TOKENS)
        additional = files.additional_special_tokens_of(settings, DEFAULT_ADDITIONAL_SPECIAL_TOKENS)
        vocab = files.read_token_ids(folder / "vocab.json")
        merges = read_merges(folder / "merges.txt")
        options: dict[str, Any] = {
            **files.settings_options(settings, folder, name_or_path),
            "special_tokens": special,
            "additional_special_tokens": additional,
            "do_lowercase_and_remove_accent": settings.get("do_lowercase_and_remove_accent", True),
            "lang2id": settings.get("lang2id"),
            "id2lang": settings.get("id2lang"),
            "lang": lang or "en",
        }
        if settings.get("model_input_names"):
            options["model_input_names"] = tuple(settings["model_input_names"])
        options.update(kwargs)
        return cls.from_vocab(vocab, merges, **options)

    @classmethod
    def from_vocab(
        cls,
        vocab: dict[str, int],
        merges: Sequence[tuple[str, str]],
        special_tokens: dict[str, str] | None = None,
        additional_special_tokens: Sequence[str] = DEFAULT_ADDITIONAL_SPECIAL_TOKENS,
        **options: Any,
    ) -> XLMTokenizer:
        """Build from a vocabulary (token -> id) and BPE merges (pairs, by rank)."""
        special = dict(DEFAULT_SPECIAL_TOKENS) if special_tokens is None else dict(special_tokens)
        full = dict(vocab)
        next_id = max(full.values(), default=-1) + 1
        # Special tokens missing from vocab.json get the next ids, as Hugging Face adds them.
        for token in dict.fromkeys([*special.values(), *additional_special_tokens]):
            if token not in full:
                full[token] = next_id
                next_id += 1
        base_vocab_size = len(full)
        # The backend needs every symbol a merge uses or makes: the missing ones get ids of their own, reported
        # as <unk> (Hugging Face's class merges them too, then finds no id for them).
        unk_ids = []
        for first, second in merges:
            for token in (first, second, first + second):
                if token not in full:
                    full[token] = next_id
                    unk_ids.append(next_id)
                    next_id += 1
        unk = special.get("unk_token", "<unk>")
        bos, sep = special.get("bos_token", "<s>"), special.get("sep_token", "</s>")
        backend = BackendTokenizer(
            models.BPE(
                full, list(merges), dropout=None, unk_token=unk, end_of_word_suffix="</w>", fuse_unk=False
            )
        )
        # The words arrive split by Moses; a word given with is_split_into_words=True may hold several.
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        backend.decoder = decoders.BPEDecoder(suffix="</w>")
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0 {sep}:0",
            pair=f"{bos}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(bos, full[bos]), (sep, full[sep])],
        )
        backend.add_special_tokens(list(dict.fromkeys([*special.values(), *additional_special_tokens])))
        return cls(
            backend,
            special_tokens=special,
            additional_special_tokens=additional_special_tokens,
            unk_ids=unk_ids,
            base_vocab_size=base_vocab_size,
            merges=merges,
            vocab=vocab,
            **options,
        )

    # The Moses step ----------------------------------------------------------------------------------
    def moses_words(self, text: str, lang: str | None = None) -> list[str]:
        """The words of ``text`` after the Moses pipeline (and lowercasing), special tokens kept whole."""
        lang = lang or self.lang
        if lang in UNSUPPORTED_LANGS:
            raise NotImplementedError(
                f"lang={lang!r}: Hugging Face's XLMTokenizer segments it with {UNSUPPORTED_LANGS[lang]}, which the "
                f"workbench does not; segment the text yourself and pass the words with is_split_into_words=True"
            )
        specials = {*self.special_tokens.values(), *self.additional_special_tokens}
        pieces = self._special_split.split(text) if self._special_split is not None else [text]
        words: list[str] = []
        for piece in pieces:
            if not piece:
                continue
            if piece in specials:
                words.append(piece)
                continue
            piece_words = self._moses_tokenize(self._moses_normalize(piece, lang), lang)
            if self.do_lowercase_and_remove_accent:
                piece_words = lowercase_and_remove_accent(piece_words)
            words.extend(word for word in piece_words if word)
        return words

    def _moses_normalize(self, text: str, lang: str) -> str:
        if lang not in self._normalizers:
            self._normalizers[lang] = _moses().MosesPunctNormalizer(lang=lang)
        text = remove_non_printing_char(self._normalizers[lang].normalize(replace_unicode_punct(text)))
        return romanian_preprocessing(text) if lang == "ro" else text

    def _moses_tokenize(self, text: str, lang: str) -> list[str]:
        if lang not in self._moses_tokenizers:
            self._moses_tokenizers[lang] = _moses().MosesTokenizer(lang=lang)
        return self._moses_tokenizers[lang].tokenize(text, return_str=False, escape=False)

    # Encoding ----------------------------------------------------------------------------------------
    def __call__(
        self,
        text,
        text_pair=None,
        *,
        lang: str | None = None,
        is_split_into_words: bool = False,
        **options: Any,
    ) -> Encoding:
        """Tokenize one text, a pair, or a batch, as :meth:`Tokenizer.__call__` (same options), after the
        Moses step in language ``lang`` (default ``self.lang``).

        With ``is_split_into_words=True`` each input word goes through the Moses step on its own (it may
        become several tokens) and ``word_ids()`` gives the input word of every token; otherwise
        ``word_ids()`` indexes the Moses words.
        """
        encoding = self._encode_words(
            text, text_pair, is_split_into_words, lambda piece: self.moses_words(piece, lang), **options
        )
        if not self.unk_ids:
            return encoding
        data = {**encoding, "input_ids": self._unk_out(encoding["input_ids"])}
        return Encoding(data, encoding.encodings, encoding.is_batched)

    def _unk_out(self, ids):
        """Replace the ids of symbols missing from vocab.json by the <unk> id."""
        unk = self.token_to_id(self.special_tokens.get("unk_token", "<unk>"))
        if isinstance(ids, torch.Tensor):
            replace = torch.tensor(sorted(self.unk_ids), dtype=ids.dtype)
            return ids.masked_fill(torch.isin(ids, replace), unk)
        if hasattr(ids, "dtype"):  # numpy
            import numpy as np

            out = ids.copy()
            out[np.isin(out, sorted(self.unk_ids))] = unk
            return out
        if ids and isinstance(ids[0], list):
            return [[unk if i in self.unk_ids else i for i in row] for row in ids]
        return [unk if i in self.unk_ids else i for i in ids]

    def tokenize(self, text: str, add_special_tokens: bool = False, lang: str | None = None) -> list[str]:
        """The token strings of one text (BPE symbols, ``</w>`` marking word ends)."""
        return self(text, add_special_tokens=add_special_tokens, lang=lang).tokens()

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        lang: str | None = None,
    ) -> list[int]:
        return list(self(text, text_pair, add_special_tokens=add_special_tokens, lang=lang)["input_ids"])

    def lang_ids(self, encoding: Encoding, lang: str | int) -> torch.Tensor | list:
        """A ``langs`` input for XLM models: ``lang`` (a name from ``lang2id``, or an id) at every position of
        ``encoding``, shaped like its ``input_ids``."""
        if isinstance(lang, str):
            if not self.lang2id or lang not in self.lang2id:
                raise ValueError(f"unknown language {lang!r}; this tokenizer's lang2id is {self.lang2id}")
            lang = self.lang2id[lang]
        ids = encoding["input_ids"]
        if isinstance(ids, torch.Tensor):
            return torch.full_like(ids, lang)
        if ids and isinstance(ids[0], list):
            return [[lang] * len(row) for row in ids]
        return [lang] * len(ids)

    # Vocabulary --------------------------------------------------------------------------------------
    def token_to_id(self, token: str) -> int:
        token_id = super().token_to_id(token)
        if token_id in self.unk_ids:
            return super().token_to_id(self.special_tokens.get("unk_token", "<unk>"))
        return token_id

    @property
    def all_special_ids(self) -> list[int]:
        tokens = {*self.special_tokens.values(), *self.additional_special_tokens}
        return sorted({self.token_to_id(token) for token in tokens})

    @property
    def vocab_size(self) -> int:
        if self.base_vocab_size is None:
            return super().vocab_size
        return self.base_vocab_size

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` (``tokenizer_class``
        ``XLMTokenizer``), which Hugging Face's XLMTokenizer and this class read back. No tokenizer.json: the
        Moses step is not part of a ``tokenizers`` pipeline."""
        if self.vocab is None:
            raise ValueError("this XLMTokenizer was built without its vocabulary; it cannot be saved")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(
            json.dumps(self.vocab, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        (folder / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in self.merges), encoding="utf-8")
        settings = {
            **self.saved_settings,
            "tokenizer_class": TOKENIZER_CLASS,
            "additional_special_tokens": self.additional_special_tokens,
            "do_lowercase_and_remove_accent": self.do_lowercase_and_remove_accent,
        }
        if self.lang2id is not None:
            settings["lang2id"] = self.lang2id
        if self.id2lang is not None:
            settings["id2lang"] = {str(k): v for k, v in self.id2lang.items()}
        self._write_tokenizer_config(folder, settings)

    def __repr__(self) -> str:
        return (
            f"XLMTokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, lang={self.lang!r}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r})"
        )
