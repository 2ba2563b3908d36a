"""Loading at real size (issue 17): models built without weights (meta device), checkpoints read tensor by tensor
in the checkpoint's dtype or a requested one, sharded safetensors, fresh heads initialized, buffers computed,
the memory estimate before loading and the refusal when the weights do not fit.

The peak-memory check loads a ~200 MB checkpoint in a subprocess (so other tests' memory does not count) and
measures its resident memory's high-water mark around ``from_pretrained``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_hf import save_tiny_hf

import workbench as wb
import workbench.model
from workbench.models.llama import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

GQA = dict(n_kv_heads=2, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    """A tiny Hugging Face Llama causal LM saved in float32 (tiny_hf's sizes, grouped-query attention 4/2)."""
    folder = tmp_path_factory.mktemp("llama")
    save_tiny_hf(folder, "llama", "causal_lm", **GQA)
    return folder


@pytest.fixture(scope="module")
def bf16_folder(tmp_path_factory):
    """The same kind of checkpoint saved by transformers in bfloat16, in three shards."""
    folder = tmp_path_factory.mktemp("llama_bf16")
    model = save_tiny_hf(folder / "f32", "llama", "causal_lm", **GQA)
    model.to(torch.bfloat16).save_pretrained(folder, max_shard_size="8KB")
    return folder


def stored(folder):
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    return {name: tensor for path in files for name, tensor in load_file(str(path)).items()}


def test_built_without_weights_parameters_are_meta_and_buffers_are_computed():
    config = LlamaConfig(vocab_size=50_000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=4,
                         num_attention_heads=16, num_key_value_heads=4)  # ~0.6e9 parameters: 2.4 GB in float32
    model = LlamaForCausalLM.without_weights(config)
    assert {param.device.type for param in model.parameters()} == {"meta"}
    assert model.unembed.weight is not model.embed.weight  # untied here; tied weights keep one parameter
    tied = LlamaForCausalLM.without_weights(dataclasses.replace(config, tie_word_embeddings=True))
    assert tied.unembed.weight is tied.embed.weight
    # Buffers are computed as in a built model (Transformer-XL's relative-position frequencies).
    xl_config = wb.AutoConfig.for_model("transfo-xl", d_model=32, d_embed=32, n_head=4, d_head=8, d_inner=37,
                                        n_layer=2, cutoffs=[], div_val=1)
    empty, built = wb.TransfoXLModel.without_weights(xl_config), wb.TransfoXLModel.from_config(xl_config)
    assert torch.equal(empty.rel_pos_embed.inv_freq, built.rel_pos_embed.inv_freq)


def test_float32_default_auto_and_requested_dtypes(bf16_folder):
    """dtype=None loads float32 whatever is stored; 'auto' the checkpoint's bfloat16; a requested dtype that
    one. Every value is the stored one converted, and nothing is left on the meta device."""
    state = stored(bf16_folder)
    assert len(list(bf16_folder.glob("*.safetensors"))) > 1  # sharded
    for dtype, expected in [(None, torch.float32), ("auto", torch.bfloat16), (torch.float16, torch.float16),
                            ("bfloat16", torch.bfloat16)]:
        model = LlamaForCausalLM.from_pretrained(bf16_folder, dtype=dtype)
        assert model.dtype == expected and model.loading_info.missing_keys == []
        assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
        assert torch.equal(model.embed.weight, state["model.embed_tokens.weight"].to(expected))
        assert torch.equal(model.blocks[1].attn.k.weight, state["model.layers.1.self_attn.k_proj.weight"].to(expected))
    with pytest.raises(ValueError, match="dtype=torch.int64"):
        LlamaForCausalLM.from_pretrained(bf16_folder, dtype=torch.int64)


def test_loaded_weights_start_on_a_page_boundary(llama_folder, bf16_folder):
    """Every weight of a page or more, read as stored or converted on the CPU, starts on a 4 KiB boundary (rows
    that straddle pages make a decoding step's matrix-vector products slower); values are unchanged."""
    state = stored(bf16_folder)
    for folder, dtype in [(llama_folder, None), (bf16_folder, "auto"), (bf16_folder, torch.float32)]:
        model = LlamaForCausalLM.from_pretrained(folder, dtype=dtype)
        large = {name: p for name, p in model.named_parameters() if p.numel() * p.element_size() >= 4096}
        assert large and all(p.data_ptr() % 4096 == 0 for p in large.values()), (folder.name, dtype)
    assert torch.equal(model.blocks[0].mlp.fc_in.weight, state["model.layers.0.mlp.up_proj.weight"].float())


def test_sharded_and_single_file_load_the_same_outputs(llama_folder, bf16_folder):
    """A float32 checkpoint loaded in bfloat16 equals the bfloat16 checkpoint transformers wrote (sharded);
    the float32 load matches Hugging Face's logits."""
    import transformers

    ids = torch.tensor([[5, 17, 3, 88, 41, 2]])
    single = LlamaForCausalLM.from_pretrained(llama_folder, dtype=torch.bfloat16)
    f32 = LlamaForCausalLM.from_pretrained(bf16_folder / "f32")
    sharded = LlamaForCausalLM.from_pretrained(bf16_folder, dtype="auto")
    for name, param in sharded.named_parameters():
        assert torch.equal(param, f32.get_parameter(name).to(torch.bfloat16)), name
    hf = transformers.LlamaForCausalLM.from_pretrained(llama_folder).eval()
    with torch.no_grad():
        assert torch.allclose(LlamaForCausalLM.from_pretrained(llama_folder)(ids).logits, hf(ids).logits, atol=1e-4)
        assert single(ids).logits.dtype == torch.bfloat16


def test_fresh_head_is_initialized_reproducibly_and_reported(llama_folder):
    """A classifier on a causal-LM checkpoint: the head is allocated and initialized as in a new model
    (normal(0, initializer_range) from the global generator), listed missing; the body is the checkpoint's."""
    torch.manual_seed(3)
    first = LlamaForSequenceClassification.from_pretrained(llama_folder, num_labels=3)
    torch.manual_seed(3)
    second = LlamaForSequenceClassification.from_pretrained(llama_folder, num_labels=3, dtype=torch.bfloat16)
    assert first.loading_info.missing_keys == ["classifier.weight"]
    head = first.classifier.weight
    assert head.shape == (3, 32) and head.device.type == "cpu" and torch.isfinite(head).all()
    assert 0.005 < head.std() < 0.05  # initializer_range 0.02
    assert torch.equal(second.classifier.weight, head.to(torch.bfloat16))  # same seed, same head
    lm = LlamaForCausalLM.from_pretrained(llama_folder)
    assert torch.equal(first.embed.weight, lm.embed.weight)


def test_tied_checkpoint_keeps_one_parameter(tmp_path):
    save_tiny_hf(tmp_path, "llama", "causal_lm", n_kv_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.unembed.weight is model.embed.weight and model.loading_info.missing_keys == []


def test_memory_estimate_counts_weights_and_cache(bf16_folder):
    params = sum(t.numel() for t in stored(bf16_folder).values())
    estimate = wb.memory_estimate(bf16_folder, batch=3, seq=100, dtype="auto")
    assert estimate.parameters == params and estimate.weight_bytes == 2 * params
    # 2 (keys, values) x 2 layers x 3 x 100 positions x 2 kv heads x 8 (head dim) x 2 bytes
    assert estimate.kv_cache_bytes == 2 * 2 * 3 * 100 * 2 * 8 * 2
    assert estimate.total_bytes == estimate.weight_bytes + estimate.kv_cache_bytes
    assert wb.memory_estimate(bf16_folder).weight_bytes == 4 * params  # float32 by default, as loading
    assert "parameters" in str(estimate) and "bfloat16" in str(estimate)


def test_loading_refuses_before_reading_when_the_weights_do_not_fit(bf16_folder, monkeypatch):
    monkeypatch.setattr(workbench.model, "available_memory", lambda: 10_000)
    read = []
    monkeypatch.setattr(workbench.model, "read_state_dict", lambda *a, **k: read.append(a))
    with pytest.raises(wb.ConfigError, match=r"parameters need .* GiB in bfloat16, more than the .* GiB of "
                                             r"memory available; load it in a smaller dtype"):
        LlamaForCausalLM.from_pretrained(bf16_folder, dtype="auto")
    assert read == []


_MEASURE = """
import json, sys, torch, workbench as wb
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
torch.empty(1, device="meta").normal_()  # the first meta-device operation imports torch's meta kernels (~70 MB, once)
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to the current RSS
model = wb.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=sys.argv[2])
print(json.dumps({"before": before, "peak": status("VmHWM:"), "params": sum(p.numel() for p in model.parameters())}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_while_loading_is_about_the_weights(tmp_path):
    """A ~200 MB float32 checkpoint: loading it in float32 adds about its size to the resident memory, not
    twice (built on the meta device; read without a memory map), and in bfloat16 about half."""
    config = LlamaConfig(vocab_size=16000, hidden_size=768, intermediate_size=2048, num_hidden_layers=4,
                         num_attention_heads=12, num_key_value_heads=4)
    LlamaForCausalLM.from_config(config, seed=0).save_pretrained(tmp_path)
    size = (tmp_path / "model.safetensors").stat().st_size
    assert 150e6 < size < 250e6
    for dtype, share in [("float32", 1.0), ("bfloat16", 0.5)]:
        result = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path), dtype], capture_output=True,
                                text=True, check=True, cwd=Path(wb.__file__).parents[1])
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        growth = (measured["peak"] - measured["before"]) / size
        assert share * 0.9 < growth < share + 0.25, (dtype, growth)


def test_config_memory_check_counts_the_stored_dtype():
    """config.json's torch_dtype sets the bytes per parameter of the config-level check (a bfloat16 checkpoint
    that fits in bfloat16 is not refused for its float32 size); loading checks again at its own dtype."""
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4)
    bf16_bytes = 2 * config.estimated_parameters()
    with pytest.raises(wb.ConfigError, match="in float32, more than"):
        config.check_memory(available=bf16_bytes)
    config.extra["torch_dtype"] = "bfloat16"
    config.check_memory(available=bf16_bytes)
    with pytest.raises(wb.ConfigError, match="in bfloat16, more than"):
        config.check_memory(available=bf16_bytes - 1)
