"""The base class of every workbench model: loading, saving, and running with hooks or a cache.

An architecture subclasses :class:`HookedTransformer`, sets ``config_class``, ``body_key_map`` (and
``head_key_map`` for a task head) and writes ``forward``. Task heads subclass the bare model, so the hook
names of a head model are those of its body plus the head's own (``hook_logits``).
"""

from __future__ import annotations

import itertools
import logging
import types
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Union

import torch
from torch import nn

from .cache import ActivationCache, CaptureSink
from .config import BUILDING_WITHOUT_WEIGHTS, ConfigError, ModelConfig, available_memory
from .device_map import (
    bytes_per_device,
    checkpoint_devices,
    dispatch,
    plan_device_map,
    resolve_device_map,
    visible_gpus,
)
from .hook_points import HookedModule, HookFn, NameOrPredicate
from .hub import resolve_checkpoint
from .loading import (
    SAFETENSORS_NAME,
    KeyMap,
    LoadingInfo,
    convert_state_dict,
    empty_parameters,
    load_converted,
    read_state_dict,
    state_dict_for_saving,
    stored_tensors,
)
from .memory import MemoryEstimate, gib, kv_cache_bytes, note_capture
from .tokenizers import Encoding, Tokenizer, check_texts, has_tokenizer_files

logger = logging.getLogger(__name__)

# What run_with_cache / run_with_hooks accept as input.
ModelInput = Union[str, list[str], torch.Tensor, Mapping[str, Any]]


# Methods of the analysis layer. The model layers never import workbench's analysis layer (the import layers
# in pyproject.toml, checked by lint-imports), so the README's ``gpt2.generate(...)``, ``mlm.fill_mask(...)``
# and ``model.logit_lens(...)`` are given to the models by the analysis modules themselves, which are free
# functions first (``wb.generate``, ``wb.fill_mask``, ``wb.logit_lens``): workbench.lens adds ``logit_lens`` to
# every HookedTransformer, workbench.generation adds ``generate`` to GenerationMixin and
# workbench.mask_filling adds ``fill_mask`` to FillMaskMixin. A model class says what it can do by inheriting
# the mixin. The methods are always there: importing any ``workbench.*`` module runs workbench/__init__.py
# first, which imports those modules (in the ``workbench`` command, which skips those imports for a quick
# start, workbench/cli.py imports them before it loads a model).
class GenerationMixin:
    """A causal LM that continues text: ``model.generate(prompt, ...)`` (from :mod:`workbench.generation`)."""


class FillMaskMixin:
    """A masked LM that fills mask tokens: ``model.fill_mask(text, top_k)`` (from :mod:`workbench.mask_filling`)."""


