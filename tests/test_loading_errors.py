"""Loading checkpoints: clear errors for every bad input, and every supported on-disk layout loads right.

Tiny random BERTs are saved by Hugging Face (``save_tiny_hf`` in tiny_hf.py), broken in one way
each, and loaded with the workbench. Positive paths are checked against Hugging Face's outputs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_hf import save_tiny_hf, task_of

import workbench as wb

ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, Hugging Face model) of a tiny random BertModel saved as model.safetensors."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    hf_model = save_tiny_hf(folder, "bert")
    return folder, hf_model


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert_mlm")
    hf_model = save_tiny_hf(folder, "bert", "masked_lm", seed=1)
    return folder, hf_model


@pytest.fixture(scope="module")
def tiny_model(tiny):
    return wb.AutoModel.from_pretrained(tiny[0])


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


def example_inputs():
    """A padded batch with both token types: [batch=2, pos=9]."""
    generator = torch.Generator().manual_seed(123)
    input_ids = torch.randint(1, 99, (2, 9), generator=generator)
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[1, 6:] = 0
    input_ids[1, 6:] = 0
    token_type_ids = torch.zeros(2, 9, dtype=torch.long)
    token_type_ids[:, 4:] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    if mask is not None:  # compare real tokens only: padded positions are arbitrary
        a, b = a[mask.bool()], b[mask.bool()]
    return (a - b).abs().max().item()


def assert_same_body_outputs(ours, hf_body, inputs=None):
    inputs = inputs or example_inputs()
    with torch.no_grad():
        mine, ref = ours(**inputs), hf_body(**inputs)
    assert max_diff(mine.last_hidden_state, ref.last_hidden_state, inputs["attention_mask"]) <= ATOL
    if ref.pooler_output is not None:
        assert max_diff(mine.pooler_output, ref.pooler_output) <= ATOL


# Bad config.json ------------------------------------------------------------------------------------------


def test_missing_config_json(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    (folder / "config.json").unlink()
    for load in (wb.AutoModel.from_pretrained, wb.AutoConfig.from_pretrained, wb.load):
        with pytest.raises(FileNotFoundError) as info:
            load(folder)
        message = str(info.value)
        assert "config.json" in message, load
        assert str(folder) in message, load


@pytest.mark.parametrize(
    "load",
    [wb.AutoModel.from_pretrained, wb.AutoModelForMaskedLM.from_pretrained, wb.AutoConfig.from_pretrained, wb.load],
    ids=["AutoModel", "AutoModelForMaskedLM", "AutoConfig", "load"],
)
def test_unknown_model_type_lists_supported_types(tiny, tmp_path, load):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    edit_config(folder, model_type="llama9")
    with pytest.raises(ValueError) as info:
        load(folder)
    message = str(info.value)
    assert "'llama9'" in message
    assert "'bert'" in message and "supported" in message
    assert "config.json" in message


def test_missing_model_type(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    values = json.loads((folder / "config.json").read_text())
    del values["model_type"]
    (folder / "config.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match="'bert'"):
        wb.AutoModel.from_pretrained(folder)


def test_architecture_class_rejects_other_model_type(tiny, tmp_path):
    """BertModel.from_pretrained on a non-BERT config says so (and points at AutoConfig)."""
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    edit_config(folder, model_type="gpt2")
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        wb.BertModel.from_pretrained(folder)


@pytest.mark.parametrize(
    "content, expected",
    [('{"model_type": "bert", ', "not valid JSON"), ("[1, 2, 3]", "JSON object"), ("\xff\xfe garbage", "")],
    ids=["truncated_json", "json_list", "not_utf8"],
)
def test_invalid_config_json_names_the_file(tiny, tmp_path, content, expected):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    (folder / "config.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError) as info:
        wb.AutoModel.from_pretrained(folder)
    assert str(folder / "config.json") in str(info.value)
    assert expected in str(info.value)


def test_invalid_config_value_is_named(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    edit_config(folder, hidden_size=30)  # not a multiple of num_attention_heads=4
    with pytest.raises(ValueError, match="hidden_size=30.*num_attention_heads=4"):
        wb.AutoModel.from_pretrained(folder)


# Bad weights ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", ["half", "8_bytes", "empty"])
def test_truncated_safetensors_is_a_checkpoint_error_naming_the_file(tiny, tmp_path, keep):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"half": data[: len(data) // 2], "8_bytes": data[:8], "empty": b""}[keep])
    with pytest.raises(wb.CheckpointError) as info:
        wb.AutoModel.from_pretrained(folder)
    assert str(weights) in str(info.value)
    assert "truncated or corrupt" in str(info.value)
    assert isinstance(info.value, ValueError)  # CheckpointError is a ValueError


def test_garbage_safetensors_is_a_checkpoint_error(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    (folder / "model.safetensors").write_bytes(b"<html>404 Not Found</html>" * 10)
    with pytest.raises(wb.CheckpointError, match=re.escape(str(folder / "model.safetensors"))):
        wb.AutoModel.from_pretrained(folder)


def test_no_weights_names_the_expected_files(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError) as info:
        wb.AutoModel.from_pretrained(folder)
    message = str(info.value)
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        assert name in message
    assert str(folder) in message


def test_sharded_checkpoint_with_a_missing_shard(tiny, tmp_path):
    folder = write_sharded(tiny[0], tmp_path / "sharded")
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(wb.CheckpointError, match="model-00002-of-00002.safetensors"):
        wb.AutoModel.from_pretrained(folder)


def test_shard_index_without_weight_map(tiny, tmp_path):
    folder = write_sharded(tiny[0], tmp_path / "sharded")
    (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(wb.CheckpointError, match="weight_map"):
        wb.AutoModel.from_pretrained(folder)


class _Payload:
    """Unpickling this creates a file: what a malicious pytorch_model.bin would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_code_is_refused_without_running_it(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code_ran"
    torch.save({"embeddings.word_embeddings.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(wb.CheckpointError, match=re.escape(str(folder / "pytorch_model.bin"))):
        wb.AutoModel.from_pretrained(folder)
    assert not marker.exists(), "loading ran code from the checkpoint"


def test_bin_that_is_not_a_state_dict(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    torch.save({"step": 3, "lr": 0.1}, folder / "pytorch_model.bin")
    with pytest.raises(wb.CheckpointError, match="state dict"):
        wb.AutoModel.from_pretrained(folder)


# Shape mismatches --------------------------------------------------------------------------------------------

MISMATCHES = {
    "hidden_size": dict(hidden_size=64),
    "intermediate_size": dict(intermediate_size=50),
    "vocab_size": dict(vocab_size=120),
    "max_position_embeddings": dict(max_position_embeddings=128),
}


@pytest.mark.parametrize("changes", list(MISMATCHES.values()), ids=list(MISMATCHES))
def test_shape_mismatch_names_parameter_and_both_shapes(tiny, tiny_model, tmp_path, changes):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    edit_config(folder, **changes)
    with pytest.raises(wb.CheckpointError) as info:
        wb.AutoModel.from_pretrained(folder)
    message = str(info.value)
    match = re.search(
        r"'([\w.]+)' \(workbench '([\w.]+)'\) has shape (\([\d, ]*\)) but \w+ expects (\([\d, ]*\))", message
    )
    assert match, f"the message does not name a parameter (both names) and two shapes: {message}"
    hf_key, key, checkpoint_shape, model_shape = match.groups()
    assert wb.BertModel.body_key_map.to_ours(hf_key) == key
    # the shapes are the right way round: the checkpoint's is the saved tiny model's, the model's the config's
    assert checkpoint_shape == str(tuple(tiny_model.state_dict()[key].shape))
    expected_model = wb.AutoModel.from_config(wb.AutoConfig.from_pretrained(folder))
    assert model_shape == str(tuple(expected_model.state_dict()[key].shape))
    assert checkpoint_shape != model_shape
    assert str(folder) in message
    assert "ignore_mismatched_sizes" in message


def test_ignore_mismatched_sizes_loads_and_lists_mismatched_keys(tiny, tiny_model, tmp_path, caplog):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    edit_config(folder, vocab_size=120)
    with caplog.at_level("WARNING"):
        model = wb.AutoModel.from_pretrained(folder, ignore_mismatched_sizes=True)
    assert model.loading_info.mismatched_keys == [("embed.weight", (99, 32), (120, 32))]
    assert model.embed.weight.shape == (120, 32)
    assert "embed.weight" in caplog.text and "(99, 32)" in caplog.text
    # everything else is the checkpoint's
    reference = tiny_model.state_dict()
    for key, value in model.state_dict().items():
        if key != "embed.weight":
            assert torch.equal(value, reference[key]), key
    # the re-initialized embedding is a fresh init, not the checkpoint's rows
    assert not torch.equal(model.embed.weight[:99], reference["embed.weight"])


def test_ignore_mismatched_sizes_in_mlp(tiny, tiny_model, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    edit_config(folder, intermediate_size=50)
    model = wb.AutoModel.from_pretrained(folder, ignore_mismatched_sizes=True)
    mismatched = {key for key, _, _ in model.loading_info.mismatched_keys}
    expected = {f"blocks.{i}.mlp.{name}" for i in range(2) for name in ("fc_in.weight", "fc_in.bias", "fc_out.weight")}
    assert mismatched == expected
    assert torch.equal(model.blocks[0].mlp.fc_out.bias, tiny_model.blocks[0].mlp.fc_out.bias)


def test_mismatched_keys_are_not_reported_as_missing(tiny, tmp_path, caplog):
    """The checkpoint did provide embed.weight (with another shape): it is mismatched, not missing, and the
    warning must not claim that it was 'not in the checkpoint' (LoadingInfo.missing_keys' documented meaning)."""
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    edit_config(folder, vocab_size=120)
    with caplog.at_level("WARNING"):
        model = wb.AutoModel.from_pretrained(folder, ignore_mismatched_sizes=True)
    assert "embed.weight" not in model.loading_info.missing_keys
    assert "not in the checkpoint" not in caplog.text


# Bad inputs to a loaded model ----------------------------------------------------------------------------------


def test_unknown_hook_name_in_run_with_cache_suggests_close_matches(tiny_model):
    ids = example_inputs()["input_ids"]
    with pytest.raises(KeyError) as info:
        tiny_model.run_with_cache(ids, names_filter="blocks.0.hook_resid_pots")
    message = str(info.value)
    assert "'blocks.0.hook_resid_pots'" in message
    assert "Did you mean 'blocks.0.hook_resid_post'" in message
    with pytest.raises(KeyError, match="'blocks.1.attn.hook_pattern'"):
        tiny_model.run_with_cache(ids, names_filter=["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_patern"])


def test_unknown_hook_name_in_run_with_hooks_leaves_no_hook_attached(tiny_model):
    ids = example_inputs()["input_ids"]
    calls = []
    hooks = [("blocks.0.hook_mlp_out", lambda x, hook: calls.append(hook.name)), ("blocks.1.hook_mlp_outt", print)]
    with pytest.raises(KeyError, match="Did you mean 'blocks.1.hook_mlp_out'"):
        tiny_model.run_with_hooks(ids, fwd_hooks=hooks)
    assert calls == []
    assert not any(point.is_active for point in tiny_model.hook_points().values())
    with torch.no_grad():
        tiny_model(ids)
    assert calls == []


def test_unknown_hook_name_without_a_close_match(tiny_model):
    with pytest.raises(KeyError, match="model.hook_names"):
        tiny_model.run_with_cache(example_inputs()["input_ids"], names_filter="zzzz")


def test_too_many_tokens_for_max_position_embeddings(tiny_model):
    with torch.no_grad():
        tiny_model(torch.ones(1, 64, dtype=torch.long))  # exactly max_position_embeddings is fine
        with pytest.raises(ValueError, match="max_position_embeddings") as info:
            tiny_model(torch.ones(1, 65, dtype=torch.long))
    assert "65" in str(info.value) and "64" in str(info.value)


def test_too_long_text_names_max_position_embeddings_and_truncation(minilm):
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 60)  # ~600 tokens > 512
    with pytest.raises(ValueError, match="max_position_embeddings") as info:
        minilm.run_with_cache(text, names_filter="blocks.0.hook_resid_post")
    assert "truncat" in str(info.value)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (3, 4), (2, 4, 1)])
def test_head_mask_of_wrong_shape(tiny_model, shape):
    with pytest.raises(ValueError) as info, torch.no_grad():
        tiny_model(example_inputs()["input_ids"], head_mask=torch.ones(shape))
    message = str(info.value)
    assert str(shape) in message
    assert "[4]" in message and "[2, 4]" in message


def test_head_mask_of_right_shapes_works(tiny_model):
    """head_mask removes heads as Hugging Face 4.x did (it scaled the attention pattern; v5 dropped it):
    the same as zeroing those heads' patterns with hooks."""
    inputs = example_inputs()
    head_mask = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])

    def scale_pattern(pattern, hook):
        return pattern * head_mask[hook.layer].view(1, -1, 1, 1)

    with torch.no_grad():
        masked = tiny_model(**inputs, head_mask=head_mask).last_hidden_state
        hooked = tiny_model.run_with_hooks(
            inputs, fwd_hooks=[(lambda name: name.endswith("hook_pattern"), scale_pattern)]
        ).last_hidden_state
        plain = tiny_model(**inputs).last_hidden_state
        every_layer = tiny_model(**inputs, head_mask=torch.ones(4)).last_hidden_state
    assert max_diff(masked, hooked, inputs["attention_mask"]) <= ATOL
    assert max_diff(masked, plain, inputs["attention_mask"]) > 1e-3
    assert max_diff(every_layer, plain, inputs["attention_mask"]) <= ATOL


