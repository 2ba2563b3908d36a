"""Generation (greedy = Hugging Face's, cached = uncached, sampling, steering hooks, stopping) and the
logit lens, on a tiny random GPT-2 with a small byte-level BPE vocabulary trained here."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt2 import save_tiny_gpt2

import workbench as wb

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """(folder, Hugging Face model) of a random GPT-2 with a trained byte-level BPE tokenizer.json."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    return folder, save_tiny_gpt2(folder)


@pytest.fixture(scope="module")
def lm(tiny_gpt2):
    model = wb.load(tiny_gpt2[0], device="cpu")
    assert isinstance(model, wb.GPT2LMHeadModel)
    return model


def test_greedy_generation_equals_hugging_face(lm, tiny_gpt2):
    hf_model = tiny_gpt2[1]
    result = lm.generate(PROMPT, max_new_tokens=10, stop_at_eos=False)
    ids = lm.tokenize(PROMPT)["input_ids"]
    expected = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                                 eos_token_id=None)
    assert result.new_token_ids[0] == expected[0, ids.shape[1]:].tolist()
    assert result.text == lm.tokenizer.decode(result.new_token_ids[0])
    assert result.full_text == PROMPT + result.text


def test_left_padded_batch_generates_what_each_prompt_generates_alone(lm, tiny_gpt2):
    prompts = [PROMPT, "Hello", "The cat sat on"]
    batch = lm.generate(prompts, max_new_tokens=6, stop_at_eos=False)
    for i, prompt in enumerate(prompts):
        alone = lm.generate(prompt, max_new_tokens=6, stop_at_eos=False)
        assert batch.new_token_ids[i] == alone.new_token_ids[0], prompt
    # Hugging Face's generate, fed our left-padded batch, agrees too (its generate derives positions from the mask).
    encoding = lm.tokenize(prompts, padding_side="left")
    expected = tiny_gpt2[1].generate(**encoding, max_new_tokens=6, do_sample=False, eos_token_id=None)
    assert batch.input_ids.tolist() == expected.tolist()


def test_kv_cache_gives_the_same_logits_as_recomputing(lm):
    result = lm.generate(PROMPT, max_new_tokens=8, stop_at_eos=False)
    ids, mask = result.input_ids, result.attention_mask
    prompt_length = ids.shape[1] - 8
    with torch.no_grad():
        full = lm(input_ids=ids, attention_mask=mask).logits
        out = lm(input_ids=ids[:, :prompt_length], attention_mask=mask[:, :prompt_length], use_cache=True)
        stepwise = [out.logits]
        for t in range(prompt_length, ids.shape[1]):
            out = lm(input_ids=ids[:, t : t + 1], attention_mask=mask[:, : t + 1],
                     past_key_values=out.past_key_values, use_cache=True)
            stepwise.append(out.logits)
    torch.testing.assert_close(torch.cat(stepwise, dim=1), full, atol=1e-5, rtol=0)
    uncached = lm.generate(PROMPT, max_new_tokens=8, stop_at_eos=False, use_kv_cache=False)
    assert uncached.new_token_ids == result.new_token_ids
    torch.testing.assert_close(torch.tensor(uncached.steps["probability"]), torch.tensor(result.steps["probability"]),
                               atol=1e-6, rtol=0)


def test_steps_record_the_top_candidates(lm):
    result = lm.generate(PROMPT, max_new_tokens=4, stop_at_eos=False, top_candidates=3)
    steps = result.steps
    assert list(steps["step"]) == [0, 1, 2, 3]
    assert {"token", "token_id", "probability", "top_tokens", "top_probabilities"} <= set(steps.columns)
    for _, row in steps.iterrows():
        assert len(row["top_tokens"]) == 3 and row["top_probabilities"] == sorted(row["top_probabilities"], reverse=True)
        assert row["top_tokens"][0] == row["token"]  # greedy takes the most likely
        assert abs(row["top_probabilities"][0] - row["probability"]) < 1e-6
    assert result.tokens == list(steps["token"])