class HookedTransformer(HookedModule):
    """Base class: a transformer whose activations are reachable through named hook points.

    Attributes:
        config: the architecture's config dataclass.
        tokenizer: the tokenizer of the same checkpoint, when it was found (used for text inputs).
        loading_info: missing/unexpected keys of the last ``from_pretrained``.
        device_map: where each part is (``{"embed": "cuda:0", "blocks.0": "cuda:0", ...}``) when the model was
            loaded with ``device_map=``; None when it is on one device.
    """

    config_class: ClassVar[type[ModelConfig]]
    body_key_map: ClassVar[KeyMap]
    head_key_map: ClassVar[KeyMap] = KeyMap([])
    # Hugging Face puts this before body keys in checkpoints of models with a head ("bert.").
    base_model_prefix: ClassVar[str] = ""
    # Which token a sequence-level head reads: "first" ([CLS]-style encoders) or "last" (the last real token:
    # decoders, XLNet). Attribution and interventions use it to find where a classifier looks.
    classifier_position: ClassVar[str] = "first"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.tokenizer: Tokenizer | None = None
        self.loading_info = LoadingInfo()
        # part -> device name, when from_pretrained(device_map=...) split the model (workbench.device_map)
        self.device_map: dict[str, str] | None = None

    # Construction ------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Random initialization as Hugging Face does it: normal(0, initializer_range), zero biases."""
        std = getattr(self.config, "initializer_range", 0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int | None = None) -> HookedTransformer:
        """A randomly initialized model (``seed`` makes it reproducible)."""
        if seed is not None:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = cls(config)
                model.init_weights()
        else:
            model = cls(config)
            model.init_weights()
        return model.eval()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        config: ModelConfig | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        ignore_mismatched_sizes: bool = False,
        revision: str | None = None,
        device_map: str | Mapping[str, torch.device | str | int] | None = None,
        **config_overrides: Any,
    ) -> HookedTransformer:
        """Load a Hugging Face–format checkpoint: a folder, an alias (``"minilm"``) or a hub id.

        The model is built without weights (its parameters on the meta device), then the checkpoint's tensors,
        read one by one in the loading dtype onto ``device``, become its parameters: loading needs about the
        memory of the weights once, and refuses (a :class:`ConfigError` naming both sizes) before reading
        anything when they do not fit in the memory free on ``device``.

        Args:
            config: use this config instead of the checkpoint's ``config.json``.
            device: where the weights go (default: the CPU).
            dtype: of the floating-point weights. None (the default): float32, whatever the checkpoint stores,
                as analysis wants it (hook values comparable across models, parity with Hugging Face at 1e-4);
                ``"auto"``: the checkpoint's own (``torch_dtype`` or ``dtype`` in config.json, e.g. bfloat16;
                float32 when it names none); or a torch dtype or its name (``"bfloat16"``).
            ignore_mismatched_sizes: re-initialize parameters whose shape differs instead of failing.
            device_map: split the model over devices instead of putting it on ``device`` (pass one of them):
                ``"auto"`` or ``"balanced"`` splits the blocks over the visible GPUs by parameter bytes, within
                each GPU's free memory (with no GPU: the CPU, with a warning); a dict ``{part: device}`` places
                each part (``"embed"``, ``"blocks.3"``, ``"blocks.0-11"``, ``"ln_final"``, ``"unembed"``, ...)
                itself. Each tensor is read onto its part's device, the memory check is per device, and the
                map is kept as ``model.device_map``; see :mod:`workbench.device_map`.
            **config_overrides: config fields to change, e.g. ``num_labels=3`` for a fresh classifier.

        The returned model is in eval mode. Weights the checkpoint lacks (a new head) are initialized as in a
        new model (from the global random generator, on the CPU), reported with a warning and listed in
        ``model.loading_info.missing_keys``.
        """
        if device is not None and device_map is not None:
            raise ValueError(
                f"pass device={device!r} or device_map, not both: device puts the whole model on one device, "
                f"device_map splits it over several"
            )
        folder = resolve_checkpoint(name_or_path, revision=revision)
        if config is None:
            config = cls.config_class.from_pretrained(
                folder, name_or_path=str(name_or_path), **config_overrides
            )
        dtype = loading_dtype(dtype, config)
        key_map = cls.body_key_map + cls.head_key_map
        prefixes = [cls.base_model_prefix + "."] if cls.base_model_prefix else []
        what = f"{cls.__name__} from {folder}"
        placement = None
        if device_map is None:
            device = torch.device("cpu" if device is None else device)
            check_fits(estimate_memory(folder, config, dtype, batch=0), device, what)
            model = cls.without_weights(config)
        else:
            model = cls.without_weights(config)
            placement = _placement(model, device_map, dtype, what)
            device = checkpoint_devices(
                model, placement, key_map, prefixes
            )  # each tensor to its part's device
        hf_state = cls.unfuse_hf_state(read_state_dict(folder, dtype=dtype, device=device), config)
        state = convert_state_dict(hf_state, key_map, prefixes)
        del hf_state  # the converted state holds the same tensors; nothing is kept twice
        info = load_converted(
            model, state, source=str(folder), ignore_mismatched_sizes=ignore_mismatched_sizes
        )
        model.loading_info = info
        _report_loading(cls.__name__, name_or_path, info)
        model.tokenizer = _find_tokenizer(folder)
        # Loaded weights are there already; this moves what the model made itself (buffers, fresh weights).
        if placement is None:
            return model.to(device=device, dtype=dtype).eval()
        return dispatch(model.to(dtype=dtype), placement).eval()

    @classmethod
    def without_weights(cls, config: ModelConfig) -> HookedTransformer:
        """A model whose parameters are on the meta device (shapes, no memory) and whose buffers are computed,
        for :meth:`from_pretrained` to fill (see :func:`workbench.loading.empty_parameters`)."""
        building = BUILDING_WITHOUT_WEIGHTS.set(True)  # nothing is allocated: no memory check at build time
        try:
            with empty_parameters():
                return cls(config)
        finally:
            BUILDING_WITHOUT_WEIGHTS.reset(building)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (and the tokenizer) that Hugging Face loads back."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [self.hf_architecture]
        self.config.save_pretrained(folder)
        has_head = bool(self.head_key_map.pairs)
        prefix = self.base_model_prefix + "." if has_head and self.base_model_prefix else ""
        state = self.fuse_hf_state(state_dict_for_saving(self, self.body_key_map + self.head_key_map, prefix))
        save_file(state, str(folder / SAFETENSORS_NAME), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        return folder

    @classmethod
    def unfuse_hf_state(cls, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
        """Split tensors that Hugging Face fuses (GPT-2's q/k/v in one ``c_attn``) before renaming; ``config``
        is the checkpoint's (GPT-NeoX's per-head q/k/v need its head count)."""
        return hf_state

    @classmethod
    def fuse_hf_state(cls, hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`unfuse_hf_state`, when saving."""
        return hf_state

    @property
    def hf_architecture(self) -> str:
        """The Hugging Face class name this model corresponds to (written to ``config.architectures``)."""
        return type(self).__name__

    def tied_parameter_names(self) -> set[str]:
        """Parameters that share storage with another one and are not saved twice."""
        return set()

    def body_parameter_names(self) -> set[str]:
        return {k for k in self.state_dict() if self.body_key_map.to_hf(k) is not None}

    # Properties --------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the weights are, and where inputs go: with a ``device_map``, the token embedding's device."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def stand_in_notice(self) -> str | None:
        """Set on a random stand-in (``wb.zoo``), else None. Kept in the config (``config.json`` key
        ``workbench_stand_in``), so a stand-in saved and loaded again is still labelled one."""
        return self.config.extra.get("workbench_stand_in")

    @stand_in_notice.setter
    def stand_in_notice(self, notice: str | None) -> None:
        if notice is None:
            self.config.extra.pop("workbench_stand_in", None)
        else:
            self.config.extra["workbench_stand_in"] = str(notice)

    # Inputs ------------------------------------------------------------------------------------------
    def tokenize(self, text: str | list[str], **kwargs: Any) -> Encoding:
        """Tokenize with this model's tokenizer, padded, as tensors on the model's device."""
        if self.tokenizer is None:
            raise ValueError(
                f"{type(self).__name__} has no tokenizer (none was found beside its weights); pass token ids, "
                f"or set model.tokenizer = workbench.AutoTokenizer.from_pretrained(...)"
            )
        # Checked here too: tokenizers that split words first (XLM's, Transformer-XL's Moses step) would
        # otherwise report a word index rather than the character of the original text.
        check_texts(text, "text")
        if not isinstance(text, str) and len(text) == 0:
            raise ValueError("text is an empty list: there is nothing to tokenize; pass at least one text")
        kwargs.setdefault("padding", True)
        kwargs.setdefault("return_tensors", "pt")
        return self.tokenizer(text, **kwargs).to(self.device)

    def to_str_tokens(self, text: str | list[str]) -> list[str] | list[list[str]]:
        """The token strings of a text (a list of lists for a batch), special tokens included, readable
        (byte-level BPE tokens decoded: ``" the"`` rather than ``"Ġthe"``)."""
        _, tokens = self.prepare_inputs(text)
        return tokens

    def _display_tokens(self, ids: torch.Tensor) -> list[list[str]]:
        return [self.tokenizer.display_tokens(row) for row in ids]

    def prepare_inputs(self, inputs: ModelInput) -> tuple[dict[str, Any], list | None]:
        """Text, a batch of texts, token ids [batch, pos] / [pos], or a mapping of model inputs ->
        (forward keyword arguments on the model's device, token strings or None)."""
        if isinstance(inputs, (list, tuple)) and not inputs:
            raise ValueError("inputs is an empty list: there is nothing to run; pass at least one text")
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and isinstance(inputs[0], str)):
            encoding = self.tokenize(list(inputs) if isinstance(inputs, tuple) else inputs)
            tokens = self._display_tokens(encoding["input_ids"])
            return dict(encoding), (tokens if encoding.is_batched else tokens[0])
        if isinstance(inputs, torch.Tensor):
            self.check_input_ids(inputs, allow_1d=True)
            ids = inputs.unsqueeze(0) if inputs.dim() == 1 else inputs
            tokens = None
            if self.tokenizer is not None:
                tokens = self._display_tokens(ids)
                tokens = tokens[0] if inputs.dim() == 1 else tokens
            # Token ids come unpadded: every position is real.
            return {
                "input_ids": ids.to(self.device),
                "attention_mask": torch.ones_like(ids, device=self.device),
            }, tokens
        if isinstance(inputs, Mapping):
            kwargs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
            tokens = None
            if isinstance(inputs, Encoding) and self.tokenizer is not None:
                tokens = self._display_tokens(
                    torch.as_tensor(inputs["input_ids"]).reshape(len(inputs.encodings), -1)
                )
                tokens = tokens if inputs.is_batched else tokens[0]
            return kwargs, tokens
        if isinstance(inputs, (list, tuple)):
            check_texts(inputs, "inputs")  # names the first item that is not a str
        raise TypeError(
            f"inputs must be a str, a list of str, a tensor of token ids or a mapping of model inputs, "
            f"got {type(inputs).__name__}"
        )

    # Compiling --------------------------------------------------------------------------------------
    def compile(self, *, enabled: bool = True, **options: Any) -> HookedTransformer:
        """Run ``model(...)`` through ``torch.compile`` (``options`` go to it: ``mode=``, ``dynamic=``...): the
        plain forward and each decoding step of ``model.generate``. Returns the model.

        A call with any hook attached runs eagerly instead, with one warning the first time: hooks are Python
        functions attached per call and per thread, which a compiled graph would not see change. So a
        compiled model gives the eager result either way; the speed comes on calls without hooks.

        Each compiled model keeps its own compiled code (dynamo keeps up to ``recompile_limit``, 8, versions
        per function; were every model's calls the same function, ``nn.Module._call_impl``, the ninth model
        compiled in a process would run eagerly).
        ``enabled=False`` goes back to eager calls.
        """
        if not enabled:
            self._compiled_call_impl = None
            self.__dict__.pop("_decoding_buffers", None)
            return self
        # generate's static key/value buffers, reused across calls of one shape (see generation.py)
        self.__dict__["_decoding_buffers"] = {}
        if self not in _compile_targets:  # made once per model: compiling again reuses its graphs
            _compile_targets[self] = _own_code(_call_module)
        compiled = torch.compile(_compile_targets[self].__get__(self), **options)
        eager = self._call_impl
        warned = []
        # Layers whose eager forward reads something a trace cannot (q/k/v laid side by side for decoding: the
        # weights' addresses) record it before each compiled call; dynamo guards on what they record.
        preparers = [m.prepare_compiled_call for m in self.modules() if hasattr(m, "prepare_compiled_call")]

        def call(*args: Any, **kwargs: Any) -> Any:
            if any(point._hooks or point._thread_hooks for point in self.hook_points().values()):
                if not warned:
                    warned.append(True)
                    logger.warning(
                        "%s is compiled, but hooks are attached: this call and every call with hooks runs "
                        "eagerly (the same result, at eager speed); calls without hooks run compiled",
                        type(self).__name__,
                    )
                return eager(*args, **kwargs)
            for prepare in preparers:
                prepare()
            return compiled(*args, **kwargs)

        self._compiled_call_impl = call
        return self

    # Running with hooks ------------------------------------------------------------------------------
    def run_with_hooks(
        self,
        inputs: ModelInput,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        **forward_kwargs: Any,
    ):
        """Run the model with hooks attached for this call only.

        Args:
            inputs: text, texts, token ids or a mapping of model inputs.
            fwd_hooks: ``(name_or_predicate, fn)`` pairs; ``fn(activation, hook)`` may return a replacement.
            **forward_kwargs: passed to ``forward`` (e.g. ``output_attentions=True``).
        """
        kwargs, _ = self.prepare_inputs(inputs)
        with self.hooks(fwd_hooks):
            return self(**kwargs, **forward_kwargs)

    def run_with_cache(
        self,
        inputs: ModelInput,
        names_filter: NameOrPredicate | Iterable[str] | None = None,
        device: torch.device | str | None = None,
        fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
        dtype: torch.dtype | None = None,
        out: ActivationCache | None = None,
        **forward_kwargs: Any,
    ) -> tuple[Any, ActivationCache]:
        """Run the model and keep the activations of the selected hook points.

        Args:
            inputs: text, texts, token ids or a mapping of model inputs.
            names_filter: a hook name, a list of names, or a predicate on names; None caches every hook.
            device: move cached tensors there (e.g. ``"cpu"`` to free GPU memory; from a GPU the copies run
                asynchronously on a side stream into pinned memory, overlapping the forward).
            fwd_hooks: hooks to run as well; the cache sees their edits at later hook points.
            dtype: store floating-point activations in this dtype (e.g. ``torch.bfloat16`` for big sweeps).
            out: a cache from an earlier call with the same hooks, input shape, ``dtype`` and ``device``: its
                tensors are written over and make up the new cache, so a sweep over many prompts allocates no
                cache (attention computes its scores and pattern right there; other activations are copied in
                at their hook point). A cached activation whose tensor in ``out`` is missing or of another
                shape, dtype or device is a ValueError naming the hook. The old cache object then holds the new
                values too: keep what you need from it before.

        Returns:
            (the model's output, an :class:`ActivationCache`)

        >>> out, cache = model.run_with_cache("The keys are on the table.")  # doctest: +SKIP
        >>> cache["blocks.0.attn.hook_pattern"].shape  # [batch, head, query_pos, key_pos]  # doctest: +SKIP
        >>> for text in texts:  # same token count each  # doctest: +SKIP
        ...     _, cache = model.run_with_cache(text, out=cache)
        """
        kwargs, tokens = self.prepare_inputs(inputs)
        activations: dict[str, torch.Tensor] = {}
        if out is not None and not isinstance(out, ActivationCache):
            raise TypeError(
                f"out must be an ActivationCache from an earlier run_with_cache, got {type(out).__name__}"
            )
        sink = CaptureSink(device, dtype, into=out)

        def save(tensor: torch.Tensor, hook) -> None:
            activations[hook.name] = sink(tensor.detach() if tensor.requires_grad else tensor, hook.name)

        names = self.resolve_hook_names(names_filter)
        lent = {} if out is None else {name: out[name] for name in names if name in out}
        with self.hooks(fwd_hooks), self.hooks([(names, save)], read_only=True), self.lend(lent):
            result = self(**kwargs, **forward_kwargs)
        sink.finish()
        ordered = {name: activations[name] for name in self.hook_names if name in activations}
        cache = ActivationCache(ordered, tokens=tokens, n_layers=self.n_layers)
        # The first large CPU cache makes glibc keep freed memory (workbench.memory explains; opt-out there).
        note_capture(cache.nbytes, all(tensor.device.type == "cpu" for tensor in ordered.values()))
        return result, cache

    # Shared forward helpers --------------------------------------------------------------------------
    def layer_head_mask(self, head_mask: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Hugging Face's head_mask, [head] or [layer, head] (1 keeps, 0 removes), as one [head] per layer."""
        if head_mask is None:
            return [None] * self.n_layers
        n_heads = self.config.n_heads
        if head_mask.dim() == 1 and head_mask.shape[0] == n_heads:
            return [head_mask] * self.n_layers
        if head_mask.shape == (self.n_layers, n_heads):
            return list(head_mask)
        raise ValueError(
            f"head_mask has shape {tuple(head_mask.shape)}; expected [{n_heads}] (every layer) or "
            f"[{self.n_layers}, {n_heads}] ([layer, head])"
        )

    def token_embeddings(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
    ) -> torch.Tensor:
        """input_ids [batch, pos] -> their embeddings [batch, pos, d_model], or ``inputs_embeds`` as given.

        Every architecture embeds its input here, so this is where inputs are checked (see
        :meth:`check_input_ids`): a bad id is an error naming it, never an index error deep in the embedding.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is not None:
            self.check_inputs_embeds(inputs_embeds)
            return inputs_embeds
        self.check_input_ids(input_ids)
        return self.embed(input_ids)

    @property
    def n_token_ids(self) -> int:
        """How many token ids the input embedding has rows for (valid ids: 0 .. n_token_ids - 1)."""
        return getattr(self.embed, "num_embeddings", None) or self.config.vocab_size

    def check_embedding_ids(self, **inputs: tuple[torch.Tensor | None, nn.Module]) -> None:
        """``position_ids=(ids, self.pos_embed), ...``: ids given by the caller must index their embedding
        table (None, a default the model makes itself, is skipped). Errors as :meth:`check_input_ids`."""
        for name, (ids, table) in inputs.items():
            if ids is not None:
                self.check_input_ids(ids, name, allow_1d=True, limit=table.num_embeddings)

    def check_input_ids(
        self, input_ids: Any, name: str = "input_ids", allow_1d: bool = False, limit: int | None = None
    ) -> None:
        """Refuse token ids the model cannot embed, with a message naming the parameter, the problem (type,
        dtype, shape, the offending value and where it is) and the valid range.

        Only type, dtype and rank are checked while tracing or compiling (the rest reads values). ``allow_1d``
        accepts [pos] as well; ``limit`` is the number of rows of the table the ids index (default: the token
        embedding's).
        """
        shape = "[batch, pos] or [pos]" if allow_1d else "[batch, pos]"
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"{name} must be a tensor {shape} of token ids, got {type(input_ids).__name__}")
        if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
            raise TypeError(
                f"{name} must hold integer {'token ' if name == 'input_ids' else ''}ids (torch.long), got dtype "
                f"{input_ids.dtype}; "
                f"convert exact ids with .long() (floats are refused: a rounded id would be another token)"
            )
        if input_ids.dim() != 2 and not (allow_1d and input_ids.dim() == 1):
            raise ValueError(f"{name} must be {shape}, got shape {tuple(input_ids.shape)}")
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if input_ids.numel() == 0:
            raise ValueError(
                f"{name} is empty (shape {tuple(input_ids.shape)}): the model needs at least one sequence of at "
                f"least one token"
            )
        low, high = torch.stack(torch.aminmax(input_ids)).tolist()  # one transfer
        table_rows = limit
        limit = self.n_token_ids if limit is None else limit
        if low < 0 or high >= limit:
            bad = low if low < 0 else high
            where = [int(i) for i in (input_ids == bad).nonzero()[0].tolist()]
            if table_rows is not None:
                raise ValueError(
                    f"{name} holds {bad} at position {where}, but the embedding table it indexes in "
                    f"{type(self).__name__} has {limit} rows (valid: 0..{limit - 1})"
                )
            raise ValueError(
                f"{name} holds the id {bad} at position {where}, but the vocabulary has {limit} words in "
                f"{type(self).__name__} (valid ids: 0..{limit - 1}); was the input made by another model's tokenizer?"
            )

    def check_inputs_embeds(self, inputs_embeds: Any) -> None:
        d_model = self.config.d_model
        if not isinstance(inputs_embeds, torch.Tensor) or not inputs_embeds.dtype.is_floating_point:
            what = (
                inputs_embeds.dtype
                if isinstance(inputs_embeds, torch.Tensor)
                else type(inputs_embeds).__name__
            )
            raise TypeError(f"inputs_embeds must be a float tensor [batch, pos, {d_model}], got {what}")
        if torch.jit.is_tracing():
            return
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != d_model or inputs_embeds.numel() == 0:
            raise ValueError(
                f"inputs_embeds must be [batch, pos, d_model={d_model}] with at least one position, got shape "
                f"{tuple(inputs_embeds.shape)}"
            )

    def check_attention_mask(
        self,
        attention_mask: Any,
        batch: int,
        length: int,
        *,
        at_least: bool = False,
        name: str = "attention_mask",
    ) -> None:
        """Refuse a mask that does not fit the input: it must be [batch, length] (``at_least``: [batch, L] with
        L >= length, for masks that may also cover memory), of integers, bools or floats."""
        if attention_mask is None:
            return
        if not isinstance(attention_mask, torch.Tensor):
            raise TypeError(
                f"{name} must be a tensor [batch, pos] of 1 (real) / 0 (padding), got "
                f"{type(attention_mask).__name__}"
            )
        if attention_mask.dtype.is_complex:
            raise TypeError(f"{name} must hold 1 (real) / 0 (padding), got dtype {attention_mask.dtype}")
        if torch.jit.is_tracing():  # sizes are traced values there; the trace's own shapes decide
            return
        fits = (
            attention_mask.dim() == 2
            and attention_mask.shape[0] == batch
            and (attention_mask.shape[1] >= length if at_least else attention_mask.shape[1] == length)
        )
        if not fits:
            expected = f"[{batch}, L >= {length}]" if at_least else f"[{batch}, {length}]"
            raise ValueError(
                f"{name} has shape {tuple(attention_mask.shape)}, but the input is {batch} sequence(s) of {length} "
                f"positions: expected {expected} ([batch, pos], 1 real / 0 padding)"
            )

    def check_sequence_length(self, length: int) -> None:
        limit = self.config.max_position_embeddings
        if not torch.jit.is_tracing() and length > limit:
            raise ValueError(
                f"the input has {length} tokens but {type(self).__name__} has positions for at most {limit} "
                f"(max_position_embeddings); truncate it, e.g. tokenizer(text, truncation=True)"
            )


# Loading dtype and memory ---------------------------------------------------------------------------------


def loading_dtype(dtype: torch.dtype | str | None, config: ModelConfig) -> torch.dtype:
    """The dtype ``from_pretrained(dtype=...)`` loads floating-point weights in (see there)."""
    if dtype is None:
        return torch.float32
    if dtype == "auto":
        stored = config.extra.get("torch_dtype") or config.extra.get("dtype")
        dtype = stored if isinstance(stored, str) else "float32"
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype={dtype!r}: expected None (float32), 'auto' (the checkpoint's), or a floating-point torch "
            f"dtype or its name, e.g. torch.bfloat16 or 'bfloat16'"
        )
    return dtype


def estimate_memory(
    folder: Path, config: ModelConfig, dtype: torch.dtype, batch: int = 1, seq: int = 2048
) -> MemoryEstimate:
    """The memory of the checkpoint in ``folder`` loaded in ``dtype``, with the key/value cache of ``batch``
    sequences of ``seq`` positions. The weights are counted from the safetensors headers (every tensor, as
    loading reads them all), or from the config's estimate for a ``pytorch_model.bin``."""
    stored = stored_tensors(folder)
    if stored is None:
        parameters = config.estimated_parameters()
        weight_bytes = parameters * dtype.itemsize
    else:
        parameters = sum(tensor.numel for tensor in stored.values())
        weight_bytes = sum(
            tensor.numel * (dtype.itemsize if tensor.dtype.is_floating_point else tensor.dtype.itemsize)
            for tensor in stored.values()
        )
    n_kv_heads = getattr(config, "n_kv_heads", None) or config.n_heads
    cache = kv_cache_bytes(config.n_layers, n_kv_heads, config.d_head, batch, seq, dtype)
    return MemoryEstimate(parameters, dtype, weight_bytes, cache, batch, seq)


def free_memory(device: torch.device) -> tuple[int | None, str]:
    """(bytes free for new tensors on ``device``, or None where it cannot be told; a description)."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.mem_get_info(device)[0], f"free memory on {device}"
    if device.type == "cpu":
        return available_memory(), "memory available"
    return None, f"memory on {device}"


def check_fits(estimate: MemoryEstimate, device: torch.device, what: str) -> None:
    """Refuse (ConfigError) when ``estimate.total_bytes`` exceeds the memory free on ``device``."""
    available, where = free_memory(device)
    if available is None or estimate.total_bytes <= available:
        return
    dtype = str(estimate.dtype).removeprefix("torch.")
    raise ConfigError(
        f"{what}: {estimate.parameters:.3g} parameters need {gib(estimate.total_bytes)} in {dtype}, more than "
        f"the {gib(available)} of {where}; load it in a smaller dtype (dtype=torch.bfloat16, or 'auto' for "
        f"the checkpoint's own), on another device, or choose a smaller model "
        f"(wb.memory_estimate tells the size before loading)"
    )


def _placement(
    model: HookedTransformer, device_map: str | Mapping[str, Any], dtype: torch.dtype, what: str
) -> dict[str, torch.device]:
    """``from_pretrained``'s ``device_map`` for ``model`` (built without weights) -> part -> device, refused
    (ConfigError, as :func:`check_fits`) where a device's part does not fit in its free memory."""
    if isinstance(device_map, str):
        if device_map not in ("auto", "balanced"):
            raise ValueError(
                f"device_map={device_map!r}: expected 'auto' or 'balanced' (a split over the visible GPUs), or a "
                f"dict {{part: device}}"
            )
        gpus = visible_gpus()
        capacity = {gpu: free_memory(gpu)[0] for gpu in gpus}
        device_map = plan_device_map(model, gpus or None, max_memory=capacity, dtype=dtype)
    placement = resolve_device_map(model, device_map)
    for device, (parameters, weight_bytes) in bytes_per_device(model, placement, dtype).items():
        check_fits(
            MemoryEstimate(parameters, dtype, weight_bytes, 0, 0, 0), device, f"{what} (its part on {device})"
        )
    return placement


def _report_loading(class_name: str, source: Any, info: LoadingInfo) -> None:
    if info.missing_keys:
        logger.warning(
            "Some weights of %s were not in the checkpoint %s and are newly initialized: %s. "
            "Train them before relying on the outputs they affect.",
            class_name,
            source,
            info.missing_keys,
        )
    if info.mismatched_keys:
        logger.warning(
            "Some weights of %s had other shapes in %s and are re-initialized: %s",
            class_name,
            source,
            info.mismatched_keys,
        )
    # Unused checkpoint tensors: a WARNING from workbench.loading.load_converted (count, first names).


def _find_tokenizer(folder: Path) -> Tokenizer | None:
    return Tokenizer.from_pretrained(folder) if has_tokenizer_files(folder) else None


def _call_module(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(...)`` as torch calls it (its torch hooks included); what ``HookedTransformer.compile`` compiles,
    through a copy of its own (:func:`_own_code`)."""
    return module._call_impl(*args, **kwargs)


_copies = itertools.count()
# Each compiled model's copy of _call_module, kept beside the model (not in it: a model stays picklable) and
# gone with it.
_compile_targets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _own_code(function: types.FunctionType) -> types.FunctionType:
    """A copy of ``function`` with a code object of its own: dynamo keeps compiled code per code object, so
    each copy has its own cache (and its own ``recompile_limit``)."""
    code = function.__code__.replace(co_name=f"{function.__name__}_{next(_copies)}")
    return types.FunctionType(code, function.__globals__, code.co_name, function.__defaults__, function.__closure__)
