"""Inputs, hooks and threads fail loudly (issue 15): bad text and bad token ids are errors naming the problem
and where it is, for every architecture; a hook's replacement must match the activation; hooks attached in
one thread never change another thread's forward."""

from __future__ import annotations

import re
import threading

import pytest
import torch
from tiny_gpt2 import load_tiny_gpt2
from tiny_hf import ARCHITECTURES, tiny_config, tiny_model

import workbench as wb


def test_every_architecture_has_a_tiny_config():
    for model_type in ARCHITECTURES:
        assert tiny_config(model_type).model_type == model_type


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return load_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return wb.AutoTokenizer.from_pretrained(wb.hub.resolve_checkpoint("minilm"))


# 1. Bad text -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("ab\ud800c", ValueError, r"text is not valid Unicode: a lone surrogate U\+D800 at character 2 \(after 'ab'\)"),
        (["fine", "x\udfff"], ValueError, r"text\[1\] is not valid Unicode: a lone surrogate U\+DFFF at character 1"),
        (["fine", None], TypeError, r"text\[1\] has type NoneType"),
        (["fine", 3], TypeError, r"text\[1\] has type int"),
        ([["nested", "list"]], TypeError, r"text\[0\] has type list.*is_split_into_words=True"),
        (None, TypeError, r"text must be a str or a list of str, got NoneType"),
        (b"bytes", TypeError, r"got bytes; decode bytes first"),
    ],
)
def test_tokenizer_names_bad_text_and_where_it_is(minilm_tokenizer, text, error, message):
    with pytest.raises(error, match=message):
        minilm_tokenizer(text)


def test_tokenizer_checks_pairs_and_words(minilm_tokenizer):
    with pytest.raises(ValueError, match=r"text_pair is not valid Unicode: .* at character 0"):
        minilm_tokenizer("a", "\udc80b")
    with pytest.raises(ValueError, match=r"text\[1\]\[0\] is not valid Unicode"):
        minilm_tokenizer([["a", "b"], ["\ud83d", "c"]], is_split_into_words=True)
    # Valid text of every kind still goes through: astral characters, empty strings.
    assert minilm_tokenizer(["😀 ok", ""])["input_ids"][1] == [101, 102]


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        ([], ValueError, "inputs is an empty list"),
        (["ok", "bad\ud800"], ValueError, r"text\[1\] is not valid Unicode: a lone surrogate U\+D800 at character 3"),
        ([None], TypeError, r"inputs\[0\] has type NoneType"),
        ([["a"]], TypeError, r"inputs\[0\] has type list"),
    ],
)
def test_model_inputs_name_bad_text(tiny_gpt2, inputs, error, message):
    with pytest.raises(error, match=message):
        tiny_gpt2.run_with_cache(inputs)


DECODERS = [t for t in sorted(wb.auto.CAUSAL_LM_REGISTRY) if hasattr(wb.auto.CAUSAL_LM_REGISTRY[t], "generate")]


@pytest.mark.parametrize("model_type", DECODERS)
def test_empty_prompt_starts_from_bos_and_empty_batch_is_an_error(model_type, tiny_gpt2):
    model = tiny_model(model_type, "causal_lm", vocab_size=tiny_gpt2.config.vocab_size)
    model.tokenizer = tiny_gpt2.tokenizer
    bos = model.tokenizer.bos_token_id
    alone = model.generate("", max_new_tokens=3, stop_at_eos=False)
    assert alone.input_ids[0, 0].item() == bos and alone.attention_mask[0].tolist() == [1, 1, 1, 1]
    # What it generates is what the model predicts after the bos token.
    if hasattr(model, "next_token_logits"):
        first = model.next_token_logits(torch.tensor([[bos]]), torch.ones(1, 1, dtype=torch.long)).argmax(-1)
    else:
        first = model(torch.tensor([[bos]])).logits[0, -1].argmax(-1)
    assert alone.new_token_ids[0][0] == int(first)
    batch = model.generate(["The cat", ""], max_new_tokens=3, stop_at_eos=False)
    assert batch.new_token_ids[1] == alone.new_token_ids[0]  # left padding, then bos: the same continuation
    assert batch.prompts[1] == "" and batch.full_text == "The cat" + batch.text
    with pytest.raises(ValueError, match="prompt is an empty list"):
        model.generate([], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"prompt\[1\] is not valid Unicode"):
        model.generate(["ok", "\ud800"], max_new_tokens=2)


