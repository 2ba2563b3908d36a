"""model.compile(): compiled calls give the eager results (<= 1e-5, float32) for every architecture with a
causal language-model class (each a tiny random model): the plain forward unpadded and on a left-padded batch,
with and without hooks (with hooks the call runs eagerly, after one warning), and the calls that decoding
makes: a (left-padded) prompt and a one-token step on its growing cache (Transformer-XL: its memory, past_key_values being
an alias of mems) and two on a static key/value cache (one graph for both, as generate decodes on a compiled
model), XLNet's next-token prediction and segment recurrence (mems). Compiled decoding generates the eager
tokens. Steps on a reserved growing cache take the explicit attention path too (Gemma 2).

Llama's forward and GPT-2's generation compile with inductor (the default: dynamo's graph capture, AOT
autograd, generated C++); the other families' forwards, and every family's decoding calls, with
``backend="aot_eager"``: the same
graph capture, where a wrong compiled result would come from, without building C++ (seconds a graph). Every
compiled call is checked to have run a compiled graph: dynamo's fallbacks to eager are silent and would compare
eager with eager. The tests skip without a C compiler (inductor's C++)."""

from __future__ import annotations

import inspect
import logging
import pickle
import shutil
from collections.abc import Callable

import pytest
import torch
from tiny_gpt2 import save_tiny_gpt2
from tiny_hf import architectures_with, has_field, tiny_model
from torch._dynamo.backends.registry import lookup_backend

import workbench as wb
from workbench.components.kv_cache import KVCache
from workbench.registry import REGISTRY

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile's inductor backend needs a C compiler (cc/gcc), and none is on PATH",
)

DECODERS = architectures_with("causal_lm")
INDUCTOR = (
    "llama",
)  # the rest compile with aot_eager (see the module docstring; GPT-2 generates with inductor)


def body_inputs(model_type: str) -> list[str]:
    """The inputs of ``model_type``'s base model (what its heads' ``forward`` takes as ``**inputs``)."""
    return list(inspect.signature(REGISTRY[model_type].model_class("base").forward).parameters)


