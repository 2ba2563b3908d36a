"""Checks every bridged family must pass (tests/test_bridge*.py): a helper module, not a test module.

``check_family(hf_model, inputs)`` runs them all on a tiny random Hugging Face model with eager attention:
no hooks -> Hugging Face's outputs exactly; ``hook_resid_pre`` equal to ``hidden_states[i]``; the pattern
equal to ``attentions[i]``; editing hook points changes the output (and an identity edit does not); no hook
is left behind after a run, also one that raised.
"""

from __future__ import annotations

import pytest
import torch

import workbench as wb

TOL = 1e-4


def random_perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Every parameter moved by ``scale`` * N(0, 1) (norms off 1, biases off 0), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model.eval()


def run_hf(hf_model, inputs: dict, **flags):
    """Hugging Face's own forward with ``flags`` (``output_hidden_states=True``...), no bridge involved."""
    with torch.no_grad():
        return hf_model(**inputs, **flags)


def leftover_torch_hooks(hf_model) -> int:
    """Module hooks attached to any module of ``hf_model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in hf_model.modules())


def assert_close(ours, theirs, what, tol=TOL):
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    diff = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    assert diff <= tol, f"{what} differs by {diff:.2e}"


def check_family(hf_model, inputs: dict, output: str = "logits", prefix: str = "", hidden: str = "hidden_states",
                 attentions: str | None = "attentions", resid_pre_matches_hidden: bool = True):
    """Run the bridge's checks on ``hf_model`` (eager attention, eval) with ``inputs`` (keyword arguments of its
    forward). ``prefix`` is the stack checked (``"decoder."`` for an encoder-decoder's decoder, whose
    Hugging Face outputs are ``decoder_hidden_states`` / ``decoder_attentions``). Returns the bridged model."""
    model = wb.from_hf(hf_model)
    reference = run_hf(hf_model, inputs, output_hidden_states=True, output_attentions=attentions is not None)
    # Hugging Face's output recorders stay attached once a run asked for hidden states; count after it.
    before = leftover_torch_hooks(hf_model)
    expected = getattr(reference, output)

    # No hooks: Hugging Face's forward, bit for bit.
    with torch.no_grad():
        plain = model(**inputs)
    assert torch.equal(getattr(plain, output), expected), "the bridged forward changed the output"

    # Caching everything changes nothing, and the cached values are Hugging Face's.
    with torch.no_grad():
        cached_out, cache = model.run_with_cache(dict(inputs))
    assert_close(getattr(cached_out, output), expected, "output with every hook cached")
    hidden_states = getattr(reference, hidden)
    blocks = [name for name in cache if name.startswith(f"{prefix}blocks.") and name.endswith("hook_resid_pre")]
    assert blocks, f"no {prefix}blocks.*.hook_resid_pre in {list(cache)[:20]}"
    if resid_pre_matches_hidden:
        for i in range(len(blocks)):
            assert_close(cache[f"{prefix}blocks.{i}.hook_resid_pre"], hidden_states[i], f"resid_pre {i}")
    if attentions is not None:
        for i, pattern in enumerate(getattr(reference, attentions)):
            assert_close(cache[f"{prefix}blocks.{i}.attn.hook_pattern"], pattern, f"pattern {i}")

    # Identity edits keep the output; real edits change it.
    last = len(blocks) - 1
    edits = [f"{prefix}blocks.{last}.hook_resid_pre", f"{prefix}blocks.0.hook_resid_post"]
    edits += [name for name in (f"{prefix}blocks.0.attn.hook_pattern", f"{prefix}blocks.0.attn.hook_v",
                                f"{prefix}blocks.0.mlp.hook_post", f"{prefix}blocks.0.hook_resid_mid")
              if name in model.hook_points()]
    read_only = set(model.read_only_hooks)
    for name in [name for name in edits if name in read_only]:
        with pytest.raises(ValueError, match="read only"):
            model.run_with_hooks(dict(inputs), fwd_hooks=[(name, lambda x, hook: x * 0.5)])
    for name in [name for name in edits if name not in read_only]:
        with torch.no_grad():
            same = model.run_with_hooks(dict(inputs), fwd_hooks=[(name, lambda x, hook: x.clone())])
            changed = model.run_with_hooks(dict(inputs), fwd_hooks=[(name, lambda x, hook: x * 0.5 + 0.1)])
        assert_close(getattr(same, output), expected, f"identity edit at {name}")
        assert (getattr(changed, output) - expected).abs().max() > 1e-3, f"editing {name} changed nothing"

    # Hooks are gone after a run, also after one that raised.
    def fail(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(dict(inputs), fwd_hooks=[(edits[0], fail)])
    assert leftover_torch_hooks(hf_model) == before
    assert not model.attached_hooks()
    assert hf_model.config._attn_implementation == "eager"
    assert leftover_torch_hooks(hf_model) == before
    with torch.no_grad():
        assert torch.equal(getattr(model(**inputs), output), expected)
    return model