@pytest.mark.parametrize(
    "load", [wb.AutoModel.from_pretrained, wb.AutoTokenizer.from_pretrained, wb.AutoConfig.from_pretrained, wb.load]
)
def test_nonexistent_local_path(load):
    with pytest.raises(wb.CheckpointNotFoundError) as info:
        load("./no/such/dir")
    assert "no/such/dir" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_corrupt_tokenizer_json_beside_weights_names_it(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "ckpt")
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(folder / "tokenizer.json"))):
        wb.AutoModel.from_pretrained(folder)


# Supported layouts load with Hugging Face's outputs -----------------------------------------------------------


def test_safetensors_checkpoint_matches_hf(tiny, tiny_model):
    assert tiny_model.loading_info.missing_keys == []
    assert tiny_model.loading_info.unexpected_keys == []
    assert tiny_model.tokenizer is None  # none was saved; tensors work without one
    assert not tiny_model.training
    assert_same_body_outputs(tiny_model, tiny[1])


def test_architecture_class_loads_directly(tiny):
    """BertModel.from_pretrained(folder), without the Auto class, loads the same weights."""
    model = wb.BertModel.from_pretrained(tiny[0])
    assert model.config.name_or_path == str(tiny[0])
    assert_same_body_outputs(model, tiny[1])


