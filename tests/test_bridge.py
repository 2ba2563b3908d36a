"""The bridge (workbench.bridge): the canonical hook points on Hugging Face models, the core on OPT and GPT-2,
the cross-check against native models, the unknown-model path, wb.load through it, and import hygiene."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bridge_check import assert_close, check_family, random_perturbed

import workbench as wb

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
IDS = torch.tensor([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])


def tiny_opt(**overrides):
    config = transformers.OPTConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, ffn_dim=48, num_attention_heads=4,
        max_position_embeddings=64, word_embed_proj_dim=32, attn_implementation="eager", **overrides,
    )
    torch.manual_seed(0)
    return random_perturbed(transformers.OPTForCausalLM(config))


def tiny_gpt2():
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     attn_implementation="eager", bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    return random_perturbed(transformers.GPT2LMHeadModel(config))


@pytest.mark.parametrize("layer_norm_before", [True, False], ids=["pre_norm", "post_norm_350m"])
def test_opt_passes_the_family_checks(layer_norm_before):
    hf = tiny_opt(do_layer_norm_before=layer_norm_before)
    model = check_family(hf, {"input_ids": IDS, "attention_mask": MASK})
    names = model.hook_names
    assert "blocks.1.attn.hook_pattern" in names and "hf.model.decoder.layers.1.fc1" in names
    _, cache = model.run_with_cache(IDS, names_filter=lambda n: n.startswith("blocks.0."))
    assert cache["blocks.0.mlp.hook_pre"].shape == (2, 7, 48)  # OPT's [batch * pos, d_mlp] viewed per position
    assert cache["blocks.0.attn.hook_q"].shape == (2, 7, 4, 8)
    if layer_norm_before:  # pre-norm: the residual arithmetic holds exactly
        assert_close(cache["blocks.0.hook_resid_mid"],
                     cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"], "resid_mid")
        assert_close(cache["blocks.0.hook_resid_post"],
                     cache["blocks.0.hook_resid_mid"] + cache["blocks.0.hook_mlp_out"], "resid_post")
    else:  # post-norm: resid_mid is the attention LayerNorm's output
        assert_close(cache["blocks.0.hook_resid_mid"], cache["blocks.0.ln1.hook_normalized"], "resid_mid")


def test_module_path_hooks_are_the_same_place_as_canonical_ones():
    model = wb.from_hf(tiny_opt())
    zero = lambda x, hook: torch.zeros_like(x)  # noqa: E731
    by_path = model.run_with_hooks(IDS, fwd_hooks=[("hf.model.decoder.layers.1.fc1", zero)]).logits
    by_name = model.run_with_hooks(IDS, fwd_hooks=[("blocks.1.mlp.hook_pre", zero)]).logits
    assert torch.equal(by_path, by_name)
    _, cache = model.run_with_cache(IDS, names_filter=["hf.model.decoder.layers.0.fc2.hook_in",
                                                       "blocks.0.mlp.hook_post"])
    assert torch.equal(cache["hf.model.decoder.layers.0.fc2.hook_in"].reshape(2, 7, -1), cache["blocks.0.mlp.hook_post"])


def test_pattern_edit_is_applied_to_the_values():
    """Setting a head's pattern to uniform over the first two keys makes its z the mean of their values."""
    model = wb.from_hf(tiny_opt())

    def first_two(pattern, hook):
        pattern = torch.zeros_like(pattern)
        pattern[..., :2] = 0.5
        return pattern

    _, cache = model.run_with_cache(IDS[:1], fwd_hooks=[("blocks.0.attn.hook_pattern", first_two)],
                                    names_filter=["blocks.0.attn.hook_v", "blocks.0.attn.hook_z"])
    v, z = cache["blocks.0.attn.hook_v"], cache["blocks.0.attn.hook_z"]
    assert_close(z[0, 4], v[0, :2].mean(0), "z of the edited pattern")


def test_gpt2_bridge_equals_the_native_model(tmp_path):
    """For a native family, wb.from_hf(hf_model) and the native model give equal caches."""
    hf = tiny_gpt2()
    hf.save_pretrained(tmp_path)
    native = wb.AutoModelForCausalLM.from_pretrained(tmp_path)
    bridged = check_family(hf, {"input_ids": IDS, "attention_mask": MASK}, resid_pre_matches_hidden=True)
    _, ours = native.run_with_cache(IDS)
    _, theirs = bridged.run_with_cache(IDS)
    shared = [name for name in ours if name in theirs]
    assert len(shared) >= 2 * 13
    for name in shared:
        assert_close(theirs[name], ours[name], name)