# Decoding reuses past_key_values (Transformer-XL's are its mems); XLNet has mems only, and predicts the next
# token with its query stream over the whole sequence (next_token_logits).
CACHED = [t for t in DECODERS if "past_key_values" in body_inputs(t)]
MEMS_ONLY = [t for t in DECODERS if "mems" in body_inputs(t) and t not in CACHED]
STEER = ("blocks.0.hook_resid_post", lambda x, hook: x + 1.0)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test starts from nothing and counts its own graphs (dynamo's compiled code outlives the models)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def tiny_decoder(model_type: str):
    """The tiny causal LM, its parameters moved off their initial values (so a mix-up of tensors shows).

    Sliding windows, where the architecture has them, cover 3 positions, so they mask within the 7 to 9
    positions of these tests (the default, 4096, would mask nothing; Qwen2-style configs slide from layer 0).
    Compile time grows with the layers (a loop traces the same code once per layer): one layer, but two for
    GPT-2 and Llama, so that a second layer's cache is checked too."""
    fields = {}
    if has_field(model_type, "sliding_window"):
        fields["sliding_window"] = 3
    if has_field(model_type, "use_sliding_window"):
        fields.update(use_sliding_window=True, max_window_layers=0)
    n_layers = 2 if model_type in ("gpt2", "llama") else 1
    return tiny_model(model_type, "causal_lm", perturb=0.1, n_layers=n_layers, **fields).eval()


def padded_batch(model) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [2, 7], attention_mask [2, 7]: the second row left-padded by 3). The ids avoid the lowest
    ones, special tokens in the tiny vocabularies (XLM takes its pad id as padding when no mask is given)."""
    ids = torch.randint(3, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    return ids, mask


class CountingBackend:
    """A ``torch.compile`` backend (``inductor``, ``aot_eager``...) that counts the graphs dynamo hands it and the
    calls that run them: a call that ran no compiled graph ran eagerly (dynamo's fallbacks are silent)."""

    def __init__(self, backend: str) -> None:
        self.backend = lookup_backend(backend)
        self.graphs = 0
        self.runs = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> Callable:
        self.graphs += 1
        compiled = self.backend(graph, example_inputs)

        def run(*args):
            self.runs += 1
            return compiled(*args)

        return run

    def compiled_call(self, model) -> Callable:
        """``model(**inputs)``, checked to have run a compiled graph; each call appends to ``self.compiled`` how
        many graphs it compiled (0: it ran graphs compiled before)."""
        self.compiled: list[int] = []

        def call(**inputs):
            graphs, runs = self.graphs, self.runs
            out = model(**inputs)
            assert self.runs > runs, f"{type(model).__name__}({', '.join(inputs)}) ran no compiled graph"
            self.compiled.append(self.graphs - graphs)
            return out

        return call


def compile_counted(model, backend: str) -> CountingBackend:
    """``model.compile(backend=...)`` through a :class:`CountingBackend`; returns it."""
    counter = CountingBackend(backend)
    model.compile(backend=counter)
    return counter


@pytest.mark.parametrize("model_type", DECODERS)
def test_compiled_forward_equals_eager_with_and_without_hooks(model_type, caplog):
    model = tiny_decoder(model_type)
    ids, mask = padded_batch(model)
    real = mask.bool()  # padded positions are compared nowhere: nobody reads them
    with torch.no_grad():
        eager = model(input_ids=ids).logits
        eager_padded = model(input_ids=ids, attention_mask=mask).logits if model_type not in CACHED else None
        eager_hooked = model.run_with_hooks(ids, fwd_hooks=[STEER]).logits
        counter = compile_counted(model, "inductor" if model_type in INDUCTOR else "aot_eager")
        try:
            call = counter.compiled_call(model)
            compiled = call(input_ids=ids).logits
            # (a decoder with a cache runs the padded batch as its prompt in the decoding test below)
            padded = call(input_ids=ids, attention_mask=mask).logits if model_type not in CACHED else None
            graphs, runs = counter.graphs, counter.runs
            with caplog.at_level(logging.WARNING, logger="workbench.model"):
                hooked = model.run_with_hooks(ids, fwd_hooks=[STEER]).logits
                model.run_with_hooks(ids, fwd_hooks=[STEER])
            again = model(input_ids=ids).logits
        finally:
            model.compile(enabled=False)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    if padded is not None:
        torch.testing.assert_close(padded[real], eager_padded[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, eager, atol=1e-5, rtol=1e-5)
    # The hooked calls ran eagerly; the last call ran its graph again, without compiling.
    assert counter.graphs == graphs and counter.runs > runs
    torch.testing.assert_close(hooked, eager_hooked, atol=0, rtol=0)  # the eager call, hooks and all
    notices = [r for r in caplog.records if "hooks are attached" in r.getMessage()]
    assert len(notices) == 1  # once, not per call


def test_compiled_decoding_generates_the_eager_tokens_with_one_graph_for_every_step(tmp_path):
    # The prompt runs eagerly; every later step runs through the compiled call on a static key/value cache,
    # one graph for all of them (same shapes each step), and a second generation of the same shape reuses the
    # graph and the cache's buffers. Counted frames are dynamo's compiled graphs (inductor underneath): a
    # graph break would count too.
    from torch._dynamo.testing import CompileCounterWithBackend

    save_tiny_gpt2(tmp_path)
    model = wb.load(tmp_path, device="cpu")
    prompts = ["The cat sat on", "Hello"]
    eager = model.generate(prompts, max_new_tokens=5, stop_at_eos=False)
    counter = CompileCounterWithBackend("inductor")
    model.compile(backend=counter)
    try:
        compiled = model.generate(prompts, max_new_tokens=5, stop_at_eos=False)
        graphs = counter.frame_count
        buffers = next(iter(model._decoding_buffers.values()))[1][0][0]
        again = model.generate(prompts, max_new_tokens=5, stop_at_eos=False)
        assert next(iter(model._decoding_buffers.values()))[1][0][0] is buffers
    finally:
        model.compile(enabled=False)
    assert graphs == 1 and counter.frame_count == 1  # the step's, not one per step
    assert "_decoding_buffers" not in model.__dict__  # dropped with the compiled call
    assert compiled.new_token_ids == eager.new_token_ids == again.new_token_ids
    for result in (compiled, again):
        torch.testing.assert_close(
            torch.tensor(result.steps["probability"]),
            torch.tensor(eager.steps["probability"]),
            atol=1e-5,
            rtol=0,
        )


def test_decoding_with_hooks_on_a_compiled_model_is_eager_on_a_growing_cache(tmp_path):
    # A hook makes every call eager (one warning), so generation keeps the growing cache: hooks see the
    # attention over the filled positions only, as without compiling.
    from torch._dynamo.testing import CompileCounter

    save_tiny_gpt2(tmp_path)
    model = wb.load(tmp_path, device="cpu")
    widths = []
    hooks = [("blocks.0.attn.hook_pattern", lambda x, hook: widths.append(x.shape[-1]))]
    eager = model.generate("The cat", max_new_tokens=3, stop_at_eos=False, fwd_hooks=hooks)
    counter = CompileCounter()
    model.compile(backend=counter)
    try:
        compiled = model.generate("The cat", max_new_tokens=3, stop_at_eos=False, fwd_hooks=hooks)
    finally:
        model.compile(enabled=False)
    assert counter.frame_count == 0
    assert compiled.new_token_ids == eager.new_token_ids
    assert widths[:3] == widths[3:] == [2, 3, 4]


def cache_tensors(cache) -> list[torch.Tensor]:
    """What a decoding cache holds: a :class:`KVCache`'s keys and values per layer, or memory tensors."""
    return [*cache.keys, *cache.values] if isinstance(cache, KVCache) else list(cache)


def cached_decoding(
    call, ids: torch.Tensor, mask: torch.Tensor, steps: int = 1, static_steps: int = 2
) -> dict:
    """What decoding computes through ``call`` (``model`` or its compiled call), by name: the logits of a
    prompt call with ``use_cache=True`` (real positions) and of ``steps`` one-token calls on its cache, each
    feeding the previous call's greedy token; the cache's tensors after each call and whether each step
    returned the cache it was given. With a :class:`KVCache`, also ``static_steps`` steps on a static cache
    after the same prompt (``reserve(capacity, static=True)``, the mask of every slot,
    :meth:`KVCache.advance`), as ``model.generate`` decodes on a compiled model."""
    out = call(input_ids=ids, attention_mask=mask, use_cache=True)
    got = {"logits": [out.logits[mask.bool()]], "cache": [cache_tensors(out.past_key_values)], "same": []}
    grown = mask
    for _ in range(steps):
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        grown = torch.cat([grown, torch.ones_like(token)], dim=1)
        cache = out.past_key_values
        out = call(input_ids=token, attention_mask=grown, past_key_values=cache, use_cache=True)
        got["logits"].append(out.logits)
        got["cache"].append(cache_tensors(out.past_key_values))
        got["same"].append(out.past_key_values is cache)
    if isinstance(cache, KVCache):
        prompt = ids.shape[1]
        out = call(input_ids=ids, attention_mask=mask, use_cache=True)
        cache = out.past_key_values
        cache.reserve(prompt + static_steps, static=True)
        slots = torch.cat([mask, mask.new_zeros(mask.shape[0], static_steps)], dim=1)  # 1: a slot is filled
        got["static logits"] = []
        for step in range(static_steps):
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            slots[:, prompt + step] = 1
            out = call(input_ids=token, attention_mask=slots, past_key_values=cache, use_cache=True)
            cache.advance()
            got["static logits"].append(out.logits)
        got["static cache"] = cache_tensors(cache)
    return got


@pytest.mark.parametrize("model_type", CACHED)
def test_compiled_cached_decoding_equals_eager(model_type):
    # A graph for the prompt, one for a step on a growing cache; the cache behaves as in eager calls (a
    # KVCache grows in place). Then the static cache: the prompt's graph again, and one graph for every step.
    # (The padded prompt is the padded forward of test_compiled_forward_equals_eager_with_and_without_hooks.)
    model = tiny_decoder(model_type)
    ids, mask = padded_batch(model)
    with torch.no_grad():
        eager = cached_decoding(model, ids, mask)
        counter = compile_counted(model, "aot_eager")
        try:
            compiled = cached_decoding(counter.compiled_call(model), ids, mask)
        finally:
            model.compile(enabled=False)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)  # a failure names the item
    if "static logits" in eager:
        assert counter.compiled[2:] == [0, 1, 0]  # the prompt's graph, then one graph for both static steps


@pytest.mark.parametrize("model_type", MEMS_ONLY)
def test_compiled_next_token_and_segment_memory_equal_eager(model_type):
    # XLNet decodes by next_token_logits (the query stream predicts a hidden last position, through model(...)),
    # over the whole padded sequence each step; its memory (mems) carries one segment into the next.
    model = tiny_decoder(model_type)
    ids, mask = padded_batch(model)

    def run(call):
        first = call(input_ids=ids, use_mems=True)
        second = call(input_ids=ids.flip(1), mems=first.mems, use_mems=True)
        return [first.logits, second.logits, *first.mems, *second.mems]

    with torch.no_grad():
        eager, eager_next = run(model), model.next_token_logits(ids, mask)
        counter = compile_counted(model, "aot_eager")
        try:
            compiled = run(counter.compiled_call(model))
            runs = counter.runs
            next_token = model.next_token_logits(ids, mask)
            assert counter.runs > runs  # next_token_logits ran the compiled call
        finally:
            model.compile(enabled=False)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(next_token, eager_next, atol=1e-5, rtol=1e-5)


def test_compiled_decoding_computes_q_k_v_in_one_product_while_they_are_laid_side_by_side(tmp_path):
    # generate lays q, k and v side by side; the compiled step then multiplies by the one matrix (4 linear
    # products a layer: q/k/v, o, fc_in, fc_out). A weight replaced later is laid out again by the next
    # generate (the same graph reads the new matrix); replaced between two compiled calls, it breaks the
    # group: the call recompiles with separate products and the new weight, never reading the old memory.
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    def linear_products(graph_module) -> int:
        return sum(node.target is torch._C._nn.linear for node in graph_module.graph.nodes)

    save_tiny_gpt2(tmp_path)
    model, reference = wb.load(tmp_path, device="cpu"), wb.load(tmp_path, device="cpu")  # reference: eager
    n_layers, attn, reference_k = model.config.n_layers, model.blocks[0].attn, reference.blocks[0].attn.k

    def replace_k(value):  # a new tensor for blocks.0.attn.k.weight: its group is broken
        with torch.no_grad():
            attn.k.weight.data = value.clone()
            reference_k.weight.data = value.clone()

    model.compile(backend=recording_backend)
    try:
        model.generate("The cat", max_new_tokens=3, stop_at_eos=False)
        assert len(graphs) == 1 and linear_products(graphs[0]) == 4 * n_layers + 1  # + the unembedding
        replace_k(attn.k.weight + 0.5)
        relaid = model.generate("The cat", max_new_tokens=3, stop_at_eos=False)
        assert len(graphs) == 1

        # Two steps on a static cache through the compiled call, the group broken between them; the
        # reference takes the same steps eagerly on a growing cache.
        ids, slots = torch.tensor([[5, 6, 7]]), torch.tensor([[1, 1, 1, 1, 0]])
        with torch.no_grad():
            cache = model.run_body(ids, None, False, False, {"use_cache": True}).past_key_values
            reference_cache = reference(input_ids=ids, use_cache=True).past_key_values
            cache.reserve(5, static=True)
            model(input_ids=torch.tensor([[8]]), attention_mask=slots, past_key_values=cache)
            reference(input_ids=torch.tensor([[8]]), past_key_values=reference_cache)
            assert len(graphs) == 2 and linear_products(graphs[1]) == 4 * n_layers + 1
            cache.advance()
            replace_k(attn.k.weight - 0.25)
            got = model(
                input_ids=torch.tensor([[9]]), attention_mask=slots.fill_(1), past_key_values=cache
            ).logits
            assert (
                len(graphs) == 3 and linear_products(graphs[2]) == 4 * n_layers + 1 + 2
            )  # layer 0: 3 products
            expected = reference(input_ids=torch.tensor([[9]]), past_key_values=reference_cache).logits
    finally:
        model.compile(enabled=False)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    replace_k(attn.k.weight + 0.25)  # back to the weights of the second generation
    again = reference.generate("The cat", max_new_tokens=3, stop_at_eos=False)
    assert relaid.new_token_ids == again.new_token_ids
    torch.testing.assert_close(
        torch.tensor(relaid.steps["probability"]), torch.tensor(again.steps["probability"]), atol=1e-5, rtol=0
    )


def test_compiled_steps_on_a_reserved_growing_cache_with_explicit_attention():
    model = tiny_decoder("gemma2")
    ids, mask = padded_batch(model)

    def steps(call):
        cache = model(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        cache.reserve(ids.shape[1] + 2)  # later steps write in place (not static: the cache grows)
        grown, logits = mask, []
        for _ in range(2):
            grown = torch.cat([grown, torch.ones_like(mask[:, :1])], dim=1)
            logits.append(call(input_ids=ids[:, :1], attention_mask=grown, past_key_values=cache).logits)
        return logits

    with torch.no_grad():
        eager = steps(model)
        counter = compile_counted(model, "aot_eager")
        try:
            compiled = steps(counter.compiled_call(model))
        finally:
            model.compile(enabled=False)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)


def test_two_threads_decoding_on_one_compiled_model_keep_their_own_caches(tmp_path):
    # The static cache's buffers are kept per thread: two generations of the same shape at once never write
    # into each other's keys and values.
    import threading

    save_tiny_gpt2(tmp_path)
    model = wb.load(tmp_path, device="cpu")
    prompts = {0: ["The cat sat on", "Hello"], 1: ["A dog ran to", "Bye now"]}
    expected = {i: model.generate(p, max_new_tokens=6, stop_at_eos=False) for i, p in prompts.items()}
    model.compile(backend="eager")
    results, start = {}, threading.Barrier(2)

    def run(i):
        start.wait()
        for _ in range(3):
            results.setdefault(i, []).append(model.generate(prompts[i], max_new_tokens=6, stop_at_eos=False))

    try:
        model.generate(prompts[0], max_new_tokens=6, stop_at_eos=False)  # compiled here first
        threads = [threading.Thread(target=run, args=(i,)) for i in prompts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(model._decoding_buffers) == 3  # this thread's and each worker's
    finally:
        model.compile(enabled=False)
    for i, runs in results.items():
        for result in runs:
            assert result.new_token_ids == expected[i].new_token_ids
            torch.testing.assert_close(
                torch.tensor(result.steps["probability"]),
                torch.tensor(expected[i].steps["probability"]),
                atol=1e-5,
                rtol=0,
            )


def test_every_compiled_model_keeps_its_own_compiled_code():
    # Dynamo keeps up to recompile_limit (8) versions of compiled code per function: were every model's call
    # the same function, the ninth compiled model would silently run eagerly. Compiling the same model
    # again reuses its graph.
    from torch._dynamo.testing import CompileCounter

    ids = torch.randint(3, 60, (2, 5), generator=torch.Generator().manual_seed(0))
    counts = []
    with torch.no_grad():
        for seed in range(torch._dynamo.config.recompile_limit + 2):
            model = tiny_model("gpt2", "causal_lm", seed=seed, n_layers=1).eval()
            counter = CompileCounter()
            model.compile(backend=counter)
            model(input_ids=ids)
            counts.append(counter.frame_count)
        model.compile(enabled=False)
        model.compile(backend=counter)
        model(input_ids=ids)
    assert counts == [1] * len(counts)
    assert counter.frame_count == 1  # compiled again: the same graph
    model.compile(enabled=False)
    assert pickle.loads(pickle.dumps(model)).config == model.config  # no compiled code left in the model
