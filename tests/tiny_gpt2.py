"""A tiny random GPT-2 with a small byte-level BPE tokenizer trained here (no hub, no downloads)."""

from __future__ import annotations

import json

from tiny_hf import save_tiny_hf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import workbench as wb

TEXT = ["The capital of France is Paris. The cat sat on the mat. Hello world! Keys are on the table."] * 20


def save_tiny_gpt2(folder, seed: int = 0):
    """Save tokenizer.json, tokenizer_config.json and a perturbed random GPT2LMHeadModel (tiny_hf.save_tiny_hf);
    return the HF model."""
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
    # perturbed by 0.3, more than tiny_hf's default: the generation and steering tests were written on these weights
    return save_tiny_hf(folder, "gpt2", "causal_lm", seed=seed, perturb=0.3, vocab_size=tokenizer.get_vocab_size(),
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)


def load_tiny_gpt2(folder):
    """:func:`save_tiny_gpt2` into ``folder``, loaded back by ``wb.load`` on the CPU (its tokenizer attached)."""
    save_tiny_gpt2(folder)
    return wb.load(str(folder), device="cpu")