def test_llama_bridge_equals_the_native_model(tmp_path):
    """hook_q/hook_k of the bridge are after the rotation: the native hook_rot_q/hook_rot_k."""
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      attn_implementation="eager")
    torch.manual_seed(0)
    hf = random_perturbed(transformers.LlamaForCausalLM(config))
    hf.save_pretrained(tmp_path)
    native = wb.AutoModelForCausalLM.from_pretrained(tmp_path)
    bridged = check_family(hf, {"input_ids": IDS}, resid_pre_matches_hidden=True)
    _, ours = native.run_with_cache(IDS)
    _, theirs = bridged.run_with_cache(IDS)
    renamed = {"attn.hook_q": "attn.hook_rot_q", "attn.hook_k": "attn.hook_rot_k"}
    compared = 0
    for name, value in theirs.items():
        native_name = next((name.replace(a, b) for a, b in renamed.items() if name.endswith(a)), name)
        if native_name in ours:
            assert_close(value, ours[native_name], name)
            compared += 1
    assert compared >= 2 * 15


NATIVE_WITH_ADAPTERS = ["bert", "roberta", "distilbert", "openai-gpt", "gpt_neox", "gemma", "gemma2", "mistral",
                        "qwen2", "qwen3", "olmo2", "phi3"]
# Native name of a bridged hook point where the two differ (the bridge reads q and k after rotary).
ROTATED = {"attn.hook_q": "attn.hook_rot_q", "attn.hook_k": "attn.hook_rot_k"}


@pytest.mark.parametrize("model_type", NATIVE_WITH_ADAPTERS)
def test_bridge_caches_equal_the_native_models(tmp_path, model_type):
    """For every native family with an adapter: wb.from_hf(hf_model) and the native model give equal caches
    over the names both have (with the renames docs/bridge.md lists)."""
    from tiny_hf import has_field, save_tiny_hf

    sizes = {name: value for name, value in (("n_kv_heads", 2), ("d_head", 8)) if has_field(model_type, name)}
    hf = save_tiny_hf(tmp_path, model_type, task="base", **sizes)
    native = wb.AutoModel.from_pretrained(tmp_path)
    bridged = wb.from_hf(hf)
    encoder = not getattr(hf.config, "is_decoder", False) and model_type in ("bert", "roberta", "distilbert")
    inputs = {"input_ids": IDS + 3, "attention_mask": MASK} if encoder else {"input_ids": IDS + 3}
    _, ours = native.run_with_cache(dict(inputs))
    _, theirs = bridged.run_with_cache(dict(inputs))
    compared = []
    for name, value in theirs.items():
        if name.startswith("hf.") or (name == "hook_embed" and model_type.startswith("gemma")):
            continue  # Gemma scales the embeddings after the table (docs/bridge.md)
        native_name = next((name[: -len(a)] + b for a, b in ROTATED.items()
                            if name.endswith(a) and name[: -len(a)] + b in ours), name)
        if native_name in ours:
            assert_close(value, ours[native_name], f"{model_type} {name}")
            compared.append(name)
    assert len(compared) >= 2 * 11, compared


def test_generate_runs_hooks_every_step_and_matches_hugging_face(tmp_path):
    """A checkpoint saved with its tokenizer: from_hf finds the tokenizer (config.name_or_path), generate keeps
    hooks on every step, and the tokens are Hugging Face's and the native model's."""
    native = wb.zoo.tiny("gpt2", task="causal_lm", device="cpu")
    native.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    model = wb.from_hf(hf)
    assert model.tokenizer is not None
    prompts = ["the keys to the", "a dog"]
    steps = []
    result = model.generate(prompts, max_new_tokens=5,
                            fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, h: steps.append(x.shape[1]))])
    assert len(steps) == 5 and steps[1:] == [1, 1, 1, 1]
    assert result.new_token_ids == native.generate(prompts, max_new_tokens=5).new_token_ids
    encoding = model.tokenize(prompts, padding_side="left")
    with torch.no_grad():
        expected = hf.generate(**encoding, max_new_tokens=5, do_sample=False, pad_token_id=hf.config.eos_token_id)
    assert result.new_token_ids == expected[:, encoding["input_ids"].shape[1]:].tolist()


def test_logit_lens_decodes_through_the_final_norm():
    model = wb.from_hf(tiny_opt())
    lens = model.logit_lens(IDS[:1])
    last = lens.logits()[-1]
    with torch.no_grad():
        expected = model.hf(IDS[:1]).logits[0]
    assert_close(last, expected, "the lens at the last layer")