def test_pytorch_model_bin_checkpoint(tiny, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(tiny[0] / "config.json", folder)
    torch.save(tiny[1].state_dict(), folder / "pytorch_model.bin")
    model = wb.AutoModel.from_pretrained(folder)
    assert model.loading_info.missing_keys == [] and model.loading_info.unexpected_keys == []
    assert_same_body_outputs(model, tiny[1])


def test_safetensors_preferred_over_bin(tiny, tmp_path):
    folder = copy_checkpoint(tiny[0], tmp_path / "both")
    torch.save({"garbage": torch.zeros(1)}, folder / "pytorch_model.bin")
    model = wb.AutoModel.from_pretrained(folder)
    assert model.loading_info.unexpected_keys == []
    assert_same_body_outputs(model, tiny[1])


def write_sharded(src: Path, folder: Path) -> Path:
    """Split src's model.safetensors into two shards with an index, as Hugging Face writes large models."""
    folder.mkdir()
    shutil.copy(src / "config.json", folder)
    state = load_file(str(src / "model.safetensors"))
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2]}
    shards["model-00002-of-00002.safetensors"] = keys[len(keys) // 2 :]
    weight_map = {}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard_keys})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return folder


def test_sharded_safetensors_checkpoint(tiny, tmp_path):
    folder = write_sharded(tiny[0], tmp_path / "sharded")
    assert not (folder / "model.safetensors").exists()
    model = wb.AutoModel.from_pretrained(folder)
    assert model.loading_info.missing_keys == [] and model.loading_info.unexpected_keys == []
    assert_same_body_outputs(model, tiny[1])