def test_empty_prompt_without_bos_is_an_error(tiny_gpt2):
    model = tiny_model("gpt2", "causal_lm", vocab_size=tiny_gpt2.config.vocab_size)
    model.tokenizer = tiny_gpt2.tokenizer.__class__.from_pretrained(tiny_gpt2.tokenizer.name_or_path)
    model.tokenizer.special_tokens.pop("bos_token")
    with pytest.raises(ValueError, match=r"prompt 1 \(''\) has no tokens and the tokenizer has no bos_token"):
        model.generate(["a", ""], max_new_tokens=2)


# 2. Invalid token ids ----------------------------------------------------------------------------------


BAD_IDS = {
    "negative": (torch.tensor([[1, -1, 2]]), ValueError, r"input_ids holds the id -1 at position \[0, 1\].*0\.\.59"),
    "too large": (torch.tensor([[1, 2], [3, 60]]), ValueError, r"the id 60 at position \[1, 1\].*60 words.*0\.\.59"),
    "float": (torch.tensor([[1.0, 2.0]]), TypeError, r"input_ids must hold integer token ids.*torch\.float32"),
    "bool": (torch.tensor([[True, False]]), TypeError, r"input_ids must hold integer token ids.*torch\.bool"),
    "3-D": (torch.ones(1, 2, 3, dtype=torch.long), ValueError, r"input_ids must be \[batch, pos\], got shape \(1, 2, 3\)"),
    "no positions": (torch.zeros(2, 0, dtype=torch.long), ValueError, r"input_ids is empty \(shape \(2, 0\)\)"),
    "no sequences": (torch.zeros(0, 4, dtype=torch.long), ValueError, r"input_ids is empty \(shape \(0, 4\)\)"),
}


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_bad_token_ids_are_named_for_every_architecture(model_type):
    model = tiny_model(model_type)
    for ids, error, message in BAD_IDS.values():
        with pytest.raises(error, match=message):
            model(input_ids=ids)
    # The same through run_with_cache, which also takes [pos].
    with pytest.raises(ValueError, match=r"the id 99 at position \[2\]"):
        model.run_with_cache(torch.tensor([1, 2, 99]))
    with pytest.raises(ValueError, match=r"inputs_embeds must be \[batch, pos, d_model=16\]"):
        model(inputs_embeds=torch.zeros(1, 3, 7))
    # Valid ids at both ends of the range still run.
    model(input_ids=torch.tensor([[0, 59, 5]]))


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_attention_mask_of_another_shape_is_named(model_type):
    model = tiny_model(model_type)
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(3, 3\), but the input is 2 sequence\(s\) of 3"):
        model(input_ids=ids, attention_mask=torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 2\)"):
        model(input_ids=ids, attention_mask=torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 1, 3\)"):
        model(input_ids=ids, attention_mask=torch.ones(2, 1, 3, dtype=torch.long))
    if model_type != "transfo-xl":  # Transformer-XL's mask may also cover memory (docs/hooks.md)
        with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\).*expected \[2, 3\]"):
            model(input_ids=ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    model(input_ids=ids, attention_mask=torch.ones(2, 3, dtype=torch.long))


# 3. A hook's replacement must match the activation -----------------------------------------------------


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_a_replacement_of_another_shape_or_dtype_is_an_error(model_type):
    model = tiny_model(model_type)
    ids = torch.tensor([[3, 4, 5]])
    name = "blocks.0.attn.hook_pattern"
    one_head = lambda pattern, hook: pattern[:, :1]  # noqa: E731  (was broadcast to every head)
    with pytest.raises(ValueError, match=rf"'{re.escape(name)}' returned a tensor of shape \[1, 1, 3, \d+\].*"
                                         r"but the activation is \[1, 4, 3, \d+\]"):
        model.run_with_hooks(ids, fwd_hooks=[(name, one_head)])
    with pytest.raises(ValueError, match=r"torch\.float64 on cpu, but the activation is .*torch\.float32 on cpu"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: x.double())])
    with pytest.raises(ValueError, match=r"on meta, but the activation is .* on cpu"):
        model.run_with_hooks(ids, fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: x.to("meta"))])
    with pytest.raises(TypeError, match=r"at 'hook_embed' returned a list; a hook must return a tensor"):
        model.run_with_hooks(ids, fwd_hooks=[("hook_embed", lambda x, hook: [x])])
    assert not model.attached_hooks()  # removed after each error
    def zero_in_place(x, hook):
        x.mul_(0.0)  # returns None

    with torch.no_grad():
        plain = model(ids).last_hidden_state
        # None keeps the activation, with any in-place edit; a full-shape replacement is used.
        kept = model.run_with_hooks(ids, fwd_hooks=[(name, lambda x, hook: None)]).last_hidden_state
        in_place = model.run_with_hooks(ids, fwd_hooks=[(name, zero_in_place)])
        replaced = model.run_with_hooks(ids, fwd_hooks=[(name, lambda x, hook: torch.zeros_like(x))])
    torch.testing.assert_close(kept, plain)
    torch.testing.assert_close(in_place.last_hidden_state, replaced.last_hidden_state)
    assert (replaced.last_hidden_state - plain).abs().max() > 1e-3