def test_unknown_model_uses_discovered_blocks():
    """A model_type with no adapter: the blocks are found, residual hooks work, a warning says what is
    missing."""
    hf = tiny_gpt2()
    with pytest.warns(UserWarning, match="no adapter for model_type 'gpt2-unknown'"):
        hf.config.model_type = "gpt2-unknown"
        model = wb.from_hf(hf)
    assert "not mapped" in model.bridge_notes and "hook_resid_mid" in model.bridge_notes
    reference = hf(IDS, output_hidden_states=True)
    _, cache = model.run_with_cache(IDS)
    for i in range(2):
        assert_close(cache[f"blocks.{i}.hook_resid_pre"], reference.hidden_states[i], f"resid_pre {i}")
    assert "blocks.0.attn.hook_pattern" in cache  # GPT-2's attention goes through the registry
    assert "blocks.0.hook_resid_mid" not in model.hook_points()


def test_a_model_without_blocks_is_refused_by_name():
    class NoBlocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = transformers.PretrainedConfig()
            self.linear = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="no list of identical blocks"):
        wb.from_hf(NoBlocks())


def test_from_hf_refuses_what_is_not_a_model():
    with pytest.raises(TypeError, match="needs a transformers model"):
        wb.from_hf("facebook/opt-125m")


def test_unknown_hook_names_are_errors_with_suggestions():
    model = wb.from_hf(tiny_opt())
    with pytest.raises(KeyError, match="Did you mean"):
        model.run_with_hooks(IDS, fwd_hooks=[("blocks.0.attn.hook_patern", lambda x, h: None)])


def test_wb_load_bridges_a_model_type_with_no_native_implementation(tmp_path):
    hf = tiny_opt()
    hf.save_pretrained(tmp_path)
    model = wb.load(str(tmp_path), device="cpu")
    assert isinstance(model, wb.bridge.HookedHF) and type(model.hf).__name__ == "OPTForCausalLM"
    with torch.no_grad():
        assert_close(model(IDS).logits, hf(IDS).logits, "loaded through the bridge")


def test_core_never_imports_transformers():
    """Only workbench/bridge mentions transformers, and only inside functions (it is the user's install)."""
    offenders = []
    for path in (ROOT / "workbench").rglob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "transformers" for name in names):
                if "bridge" not in path.parts or id(node) in top_level:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders
    script = "import sys, workbench as wb; wb.load('minilm'); print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "False", result.stderr[-2000:]


# Families that compute attention themselves: q/k/v/z at the projections, the pattern read only -------------


def tiny_bloom():
    torch.manual_seed(0)
    config = transformers.BloomConfig(vocab_size=100, hidden_size=32, n_layer=2, n_head=4, attn_implementation="eager")
    return random_perturbed(transformers.BloomForCausalLM(config))


def test_bloom_passes_the_family_checks_with_its_fused_qkv_split_per_head():
    hf = tiny_bloom()
    model = check_family(hf, {"input_ids": IDS, "attention_mask": MASK})
    assert "blocks.0.attn.hook_pattern" in model.read_only_hooks
    _, cache = model.run_with_cache(IDS, names_filter=lambda n: n.startswith("blocks.1.") or "query_key_value" in n)
    fused = cache["hf.transformer.h.1.self_attention.query_key_value"].view(2, 7, 4, 3, 8)
    for index, part in enumerate("qkv"):
        assert torch.equal(cache[f"blocks.1.attn.hook_{part}"], fused[..., index, :])
    assert_close(cache["blocks.1.hook_resid_mid"], cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"],
                 "resid_mid")
    assert_close(cache["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_mid"] + cache["blocks.1.hook_mlp_out"],
                 "resid_post")
    # An edit of one part reaches the output; the other parts are left as they were.
    def zero_keys(k, hook):
        return torch.zeros_like(k)

    _, edited = model.run_with_cache(IDS, fwd_hooks=[("blocks.1.attn.hook_k", zero_keys)],
                                     names_filter=["blocks.1.attn.hook_q", "blocks.1.attn.hook_pattern"])
    assert torch.equal(edited["blocks.1.attn.hook_q"], cache["blocks.1.attn.hook_q"])
    assert not torch.allclose(edited["blocks.1.attn.hook_pattern"], cache["blocks.1.attn.hook_pattern"])