def test_masked_lm_checkpoint_into_bare_model(tiny_mlm):
    folder, hf_mlm = tiny_mlm
    model = wb.AutoModel.from_pretrained(folder)
    info = model.loading_info
    cls_keys = {k for k in load_file(str(folder / "model.safetensors")) if k.startswith("cls.")}
    assert cls_keys and set(info.unexpected_keys) == cls_keys
    assert set(info.missing_keys) == {"pooler.weight", "pooler.bias"}  # an MLM checkpoint has no pooler
    # the body weights are the checkpoint's "bert.*" tensors
    hf_state = hf_mlm.state_dict()
    assert torch.equal(model.embed.weight, hf_state["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(model.blocks[1].attn.v.bias, hf_state["bert.encoder.layer.1.attention.self.value.bias"])
    inputs = example_inputs()
    with torch.no_grad():
        ours, ref = model(**inputs).last_hidden_state, hf_mlm.bert(**inputs).last_hidden_state
    assert max_diff(ours, ref, inputs["attention_mask"]) <= ATOL


def test_masked_lm_checkpoint_into_masked_lm(tiny_mlm):
    folder, hf_mlm = tiny_mlm
    model = wb.AutoModelForMaskedLM.from_pretrained(folder)
    assert model.loading_info.missing_keys == [] and model.loading_info.unexpected_keys == []
    inputs = example_inputs()
    with torch.no_grad():
        ours, ref = model(**inputs).logits, hf_mlm(**inputs).logits
    assert max_diff(ours, ref, inputs["attention_mask"]) <= ATOL


def test_new_classifier_head_is_reported(minilm, caplog):
    with caplog.at_level("WARNING"):
        model = wb.AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=3)
    assert sorted(model.loading_info.missing_keys) == ["classifier.bias", "classifier.weight"]
    assert model.loading_info.unexpected_keys == []
    assert "classifier.weight" in caplog.text and "classifier.bias" in caplog.text
    assert model.config.num_labels == 3
    enc = model.tokenize(["a happy sentence", "a sad one"])
    with torch.no_grad():
        logits = model(**enc).logits
        body = minilm(**enc)
    assert logits.shape == (2, 3)
    # the body is MiniLM's own: the same last residual stream as the bare model
    _, cache = model.run_with_cache(enc, names_filter="blocks.5.hook_resid_post")
    assert max_diff(cache["blocks.5.hook_resid_post"], body.last_hidden_state, enc["attention_mask"]) <= ATOL


def _legacy_state(hf_state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Rename to TensorFlow-era names: LayerNorm.weight/bias -> LayerNorm.gamma/beta, with a body prefix."""
    out = {}
    for key, tensor in hf_state.items():
        if not key.startswith("cls."):
            key = prefix + key.removeprefix("bert.")
        if ".LayerNorm." in key:
            key = key.removesuffix(".weight") + ".gamma" if key.endswith(".weight") else key
            key = key.removesuffix(".bias") + ".beta" if key.endswith(".bias") else key
        out[key] = tensor.clone()
    return out


def test_legacy_gamma_beta_names_into_bare_model(tiny, tmp_path):
    folder = tmp_path / "legacy"
    folder.mkdir()
    shutil.copy(tiny[0] / "config.json", folder)
    state = _legacy_state(tiny[1].state_dict(), prefix="bert.")
    state["cls.seq_relationship.weight"] = torch.zeros(2, 32)  # BertForPreTraining's next-sentence head
    assert any(k.endswith("LayerNorm.gamma") for k in state) and any(k.endswith("LayerNorm.beta") for k in state)
    torch.save(state, folder / "pytorch_model.bin")
    model = wb.AutoModel.from_pretrained(folder)
    assert model.loading_info.missing_keys == []
    assert model.loading_info.unexpected_keys == ["cls.seq_relationship.weight"]
    assert_same_body_outputs(model, tiny[1])


def test_legacy_gamma_beta_names_into_masked_lm(tiny_mlm, tmp_path):
    src, hf_mlm = tiny_mlm
    folder = tmp_path / "legacy_mlm"
    folder.mkdir()
    shutil.copy(src / "config.json", folder)
    state = _legacy_state(hf_mlm.state_dict(), prefix="bert.")
    assert "cls.predictions.transform.LayerNorm.gamma" in state
    save_file(state, str(folder / "model.safetensors"))
    model = wb.AutoModelForMaskedLM.from_pretrained(folder)
    assert model.loading_info.missing_keys == [] and model.loading_info.unexpected_keys == []
    inputs = example_inputs()
    with torch.no_grad():
        assert max_diff(model(**inputs).logits, hf_mlm(**inputs).logits, inputs["attention_mask"]) <= ATOL


def test_untied_masked_lm_checkpoint_matches_hf(tmp_path):
    """tie_word_embeddings=False: Hugging Face (v5) then unties cls.predictions.decoder.bias from
    cls.predictions.bias too, and its logits use decoder.bias."""
    hf_mlm = save_tiny_hf(tmp_path / "untied", "bert", "masked_lm", seed=2, tie_word_embeddings=False)
    model = wb.AutoModelForMaskedLM.from_pretrained(tmp_path / "untied")
    assert model.config.tie_word_embeddings is False
    inputs = example_inputs()
    with torch.no_grad():
        assert max_diff(model(**inputs).logits, hf_mlm(**inputs).logits, inputs["attention_mask"]) <= ATOL


# save_pretrained round trip --------------------------------------------------------------------------------------

ROUND_TRIP = {
    "BertModel": (wb.AutoModel, {}),
    "BertForMaskedLM": (wb.AutoModelForMaskedLM, {}),
    "BertForSequenceClassification": (
        wb.AutoModelForSequenceClassification,
        {"num_labels": 3, "id2label": {0: "neg", 1: "neutral", 2: "pos"}},
    ),
}


def _main_output(out):
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("hf_class_name", list(ROUND_TRIP))
def test_save_pretrained_round_trip(tmp_path, hf_class_name):
    transformers = pytest.importorskip("transformers")
    auto_class, config_fields = ROUND_TRIP[hf_class_name]
    save_tiny_hf(tmp_path / "source", "bert", task_of("bert", hf_class_name), seed=3, **config_fields)
    ours = auto_class.from_pretrained(tmp_path / "source")
    saved = ours.save_pretrained(tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == [hf_class_name]

    hf_back, info = getattr(transformers, hf_class_name).from_pretrained(
        str(saved), attn_implementation="eager", output_loading_info=True
    )
    hf_back.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ours_back = auto_class.from_pretrained(saved)
    assert ours_back.loading_info.missing_keys == [] and ours_back.loading_info.unexpected_keys == []

    inputs = example_inputs()
    mask = inputs["attention_mask"] if hf_class_name != "BertForSequenceClassification" else None
    with torch.no_grad():
        expected = _main_output(ours(**inputs))
        assert max_diff(_main_output(hf_back(**inputs)), expected, mask) <= ATOL
        assert torch.equal(_main_output(ours_back(**inputs)), expected)
    if hf_class_name == "BertModel":
        with torch.no_grad():
            assert max_diff(hf_back(**inputs).pooler_output, ours(**inputs).pooler_output) <= ATOL
    if config_fields:
        assert hf_back.config.id2label == config_fields["id2label"]
        assert ours_back.config.id2label == config_fields["id2label"]


def test_save_pretrained_untied_masked_lm_round_trip_in_hf(tmp_path):
    transformers = pytest.importorskip("transformers")
    save_tiny_hf(tmp_path / "source", "bert", "masked_lm", seed=4, tie_word_embeddings=False)
    ours = wb.AutoModelForMaskedLM.from_pretrained(tmp_path / "source")
    ours.save_pretrained(tmp_path / "saved")
    hf_back, info = transformers.BertForMaskedLM.from_pretrained(
        str(tmp_path / "saved"), attn_implementation="eager", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    inputs = example_inputs()
    with torch.no_grad():
        assert max_diff(hf_back.eval()(**inputs).logits, ours(**inputs).logits, inputs["attention_mask"]) <= ATOL


def test_save_pretrained_with_tokenizer_round_trip(tmp_path, minilm_path):
    """A model with a tokenizer saves it too; the reloaded model runs on text with the same ids."""
    save_tiny_hf(tmp_path / "source", "bert", vocab_size=30522)
    shutil.copy(minilm_path / "tokenizer.json", tmp_path / "source")
    shutil.copy(minilm_path / "tokenizer_config.json", tmp_path / "source")
    model = wb.AutoModel.from_pretrained(tmp_path / "source")
    model.save_pretrained(tmp_path / "saved")
    back = wb.AutoModel.from_pretrained(tmp_path / "saved")
    text = ["Café naïve résumé", "a pair of words"]
    assert torch.equal(back.tokenize(text)["input_ids"], model.tokenize(text)["input_ids"])
    out, cache = back.run_with_cache(text, names_filter="blocks.1.hook_resid_post")
    with torch.no_grad():
        expected = model(**model.tokenize(text)).last_hidden_state
    assert torch.equal(out.last_hidden_state, expected)
    assert cache.tokens[0][:3] == ["[CLS]", "cafe", "naive"]