def test_sampling_is_seeded_and_its_filters_work(lm):
    first = lm.generate(PROMPT, max_new_tokens=8, temperature=1.5, seed=3, stop_at_eos=False)
    again = lm.generate(PROMPT, max_new_tokens=8, temperature=1.5, seed=3, stop_at_eos=False)
    assert first.new_token_ids == again.new_token_ids
    other_seeds = {tuple(lm.generate(PROMPT, max_new_tokens=8, temperature=1.5, seed=s,
                                     stop_at_eos=False).new_token_ids[0]) for s in range(4, 9)}
    assert len(other_seeds) > 1  # it does sample
    greedy = lm.generate(PROMPT, max_new_tokens=8, stop_at_eos=False).new_token_ids
    assert lm.generate(PROMPT, max_new_tokens=8, top_k=1, seed=0, stop_at_eos=False).new_token_ids == greedy
    assert lm.generate(PROMPT, max_new_tokens=8, top_p=1e-6, seed=0, stop_at_eos=False).new_token_ids == greedy
    with pytest.raises(ValueError, match="top_p"):
        lm.generate(PROMPT, max_new_tokens=2, top_p=1.5)


def test_hooks_steer_generation_and_come_off(lm):
    plain = lm.generate(PROMPT, max_new_tokens=6, stop_at_eos=False)
    target = lm.tokenizer.encode(" mat", add_special_tokens=False)[-1]
    direction = lm.unembed.weight[target].detach() * 50  # push the residual stream towards " mat"
    seen_shapes = []

    def steer(resid, hook):
        seen_shapes.append(tuple(resid.shape))
        return resid + direction

    steered = lm.generate(PROMPT, max_new_tokens=6, stop_at_eos=False, fwd_hooks=[("blocks.1.hook_resid_post", steer)])
    assert steered.new_token_ids != plain.new_token_ids
    assert steered.new_token_ids[0].count(target) >= 3
    prompt_length = plain.input_ids.shape[1] - 6
    assert seen_shapes[0] == (1, prompt_length, 32) and set(seen_shapes[1:]) == {(1, 1, 32)}  # the KV cache at work
    assert not any(point.is_active for point in lm.hook_points().values())
    assert lm.generate(PROMPT, max_new_tokens=6, stop_at_eos=False).new_token_ids == plain.new_token_ids


def test_generation_stops_at_end_of_text(lm):
    eos = lm.config.eos_token_id
    calls = []

    def end_at_third_step(logits, hook):
        calls.append(1)
        if len(calls) == 3:
            logits = logits.clone()
            logits[:, -1, eos] = 1e4
        return logits

    result = lm.generate(PROMPT, max_new_tokens=10, fwd_hooks=[("hook_logits", end_at_third_step)])
    assert len(result.new_token_ids[0]) == 3 and result.new_token_ids[0][-1] == eos
    assert "<|endoftext|>" not in result.text


def test_return_cache_covers_the_final_sequence(lm):
    result = lm.generate(PROMPT, max_new_tokens=5, stop_at_eos=False, return_cache=True,
                         names_filter=lambda name: name.endswith("hook_resid_post"))
    assert result.cache["blocks.1.hook_resid_post"].shape == (1, result.input_ids.shape[1], 32)
    _, again = lm.run_with_cache({"input_ids": result.input_ids, "attention_mask": result.attention_mask},
                                 names_filter="blocks.1.hook_resid_post")
    torch.testing.assert_close(result.cache["blocks.1.hook_resid_post"], again["blocks.1.hook_resid_post"])


def test_too_many_new_tokens_is_a_clear_error(lm):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        lm.generate(PROMPT, max_new_tokens=100)


def test_logit_lens_last_layer_is_the_models_output(lm):
    lens = lm.logit_lens(PROMPT)
    with torch.no_grad():
        logits = lm(**lm.tokenize(PROMPT)).logits[0]
    assert lens.logits().shape == (3, logits.shape[0], lm.config.vocab_size)
    torch.testing.assert_close(lens.logits()[-1], logits, atol=1e-5, rtol=0)
    top = lens.top_k(k=3, pos=-1)
    assert list(top.columns) == ["layer", "pos", "input_token", "rank", "token", "token_id", "probability"]
    assert len(top) == 3 * 3 and list(top["layer"].unique()) == ["embed", "0", "1"]
    best = int(logits[-1].argmax())
    target = lens.target(best)
    assert target["rank"].iloc[-1] == 1
    assert top[(top["layer"] == "1") & (top["rank"] == 1)]["token_id"].item() == best
    assert lens.figure().data[0].z.shape == (3, logits.shape[0])


