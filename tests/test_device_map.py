"""One model over several devices (issue 17, "Real sizes"): ``from_pretrained(..., device_map=...)``.

- the balanced planner, pure: sizes and capacities -> contiguous runs, the largest load as small as it can be,
  every unit placed, an error when the memory is too little;
- explicit maps with every part on the CPU run the hooked path and give outputs, caches, key/value-cache
  decoding and generation bitwise equal to the plain model (Llama untied, GPT-2 tied, BERT);
- the hooks really move activations between devices: a map that puts the later parts on the ``meta`` device
  (no memory, and mixing it with the CPU is an error in torch) runs, each part's activations and key/value
  cache on its device, for every registered architecture;
- errors: unknown, uncovered and doubly named parts, tied parts split, device and device_map both;
- on GPUs (skipped without): blocks over cuda:0 and the CPU, and over two GPUs, equal to the single-device
  model within 1e-4, with ``run_with_cache(device="cpu")`` gathering every activation on the CPU.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from tiny_hf import ARCHITECTURES, save_tiny_hf, tiny_model

import workbench as wb
import workbench.device_map as device_map
import workbench.model
from workbench.device_map import (
    balanced_split,
    checkpoint_devices,
    dispatch,
    placement_units,
    plan_device_map,
)
from workbench.models.bert import BertForMaskedLM
from workbench.models.gpt2 import GPT2LMHeadModel
from workbench.models.llama import LlamaForCausalLM
from workbench.provenance import editing_hooks
from workbench.registry import REGISTRY

N_LAYERS = 4
MODELS = {"llama": LlamaForCausalLM, "gpt2": GPT2LMHeadModel, "bert": BertForMaskedLM}
TASKS = {"llama": "causal_lm", "gpt2": "causal_lm", "bert": "masked_lm"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """model_type -> a tiny Hugging Face checkpoint of 4 layers (Llama's unembedding untied, GPT-2's and
    BERT's tied to the token embedding)."""
    made = {}
    for model_type, task in TASKS.items():
        made[model_type] = tmp_path_factory.mktemp(model_type)
        save_tiny_hf(made[model_type], model_type, task, n_layers=N_LAYERS)
    return made


def empty(cls, folder):
    """The model of a checkpoint built without weights (on the meta device): what planning needs."""
    return cls.without_weights(cls.config_class.from_pretrained(folder))


def split_map(model, later: str, first: str = "cpu") -> dict[str, str]:
    """The balanced plan over two devices, its first half on ``first`` and its second on ``later``."""
    plan = plan_device_map(model, ["cuda:0", "cuda:1"])
    return {unit: first if device == "cuda:0" else later for unit, device in plan.items()}


def ids(seed: int = 0, shape=(2, 7)) -> torch.Tensor:
    return torch.randint(5, 99, shape, generator=torch.Generator().manual_seed(seed))


# The planner ------------------------------------------------------------------------------------------------


def largest_load(sizes, devices, n):
    return max(sum(s for s, d in zip(sizes, devices) if d == k) for k in range(n))


@pytest.mark.parametrize(
    "sizes, n_devices",
    [([4, 2, 2, 2, 2, 4], 2), ([1] * 10, 3), ([9, 1, 1, 1, 1, 1, 1, 1, 1, 9], 4), ([5, 3], 4), ([7], 2)],
)
def test_balanced_split_is_contiguous_complete_and_optimal(sizes, n_devices):
    split = balanced_split(sizes, [None] * n_devices)
    assert len(split) == len(sizes) and split[0] == 0
    assert split == sorted(split)  # contiguous runs, in device order
    # the smallest largest load of any contiguous split, by brute force over the cut points
    best = min(
        largest_load(sizes, [sum(i >= c for c in cuts) for i in range(len(sizes))], n_devices)
        for cuts in itertools.combinations_with_replacement(range(len(sizes) + 1), n_devices - 1)
    )
    assert largest_load(sizes, split, n_devices) == best


def test_balanced_split_respects_capacities_and_refuses_too_little_memory():
    split = balanced_split([3, 3, 3, 3], [3, None])  # the first device takes one unit only
    assert split == [0, 1, 1, 1]
    assert balanced_split([2, 2, 2], [4, 4]) == [0, 0, 1]
    with pytest.raises(ValueError, match="does not fit"):
        balanced_split([3, 3, 3], [4, 4])
    with pytest.raises(ValueError, match="does not fit"):
        balanced_split([5, 1], [4, 4])  # one unit larger than any device


def test_plan_keeps_the_embedding_first_the_head_last_and_ties_together(folders):
    llama = empty(LlamaForCausalLM, folders["llama"])
    plan = plan_device_map(llama, ["cuda:0", "cuda:1"])
    assert list(plan) == list(placement_units(llama)) == [
        "embed", *(f"blocks.{i}" for i in range(N_LAYERS)), "ln_final", "unembed"
    ]
    assert plan["embed"] == "cuda:0" and plan["ln_final"] == plan["unembed"] == "cuda:1"
    assert [plan[f"blocks.{i}"] for i in range(N_LAYERS)] == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    gpt2 = GPT2LMHeadModel.from_pretrained(folders["gpt2"])  # unembed is the token embedding
    plan = plan_device_map(gpt2, ["cuda:0", "cuda:1"], dtype=torch.bfloat16)
    assert plan["unembed"] == plan["embed"] == "cuda:0" and plan["ln_final"] == "cuda:1"
    assert plan["pos_embed"] == "cuda:0"
    with pytest.raises(ValueError, match="does not fit"):
        plan_device_map(gpt2, ["cuda:0", "cuda:1"], max_memory={"cuda:0": 1000, "cuda:1": 1000})


def test_auto_without_a_gpu_warns_and_puts_everything_on_the_cpu(folders, monkeypatch):
    monkeypatch.setattr(workbench.model, "visible_gpus", lambda: [])
    with pytest.warns(UserWarning, match="no CUDA GPU is visible"):
        model = LlamaForCausalLM.from_pretrained(folders["llama"], device_map="auto")
    assert set(model.device_map.values()) == {"cpu"} and model.device == torch.device("cpu")
    with pytest.warns(UserWarning, match="no CUDA GPU is visible"):  # wb.load and the Auto classes pass it on
        assert wb.load(folders["llama"], device_map="auto").device_map == model.device_map
    parts = dict.fromkeys(model.device_map, "cpu")
    assert wb.AutoModelForCausalLM.from_pretrained(folders["llama"], device_map=parts).device_map == parts
    with pytest.raises(ValueError, match="not both"):
        wb.load(folders["llama"], device="cpu", device_map=parts)


# Every part on the CPU: the hooked path, bitwise equal --------------------------------------------------------


@pytest.mark.parametrize("model_type", list(MODELS))
def test_an_all_cpu_map_equals_the_plain_model(folders, model_type):
    cls = MODELS[model_type]
    plain = cls.from_pretrained(folders[model_type])
    assert plain.device_map is None
    assert not any(m._forward_pre_hooks for m in plain.modules())  # one device: nothing added to the forward
    mapped = cls.from_pretrained(folders[model_type], device_map=split_map(plain, "cpu"))
    assert mapped.device_map == dict.fromkeys(placement_units(plain), "cpu")
    assert editing_hooks(mapped) == []  # moving inputs changes nothing a record should list
    out, cache = mapped.run_with_cache(ids(), device="cpu", output_hidden_states=True)
    reference, reference_cache = plain.run_with_cache(ids(), output_hidden_states=True)
    assert torch.equal(out.logits, reference.logits)
    assert list(cache.keys()) == list(reference_cache.keys())
    for name in reference_cache.keys():
        assert torch.equal(cache[name], reference_cache[name]), name
    for ours, theirs in zip(out.hidden_states, reference.hidden_states):
        assert torch.equal(ours, theirs)


def test_key_value_cache_decoding_equals_the_plain_model(folders):
    plain = LlamaForCausalLM.from_pretrained(folders["llama"])
    mapped = LlamaForCausalLM.from_pretrained(folders["llama"], device_map=split_map(plain, "cpu"))
    prompt, step = ids(1, (2, 6)), ids(2, (2, 1))

    def decode(model):
        first = model(prompt, use_cache=True)
        return model(step, past_key_values=first.past_key_values, use_cache=True)

    ours, theirs = decode(mapped), decode(plain)
    assert torch.equal(ours.logits, theirs.logits)
    for ours_k, theirs_k in zip(ours.past_key_values.keys, theirs.past_key_values.keys, strict=True):
        assert torch.equal(ours_k, theirs_k)


def test_generation_equals_the_plain_model(tmp_path):
    folder = wb.zoo.tiny("llama", device="cpu").save_pretrained(tmp_path / "tiny")  # tied, with a tokenizer
    plain = LlamaForCausalLM.from_pretrained(folder)
    mapped = LlamaForCausalLM.from_pretrained(folder, device_map=split_map(plain, "cpu"))
    prompts = ["The keys to the cabinet", "A dog"]
    ours, theirs = mapped.generate(prompts, 6), plain.generate(prompts, 6)
    assert ours.new_token_ids == theirs.new_token_ids
    assert ours.steps["probability"].tolist() == theirs.steps["probability"].tolist()


# Crossing devices: later parts on the meta device ----------------------------------------------------------


def test_activations_cross_devices_through_the_hooks(folders):
    """Torch refuses to mix CPU and meta tensors, so this runs only if every part receives its inputs on its
    own device: masks, rotary angles and the residual stream move block by block."""
    model = LlamaForCausalLM.from_pretrained(folders["llama"])
    parts = split_map(model, "meta")
    # placed as from_pretrained places it (loading itself cannot check meta weights for NaN)
    dispatch(model, parts)
    assert model.device == torch.device("cpu")
    for unit, module in placement_units(model).items():
        assert {p.device.type for p in module.parameters()} == {parts[unit]}, unit
    out, cache = model.run_with_cache(ids())
    last = "blocks.3.hook_resid_post"
    assert cache["blocks.0.hook_resid_post"].device.type == "cpu" and cache[last].device.type == "meta"
    assert out.logits.device.type == parts["unembed"] and out.logits.shape == (2, 7, 99)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_every_architecture_runs_across_devices(model_type):
    """No architecture needs code of its own: its default head, untied, split between the CPU and meta."""
    model = tiny_model(model_type, REGISTRY[model_type].default_task, tie_word_embeddings=False)
    parts = split_map(model, "meta")
    assert set(parts.values()) == {"cpu", "meta"}
    dispatch(model, parts)
    out = model(ids(shape=(2, 6)) % 50)
    logits = out.logits if hasattr(out, "logits") else out.prediction_scores
    assert logits.device.type == "meta" and logits.shape[:2] == (2, 6)


def test_the_key_value_cache_stays_with_its_block(folders):
    model = LlamaForCausalLM.from_pretrained(folders["llama"])
    dispatch(model, split_map(model, "meta"))
    first = model(ids(1, (2, 6)), use_cache=True)
    assert [k.device.type for k in first.past_key_values.keys] == ["cpu", "cpu", "meta", "meta"]
    step = model(ids(2, (2, 1)), past_key_values=first.past_key_values, use_cache=True)
    assert step.past_key_values.keys[3].shape[1] == 7


def test_each_checkpoint_tensor_is_read_onto_its_parts_device(folders, monkeypatch):
    asked = {}

    def spy(*args, **kwargs):  # records where each tensor is sent; reads it to the CPU (meta cannot be read)
        device_of = checkpoint_devices(*args, **kwargs)
        return lambda name: asked.setdefault(name, device_of(name)) and torch.device("cpu")

    monkeypatch.setattr(workbench.model, "checkpoint_devices", spy)
    monkeypatch.setattr(workbench.model, "dispatch", lambda model, placement: model)
    plain = LlamaForCausalLM.from_pretrained(folders["llama"])
    LlamaForCausalLM.from_pretrained(folders["llama"], device_map=split_map(plain, "meta"))
    assert asked["model.embed_tokens.weight"].type == asked["model.layers.1.mlp.up_proj.weight"].type == "cpu"
    assert asked["model.layers.2.self_attn.q_proj.weight"].type == asked["lm_head.weight"].type == "meta"
    assert len(asked) == len(plain.state_dict())
    # a name the key map does not know (a fused tensor split after reading) goes with its layer number
    device_of = checkpoint_devices(plain, device_map.resolve_device_map(plain, split_map(plain, "meta")),
                                   plain.body_key_map, ["model."])
    assert device_of("model.layers.3.self_attn.qkv_proj.weight").type == "meta"
    assert device_of("something.else").type == "cpu"


def test_the_memory_check_is_per_device(folders, monkeypatch):
    real = workbench.model.free_memory
    monkeypatch.setattr(
        workbench.model, "free_memory", lambda d: (100, "little") if d.type == "cpu" else real(d)
    )
    plain = empty(LlamaForCausalLM, folders["llama"])
    with pytest.raises(wb.ConfigError, match="its part on cpu"):
        LlamaForCausalLM.from_pretrained(folders["llama"], device_map=split_map(plain, "meta"))


# Errors -------------------------------------------------------------------------------------------------------


def test_map_errors_name_the_part(folders):
    llama = empty(LlamaForCausalLM, folders["llama"])
    good = {"embed": "cpu", "blocks": "cpu", "ln_final": "cpu", "unembed": "cpu"}
    load = LlamaForCausalLM.from_pretrained
    with pytest.raises(ValueError, match=r"'blocks.9'.*names no part.*'embed', 'blocks.0' .. 'blocks.3'"):
        load(folders["llama"], device_map={**good, "blocks.9": "cpu"})
    with pytest.raises(ValueError, match="'attn'.*names no part"):
        load(folders["llama"], device_map={**good, "attn": "cpu"})
    uncovered = {k: v for k, v in good.items() if k != "ln_final"}
    with pytest.raises(ValueError, match="no device for 'ln_final'"):
        load(folders["llama"], device_map=uncovered)
    with pytest.raises(ValueError, match="'blocks.1' is named by two entries, 'blocks' and 'blocks.1-2'"):
        load(folders["llama"], device_map={**good, "blocks.1-2": "cpu"})
    with pytest.raises(ValueError, match="device=.*or device_map, not both"):
        load(folders["llama"], device="cpu", device_map=good)
    with pytest.raises(ValueError, match="expected 'auto' or 'balanced'"):
        load(folders["llama"], device_map="sequential")
    with pytest.raises(ValueError, match="torch sees"):
        load(folders["llama"], device_map={**good, "unembed": f"cuda:{torch.cuda.device_count()}"})
    gpt2 = empty(GPT2LMHeadModel, folders["gpt2"])
    tied = {**dict.fromkeys(placement_units(gpt2), "cpu"), "unembed": "meta"}
    with pytest.raises(ValueError, match="'unembed' on meta and 'embed' on cpu, but they share a parameter"):
        device_map.resolve_device_map(gpt2, tied)
    assert llama.device_map is None


# On GPUs ------------------------------------------------------------------------------------------------------


def assert_gathered_parity(model, reference):
    out, cache = model.run_with_cache(ids(), device="cpu")
    reference_out, reference_cache = reference.run_with_cache(ids())
    assert out.logits.device == torch.device(model.device_map["unembed"])
    assert (out.logits.cpu() - reference_out.logits).abs().max() <= 1e-4
    assert {t.device.type for t in cache.values()} == {"cpu"}
    for name in reference_cache.keys():
        assert (cache[name] - reference_cache[name]).abs().max() <= 1e-4, name


@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA GPU")
def test_blocks_over_a_gpu_and_the_cpu(folders, tmp_path):
    reference = LlamaForCausalLM.from_pretrained(folders["llama"])
    model = LlamaForCausalLM.from_pretrained(folders["llama"], device_map=split_map(reference, "cpu", "cuda:0"))
    assert model.device == torch.device("cuda:0") and model.device_map["unembed"] == "cpu"
    assert_gathered_parity(model, reference)
    first = model(ids(1, (2, 6)).cuda(), use_cache=True)
    step = model(ids(2, (2, 1)).cuda(), past_key_values=first.past_key_values, use_cache=True)
    expected = reference(torch.cat([ids(1, (2, 6)), ids(2, (2, 1))], dim=1)).logits[:, -1:]
    assert (step.logits.cpu() - expected).abs().max() <= 1e-4
    folder = wb.zoo.tiny("llama", device="cpu").save_pretrained(tmp_path / "tiny")  # with a tokenizer
    reference = LlamaForCausalLM.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder, device_map=split_map(reference, "cpu", "cuda:0"))
    prompts = ["The keys to the cabinet", "A dog"]
    ours, theirs = model.generate(prompts, 6), reference.generate(prompts, 6)
    assert ours.new_token_ids == theirs.new_token_ids
    difference = torch.tensor(ours.steps["probability"]) - torch.tensor(theirs.steps["probability"])
    assert difference.abs().max() <= 1e-4


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
@pytest.mark.parametrize("model_type", list(MODELS))
def test_auto_over_two_gpus(folders, model_type):
    cls = MODELS[model_type]
    reference = cls.from_pretrained(folders[model_type])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cls.from_pretrained(folders[model_type], device_map="auto")
    assert not [w for w in caught if "no CUDA GPU" in str(w.message)]  # GPUs are there: they are used
    assert model.device == torch.device("cuda:0")
    assert model.device_map["blocks.0"] == "cuda:0" and model.device_map[f"blocks.{N_LAYERS - 1}"] != "cuda:0"
    assert_gathered_parity(model, reference)
