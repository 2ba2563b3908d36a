"""The tokenizer class: a thin class over the ``tokenizers`` library, and the :class:`Encoding` it returns.

:class:`Tokenizer` encodes and decodes with a ``tokenizers`` pipeline; it loads the pipelines of four
families itself (WordPiece, byte-level BPE, RoBERTa's and GPT's BPE: :mod:`.wordpiece_bpe`). Tokenizers that
need more than a pipeline (XLM's, XLNet's, Transformer-XL's) are subclasses in modules of their own; this
module names none of them: ``Tokenizer.from_pretrained`` asks the classes of ``Tokenizer.folder_classes``
(the package's registry, set in ``workbench/tokenizers/__init__.py``) which of them recognizes the folder.

An :class:`Encoding` is a mapping of the model inputs (``input_ids``, ``attention_mask`` and, for BERT,
``token_type_ids``) that can be passed as ``model(**encoding)``, which also carries what the model does not
take but users need: token strings, character ``offsets`` and ``word_ids`` (which word each token came
from). Ids equal those of Hugging Face's tokenizer on the same files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Union

import torch
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import pre_tokenizers, processors

from ..hub import resolve_checkpoint
from .chat import ChatTemplates, as_chat_templates, read_chat_templates, render_chat, select_template
from .files import SPECIAL_TOKEN_KEYS
from .wordpiece_bpe import BYTE_LEVEL_FAMILIES, FAMILIES, load_pipeline, tokenizer_class_of

logger = logging.getLogger(__name__)

TextInput = Union[str, Sequence[str]]
# Hugging Face's "no limit" sentinel for model_max_length.
_VERY_LARGE_INTEGER = int(1e30)
# The special tokens a chat template sees by name (Hugging Face's special_tokens_map).
_TEMPLATE_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


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
        shapes = {
            k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in self.items()
        }
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

    # The subclasses that recognize their own folders (each by its ``handles(folder)``), asked in this order by
    # from_pretrained and class_for before this class's own families: the registry FOLDER_CLASSES of
    # workbench/tokenizers/__init__.py, which sets it on import, so that this module names none of them.
    folder_classes: ClassVar[tuple[type[Tokenizer], ...]] = ()

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

        Called on ``Tokenizer`` itself, it returns the class that the folder's tokenizer needs
        (:meth:`class_for`): a subclass of ``Tokenizer.folder_classes`` that recognizes the folder (XLM's,
        XLNet's, Transformer-XL's, loaded by their own ``from_pretrained``), else this class, for the
        families below.

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
            add_bos_token, add_eos_token: given (either one), put the ``bos_token`` before and the
                ``eos_token`` after every text as they say (:meth:`set_bos_eos`; the one not given counts as
                False, as in Hugging Face 5). Not given, ``tokenizer.json``'s post-processor decides, and
                tokenizer_config.json's ``add_bos_token``/``add_eos_token`` are ignored, as Hugging Face 5
                ignores them beside a ``tokenizer.json``.
            kwargs: constructor options (``padding_side``, ``model_max_length``, ``special_tokens``,
                ``model_input_names``), which override the saved settings.
        """
        folder = resolve_checkpoint(name_or_path)
        if cls is Tokenizer:
            chosen = cls.class_for(folder)
            if chosen is not Tokenizer:
                if add_prefix_space is not None:
                    raise ValueError(
                        f"add_prefix_space applies to byte-level BPE tokenizers, not to {chosen.__name__}"
                    )
                return chosen.from_pretrained(name_or_path, **kwargs)
        bos_eos = {key: bool(kwargs.pop(key)) for key in ("add_bos_token", "add_eos_token") if key in kwargs}
        backend, options = load_pipeline(folder, add_prefix_space)
        options["name_or_path"] = str(name_or_path)
        options.update(kwargs)
        tokenizer = cls(backend, **options)
        # chat_template.jinja (and additional_chat_templates/) win over tokenizer_config.json's, as in HF.
        tokenizer.chat_template = read_chat_templates(folder, tokenizer.saved_settings)
        if bos_eos:
            tokenizer.set_bos_eos(**bos_eos)
        return tokenizer

    def set_bos_eos(self, add_bos_token: bool = False, add_eos_token: bool = False) -> None:
        """Put the ``bos_token`` before every text and the ``eos_token`` after it (each when asked and when the
        tokenizer has one), and the same around the second text of a pair (token type 1), in place of what the
        tokenizer put around texts before: Hugging Face's ``update_post_processor``."""
        bos, eos = self.special_tokens.get("bos_token"), self.special_tokens.get("eos_token")
        add_bos, add_eos = add_bos_token and bos is not None, add_eos_token and eos is not None
        single = f"{f'{bos}:0 ' if add_bos else ''}$A:0{f' {eos}:0' if add_eos else ''}"
        pair = f"{single}{f' {bos}:1' if add_bos else ''} $B:1{f' {eos}:1' if add_eos else ''}"
        used = [token for token, used in ((bos, add_bos), (eos, add_eos)) if used]
        self.backend.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(token, self.token_to_id(token)) for token in dict.fromkeys(used)]
        )

    @classmethod
    def class_for(cls, folder: str | Path) -> type[Tokenizer]:
        """The class that loads the tokenizer in ``folder``: the first class of ``Tokenizer.folder_classes``
        whose ``handles(folder)`` says so, else :class:`Tokenizer` (WordPiece, BPE, or any ``tokenizer.json``).

        Raises:
            RuntimeError: the registry is empty (the package ``workbench.tokenizers`` sets it on import).
        """
        if not Tokenizer.folder_classes:
            raise RuntimeError(
                "Tokenizer.folder_classes is empty: import workbench.tokenizers, which registers the tokenizer "
                "classes that recognize their own folders"
            )
        folder = Path(folder)
        for candidate in Tokenizer.folder_classes:
            if candidate.handles(folder):
                return candidate
        return Tokenizer

    @property
    def chat_template(self) -> ChatTemplates | None:
        """The chat template (a Jinja string), several by name (a dict: ``"default"``, ``"tool_use"``...), or
        None. Kept in the saved settings, so that :meth:`save_pretrained` writes it to tokenizer_config.json."""
        return as_chat_templates(self.saved_settings.get("chat_template"))

    @chat_template.setter
    def chat_template(self, value: ChatTemplates | None) -> None:
        value = as_chat_templates(value)
        if value is None:
            self.saved_settings.pop("chat_template", None)
        elif isinstance(value, dict):  # the saved form of several templates
            self.saved_settings["chat_template"] = [{"name": k, "template": v} for k, v in value.items()]
        else:
            self.saved_settings["chat_template"] = value

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        *,
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        chat_template: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        **template_variables: Any,
    ) -> str | list[str] | list[int] | list[list[int]] | Encoding:
        """Render a conversation with the model's chat template, as Hugging Face's ``apply_chat_template``.

        Args:
            conversation: messages such as ``[{"role": "system", "content": ...}, {"role": "user", ...}]``,
                or a list of such conversations (a batch).
            add_generation_prompt: end with the header of an assistant turn, for the model to write it.
            tokenize: return token ids (the template writes the special tokens itself, so none are added);
                False returns the text.
            chat_template: a template's name (when there are several) or a Jinja template to use instead.
            tools, documents: JSON schemas of tools, and documents, for templates that show them.
            padding, truncation, max_length, return_tensors: as for :meth:`__call__` (with ``tokenize``).
            return_dict: with ``tokenize``, the :class:`Encoding` (Hugging Face 5's default); False gives the
                ``input_ids`` only.
            template_variables: more variables for the template (e.g. ``date_string``, ``enable_thinking``);
                they override a special token of the same name.

        Raises:
            ChatTemplateError: the tokenizer has no chat template (naming its folder), or the template does not
                compile or fails while rendering (naming the template and its line).
        """
        if isinstance(conversation, (str, bytes)) or not conversation:
            raise ValueError("conversation must be a non-empty list of messages such as {'role': 'user', ...}")
        batched = isinstance(conversation[0], (list, tuple))
        conversations = list(conversation) if batched else [conversation]
        where = self.name_or_path or "this tokenizer"
        name, template = select_template(self.chat_template, chat_template, tools is not None, where)
        special = {key: self.special_tokens[key] for key in _TEMPLATE_SPECIAL_TOKENS if self.special_tokens.get(key)}
        texts = render_chat(
            template,
            conversations,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=documents,
            special_tokens=special,
            template_name=name,
            **template_variables,
        )
        if not tokenize:
            return texts if batched else texts[0]
        encoding = self(
            texts if batched else texts[0],
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            add_special_tokens=False,
            return_tensors=return_tensors,
        )
        return encoding if return_dict else encoding["input_ids"]

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
        return (
            padding == "max_length"
            or pad_to_multiple_of is not None
            or len({len(e.ids) for e in encodings}) > 1
        )

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

    def single_token_id(self, token: str) -> int:
        """The id of ``token``: a vocabulary entry as written (``"Ġcat"``), else text that encodes to exactly
        one token (``" cat"``); a ValueError naming the pieces when it is several tokens."""
        token_id = self.backend.token_to_id(token)
        if token_id is not None:
            return token_id
        pieces = self.encode(token, add_special_tokens=False)
        if len(pieces) != 1:
            raise ValueError(
                f"{token!r} is not one token but {len(pieces)}: "
                f"{self.convert_ids_to_tokens(pieces)}; pass one of them (or its id)"
            )
        return pieces[0]

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
            settings["tokenizer_class"] = tokenizer_class_of(self.family)
        if self.add_prefix_space is not None:
            settings["add_prefix_space"] = self.add_prefix_space
        if isinstance(self.backend.post_processor, processors.RobertaProcessing):
            settings["trim_offsets"] = self.backend.post_processor.trim_offsets
        self._write_tokenizer_config(folder, settings)

    def _write_tokenizer_config(self, folder: Path, settings: dict[str, Any]) -> None:
        """Write ``tokenizer_config.json``: ``settings`` with this tokenizer's special tokens, padding side,
        model inputs and (when it has one) ``model_max_length``, as UTF-8."""
        settings = {
            **settings,
            **self.special_tokens,
            "padding_side": self.padding_side,
            "model_input_names": list(self.model_input_names),
        }
        if self.model_max_length < _VERY_LARGE_INTEGER:
            settings["model_max_length"] = self.model_max_length
        text = json.dumps(settings, indent=2, ensure_ascii=False) + "\n"
        (folder / "tokenizer_config.json").write_text(text, encoding="utf-8")

    def _encode_words(
        self,
        text: Any,
        text_pair: Any,
        is_split_into_words: bool,
        words_of: Callable[[str], list[str]],
        **options: Any,
    ) -> Encoding:
        """:meth:`__call__` for tokenizers that split the text into words in Python (the Moses step) before
        the backend: ``words_of(text)`` gives the words of one text. With ``is_split_into_words=True`` each
        input word goes through ``words_of`` on its own (it may become several words, joined by spaces into
        one backend word, so that ``word_ids()`` gives the input word of every token); otherwise
        ``word_ids()`` indexes the words that ``words_of`` made."""

        def row_words(row: Any) -> list[str]:
            if is_split_into_words:
                return [" ".join(words_of(word)) for word in row]
            return words_of(row)

        batched, rows = split_rows(text, "text", is_split_into_words)
        words = [row_words(row) for row in rows]
        pair_words = None
        if text_pair is not None:
            _, pair_rows = split_rows(text_pair, "text_pair", is_split_into_words, batched)
            pair_words = [row_words(row) for row in pair_rows]
            if len(pair_words) != len(words):
                raise ValueError(f"text has {len(words)} items but text_pair has {len(pair_words)}")
            pair_words = pair_words if batched else pair_words[0]
        return Tokenizer.__call__(
            self, words if batched else words[0], pair_words, is_split_into_words=True, **options
        )

    def __repr__(self) -> str:
        return (
            f"Tokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r})"
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
        extra = (
            "; decode bytes first, e.g. data.decode('utf-8')" if isinstance(text, (bytes, bytearray)) else ""
        )
        raise TypeError(f"{name} must be {what}, got {type(text).__name__}{extra}")
    for index, item in enumerate(text):
        where = f"{name}[{index}]"
        if isinstance(item, str):
            _check_unicode(item, where)
        elif is_split_into_words and isinstance(item, (list, tuple)):
            for word_index, word in enumerate(item):
                if not isinstance(word, str):
                    raise TypeError(
                        f"{where}[{word_index}] has type {type(word).__name__}; a word must be a str"
                    )
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


def split_rows(text: Any, name: str, split: bool, batched: bool | None = None) -> tuple[bool, list]:
    """(whether ``text`` is a batch, its rows): one text or a list of texts; with ``split``
    (``is_split_into_words``), one list of words or a list of such lists. ``batched`` forces the answer (a
    ``text_pair`` follows its ``text``).

    Raises:
        TypeError: a row that is not a str (with ``split``: not a list of str), naming ``name``.
    """
    if batched is None:
        if split:
            batched = isinstance(text, (list, tuple)) and len(text) > 0 and isinstance(text[0], (list, tuple))
        else:
            batched = not isinstance(text, str)
    rows = list(text) if batched else [text]
    for row in rows:
        if split:
            if not (isinstance(row, (list, tuple)) and all(isinstance(word, str) for word in row)):
                raise TypeError(
                    f"with is_split_into_words=True, {name} must be a list of words (str) or a list of such lists"
                )
        elif not isinstance(row, str):
            raise TypeError(
                f"{name} must be a str or a list of str, got an item of type {type(row).__name__} "
                f"(for text split into words, pass is_split_into_words=True)"
            )
    return batched, rows


def import_sacremoses(message: str) -> Any:
    """The ``sacremoses`` module (an optional dependency, for the Moses steps of word-splitting tokenizers).

    Raises:
        ImportError: it is not installed, with ``message`` (what needs it, and how to install it).
    """
    try:
        import sacremoses
    except ImportError:
        raise ImportError(message) from None
    return sacremoses


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
