"""Write the Transformer-XL golden fixtures (tests/fixtures/transfo_xl/) with Hugging Face transformers 4.35.2.

transformers 5 deleted Transformer-XL, so the reference is the last release that ships it. This script is not
part of CI; run it in a throwaway virtual environment (see tests/fixtures/README.md for the exact commands):

    python -m venv /tmp/txl-ref
    /tmp/txl-ref/bin/pip install torch==2.13.0 "transformers==4.35.2" "numpy<2" sacremoses==0.2.0
    /tmp/txl-ref/bin/python scripts/make_transfo_xl_fixtures.py

It writes, per tiny random model (seeded), a Hugging Face checkpoint (config.json + model.safetensors as 4.35
saves it) and ``reference.safetensors``: the inputs of two consecutive segments and, for each segment, the
log-probabilities, hidden states, attentions and new mems ([mem, batch, d_model], as 4.35 returns them); for the
second segment also the per-token losses for labels (Hugging Face's order, and position order). Tokenizer
fixtures: a vocab.pkl saved by 4.35's TransfoXLTokenizer, a legacy-format vocab.pkl (a dict of plain containers,
as the original checkpoints ship) and the ids 4.35 gives on a few strings.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import warnings
from collections import Counter, OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    TransfoXLConfig,
    TransfoXLForSequenceClassification,
    TransfoXLLMHeadModel,
    TransfoXLTokenizer,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "transfo_xl"
SEED = 0
BATCH, SEGMENT = 2, 5

# Tiny configurations that exercise every option the workbench implements.
CONFIGS = {
    # adaptive input/softmax with div_val > 1 (per-cluster embeddings and projections), same_length,
    # clamp_len shorter than the memory, untied relative biases, post-norm.
    "adaptive": dict(
        vocab_size=40,
        cutoffs=[10, 25],
        div_val=2,
        d_model=16,
        d_embed=16,
        n_head=2,
        d_head=8,
        d_inner=24,
        n_layer=2,
        mem_len=6,
        clamp_len=3,
        same_length=True,
        untie_r=True,
        pre_lnorm=False,
    ),
    # div_val 1 with d_embed != d_model (one shared projection, tied to the softmax's tail clusters by
    # tie_projs), no same_length, no clamping, biases shared by all layers (untie_r False), pre-norm.
    "projected": dict(
        vocab_size=30,
        cutoffs=[12],
        div_val=1,
        d_model=16,
        d_embed=12,
        n_head=2,
        d_head=6,
        d_inner=20,
        n_layer=2,
        mem_len=4,
        clamp_len=0,
        same_length=False,
        untie_r=False,
        pre_lnorm=True,
    ),
    # no cutoffs (a plain softmax), no memory at all (mem_len 0).
    "plain": dict(
        vocab_size=25,
        cutoffs=[],
        div_val=1,
        d_model=12,
        d_embed=12,
        n_head=3,
        d_head=4,
        d_inner=16,
        n_layer=2,
        mem_len=0,
        clamp_len=2,
        same_length=False,
        untie_r=True,
        pre_lnorm=False,
    ),
}


def perturb(model: torch.nn.Module) -> None:
    """Random values in every parameter (biases and LayerNorms too), so that a mix-up shows in the outputs."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)


def run_segments(model, config_name: str, config: TransfoXLConfig) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    generator = torch.Generator().manual_seed(SEED + 1)
    segments = [torch.randint(0, config.vocab_size, (BATCH, SEGMENT), generator=generator) for _ in range(2)]
    mems = None
    for index, input_ids in enumerate(segments):
        with torch.no_grad():
            out = model(input_ids=input_ids, mems=mems, output_hidden_states=True, output_attentions=True)
        prefix = f"segment{index}"
        tensors[f"{prefix}.input_ids"] = input_ids
        tensors[f"{prefix}.prediction_scores"] = out.prediction_scores
        for layer, hidden in enumerate(out.hidden_states):
            tensors[f"{prefix}.hidden_states.{layer}"] = hidden
        for layer, attention in enumerate(out.attentions):
            tensors[f"{prefix}.attentions.{layer}"] = attention
        if out.mems is not None:
            for layer, mem in enumerate(out.mems):
                tensors[f"{prefix}.mems.{layer}"] = mem.contiguous()  # [mem, batch, d_model]
        if index == 1:
            labels = input_ids.clone()
            labels[0, 2] = -100  # an ignored label
            with torch.no_grad():
                out = model(input_ids=input_ids, mems=mems, labels=labels.clone())
                tensors[f"{prefix}.labels"] = labels
                tensors[f"{prefix}.losses"] = (
                    out.losses
                )  # Hugging Face's order (by cluster, keep_order=False)
                tensors[f"{prefix}.loss"] = out.loss
                model.crit.keep_order = True
                out = model(input_ids=input_ids, mems=mems, labels=labels.clone())
                model.crit.keep_order = False
                tensors[f"{prefix}.losses_keep_order"] = out.losses  # position order
        with torch.no_grad():
            mems = model(input_ids=input_ids, mems=mems).mems
    return tensors