def test_gpt_neo_passes_the_family_checks_with_local_and_global_layers():
    torch.manual_seed(0)
    config = transformers.GPTNeoConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, window_size=3,
                                       attention_types=[[["global", "local"], 1]], max_position_embeddings=64,
                                       attn_implementation="eager")
    hf = random_perturbed(transformers.GPTNeoForCausalLM(config))
    model = check_family(hf, {"input_ids": IDS, "attention_mask": MASK})
    _, cache = model.run_with_cache(IDS)
    local = cache["blocks.1.attn.hook_pattern"][0, 0]
    assert torch.all(local[6, :4] == 0) and local[6, 4:].sum() > 0.99  # the window of 3 keys
    assert cache["blocks.0.attn.hook_z"].shape == (2, 7, 4, 8)


def test_shared_blocks_get_one_set_of_hook_points_per_layer():
    """ALBERT runs one layer module for every layer: each call goes to its own layer's hook points."""
    torch.manual_seed(0)
    config = transformers.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                                       num_attention_heads=4, intermediate_size=37, attn_implementation="eager")
    hf = random_perturbed(transformers.AlbertModel(config))
    layer = "albert_layers.0."
    adapter = wb.bridge.Adapter(model_types=("albert",), stacks=(wb.bridge.Stack(
        blocks="encoder.albert_layer_groups", attn=layer + "attention", attn_out=layer + "attention.dense",
        kind="post_norm", resid_mid=layer + "attention.LayerNorm", mlp=layer + "ffn_output", mlp_in=layer + "ffn",
        mlp_out=layer + "ffn_output", layers_from_config="num_hidden_layers"),))
    model = wb.from_hf(hf, adapter=adapter)
    assert model.n_layers == 3 and "blocks.2.attn.hook_pattern" in model.hook_names
    reference = hf(IDS, attention_mask=MASK, output_hidden_states=True, output_attentions=True)
    _, cache = model.run_with_cache({"input_ids": IDS, "attention_mask": MASK})
    for i in range(3):
        assert_close(cache[f"blocks.{i}.hook_resid_pre"], reference.hidden_states[i], f"resid_pre {i}")
        assert_close(cache[f"blocks.{i}.attn.hook_pattern"], reference.attentions[i], f"pattern {i}")
    # Editing layer 1 only changes what follows layer 1.
    _, edited = model.run_with_cache({"input_ids": IDS, "attention_mask": MASK},
                                     fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: z * 0)])
    assert torch.equal(edited["blocks.1.hook_resid_pre"], cache["blocks.1.hook_resid_pre"])
    assert not torch.allclose(edited["blocks.2.hook_resid_pre"], cache["blocks.2.hook_resid_pre"])


def test_hf_generate_keeps_hooks_on_every_step_with_beam_search():
    hf = tiny_gpt2()
    model = wb.from_hf(hf)
    seen = []
    with torch.no_grad():
        expected = hf.generate(IDS[:1], max_new_tokens=4, num_beams=2, do_sample=False, pad_token_id=0)
        out = model.hf_generate(IDS[:1], max_new_tokens=4, num_beams=2, do_sample=False, pad_token_id=0,
                                fwd_hooks=[("blocks.1.attn.hook_pattern", lambda p, hook: seen.append(p.shape))])
    assert torch.equal(out, expected)
    assert len(seen) == 4 and seen[0][-1] == 7 and seen[-1][-2:] == (1, 10)  # prompt, then one query per step
    edited = model.hf_generate(IDS[:1], max_new_tokens=4, do_sample=False, pad_token_id=0,
                               fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: x * 0)])
    assert not torch.equal(edited, hf.generate(IDS[:1], max_new_tokens=4, do_sample=False, pad_token_id=0))
    assert hf.config._attn_implementation == "eager"


def test_docs_name_every_adapted_model_type():
    text = (ROOT / "docs" / "bridge.md").read_text()
    missing = [t for t in wb.bridge.adapted_model_types() if f"`{t}`" not in text]
    assert not missing, f"docs/bridge.md's adapter table lacks {missing}"


def test_real_minilm_bridged_equals_the_native_model(minilm_path, minilm):
    """Real weights, not random ones: all-MiniLM-L6-v2 loaded by transformers and bridged gives the native
    model's cache on a padded batch of real sentences (the tokenizer found beside the weights)."""
    hf = transformers.BertModel.from_pretrained(minilm_path, attn_implementation="eager").eval()
    bridged = wb.from_hf(hf)
    assert bridged.tokenizer is not None
    texts = ["The keys to the cabinet are on the table.", "A dog barked."]
    _, ours = minilm.run_with_cache(texts)
    _, theirs = bridged.run_with_cache(texts)
    shared = [name for name in theirs if name in ours]
    assert len(shared) >= 6 * 14
    for name in shared:
        assert_close(theirs[name], ours[name], name)
