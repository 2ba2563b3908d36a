"""Canonical config names (d_model, n_layers, ...) through each config's ATTRIBUTE_MAP: read, written and
accepted by ``AutoConfig.for_model`` on every registered architecture."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import workbench as wb
from workbench.config import CANONICAL_NAMES, ConfigError
from workbench.registry import REGISTRY

MODEL_TYPES = REGISTRY.model_types()

# What a tiny model needs beyond the canonical sizes (Transformer-XL's adaptive softmax cutoffs must lie
# below the vocabulary).
EXTRA = {"transfo-xl": {"cutoffs": [16, 32], "d_embed": 32, "div_val": 1}}


def stored(model_type: str, canonical_name: str) -> bool:
    """Whether the config keeps ``canonical_name`` as a field of its own (Llama's head_dim and key/value
    heads) rather than deriving it from the other sizes."""
    config_class = REGISTRY[model_type].config_class
    name = config_class.ATTRIBUTE_MAP.get(canonical_name, canonical_name)
    return name in {f.name for f in dataclasses.fields(config_class)}


def plain_sizes(model_type: str, d_model: int = 32, n_heads: int = 4) -> dict:
    """d_model, n_layers, n_heads and, where the config stores them, d_head = d_model / n_heads and
    n_kv_heads = n_heads (their defaults are a released model's: Gemma's 256-wide heads, Mistral's 8 key/value
    heads)."""
    sizes = {"d_model": d_model, "n_layers": 2, "n_heads": n_heads}
    sizes.update({name: value for name, value in (("d_head", d_model // n_heads), ("n_kv_heads", n_heads))
                  if stored(model_type, name)})
    return sizes


def tiny_config(model_type: str, **sizes):
    sizes = {**plain_sizes(model_type), "vocab_size": 64, **sizes}
    return wb.AutoConfig.for_model(model_type, **sizes, **EXTRA.get(model_type, {}))


def test_every_architecture_is_covered():
    assert {"bert", "distilbert", "roberta", "xlm", "openai-gpt", "gpt2", "transfo-xl", "xlnet"} <= set(
        MODEL_TYPES
    )


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_for_model_takes_canonical_names_and_the_hf_fields_agree(model_type):
    config = wb.AutoConfig.for_model(model_type, **plain_sizes(model_type))
    assert (config.d_model, config.n_layers, config.n_heads, config.n_kv_heads) == (32, 2, 4, 4)
    fields = {f.name for f in dataclasses.fields(config)}
    for alias, name in type(config).ATTRIBUTE_MAP.items():
        assert alias in CANONICAL_NAMES and name in fields
        assert getattr(config, alias) == getattr(config, name)
    saved = config.to_dict()
    for alias in ("d_model", "n_layers", "n_heads"):  # written under the Hugging Face name, once
        name = type(config).ATTRIBUTE_MAP.get(alias, alias)
        assert saved[name] == getattr(config, alias)
        assert alias == name or alias not in saved
    for alias in CANONICAL_NAMES:
        assert getattr(config, alias) is not None, alias
    assert (
        config.d_head * config.n_heads == config.d_model or model_type == "transfo-xl"
    )  # its d_head is free


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_tiny_model_from_canonical_sizes_runs_a_forward(model_type):
    config = tiny_config(model_type)
    torch.manual_seed(0)
    model = REGISTRY[model_type].base(config).eval()
    assert len(model.blocks) == 2
    with torch.no_grad():
        out = model(torch.randint(0, 64, (2, 5)))
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    assert hidden.shape == (2, 5, 32)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_writing_a_canonical_name_sets_the_hf_field(model_type):
    config = tiny_config(model_type)
    config.n_layers = 3
    config.d_model = 48
    if stored(model_type, "d_head"):  # XLNet's must follow d_model; the others' may, here
        config.d_head = 12
    if getattr(config, "layer_types", None) is not None:  # per-layer settings cover the new layer count
        config.layer_types = [config.layer_types[0]] * 3
    assert config.n_layers == 3 and config.d_model == 48
    saved = config.to_dict()
    attribute_map = type(config).ATTRIBUTE_MAP
    assert saved[attribute_map.get("n_layers", "n_layers")] == 3
    assert saved[attribute_map.get("d_model", "d_model")] == 48
    config.validate()
    model = REGISTRY[model_type].base(config)
    assert len(model.blocks) == 3


def test_canonical_and_hf_key_with_different_values_is_an_error_naming_both():
    with pytest.raises(ConfigError, match=r"n_layers=2 contradicts num_hidden_layers=3") as err:
        wb.AutoConfig.for_model("bert", n_layers=2, num_hidden_layers=3)
    assert err.value.field == "n_layers"
    with pytest.raises(ConfigError, match=r"d_model=32 contradicts n_embd=64"):
        wb.AutoConfig.for_model("gpt2", d_model=32, n_embd=64)
    # The same value under both names is no contradiction.
    assert wb.AutoConfig.for_model("xlnet", n_layers=2, n_layer=2).n_layer == 2


def test_an_override_by_canonical_name_wins_over_the_file_value():
    from workbench.models.bert import BertConfig

    config = BertConfig.from_dict({"num_hidden_layers": 12}, n_layers=2)
    assert config.num_hidden_layers == 2


def test_a_derived_canonical_name_is_checked_not_dropped():
    # d_head is d_model // n_heads on BERT: an agreeing value passes, a different one is an error.
    assert wb.AutoConfig.for_model("bert", d_model=32, n_heads=4, d_head=8).d_head == 8
    with pytest.raises(ConfigError, match=r"d_head=16: bert has no field for d_head.*is 8 here"):
        wb.AutoConfig.for_model("bert", d_model=32, n_heads=4, d_head=16)
    with pytest.raises(ConfigError, match=r"n_kv_heads=1"):
        wb.AutoConfig.for_model("gpt2", d_model=32, n_heads=4, n_kv_heads=1)
    config = wb.AutoConfig.for_model("bert", d_model=32, n_heads=4)
    assert "d_head" not in config.extra
    with pytest.raises(AttributeError):
        config.d_head = 16  # derived: read-only


def test_canonical_names_do_not_leak_into_extra_or_the_saved_file(tmp_path):
    config = wb.AutoConfig.for_model("gpt2", d_model=32, n_layers=2, n_heads=4, max_positions=64)
    assert config.extra == {} and config.n_positions == 64
    config.save_pretrained(tmp_path)
    again = wb.AutoConfig.from_pretrained(tmp_path)
    assert (again.n_embd, again.n_layer, again.n_head, again.max_positions) == (32, 2, 4, 64)


HF_ALIAS_CASES = [
    (config_class, alias, name)
    for config_class in REGISTRY.configs().values()
    for alias, name in config_class.HF_ALIASES.items()
]


def test_the_architectures_that_have_other_hugging_face_names_declare_them():
    # Hugging Face's attribute_map names of these configs (and older config.json keys) are read as the field.
    assert {config_class.model_type for config_class, _, _ in HF_ALIAS_CASES} >= {
        "distilbert", "xlm", "xlnet", "transfo-xl"
    }


@pytest.mark.parametrize(
    "config_class, alias, name", HF_ALIAS_CASES, ids=[f"{c.model_type}-{a}" for c, a, _ in HF_ALIAS_CASES]
)
def test_a_hugging_face_alias_reads_writes_and_loads_as_its_field(config_class, alias, name):
    config = config_class()
    value = getattr(config, name)
    assert getattr(config, alias) == value
    setattr(config, alias, 7)
    assert getattr(config, name) == 7
    assert alias not in config.to_dict()  # written under the field's name only
    loaded = config_class.from_dict({alias: value})
    assert getattr(loaded, name) == value and alias not in loaded.extra
    other = 9 if value != 9 else 10
    with pytest.raises(ConfigError, match=rf"{alias}={other} contradicts {name}={value}"):
        config_class.from_dict({alias: other, name: value})
    assert getattr(config_class.from_dict({name: other}, **{alias: value}), name) == value  # an override wins