def make_model_fixtures() -> None:
    for name, fields in CONFIGS.items():
        folder = OUT / name
        torch.manual_seed(SEED)
        config = TransfoXLConfig(**fields, dropout=0.0, eos_token_id=0)
        model = TransfoXLLMHeadModel(config).eval()
        perturb(model)
        model.save_pretrained(folder, safe_serialization=True)
        save_file(run_segments(model, name, config), str(folder / "reference.safetensors"))

    # A sequence classifier (last non-padding token) on the adaptive body.
    torch.manual_seed(SEED)
    config = TransfoXLConfig(**CONFIGS["adaptive"], dropout=0.0, num_labels=3, pad_token_id=1)
    model = TransfoXLForSequenceClassification(config).eval()
    perturb(model)
    folder = OUT / "classifier"
    model.save_pretrained(folder, safe_serialization=True)
    input_ids = torch.tensor([[5, 7, 9, 11, 13], [6, 8, 10, 1, 1]])  # row 1 right-padded with pad_token_id
    with torch.no_grad():
        out = model(input_ids=input_ids, labels=torch.tensor([0, 2]))
    save_file(
        {"input_ids": input_ids, "logits": out.logits, "loss": out.loss, "labels": torch.tensor([0, 2])},
        str(folder / "reference.safetensors"),
    )


TOKENIZER_TEXTS = [
    "The cat sat on the mat.",
    "the, a. xyz",
    "It cost $5,000.50 in 1984 -- a well-known fact!",
    "Hello <formula> world<eos> again",
    "  leading and   trailing spaces  ",
    '"Quoted" (parenthesised) words; and: colons?',
]
TOKENIZER_VOCAB = [
    "<unk>",
    "<eos>",
    "the",
    "The",
    ",",
    ".",
    "a",
    "cat",
    "sat",
    "on",
    "mat",
    "@,@",
    "@.@",
    "@-@",
    "5",
    "000",
    "50",
    "in",
    "1984",
    "--",
    "well",
    "known",
    "fact",
    "!",
    "$",
    "Hello",
    "world",
    "again",
    "leading",
    "and",
    "trailing",
    "spaces",
    '"',
    "Quoted",
    "(",
    "parenthesised",
    ")",
    "words",
    ";",
    ":",
    "colons",
    "?",
    "it",
    "cost",
]


def make_tokenizer_fixtures() -> None:
    folder = OUT / "tokenizer"
    vocab_txt = folder / "vocab.txt"
    folder.mkdir(parents=True, exist_ok=True)
    vocab_txt.write_text("".join(f"{symbol}\n" for symbol in TOKENIZER_VOCAB), encoding="utf-8")
    expected = {}
    for lower_case in (False, True):
        tokenizer = TransfoXLTokenizer(vocab_file=str(vocab_txt), lower_case=lower_case)
        key = "lower_case" if lower_case else "cased"
        expected[key] = {
            text: {"tokens": tokenizer.tokenize(text), "input_ids": tokenizer(text)["input_ids"]}
            for text in TOKENIZER_TEXTS
        }
        if not lower_case:
            saved = folder / "saved_by_4.35"
            tokenizer.save_pretrained(saved)
            (saved / "vocab.txt").unlink(missing_ok=True)  # keep vocab.pkl as the only vocabulary
            # 4.35 reads the ids back from vocab.pkl (its idx2sym is left empty, so it cannot decode).
            reloaded = TransfoXLTokenizer.from_pretrained(saved)
            expected["saved_by_4.35"] = {text: reloaded(text)["input_ids"] for text in TOKENIZER_TEXTS}
    # The original checkpoints' vocab.pkl: a pickled dict of plain containers (Counter, OrderedDict, lists).
    legacy = folder / "legacy"
    legacy.mkdir(exist_ok=True)
    sym2idx = OrderedDict((symbol, index) for index, symbol in enumerate(TOKENIZER_VOCAB))
    state = {
        "counter": Counter({symbol: 100 - index for index, symbol in enumerate(TOKENIZER_VOCAB)}),
        "special": ["<eos>"],
        "min_freq": 0,
        "max_size": None,
        "lower_case": False,
        "delimiter": None,
        "vocab_file": None,
        "never_split": ["<unk>", "<eos>", "<formula>"],
        "idx2sym": list(TOKENIZER_VOCAB),
        "sym2idx": sym2idx,
        "eos_idx": 1,
        "unk_idx": 0,
    }
    with open(legacy / "vocab.pkl", "wb") as file:
        pickle.dump(state, file, protocol=2)
    reloaded = TransfoXLTokenizer(pretrained_vocab_file=str(legacy / "vocab.pkl"))
    expected["legacy"] = {text: reloaded(text)["input_ids"] for text in TOKENIZER_TEXTS}
    (folder / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def main() -> None:
    if transformers.__version__ != "4.35.2":
        sys.exit(f"run this with transformers 4.35.2 (found {transformers.__version__}); see the docstring")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    make_model_fixtures()
    make_tokenizer_fixtures()
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "seed": SEED}
    (OUT / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")
    total = sum(path.stat().st_size for path in OUT.rglob("*") if path.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
