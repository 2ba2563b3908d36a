"""A tiny random GPT-2 with a small byte-level BPE tokenizer trained here (no hub, no downloads)."""

from __future__ import annotations

import json

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

TEXT = ["The capital of France is Paris. The cat sat on the mat. Hello world! Keys are on the table."] * 20


def save_tiny_gpt2(folder, seed: int = 0):
    """Save tokenizer.json, tokenizer_config.json and a perturbed random GPT2LMHeadModel; return the HF model."""
    import transformers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TEXT, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    special = {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "model_input_names": ["input_ids", "attention_mask"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(special))
    config = transformers.GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_embd=32, n_layer=2, n_head=4,
                                     n_positions=64, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(seed)
    hf_model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for param in hf_model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    hf_model.save_pretrained(folder)
    return hf_model
