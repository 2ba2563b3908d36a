"""The decoding layout (workbench.components.projections): projections laid side by side and input-major give
the separate products' results; hooks on q/k/v (and a gated MLP's branches) still see and replace their own
tensors; a weight changed in place is read by the joint product, a replaced one breaks the group (separate
products with the new weights) until it is laid out again; parameters, state_dict, saving and gradients are
unchanged; the chunked unembedding equals F.linear; generation lays the model out and matches Hugging Face."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tiny_hf import tiny_model

import workbench as wb
from workbench.components import Attention, GatedMLP
from workbench.components.projections import chunked_linear, joint_weight, lay_out_for_decoding

ATTENTIONS = {
    "mha-bias": dict(),
    "gqa-no-bias": dict(n_kv_heads=2, bias=False),
    "qk-norm-all-heads": dict(
        n_kv_heads=2, qk_norm=lambda width: wb.components.RMSNorm(width, 1e-6), qk_norm_per_head=False
    ),
}


def laid_out(module: torch.nn.Module) -> torch.nn.Module:
    twin = copy.deepcopy(module)
    assert lay_out_for_decoding(twin) > 0
    return twin


@pytest.mark.parametrize("options", list(ATTENTIONS.values()), ids=list(ATTENTIONS))
def test_joint_qkv_equals_separate_products_and_keeps_the_parameters(options):
    torch.manual_seed(0)
    attn = Attention(32, 4, 0.0, **options).eval()
    joint = laid_out(attn)
    group = [joint.q, joint.k, joint.v]
    assert joint_weight(group) is not None and joint_weight([attn.q, attn.k, attn.v]) is None
    assert lay_out_for_decoding(joint) == 0  # laid out already: nothing to do
    before, after = attn.state_dict(), joint.state_dict()
    assert list(before) == list(after)
    assert all(
        torch.equal(before[name], after[name]) and before[name].shape == after[name].shape for name in before
    )
    assert sum(p.numel() for p in joint.parameters()) == sum(p.numel() for p in attn.parameters())
    assert joint.o.weight.t().is_contiguous()  # the output projection alone, input-major
    x = torch.randn(2, 5, 32)
    calls = []
    joint.q.register_forward_pre_hook(lambda *_: calls.append("q"))  # a torch hook on q: the separate path
    with torch.no_grad():
        torch.testing.assert_close(joint(x)[0], attn(x)[0], rtol=0, atol=1e-5)
    assert calls == ["q"]
    joint.q._forward_pre_hooks.clear()
    with torch.no_grad():
        torch.testing.assert_close(joint(x)[0], attn(x)[0], rtol=0, atol=1e-5)
    assert calls == ["q"]  # the joint product did not call q


def test_the_joint_product_is_one_matrix_product():
    torch.manual_seed(0)
    attn = laid_out(Attention(32, 4, 0.0, n_kv_heads=2).eval())
    with torch.no_grad(), torch.profiler.profile() as profile:
        attn(torch.randn(1, 3, 32))
    products = [e.name for e in profile.events() if e.name in ("aten::addmm", "aten::mm")]
    assert len(products) == 2  # q, k and v in one product, then the output projection


def test_hooks_on_q_k_v_see_and_replace_their_own_tensors():
    torch.manual_seed(0)
    attn = Attention(32, 4, 0.0, n_kv_heads=2).eval()
    joint = laid_out(attn)
    x = torch.randn(2, 5, 32)
    seen = {}

    def hooks(model):
        def read(name):
            return lambda act, hook: seen.setdefault((id(model), name), act.clone())

        def double_v(act, hook):
            return act * 2

        return [(model.hook_q, read("q")), (model.hook_k, read("k")), (model.hook_v, double_v)]

    outputs = []
    for model in (attn, joint):
        handles = [point.add_hook(fn) for point, fn in hooks(model)]
        with torch.no_grad():
            outputs.append(model(x)[0])
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-5)
    for name in ("q", "k"):
        torch.testing.assert_close(seen[(id(joint), name)], seen[(id(attn), name)], rtol=0, atol=1e-5)
    assert seen[(id(joint), "q")].shape == (2, 5, 4, 8) and seen[(id(joint), "k")].shape == (2, 5, 2, 8)
    with torch.no_grad():
        assert not torch.allclose(
            joint(x)[0], outputs[1]
        )  # the replacement (v doubled) came off with its hook


def test_a_changed_weight_is_read_and_a_replaced_one_breaks_the_group():
    torch.manual_seed(0)
    attn = Attention(32, 4, 0.0).eval()
    joint = laid_out(attn)
    x = torch.randn(1, 4, 32)
    new = {name: torch.randn_like(value) for name, value in attn.state_dict().items()}
    attn.load_state_dict(new)
    joint.load_state_dict(new)  # copied in place: the group stays and the joint product reads the new values
    assert joint_weight([joint.q, joint.k, joint.v]) is not None
    with torch.no_grad():
        torch.testing.assert_close(joint(x)[0], attn(x)[0], rtol=0, atol=1e-5)
        attn.k.weight.mul_(3)
        joint.k.weight.mul_(3)  # an in-place edit (an intervention, weight processing)
        torch.testing.assert_close(joint(x)[0], attn(x)[0], rtol=0, atol=1e-5)
        replacement = torch.randn(32, 32)
        attn.v.weight.data = replacement.clone()
        joint.v.weight.data = replacement.clone()  # a new tensor: v is no longer beside q and k
        assert joint_weight([joint.q, joint.k, joint.v]) is None
        torch.testing.assert_close(joint(x)[0], attn(x)[0], rtol=0, atol=1e-5)
        assert lay_out_for_decoding(joint) == 1  # q, k and v side by side again (o stayed laid out)
        assert joint_weight([joint.q, joint.k, joint.v]) is not None
        torch.testing.assert_close(joint(x)[0], attn(x)[0], rtol=0, atol=1e-5)
        joint.q.weight = torch.nn.Parameter(torch.randn(32, 32))  # a new Parameter object
        attn.q.weight = torch.nn.Parameter(joint.q.weight.detach().clone())
        torch.testing.assert_close(joint(x)[0], attn(x)[0], rtol=0, atol=1e-5)


def test_gradients_flow_to_each_weight_as_without_the_layout():
    torch.manual_seed(0)
    attn = Attention(32, 4, 0.0, n_kv_heads=2)
    joint = laid_out(attn)
    x = torch.randn(2, 3, 32)
    attn(x)[0].square().sum().backward()
    joint(x)[0].square().sum().backward()
    for (name, a), (_, b) in zip(attn.named_parameters(), joint.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5, msg=name)


def test_gated_mlp_joint_gate_and_linear_branch():
    torch.manual_seed(0)
    mlp = GatedMLP(32, 48, "silu").eval()
    joint = laid_out(mlp)
    assert joint_weight([joint.fc_gate, joint.fc_in]) is not None
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(joint(x), mlp(x), rtol=0, atol=1e-5)
        seen = []
        handle = joint.hook_pre_linear.add_hook(lambda act, hook: seen.append(act.is_contiguous()) or -act)
        other = mlp.hook_pre_linear.add_hook(lambda act, hook: -act)
        torch.testing.assert_close(joint(x), mlp(x), rtol=0, atol=1e-5)
        handle.remove(), other.remove()
    assert seen == [True]  # hooked: the separate products, each hook sees its own tensor


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("out", [1000, 8192, 9000])  # blocks of 4096 rows: none, two, two and a rest
def test_chunked_linear_equals_f_linear(rows, bias, out):
    torch.manual_seed(0)
    weight, x = torch.randn(out, 64), torch.randn(rows, 64)
    b = torch.randn(out) if bias else None
    torch.testing.assert_close(chunked_linear(x, weight, b), F.linear(x, weight, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("out", [1000, 9000])
def test_chunked_linear_traced_by_torch_compile_equals_f_linear(out):
    # Under torch.compile (no out= there) the blocks' results are joined; the same values, one graph.
    torch.manual_seed(0)
    weight, bias, x = torch.randn(out, 64), torch.randn(out), torch.randn(8, 64)
    traced = torch.compile(chunked_linear, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(traced(x, weight, bias), F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


def test_a_few_rows_of_the_unembedding_run_in_blocks_without_a_gradient_only():
    # lm_logits of a decoding step's rows (4-16) runs in blocks (same values); with a gradient to record, or
    # more rows, the plain product (gradients reach the unembedding).
    from workbench.components import projections

    model = tiny_model("gpt2", "causal_lm", vocab_size=9000).eval()
    calls = []
    original = projections.chunked_linear
    projections.chunked_linear = lambda *a: calls.append(a[0].shape) or original(*a)
    try:
        hidden = torch.randn(2, 4, model.config.d_model)
        with torch.no_grad():
            blocked = model.lm_logits(hidden)
        assert calls == [(8, model.config.d_model)]
        plain = model.lm_logits(hidden)
        model.lm_logits(torch.randn(17, model.config.d_model))
        assert len(calls) == 1
    finally:
        projections.chunked_linear = original
    torch.testing.assert_close(blocked, plain.detach(), rtol=1e-5, atol=1e-5)
    plain.sum().backward()
    assert model.unembed.weight.grad is not None


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_generation_lays_the_model_out_and_keeps_its_results(model_type, tmp_path):
    model = tiny_model(model_type, "causal_lm", perturb=0.3).eval()
    reference = copy.deepcopy(model)
    ids = torch.tensor([[5, 9, 3, 7, 2, 8]])
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
    lay_out_for_decoding(model)
    attn = model.blocks[0].attn
    assert joint_weight([attn.q, attn.k, attn.v]) is not None
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, expected, rtol=0, atol=1e-5)
    path = model.save_pretrained(tmp_path / "saved")  # contiguous copies go to safetensors
    reloaded = wb.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=0, atol=1e-5)


def test_generate_matches_the_unlaid_model_greedy_tokens(monkeypatch):
    model = wb.zoo.tiny("llama", device="cpu")
    with torch.no_grad():  # sharpen the random weights so that the greedy tokens vary
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    prompts = ["The cat", "A dog ran"]
    with monkeypatch.context() as patch:  # the reference: the layout as loaded, separate products
        patch.setattr(wb.generation, "lay_out_for_decoding", lambda model: 0)
        expected = model.generate(prompts, max_new_tokens=5, stop_at_eos=False)
    attn = model.blocks[0].attn
    assert joint_weight([attn.q, attn.k, attn.v]) is None
    result = model.generate(prompts, max_new_tokens=5, stop_at_eos=False)
    assert joint_weight([attn.q, attn.k, attn.v]) is not None
    assert result.new_token_ids == expected.new_token_ids