# 4. Hooks are per thread -------------------------------------------------------------------------------


def run_in_threads(*targets):
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as err:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    assert not any(thread.is_alive() for thread in threads)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_hooks_of_one_thread_never_change_another_threads_forward(model_type):
    model = tiny_model(model_type)
    ids = torch.tensor([[3, 4, 5, 6]])
    edited_name = "blocks.1.hook_resid_pre"
    push = lambda x, hook: x + torch.linspace(-5.0, 5.0, x.shape[-1])  # noqa: E731  (LayerNorms keep it)
    with torch.no_grad():
        plain = model(ids).last_hidden_state
        edited = model.run_with_hooks(ids, fwd_hooks=[(edited_name, push)]).last_hidden_state
    assert (edited - plain).abs().max() > 1e-2
    # Both forwards stop at block 0 until the other is there too, so they overlap; thread A keeps its hooks
    # attached until thread B's forward has finished.
    inside, b_done = threading.Barrier(2, timeout=20), threading.Barrier(2, timeout=20)

    def meet(x, hook):
        inside.wait()

    results, seen_by_b = {}, {}

    def thread_a():
        with torch.no_grad(), model.hooks([("blocks.0.hook_resid_pre", meet), (edited_name, push)]):
            results["a"] = model(ids).last_hidden_state
            b_done.wait()

    def thread_b():
        with torch.no_grad(), model.hooks([("blocks.0.hook_resid_pre", meet)]):
            results["b"] = model(ids).last_hidden_state
        point = model.hook_points()[edited_name]
        seen_by_b.update(active=point.is_active, hooks=model.attached_hooks())
        b_done.wait()

    run_in_threads(thread_a, thread_b)
    torch.testing.assert_close(results["b"], plain)
    torch.testing.assert_close(results["a"], edited)
    assert seen_by_b == {"active": False, "hooks": []}
    assert not model.attached_hooks()


