"""Llama 2's and Gemma's tokenizers from ``tokenizer.model`` alone: a SentencePiece model of type BPE, no
``tokenizer.json``.

Llama 2, Mistral, TinyLlama, Vicuna-style and Gemma checkpoints ship SentencePiece's protobuf file; this
module reads it with the bounded reader of :mod:`.xlnet` (every field checked; a malformed or truncated file
is a :class:`~workbench.tokenizers.files.TokenizerFileError` naming the byte offset) and builds the pipeline
Hugging Face 5's ``LlamaTokenizer`` builds from it, so the ids are the same:

1. the BPE model: every piece at its id; merges derived from the vocabulary (a piece is the merge of each
   split of it into two pieces, ranked by the merged piece's id, which SentencePiece orders by score);
   byte fallback (text outside the pieces becomes the byte pieces ``<0x..>``), no unknown token;
2. no normalizer; a Metaspace pre-tokenizer that turns spaces into ``▁`` and puts one before the first
   piece of the text (``legacy=False``, the default), before every piece between special tokens
   (``legacy=True``) or nowhere (``add_prefix_space=False``); the decoder to match
   (:func:`~workbench.tokenizers.wordpiece_bpe._llama_class_pipeline`, shared with ``tokenizer.json`` folders);
3. control pieces (``<s>``, ``</s>``) and the named special tokens are special added tokens, user-defined
   pieces added tokens that are not special: each is matched whole in the raw text;
4. ``<s>`` before the text as tokenizer_config.json's ``add_bos_token`` says, ``</s>`` after it per
   ``add_eos_token`` (both False when it does not say, as in Hugging Face 5).

Gemma's (``GemmaTokenizer`` named in tokenizer_config.json, or config.json's ``model_type`` ``gemma*`` when
none is named) differs in its text steps and special tokens, as Hugging Face's ``GemmaTokenizer``: spaces
become ``▁`` in a normalizer, no ``▁`` is put before the text, the BPE's unknown token is ``<unk>``, and the
special tokens are ``<bos>``, ``<eos>``, ``<unk>``, ``<pad>`` and ``<mask>``.

Like Hugging Face's classes, the model's own normalizer spec (its normalization table, its removal of extra
spaces) is not applied: Llama 2's is the identity, and on such models the ids equal the ``sentencepiece``
library's too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers.models import BPE

from ..hub import resolve_checkpoint
from .base import Tokenizer
from .chat import read_chat_templates
from .files import (
    TokenizerFileError,
    additional_special_tokens_of,
    describe_folder,
    named_model_type,
    named_tokenizer_class,
    read_settings,
    settings_options,
    special_tokens_of,
)
from .wordpiece_bpe import _llama_class_pipeline
from .xlnet import read_sentencepiece_model

LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")
GEMMA_CLASSES = ("GemmaTokenizer", "GemmaTokenizerFast")
TOKENIZER_CLASSES = LLAMA_CLASSES + GEMMA_CLASSES
MODEL_NAME = "tokenizer.model"
# Hugging Face's defaults of each class, in the order its special-tokens map lists them (missing ones get new
# ids in this order).
DEFAULT_SPECIAL_TOKENS = {
    "LlamaTokenizer": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "GemmaTokenizer": {
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    },
}
MODEL_INPUT_NAMES = ("input_ids", "attention_mask")
_BPE_MODEL_TYPE = 2
# SentencePiece piece types (sentencepiece_model.proto) that become added tokens: control pieces are special,
# user-defined ones are matched whole but are not special.
_CONTROL, _USER_DEFINED = 3, 4


def bpe_merges(vocab: dict[str, int]) -> Iterator[tuple[str, str]]:
    """The merges of a SentencePiece BPE vocabulary, as Hugging Face's ``generate_merges`` ranks them: every
    split of a piece into two pieces of ``vocab``, by the merged piece's id, then by where it splits.

    Args:
        vocab: piece -> id, in id order (SentencePiece orders a BPE model's pieces by score, best first).
    """
    for piece in vocab:
        for split in range(1, len(piece)):
            left, right = piece[:split], piece[split:]
            if left in vocab and right in vocab:
                yield left, right


def backend_from_sentencepiece_bpe(path: str | Path, unk_token: str | None = None) -> BackendTokenizer:
    """The BPE backend of a SentencePiece BPE model file (pieces, merges, byte fallback; ``unk_token`` for
    what has no piece, None for nothing) with its control pieces as special added tokens and its user-defined
    pieces as added tokens; no text steps yet.

    Raises:
        TokenizerFileError: a malformed or truncated file, or a SentencePiece model of another type.
    """
    model = read_sentencepiece_model(path)
    if model["model_type"] != _BPE_MODEL_TYPE:
        raise TokenizerFileError(
            f"{path} is a SentencePiece model of type {model['model_type']} (1 Unigram, 3 word, 4 char); "
            f"Llama's tokenizer.model is BPE ({_BPE_MODEL_TYPE})"
        )
    vocab = {piece: index for index, (piece, _, _) in enumerate(model["pieces"])}
    # Hugging Face always falls back to bytes, whatever the file says.
    merges = list(bpe_merges(vocab))
    backend = BackendTokenizer(
        BPE(vocab, merges, unk_token=unk_token, fuse_unk=True, byte_fallback=True, dropout=None)
    )
    backend.add_tokens(
        [
            AddedToken(piece, normalized=False, special=kind == _CONTROL)
            for piece, _, kind in model["pieces"]
            if kind in (_CONTROL, _USER_DEFINED)
        ]
    )
    return backend


def set_gemma_text_steps(backend: BackendTokenizer) -> None:
    """Hugging Face's GemmaTokenizer: spaces become ``▁`` (no ``▁`` before the text), a split after each
    space (which the normalizer has already replaced), the decoder back."""
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )


def hugging_face_class(folder: Path) -> str:
    """``"LlamaTokenizer"`` or ``"GemmaTokenizer"``: the class tokenizer_config.json names, else the one of
    config.json's ``model_type`` (``gemma*``: Gemma's; any other: Llama's)."""
    named = named_tokenizer_class(folder)
    if named:
        return "GemmaTokenizer" if named in GEMMA_CLASSES else "LlamaTokenizer"
    model_type = named_model_type(folder)
    return (
        "GemmaTokenizer"
        if isinstance(model_type, str) and model_type.startswith("gemma")
        else "LlamaTokenizer"
    )


class SentencePieceBPETokenizer(Tokenizer):
    """Llama 2's or Gemma's tokenizer built from ``tokenizer.model`` (see the module docstring). ``padding_side``
    defaults to ``"left"`` and the inputs are ``input_ids`` and ``attention_mask``, as in Hugging Face's class.
    """

    def __init__(self, backend: BackendTokenizer, **options: Any) -> None:
        options.setdefault("model_input_names", MODEL_INPUT_NAMES)
        options.setdefault("padding_side", "left")
        super().__init__(backend, **options)

    @staticmethod
    def handles(folder: str | Path) -> bool:
        """Whether ``folder`` holds a ``tokenizer.model`` without a ``tokenizer.json`` (which the base class
        reads) and tokenizer_config.json names ``LlamaTokenizer(Fast)``, ``GemmaTokenizer(Fast)`` or no class."""
        folder = Path(folder)
        if not (folder / MODEL_NAME).is_file() or (folder / "tokenizer.json").is_file():
            return False
        named = named_tokenizer_class(folder)
        return not named or named in TOKENIZER_CLASSES

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> SentencePieceBPETokenizer:
        """Load ``tokenizer.model`` and the settings of ``tokenizer_config.json`` / ``special_tokens_map.json``
        (``add_bos_token``, ``add_eos_token``, ``legacy``, ``add_prefix_space``, the special tokens) from a
        folder, alias or hub id. ``kwargs``: constructor options (``padding_side``, ...), which override the
        settings, and ``add_bos_token`` / ``add_eos_token``.

        Raises:
            FileNotFoundError: no ``tokenizer.model`` in the folder.
            TokenizerFileError: a malformed or truncated ``tokenizer.model``, or one that is not BPE.
        """
        folder = resolve_checkpoint(name_or_path)
        if not (folder / MODEL_NAME).is_file():
            raise FileNotFoundError(
                f"no SentencePiece BPE tokenizer in {folder}: it needs {MODEL_NAME}. Found: {describe_folder(folder)}"
            )
        settings = read_settings(folder)
        hf_class = hugging_face_class(folder)
        special = special_tokens_of(settings, DEFAULT_SPECIAL_TOKENS[hf_class])
        gemma = hf_class == "GemmaTokenizer"
        backend = backend_from_sentencepiece_bpe(
            folder / MODEL_NAME, special.get("unk_token") if gemma else None
        )
        additional = additional_special_tokens_of(settings, ())
        present = {token.content for token in backend.get_added_tokens_decoder().values() if token.special}
        missing = [token for token in [*special.values(), *additional] if token not in present]
        backend.add_special_tokens(
            [AddedToken(t, normalized=False, special=True) for t in dict.fromkeys(missing)]
        )
        if gemma:
            set_gemma_text_steps(backend)
        else:  # the text steps of Hugging Face's LlamaTokenizer, the same as for a tokenizer.json it names
            _llama_class_pipeline(backend, {**settings, "original": {"tokenizer_class": hf_class}})
        bos_eos = {key: bool(settings.get(key, False)) for key in ("add_bos_token", "add_eos_token")}
        bos_eos.update(
            {key: bool(kwargs.pop(key)) for key in ("add_bos_token", "add_eos_token") if key in kwargs}
        )
        options: dict[str, Any] = {
            **settings_options(settings, folder, name_or_path, padding_side="left"),
            "special_tokens": special,
        }
        if settings.get("model_input_names"):
            options["model_input_names"] = tuple(settings["model_input_names"])
        options.update(kwargs)
        tokenizer = cls(backend, **options)
        tokenizer.saved_settings.setdefault("tokenizer_class", hf_class)
        tokenizer.set_bos_eos(**bos_eos)
        # chat_template.jinja (and additional_chat_templates/) win over tokenizer_config.json's, as in HF.
        tokenizer.chat_template = read_chat_templates(folder, tokenizer.saved_settings)
        return tokenizer