def test_logit_lens_reads_a_given_cache_and_names_errors(lm):
    _, cache = lm.run_with_cache(PROMPT)
    torch.testing.assert_close(lm.logit_lens(cache).logits(), lm.logit_lens(PROMPT).logits())
    with pytest.raises(ValueError, match="not one token"):
        lm.logit_lens(cache).target("The capital of France")
    bare = wb.AutoModel.from_pretrained(lm.config.name_or_path)
    with pytest.raises(TypeError, match="unembedding"):
        bare.logit_lens(PROMPT)


def test_logit_lens_works_through_bert_mlm_heads(tmp_path):
    from tiny_hf import save_tiny_hf

    hf_model = save_tiny_hf(tmp_path, "bert", "masked_lm")
    mlm = wb.AutoModelForMaskedLM.from_pretrained(tmp_path)
    ids = torch.randint(1, 99, (1, 6), generator=torch.Generator().manual_seed(0))
    lens = mlm.logit_lens(ids)
    with torch.no_grad():
        expected = hf_model(ids).logits[0]
    torch.testing.assert_close(lens.logits()[-1], expected, atol=1e-4, rtol=0)


def test_cache_tokens_are_readable_for_byte_level_bpe(lm):
    _, cache = lm.run_with_cache("The cat sat")
    assert cache.tokens == lm.to_str_tokens("The cat sat")
    assert "".join(cache.tokens) == "The cat sat"
    assert not any("Ġ" in token for token in cache.tokens)



def test_generation_stops_at_any_of_several_end_tokens():
    # Llama 3's config lists several eos ids (end of text, end of turn): any of them ends the sequence.
    model = wb.zoo.tiny("llama", device="cpu")
    with torch.no_grad():  # sharpen the random weights so that the greedy tokens vary
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    free = model.generate("The cat", max_new_tokens=6, stop_at_eos=False).steps["token_id"].tolist()
    assert len(free) == 6
    stop = free[2]
    first = free.index(stop)  # greedy may have chosen that token earlier too
    other = next(i for i in range(model.config.vocab_size) if i not in free)
    for eos in ([other, stop], (stop,), stop):
        model.config.eos_token_id = eos
        steps = model.generate("The cat", max_new_tokens=6).steps["token_id"].tolist()
        assert steps == free[: first + 1], eos
    model.config.eos_token_id = [other]
    assert model.generate("The cat", max_new_tokens=6).steps["token_id"].tolist() == free


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_the_prompt_step_unembeds_the_last_position_only_unless_hook_logits_is_watched(model_type):
    """With the cache, the first step (over the prompt) computes the last position's logits only, as Hugging
    Face's generate does: equal to the full forward's there, the same cache; a hook on hook_logits still sees
    every position."""
    from tiny_hf import tiny_model

    from workbench.generation import _plain_causal_lm_head, next_logits_with_cache

    model = tiny_model(model_type, "causal_lm", perturb=0.1).eval()
    assert _plain_causal_lm_head(model)
    ids, mask = torch.tensor([[5, 9, 3, 7], [0, 4, 8, 2]]), torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, use_cache=True)
        logits, cache = next_logits_with_cache(model, ids, mask, None)
        torch.testing.assert_close(logits, full.logits[:, -1], rtol=0, atol=1e-6)
        assert logits.shape == (2, model.config.vocab_size)
        seen = []
        with model.hooks([("hook_logits", lambda x, hook: seen.append(tuple(x.shape)))]):
            hooked, _ = next_logits_with_cache(model, ids, mask, None)
    assert seen == [(2, 4, model.config.vocab_size)] and torch.equal(hooked, full.logits[:, -1])
    step = torch.tensor([[1], [2]])
    with torch.no_grad():
        ours, _ = next_logits_with_cache(model, step, torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], 1), cache)
        theirs = model(input_ids=step, attention_mask=torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], 1),
                       past_key_values=full.past_key_values, use_cache=True).logits[:, -1]
    assert torch.equal(ours, theirs)  # the cache the short path returned is the full forward's