def test_model_wide_hooks_run_in_every_thread_and_reset_keeps_other_threads_hooks():
    model = tiny_model("bert")
    ids = torch.tensor([[3, 4, 5]])
    point = model.hook_points()["blocks.0.hook_resid_post"]
    calls = []
    handle = point.add_hook(lambda x, hook: calls.append(threading.get_ident()))
    run_in_threads(lambda: model(ids))
    model(ids)
    assert len(calls) == 2 and calls[0] != calls[1]  # the worker's forward and the main thread's
    handle.remove()
    # reset_hooks in one thread leaves the hooks another thread's `with` block holds.
    attached, reset_done = threading.Barrier(2, timeout=20), threading.Barrier(2, timeout=20)
    kept = {}

    def holder():
        with model.hooks([("hook_embed", lambda x, hook: None)]):
            attached.wait()
            reset_done.wait()
            kept["hooks"] = [name for name, _, _ in model.attached_hooks()]

    def resetter():
        attached.wait()
        model.reset_hooks()
        reset_done.wait()

    run_in_threads(holder, resetter)
    assert kept["hooks"] == ["hook_embed"]
    assert not model.attached_hooks()


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_generation_with_hooks_in_one_thread_leaves_another_threads_generation(tiny_gpt2, use_kv_cache):
    prompt, steps = "The cat", 4
    target = 7
    steer = lambda x, hook: x + 40.0 * tiny_gpt2.unembed.weight[target]  # noqa: E731
    plain = tiny_gpt2.generate(prompt, max_new_tokens=steps, stop_at_eos=False, use_kv_cache=use_kv_cache)
    steered = tiny_gpt2.generate(prompt, max_new_tokens=steps, stop_at_eos=False, use_kv_cache=use_kv_cache,
                                 fwd_hooks=[("blocks.1.hook_resid_post", steer)])
    assert steered.new_token_ids[0] != plain.new_token_ids[0]
    meeting = threading.Barrier(2, timeout=20)

    def meet(x, hook):  # every step of both generations waits for the other's: they run in lockstep
        meeting.wait()

    results = {}

    def steering_thread():
        results["steered"] = tiny_gpt2.generate(
            prompt, max_new_tokens=steps, stop_at_eos=False, use_kv_cache=use_kv_cache,
            fwd_hooks=[("hook_embed", meet), ("blocks.1.hook_resid_post", steer)],
        )

    def plain_thread():
        results["plain"] = tiny_gpt2.generate(
            prompt, max_new_tokens=steps, stop_at_eos=False, use_kv_cache=use_kv_cache, fwd_hooks=[("hook_embed", meet)]
        )

    run_in_threads(steering_thread, plain_thread)
    assert results["plain"].new_token_ids == plain.new_token_ids
    assert results["steered"].new_token_ids == steered.new_token_ids


def test_logit_lens_names_bad_arguments(tiny_gpt2):
    lens = tiny_gpt2.logit_lens("The cat sat")
    vocab, n = tiny_gpt2.config.vocab_size, len(lens.tokens[0])
    with pytest.raises(ValueError, match=rf"k must be an int from 1 to the vocabulary size {vocab}, got 0"):
        lens.top_k(k=0)
    with pytest.raises(ValueError, match=rf"got {vocab + 1}"):
        lens.top_k(k=vocab + 1)
    with pytest.raises(IndexError, match=r"batch=1 is out of range: there are 1 sequences"):
        lens.logits(batch=1)
    with pytest.raises(IndexError, match=rf"pos={n} is out of range: there are {n} positions"):
        lens.target(5, pos=n)
    with pytest.raises(TypeError, match="token must be a token id .* got float"):
        lens.target(1.5)
    assert len(lens.top_k(k=2, pos=-1)) == 2 * (tiny_gpt2.n_layers + 1)
    assert lens.target(torch.tensor(5), pos=-1)["token"].nunique() == 1


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "xlm", "gpt2", "openai-gpt"])
def test_position_and_token_type_ids_out_of_range_are_named(model_type):
    model = tiny_model(model_type)
    ids = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"position_ids holds 99 at position \[0, 2\].* has \d+ rows \(valid: 0\.\."):
        model(input_ids=ids, position_ids=torch.tensor([[0, 1, 99]]))
    with pytest.raises(TypeError, match=r"position_ids must hold integer ids .*torch\.float32"):
        model(input_ids=ids, position_ids=torch.tensor([[0.0, 1.0, 2.0]]))
    if model_type in ("bert", "roberta"):
        with pytest.raises(ValueError, match=r"token_type_ids holds 2 at position \[0, 1\].* 2 rows \(valid: 0\.\.1\)"):
            model(input_ids=ids, token_type_ids=torch.tensor([[0, 2, 1]]))
