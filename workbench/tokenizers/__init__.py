"""Tokenizers: the :class:`Tokenizer` class over the ``tokenizers`` library and its families.

Modules:

* :mod:`.files`: the tokenizer files, read and checked once (:class:`TokenizerFileError`);
* :mod:`.base`: :class:`Tokenizer` and :class:`Encoding`; the base class names none of its subclasses;
* :mod:`.wordpiece_bpe`: the families the base class loads itself (WordPiece, byte-level BPE, RoBERTa's
  and GPT's BPE);
* :mod:`.xlm`, :mod:`.xlnet` (with its ``spiece.model`` reader), :mod:`.sentencepiece_bpe` (Llama 2's
  ``tokenizer.model``, through the same reader), :mod:`.transfo_xl`: one subclass each,
  which says by its ``handles(folder)`` which folders it loads;
* :mod:`.stand_in`: a small offline tokenizer of each family (``STAND_INS``, by family name), which
  ``wb.zoo`` gives its tiny random models.

One dispatch: ``Tokenizer.from_pretrained(folder)`` (and ``AutoTokenizer``) asks the classes of
:data:`FOLDER_CLASSES`, in order, whether they handle the folder (``Tokenizer.class_for``), else loads one
of the base class's families; for a folder that names no tokenizer class, the family of config.json's
``model_type`` comes from the architecture records (``tokenizer_family``), which :mod:`workbench.registry` hands
down (``wordpiece_bpe.MODEL_TYPES``). A new tokenizer family: a module with its subclass (and its
``handles``), its class in :data:`FOLDER_CLASSES`, and its stand-in in ``stand_in.STAND_INS``.

The name: inside this package, ``from tokenizers import ...`` is an absolute import (Python 3), so it is the
third-party Hugging Face ``tokenizers`` library, never this package (``workbench.tokenizers``). That holds as
long as ``workbench/`` itself is not on ``sys.path`` (do not run scripts from inside that folder);
``tests/test_tokenizer_package.py`` checks it.
"""

from .base import Encoding, Tokenizer, check_texts
from .files import (
    SPECIAL_TOKEN_KEYS,
    TokenizerFileError,
    has_tokenizer_files,
    read_bpe_files,
    read_json_file,
    read_lines,
    read_token_ids,
)
from .sentencepiece_bpe import SentencePieceBPETokenizer
from .transfo_xl import TransfoXLTokenizer, UnsafePickleError
from .wordpiece_bpe import (
    BYTE_LEVEL_BPE,
    FAMILIES,
    ROBERTA_BPE,
    WORD_END_BPE,
    WORDPIECE,
    byte_level_bpe_from_files,
    roberta_bpe_from_files,
    word_end_bpe_from_files,
    wordpiece_from_vocab,
)
from .xlm import XLMTokenizer
from .xlnet import XLNetTokenizer

# The registry: the classes that recognize their own folders, asked in this order (a folder none of them
# handles is the base class's: tokenizer.json, WordPiece or BPE files).
FOLDER_CLASSES: tuple[type[Tokenizer], ...] = (
    XLMTokenizer,
    XLNetTokenizer,
    SentencePieceBPETokenizer,
    TransfoXLTokenizer,
)
Tokenizer.folder_classes = FOLDER_CLASSES

__all__ = [
    "BYTE_LEVEL_BPE",
    "FAMILIES",
    "FOLDER_CLASSES",
    "ROBERTA_BPE",
    "SPECIAL_TOKEN_KEYS",
    "WORDPIECE",
    "WORD_END_BPE",
    "Encoding",
    "SentencePieceBPETokenizer",
    "Tokenizer",
    "TokenizerFileError",
    "TransfoXLTokenizer",
    "UnsafePickleError",
    "XLMTokenizer",
    "XLNetTokenizer",
    "byte_level_bpe_from_files",
    "check_texts",
    "has_tokenizer_files",
    "read_bpe_files",
    "read_json_file",
    "read_lines",
    "read_token_ids",
    "roberta_bpe_from_files",
    "word_end_bpe_from_files",
    "wordpiece_from_vocab",
]
