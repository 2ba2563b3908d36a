"""model.compile(): compiled calls give the eager results (<= 1e-5, float32) for the decoder families, with
and without hooks (with hooks the call runs eagerly, after one warning), and compiled decoding generates the
eager tokens. Tiny models; inductor compiles C++, so the tests skip without a C compiler."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from tiny_gpt2 import save_tiny_gpt2
from tiny_hf import tiny_model

import workbench as wb

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile's inductor backend needs a C compiler (cc/gcc), and none is on PATH",
)


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_compiled_forward_equals_eager_with_and_without_hooks(model_type, caplog):
    model = tiny_model(model_type, "causal_lm").eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    steer = ("blocks.0.hook_resid_post", lambda x, hook: x + 1.0)
    with torch.no_grad():
        eager = model(input_ids=ids).logits
        eager_hooked = model.run_with_hooks(ids, fwd_hooks=[steer]).logits
        model.compile()
        try:
            compiled = model(input_ids=ids).logits
            with caplog.at_level(logging.WARNING, logger="workbench.model"):
                hooked = model.run_with_hooks(ids, fwd_hooks=[steer]).logits
                model.run_with_hooks(ids, fwd_hooks=[steer])
            again = model(input_ids=ids).logits
        finally:
            model.compile(enabled=False)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hooked, eager_hooked, atol=0, rtol=0)  # the eager call, hooks and all
    notices = [r for r in caplog.records if "hooks are attached" in r.getMessage()]
    assert len(notices) == 1  # once, not per call


def test_compiled_decoding_generates_the_eager_tokens(tmp_path):
    save_tiny_gpt2(tmp_path)
    model = wb.load(tmp_path, device="cpu")
    eager = model.generate(["The cat sat on", "Hello"], max_new_tokens=4, stop_at_eos=False)
    model.compile(dynamic=True)  # one graph for every cache length
    try:
        compiled = model.generate(["The cat sat on", "Hello"], max_new_tokens=4, stop_at_eos=False)
    finally:
        model.compile(enabled=False)
    assert compiled.new_token_ids == eager.new_token_ids
    torch.testing.assert_close(
        torch.tensor(compiled.steps["probability"]), torch.tensor(eager.steps["probability"]), atol=1e-5, rtol=0
    )
