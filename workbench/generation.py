"""Generation you can watch: greedy or sampled decoding with a key/value cache, hooks active throughout.

``model.generate("The capital of France is", max_new_tokens=5)`` returns a :class:`GenerationResult` with
the text, the new tokens and, per step, the model's top candidates with their probabilities.

Hooks: ``fwd_hooks`` stay attached for every step, so a hook can steer generation (add a vector to
``blocks.{i}.hook_resid_post``, ablate a head...). With the key/value cache, the first step runs over the
prompt and each later step over the one new token: a hook sees [batch, 1, ...] activations then.
``return_cache=True`` gives one :class:`ActivationCache` over the final sequence (prompt + generated
tokens), computed by one more forward with the same hooks — not one cache per step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
import torch

from .cache import ActivationCache
from .components.heads import CausalLMHead, LanguageModelHead
from .components.kv_cache import KVCache
from .components.projections import lay_out_for_decoding
from .hook_points import HookFn, NameOrPredicate
from .model import GenerationMixin
from .tokenizers import check_texts


@dataclass
class GenerationResult:
    """What :func:`generate` produced.

    Attributes:
        prompts: the prompt texts.
        texts: the generated continuation of each prompt (without the prompt).
        new_token_ids: the generated token ids of each prompt (up to and including an end-of-text token).
        input_ids: [batch, pos] prompts (left-padded) followed by the generated tokens.
        attention_mask: [batch, pos], 0 at padding and after a sequence ended.
        steps: one row per sequence and step: the chosen token, its probability and the top candidates.
        cache: the activations over the final sequence, with ``return_cache=True``.
    """

    prompts: list[str]
    texts: list[str]
    new_token_ids: list[list[int]]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    steps: pd.DataFrame
    cache: ActivationCache | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        """The continuation of the first (or only) prompt."""
        return self.texts[0]

    @property
    def full_text(self) -> str:
        """Prompt plus continuation, for the first (or only) prompt."""
        return self.prompts[0] + self.texts[0]

    @property
    def tokens(self) -> list[str]:
        """The generated tokens of the first prompt, as strings."""
        return list(self.steps[self.steps["sequence"] == 0]["token"])


def generate(
    model,
    prompt: str | list[str] | list[dict[str, str]] | list[list[dict[str, str]]],
    max_new_tokens: int = 20,
    *,
    do_sample: bool | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_kv_cache: bool = True,
    fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (),
    top_candidates: int = 5,
    stop_at_eos: bool = True,
    return_cache: bool = False,
    names_filter: NameOrPredicate | Iterable[str] | None = None,
) -> GenerationResult:
    """Continue ``prompt`` with a causal language model.

    Args:
        model: a model with a language-modelling head and a tokenizer (e.g. ``wb.load("gpt2")``).
        prompt: one text or a batch (left-padded; positions count real tokens only). A prompt with no tokens
            (``""``) starts from the tokenizer's ``bos_token`` (an error when it has none). A conversation (a
            list of ``{"role", "content"}`` messages), or a list of them, is rendered with the tokenizer's chat
            template first (``add_generation_prompt=True``; the template writes the special tokens itself).
        max_new_tokens: how many tokens to add at most.
        do_sample: sample instead of taking the most likely token; None means "sample when temperature,
            top_k or top_p is given".
        temperature: divides the logits before sampling.
        top_k: sample among the k most likely tokens.
        top_p: sample among the most likely tokens whose probabilities add up to top_p (nucleus sampling).
        seed: makes sampling reproducible (a private generator; the global RNG is untouched).
        use_kv_cache: reuse keys and values of earlier positions (False recomputes the whole sequence).
        fwd_hooks: hooks active during every step (steering, ablation).
        top_candidates: how many candidates each step records, with their probabilities (0: none; they are
            kept as tensors while generating and decoded once at the end).
        stop_at_eos: a sequence stops after the end-of-text token (``config.eos_token_id``; any of them when
            the config lists several, as Llama 3's does).
        return_cache: also return one cache over the final sequence (``names_filter`` selects what).

    Probabilities in ``steps`` are the model's (softmax of its logits), before temperature and filtering.

    Transformer-XL carries its memory from step to step: a prompt plus continuation longer than ``mem_len``
    positions is seen through the memory window, as the original model generates. XLNet predicts each token
    with ``next_token_logits`` (the query stream), recomputing the whole sequence at every step (no key/value
    cache).
    """
    if model.tokenizer is None:
        raise ValueError("generate needs the model's tokenizer; set model.tokenizer first")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    sampling = (
        do_sample if do_sample is not None else (temperature != 1.0 or top_k is not None or top_p is not None)
    )
    if sampling and temperature <= 0:
        raise ValueError(f"temperature must be positive when sampling, got {temperature}")
    # Models that add their special tokens at the end (XLNet's <sep> <cls>) continue the bare text.
    add_special = getattr(model, "prompt_special_tokens", True)
    if _is_chat(prompt):
        prompt = model.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        add_special = False
    check_texts(prompt, "prompt")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("prompt is an empty list: there is nothing to continue; pass at least one text")
    encoding = model.tokenize(prompts, padding_side="left", add_special_tokens=add_special)
    input_ids, attention_mask = start_empty_prompts(
        model, prompts, encoding["input_ids"], encoding["attention_mask"]
    )
    limit = model.config.max_position_embeddings
    if input_ids.shape[1] + max_new_tokens > limit:
        raise ValueError(
            f"the prompt has {input_ids.shape[1]} tokens; with max_new_tokens={max_new_tokens} that exceeds the "
            f"{limit} positions of the model (max_position_embeddings)"
        )
    generator = None
    if seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    # config.eos_token_id is one id or, in Llama 3's and others' configs, a list: any of them ends a sequence.
    eos_ids = _id_list(model.config.eos_token_id) if stop_at_eos else []
    eos = torch.tensor(eos_ids, dtype=torch.long, device=input_ids.device)
    pad = model.tokenizer.pad_token_id
    pad = pad if pad is not None else (eos_ids[0] if eos_ids else 0)

    # Each decoding step streams every weight matrix: stored input-major, with q/k/v (and a gated MLP's two
    # input projections) side by side, the products run at the memory's speed (once per model; see
    # workbench.components.projections).
    lay_out_for_decoding(model)
    batch, prompt_length = input_ids.shape
    # The whole sequence lives in two buffers written in place, one column a step: each step reads views.
    ids_buffer = torch.full(
        (batch, prompt_length + max_new_tokens), pad, dtype=input_ids.dtype, device=input_ids.device
    )
    mask_buffer = torch.zeros(ids_buffer.shape, dtype=attention_mask.dtype, device=attention_mask.device)
    ids_buffer[:, :prompt_length], mask_buffer[:, :prompt_length] = input_ids, attention_mask
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    record = StepRecord(top_candidates)
    kv_cache = None
    step_input = input_ids
    length = prompt_length
    with torch.no_grad(), model.hooks(fwd_hooks):
        # A compiled model with no hook decodes on a static cache: every step then has the same shapes, and one
        # compiled graph (a CUDA graph with mode="reduce-overhead") runs them all.
        static = runs_compiled(model)
        for step in range(max_new_tokens):
            input_ids, attention_mask = ids_buffer[:, :length], mask_buffer[:, :length]
            if hasattr(model, "next_token_logits"):  # XLNet: the query stream predicts a hidden last position
                logits = model.next_token_logits(input_ids, attention_mask).float()
            elif use_kv_cache:
                static_step = static and isinstance(kv_cache, KVCache) and kv_cache.static
                step_mask = mask_buffer if static_step else attention_mask  # a static cache: every slot's
                # The prompt runs eagerly (it unembeds its last position only; its length would be one more
                # graph), the steps on the static cache through the compiled call.
                logits, kv_cache = next_logits_with_cache(model, step_input, step_mask, kv_cache, static_step)
                if static_step:
                    kv_cache.advance()
                if step == 0 and isinstance(kv_cache, KVCache):
                    reserve_for_decoding(model, kv_cache, prompt_length + max_new_tokens, static)
                logits = logits.float()  # [batch, vocab]
            else:
                out = model(input_ids=input_ids, attention_mask=attention_mask)
                logits = out.logits[:, -1].float()
            # A model split by a device_map gives them on its last device.
            logits = logits.to(ids_buffer.device)
            probabilities = logits.softmax(-1)
            chosen = (
                sample_next(logits, temperature, top_k, top_p, generator) if sampling else logits.argmax(-1)
            )
            chosen = chosen.masked_fill_(finished, pad)
            record.add(chosen, probabilities, finished)
            ids_buffer[:, length] = chosen
            mask_buffer[:, length] = ~finished
            length += 1
            step_input = ids_buffer[:, length - 1 : length]
            if eos_ids:
                finished |= torch.isin(chosen, eos)
                if finished.all():
                    break
    input_ids, attention_mask = ids_buffer[:, :length].contiguous(), mask_buffer[:, :length].contiguous()
    new_ids, rows = record.results(model.tokenizer)
    cache = None
    if return_cache:
        _, cache = model.run_with_cache(
            {"input_ids": input_ids, "attention_mask": attention_mask},
            names_filter=names_filter,
            fwd_hooks=fwd_hooks,
        )
    texts = [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in new_ids]
    return GenerationResult(prompts, texts, new_ids, input_ids, attention_mask, pd.DataFrame(rows), cache)


def next_logits_with_cache(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache, compiled: bool = False
) -> tuple[torch.Tensor, object]:
    """(logits [batch, vocab] of the last position, the key/value cache) after running the new ``input_ids``
    [batch, new] on ``cache`` (None on the first step); ``compiled``: through ``model(...)``, the compiled
    call of a compiled model.

    A plain causal language-model head (the unembedding of :class:`LanguageModelHead`, with nobody watching
    ``hook_logits``) unembeds the last position only, as Hugging Face's ``generate`` does (``logits_to_keep=1``):
    over a prompt the other logits would be computed (a [new, d_model] x [d_model, vocab] product) and
    dropped. Every hook point of the body runs as in ``model(...)``.
    """
    if not compiled and _plain_causal_lm_head(model) and not model.hook_logits.is_active:
        body = model.run_body(
            input_ids, attention_mask, False, False, {"past_key_values": cache, "use_cache": True}
        )
        return model.lm_logits(body.last_hidden_state[:, -1]), body.past_key_values
    out = model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
    return out.logits[:, -1], out.past_key_values


def runs_compiled(model) -> bool:
    """Whether ``model(...)`` runs its compiled graph now: ``model.compile()`` was called and no hook the
    calling thread's forward would run is attached (with one, the call runs eagerly)."""
    if getattr(model, "_compiled_call_impl", None) is None:
        return False
    return not any(point.is_active for point in model.hook_points().values())


def reserve_for_decoding(model, cache: KVCache, capacity: int, static: bool) -> None:
    """``cache.reserve(capacity, static)`` after the prompt: later steps write in place. A static cache of a
    compiled model writes into the buffers of the calling thread's previous generation when they have the
    same shapes (kept in ``model._decoding_buffers``, which ``model.compile`` makes and ``compile(enabled=False)``
    drops; one set per thread, so that generations in two threads never share them), so the compiled graph
    sees the same tensors from one ``generate`` to the next; their addresses are marked static for
    ``torch.compile``, as CUDA graphs need."""
    pool = getattr(model, "_decoding_buffers", None)
    if not static or pool is None:
        cache.reserve(capacity, static=static)
        return
    key = (capacity, *((k.shape, k.dtype, k.device) for k in cache.keys + cache.values))
    thread = threading.get_ident()
    kept_key, buffers = pool.get(thread, (None, None))
    reused = buffers if kept_key == key else None
    cache.reserve(capacity, static=True, buffers=reused)
    if reused is None:  # one generation shape per thread: the memory of the last one only
        pool[thread] = (key, (cache.key_buffers, cache.value_buffers))
        for buffer in cache.key_buffers + cache.value_buffers:
            torch._dynamo.mark_static_address(buffer)


def _plain_causal_lm_head(model) -> bool:
    """Whether ``model``'s logits are ``lm_logits`` of the body's last hidden state, position by position
    (:class:`CausalLMHead` as it is; not Transformer-XL's adaptive softmax, which has its own fields), and
    no torch hook on the model itself expects to see the call."""
    cls = type(model)
    return (
        isinstance(model, CausalLMHead)
        and cls.head_fields is LanguageModelHead.head_fields
        and cls.lm_fields is LanguageModelHead.lm_fields
        and not (model._forward_hooks or model._forward_pre_hooks)  # torch hooks on the model see model(...)
    )


def _is_chat(prompt) -> bool:
    """Whether ``prompt`` is a conversation (messages are dicts) or a batch of them, rather than text."""
    if not isinstance(prompt, (list, tuple)) or not prompt:
        return False
    first = prompt[0][0] if isinstance(prompt[0], (list, tuple)) and prompt[0] else prompt[0]
    return isinstance(first, dict)


def start_empty_prompts(
    model, prompts: list[str], input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A prompt with no tokens ("" and no special tokens added) starts from the tokenizer's ``bos_token``,
    as Hugging Face's ``generate`` does without input; without a ``bos_token`` it is an error naming it."""
    empty = attention_mask.sum(-1) == 0
    if not bool(empty.any()):
        return input_ids, attention_mask
    rows = torch.nonzero(empty).flatten().tolist()
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError(
            f"prompt {rows[0]} ({prompts[rows[0]]!r}) has no tokens and the tokenizer has no bos_token to start "
            f"from; give it at least one token of text"
        )
    if input_ids.shape[1] == 0:  # every prompt empty: make room for the bos token
        input_ids = torch.zeros((input_ids.shape[0], 1), dtype=input_ids.dtype, device=input_ids.device)
        attention_mask = torch.zeros_like(input_ids, dtype=attention_mask.dtype)
    input_ids, attention_mask = input_ids.clone(), attention_mask.clone()
    input_ids[empty, -1] = bos  # left padding: the last column is where the prompt ends
    attention_mask[empty, -1] = 1
    return input_ids, attention_mask


def _id_list(ids) -> list[int]:
    """``config.eos_token_id`` as a list: [] for None, [id] for one id, the ids of a list."""
    if ids is None:
        return []
    return [int(i) for i in ids] if isinstance(ids, (list, tuple)) else [int(ids)]


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one token id per row of ``logits`` [batch, vocab] after temperature, top-k and top-p filtering."""
    logits = logits / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p (the most likely one always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


class StepRecord:
    """What each step chose, kept as tensors while generating (no host round trip, no decoding per step) and
    turned into token ids and ``steps`` rows once at the end.

    Args:
        top_candidates: how many of the most likely tokens each step records (0: none, no top-k at all).
    """

    def __init__(self, top_candidates: int) -> None:
        if top_candidates < 0:
            raise ValueError(f"top_candidates must be 0 or more, got {top_candidates}")
        self.top_candidates = top_candidates
        self.chosen: list[torch.Tensor] = []  # [batch] per step
        self.probability: list[torch.Tensor] = []  # [batch]: the chosen token's
        self.alive: list[torch.Tensor] = []  # [batch] bool: the row had not ended before this step
        self.top_ids: list[torch.Tensor] = []  # [batch, k]
        self.top_probabilities: list[torch.Tensor] = []  # [batch, k]

    def add(self, chosen: torch.Tensor, probabilities: torch.Tensor, finished: torch.Tensor) -> None:
        """chosen [batch], probabilities [batch, vocab], finished [batch] (before this step)."""
        self.chosen.append(chosen.clone())
        self.probability.append(probabilities.gather(-1, chosen[:, None])[:, 0])
        self.alive.append(~finished)
        if self.top_candidates:
            top = torch.topk(probabilities, min(self.top_candidates, probabilities.shape[-1]), dim=-1)
            self.top_ids.append(top.indices)
            self.top_probabilities.append(top.values)

    def results(self, tokenizer) -> tuple[list[list[int]], list[dict]]:
        """(the new token ids of each row, one ``steps`` row per row and step that was still generating)."""
        chosen = torch.stack(self.chosen, 1).tolist()  # [batch, step]
        probability = torch.stack(self.probability, 1).tolist()
        alive = torch.stack(self.alive, 1).tolist()
        top_ids = torch.stack(self.top_ids, 1).tolist() if self.top_candidates else None
        top_probabilities = torch.stack(self.top_probabilities, 1).tolist() if self.top_candidates else None
        strings: dict[int, str] = {}

        def text(token_id: int) -> str:
            if token_id not in strings:
                strings[token_id] = tokenizer.decode([token_id])
            return strings[token_id]

        new_ids: list[list[int]] = [[] for _ in chosen]
        rows = []
        for step in range(len(self.chosen)):
            for row in range(len(chosen)):
                if not alive[row][step]:
                    continue
                token_id = chosen[row][step]
                new_ids[row].append(token_id)
                rows.append(
                    {
                        "sequence": row,
                        "step": step,
                        "token": text(token_id),
                        "token_id": token_id,
                        "probability": probability[row][step],
                        "top_tokens": [text(i) for i in top_ids[row][step]] if top_ids else [],
                        "top_probabilities": [round(p, 6) for p in top_probabilities[row][step]]
                        if top_probabilities
                        else [],
                    }
                )
        return new_ids, rows


def _generate_method(
    self, prompt: str | list[str] | list[dict[str, str]], max_new_tokens: int = 20, **options
) -> GenerationResult:
    """Continue ``prompt``; see :func:`workbench.generation.generate` for the options."""
    return generate(self, prompt, max_new_tokens, **options)


# ``model.generate(...)`` for every model class that inherits GenerationMixin. The model layers never import
# this module; see the note above GenerationMixin in workbench/model.py.
_generate_method.__name__, _generate_method.__qualname__ = "generate", "GenerationMixin.generate"
GenerationMixin.generate = _generate_method
