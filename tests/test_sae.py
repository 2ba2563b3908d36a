"""Sparse dictionaries (workbench.sae): each kind's encode/decode and loss against hand-written references,
the straight-through threshold gradient, recovery of planted directions, splicing, metrics by hand,
exact resumption, saving and loading in SAELens's format, and training on a tiny model from texts."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

import workbench as wb
from workbench import sae
from workbench.sae import functions

TEXTS = [
    "The cat sat on the mat.",
    "A dog ran in the park today.",
    "Colorless green ideas sleep furiously.",
    "One two three four five six seven.",
    "She sells sea shells by the sea shore.",
    "The quick brown fox jumps over the lazy dog.",
]
HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def lm():
    return wb.zoo.tiny("gpt2", task="causal_lm", device="cpu")


def small(kind: str, d_in: int = 6, d_sae: int = 10, seed: int = 0, **overrides) -> sae.SparseAutoencoder:
    """A dictionary with random (not initial) parameters, so biases and thresholds matter."""
    cfg = sae.SAEConfig(
        d_in=d_in, d_sae=d_sae, kind=kind, k=3 if kind in ("topk", "batchtopk") else None, **overrides
    )
    dictionary = sae.SparseAutoencoder(cfg, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in dictionary.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        if kind == "jumprelu":
            dictionary.log_threshold.copy_(torch.full((d_sae,), math.log(0.3)))
        if kind == "batchtopk":
            dictionary.threshold.fill_(0.2)
    return dictionary


# References written out by hand ---------------------------------------------------------------------------
def reference_pre(d, x):
    x_in = x - d.b_dec if d.cfg.apply_b_dec_to_input else x
    return x_in @ d.W_enc + d.b_enc


def reference_topk(pre, k):
    """Per row: sort, keep the k largest (ReLU'd), by index loops."""
    out = torch.zeros_like(pre)
    for row in range(pre.shape[0]):
        order = sorted(range(pre.shape[1]), key=lambda j: -float(pre[row, j]))
        for j in order[:k]:
            out[row, j] = max(float(pre[row, j]), 0.0)
    return out


def reference_acts(d, pre):
    kind = d.cfg.kind
    if kind == "relu":
        return pre.clamp_min(0)
    if kind == "topk":
        return reference_topk(pre, d.cfg.k)
    threshold = d.log_threshold.exp() if kind == "jumprelu" else d.threshold.float()
    return (
        torch.where(pre > threshold, pre, torch.zeros_like(pre)).clamp_min(0)
        if kind == "batchtopk"
        else torch.where(pre > threshold, pre, torch.zeros_like(pre))
    )


@pytest.mark.parametrize("kind", sae.KINDS)
def test_encode_decode_match_a_hand_written_reference(kind):
    d = small(kind)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        pre = reference_pre(d, x)
        acts = reference_acts(d, pre)
        out = d(x)
        torch.testing.assert_close(out.pre_activations, pre)
        torch.testing.assert_close(out.feature_acts, acts)
        torch.testing.assert_close(d.decode(acts), acts @ d.W_dec + d.b_dec)
        torch.testing.assert_close(out.reconstruction, acts @ d.W_dec + d.b_dec)
        assert (acts > 0).any() and (acts == 0).any()  # the test exercises the sparsity


@pytest.mark.parametrize("kind", sae.KINDS)
def test_loss_matches_the_published_formula(kind):
    d = small(kind, l1_coefficient=0.7)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(4))
    dead = torch.zeros(10, dtype=torch.bool)
    dead[[1, 4, 7, 8]] = True
    with torch.no_grad():
        parts = d.training_loss(x, dead=dead, sparsity_scale=0.5)
        pre = reference_pre(d, x)
        if kind == "batchtopk":  # the k * n largest ReLU'd pre-activations of the whole batch
            flat = pre.clamp_min(0).flatten()
            keep = flat >= flat.sort(descending=True).values[d.cfg.k * len(x) - 1]
            acts = (flat * keep).reshape(pre.shape)
        elif kind == "jumprelu":
            acts = torch.where(pre > d.log_threshold.exp(), pre, torch.zeros_like(pre))
        else:
            acts = reference_acts(d, pre)
        recon = acts @ d.W_dec + d.b_dec
        mse = sum(float(((x[i] - recon[i]) ** 2).sum()) for i in range(len(x))) / len(x)
        if kind == "relu":  # lambda * sum_i f_i ||W_dec_i||, the coefficient warmed up to half
            extra = (
                0.35
                * sum(float(acts[i, j]) * float(d.W_dec[j].norm()) for i in range(8) for j in range(10))
                / 8
            )
        elif kind == "jumprelu":  # lambda * ||f||_0
            extra = 0.35 * float((pre > d.log_threshold.exp()).sum()) / 8
        else:  # alpha * ||e - e_hat||^2 with e_hat from the top-k_aux dead pre-activations
            error = x - recon
            dead_acts = torch.zeros_like(pre)
            dead_acts[:, dead] = reference_topk(pre[:, dead], min(d.cfg.aux_k, 4))
            extra = d.cfg.aux_coefficient * float(((error - dead_acts @ d.W_dec) ** 2).sum()) / 8
    assert parts.mse.item() == pytest.approx(mse, rel=1e-5)
    assert parts.loss.item() == pytest.approx(mse + extra, rel=1e-5)
    assert extra > 0


def test_topk_keeps_exactly_k_and_batchtopk_k_per_token_on_average():
    pre = torch.rand(7, 50, generator=torch.Generator().manual_seed(0)) + 0.1  # all positive
    assert ((functions.topk(pre, 5) > 0).sum(-1) == 5).all()
    assert int((functions.batch_topk(pre, 5) > 0).sum()) == 5 * 7
    d = small("topk", d_sae=40)
    acts = d.encode(torch.randn(9, 6) * 10)
    assert ((acts != 0).sum(-1) <= 3).all()  # ReLU may zero some of the k


def test_jumprelu_threshold_gradient_is_the_published_straight_through_estimator():
    eps = 0.1
    threshold = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    pre = torch.tensor([[0.52, 0.96, 3.0], [0.3, 1.04, 1.97], [0.449, 1.2, 2.049]], requires_grad=True)
    weight = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    (functions.jumprelu(pre, threshold, eps) * weight).sum().backward()
    # d/d theta_i = sum_n -(theta_i / eps) K((z_ni - theta_i) / eps) w_ni, K(u) = 1{|u| < 1/2}
    kernel = ((pre.detach() - threshold.detach()) / eps).abs() < 0.5
    expected = (-(threshold.detach() / eps) * kernel * weight).sum(0)
    torch.testing.assert_close(threshold.grad, expected)
    assert expected.tolist() == pytest.approx([-5.0 * 1, -10.0 * (2 + 5), -20.0 * (6 + 9)])
    torch.testing.assert_close(pre.grad, (pre.detach() > threshold.detach()) * weight)  # H(z - theta) w
    threshold.grad = None
    (functions.step(pre, threshold, eps) * weight).sum().backward()  # the L0 term: -(1/eps) K(...)
    torch.testing.assert_close(threshold.grad, (-(1.0 / eps) * kernel * weight).sum(0))


def test_training_recovers_planted_sparse_directions():
    """8 unit directions in 12 dimensions, each active on 20% of the samples with magnitude in [1, 2]: every
    one is found by some decoder row (cosine > 0.9)."""
    generator = torch.Generator().manual_seed(0)
    d_in, n_true = 12, 8
    directions = torch.randn(n_true, d_in, generator=generator)
    directions /= directions.norm(dim=-1, keepdim=True)

    def batch():
        active = torch.rand(256, n_true, generator=generator) < 0.2
        magnitude = 1 + torch.rand(256, n_true, generator=generator)
        return (active * magnitude) @ directions

    data = [batch() for _ in range(40)]
    d = sae.train(
        None,
        "synthetic",
        data,
        d_sae=16,
        kind="topk",
        k=3,
        steps=300,
        batch_size=64,
        lr=5e-3,
        device="cpu",
        progress=False,
        seed=0,
    )
    decoder = d.W_dec.detach() / d.W_dec.detach().norm(dim=-1, keepdim=True)
    best = (directions @ decoder.T).max(dim=1).values
    assert (best > 0.9).all(), best


# Splicing ------------------------------------------------------------------------------------------------
def plus_minus_identity(d_model: int) -> sae.SparseAutoencoder:
    """ReLU(x) - ReLU(-x) = x: a ReLU dictionary that reconstructs every input exactly."""
    d = sae.SparseAutoencoder(sae.SAEConfig(d_in=d_model, d_sae=2 * d_model, kind="relu", hook_name=HOOK))
    eye = torch.eye(d_model)
    with torch.no_grad():
        d.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        d.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        d.b_enc.zero_()
        d.b_dec.zero_()
    return d


def test_splicing_an_identity_dictionary_leaves_outputs_unchanged(lm):
    clean = lm(**lm.tokenize(TEXTS[:3])).logits
    names_before = lm.hook_names
    state_before = set(lm.state_dict())
    d = plus_minus_identity(lm.config.d_model)
    with d.spliced(lm):
        out, cache = lm.run_with_cache(TEXTS[:3])
        assert set(lm.state_dict()) == state_before  # the dictionary's parameters are not the model's
    torch.testing.assert_close(out.logits, clean, rtol=1e-5, atol=1e-5)
    assert f"{HOOK}.sae.hook_feature_acts" in cache and f"{HOOK}.sae.hook_reconstruction" in cache
    assert cache[f"{HOOK}.sae.hook_feature_acts"].shape[-1] == 2 * lm.config.d_model
    assert lm.hook_names == names_before  # the names go when the block ends

    noisy = small("topk", d_in=lm.config.d_model, d_sae=64, hook_name=HOOK)
    with noisy.spliced(lm, error_term=True):
        out, cache = lm.run_with_cache(TEXTS[:3])
    torch.testing.assert_close(out.logits, clean, rtol=1e-4, atol=1e-4)
    error = cache[f"{HOOK}.sae.hook_sae_error"]
    torch.testing.assert_close(
        error, cache[HOOK] - cache[f"{HOOK}.sae.hook_reconstruction"], rtol=1e-5, atol=1e-5
    )
    with noisy.spliced(lm):
        changed = lm(**lm.tokenize(TEXTS[:3])).logits
    assert not torch.allclose(changed, clean, atol=1e-3)  # without the error term the reconstruction matters


def test_spliced_features_can_be_edited_by_name(lm):
    d = plus_minus_identity(lm.config.d_model)
    name = f"{HOOK}.sae.hook_feature_acts"
    with d.spliced(lm):
        ablated = lm.run_with_hooks(
            TEXTS[:2], fwd_hooks=[(name, lambda acts, hook: torch.zeros_like(acts))]
        ).logits
    zeroed = lm.run_with_hooks(TEXTS[:2], fwd_hooks=[(HOOK, lambda x, hook: torch.zeros_like(x))]).logits
    torch.testing.assert_close(ablated, zeroed, rtol=1e-5, atol=1e-5)


def test_splicing_refuses_wrong_widths_names_orders_and_double_splices(lm):
    d = small("relu", d_in=7, hook_name=HOOK)
    with pytest.raises(ValueError, match="d_in is 7"), d.spliced(lm):
        lm(**lm.tokenize(TEXTS[:1]))
    with (
        pytest.raises(KeyError, match="not a hook point"),
        small("relu", hook_name="blocks.1.hook_resid_pots").spliced(lm),
    ):
        pass
    with d.spliced(lm), pytest.raises(ValueError, match="already has a dictionary spliced in"):
        with small("relu", hook_name=HOOK).spliced(lm):
            pass
    backwards = small("relu", d_in=lm.config.d_model, hook_name=HOOK, hook_name_out="blocks.0.hook_mlp_out")
    with pytest.raises(ValueError, match="ran before its input hook"), backwards.spliced(lm):
        lm(**lm.tokenize(TEXTS[:1]))
    assert not any(".sae." in name for name in lm.hook_names)  # removed also after errors


# Metrics -------------------------------------------------------------------------------------------------
def test_metrics_equal_a_hand_computation(lm):
    d = small("topk", d_in=lm.config.d_model, d_sae=64, hook_name=HOOK)
    texts = TEXTS[:4]
    got = d.metrics(lm, texts, batch_size=3)
    ce = {"clean": [], "spliced": [], "zero": []}
    errors, targets, l0 = [], [], []
    for text in texts:  # one text at a time: no padding
        ids = lm.tokenize(text)["input_ids"]
        _, cache = lm.run_with_cache(ids, names_filter=HOOK)
        x = cache[HOOK][0]
        with torch.no_grad():
            recon, acts, _ = d(x)
        errors.append(x - recon)
        targets.append(x)
        l0 += (acts > 0).sum(-1).tolist()
        replace = {
            "clean": None,
            "spliced": lambda a, hook: d(a).reconstruction.detach(),
            "zero": lambda a, hook: torch.zeros_like(a),
        }
        for name, fn in replace.items():
            logits = lm.run_with_hooks(ids, fwd_hooks=[(HOOK, fn)] if fn else []).logits[0]
            for position in range(ids.shape[1] - 1):
                ce[name].append(-float(logits[position].detach().log_softmax(-1)[ids[0, position + 1]]))
    mean = {name: sum(values) / len(values) for name, values in ce.items()}
    assert got["ce_clean"] == pytest.approx(mean["clean"], rel=1e-4)
    assert got["ce_spliced"] == pytest.approx(mean["spliced"], rel=1e-4)
    assert got["ce_zero"] == pytest.approx(mean["zero"], rel=1e-4)
    recovered = (mean["zero"] - mean["spliced"]) / (mean["zero"] - mean["clean"])
    assert got["loss_recovered"] == pytest.approx(recovered, rel=1e-3)
    error, target = torch.cat(errors), torch.cat(targets)
    assert got["mse"] == pytest.approx(float(error.pow(2).mean()), rel=1e-4)
    ev = 1 - float(error.pow(2).sum()) / float((target - target.mean(0)).pow(2).sum())
    assert got["explained_variance"] == pytest.approx(ev, rel=1e-4)
    assert got["l0"] == pytest.approx(sum(l0) / len(l0))
    assert got["tokens"] == len(l0)


def test_metrics_of_a_masked_lm_give_kl_but_no_cross_entropy():
    mlm = wb.zoo.tiny("bert", task="masked_lm", device="cpu")
    d = small("relu", d_in=mlm.config.d_model, d_sae=32, hook_name="blocks.0.hook_resid_post")
    got = d.metrics(mlm, TEXTS[:2])
    assert math.isnan(got["ce_clean"]) and math.isnan(got["loss_recovered"])
    assert got["kl_spliced"] > 0 and "masked LM" in got.attrs["note"]


def test_training_under_bfloat16_autocast_stays_finite():
    batches = [torch.randn(32, 8, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    d = sae.train(
        None,
        "x",
        batches,
        d_sae=16,
        kind="jumprelu",
        steps=6,
        batch_size=16,
        device="cpu",
        autocast=True,
        progress=False,
    )
    assert d.W_enc.dtype == torch.float32 and all(torch.isfinite(p).all() for p in d.parameters())
    assert math.isfinite(d.training_log[-1]["loss"])


def test_metrics_of_a_model_without_logits_say_why(lm):
    base = wb.zoo.tiny("bert", task="base", device="cpu")
    d = small("relu", d_in=base.config.d_model, d_sae=32, hook_name="blocks.0.hook_resid_post")
    got = d.metrics(base, TEXTS[:2])
    assert math.isnan(got["loss_recovered"]) and math.isnan(got["kl_spliced"])
    assert "no output logits" in got.attrs["note"] and got["l0"] > 0


# Training ------------------------------------------------------------------------------------------------
def assert_same_weights(a: sae.SparseAutoencoder, b: sae.SparseAutoencoder) -> None:
    """Bit for bit: every parameter and buffer."""
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


class CrashingBatches:
    """Activation batches that can be made to fail part-way, as an interrupted run would."""

    def __init__(self, batches, crash_after=None):
        self.batches, self.crash_after = batches, crash_after

    def __iter__(self):
        for index, batch in enumerate(self.batches):
            if self.crash_after is not None and index >= self.crash_after:
                raise RuntimeError("interrupted")
            yield batch


@pytest.mark.parametrize("kind", ["topk", "jumprelu"])
def test_training_resumes_exactly_from_a_checkpoint(tmp_path, kind):
    batches = [torch.randn(24, 8, generator=torch.Generator().manual_seed(i)) for i in range(10)]
    settings = dict(
        d_sae=16,
        kind=kind,
        k=4 if kind == "topk" else None,
        steps=30,
        batch_size=16,
        buffer_size=32,
        lr=1e-2,
        device="cpu",
        progress=False,
        checkpoint_every=1,
        dead_after_tokens=64,
    )
    whole = sae.train(None, "x", CrashingBatches(batches), checkpoint_dir=tmp_path / "a", **settings)
    data = CrashingBatches(batches, crash_after=7)  # crashes in the first epoch's refills
    with pytest.raises(RuntimeError, match="interrupted"):
        sae.train(None, "x", data, checkpoint_dir=tmp_path / "b", **settings)
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    data.crash_after = None
    resumed = sae.train(None, "x", data, checkpoint_dir=tmp_path / "b", **settings)
    assert_same_weights(whole, resumed)
    assert torch.equal(whole.tokens_since_fired, resumed.tokens_since_fired)
    with pytest.raises(ValueError, match="other settings"):
        sae.train(None, "x", data, checkpoint_dir=tmp_path / "b", **{**settings, "lr": 2e-2})


def test_train_on_a_tiny_model_from_texts_end_to_end(lm, tmp_path):
    d = sae.train(
        lm,
        HOOK,
        TEXTS * 3,
        d_sae=256,
        kind="topk",
        k=8,
        steps=25,
        batch_size=32,
        buffer_size=64,
        lr=1e-3,
        device="cpu",
        progress=False,
    )
    assert d.cfg.d_in == lm.config.d_model and d.cfg.hook_name == HOOK
    assert d.training_log[-1]["explained_variance"] > d.training_log[0]["explained_variance"]
    got = d.metrics(lm, TEXTS[:3])
    assert got["l0"] <= 8 and 0 < got["explained_variance"] <= 1 and got.attrs["note"].startswith("causal LM")
    examples = d.top_examples(lm, TEXTS, n=3, features=[0, 1, 2, 3])
    assert list(examples.columns[:6]) == ["feature", "rank", "activation", "text", "position", "token"]
    for _, row in examples.iterrows():
        assert row["context"].count("[") >= 1 and row["activation"] > 0
        alone = lm.to_str_tokens(TEXTS[row["text"]])  # the text's tokens, without a batch's padding
        assert alone[row["position"]] == row["token"]
        assert row["left"] == alone[max(0, row["position"] - 8) : row["position"]]
        assert row["right"] == alone[row["position"] + 1 : row["position"] + 9]
    for _, group in examples.groupby("feature"):
        assert list(group["activation"]) == sorted(group["activation"], reverse=True)
    d.save(tmp_path / "d")
    pd.testing.assert_series_equal(sae.load(tmp_path / "d").metrics(lm, TEXTS[:3]), got, rtol=1e-4)


def test_a_transcoder_trains_and_splices_at_its_output_hook(lm):
    hook_in, hook_out = "blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out"
    d = sae.train(
        lm,
        hook_in,
        TEXTS * 2,
        d_sae=64,
        kind="relu",
        hook_out=hook_out,
        steps=10,
        batch_size=32,
        buffer_size=64,
        device="cpu",
        progress=False,
    )
    assert d.cfg.is_transcoder and d.cfg.d_out == lm.config.d_model
    clean = lm(**lm.tokenize(TEXTS[:2])).logits
    with d.spliced(lm, error_term=True):
        out, cache = lm.run_with_cache(TEXTS[:2])
    torch.testing.assert_close(out.logits, clean, rtol=1e-4, atol=1e-4)
    assert f"{hook_out}.sae.hook_feature_acts" in cache


# Saving and loading --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sae.KINDS)
def test_save_load_round_trip_in_saelens_format(tmp_path, kind):
    d = small(kind, hook_name=HOOK, model_name="gpt2")
    with torch.no_grad():
        d.scale_in.fill_(1.7)
        d.scale_out.fill_(1.7)
    d.save(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    architecture = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}[kind]
    assert cfg["architecture"] == architecture and cfg["d_in"] == 6 and cfg["d_sae"] == 10
    assert cfg["metadata"]["hook_name"] == HOOK and cfg["normalize_activations"] == "none"
    loaded = sae.load(tmp_path)
    assert loaded.cfg.kind == kind and float(loaded.scale_in) == 1.0
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), d.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded(x).reconstruction, d(x).reconstruction, rtol=1e-5, atol=1e-5)
    # Without our own entry the file reads as SAELens would: batchtopk is the JumpReLU it is at inference.
    del cfg["workbench"]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    plain = sae.load(tmp_path)
    assert plain.cfg.kind == ("jumprelu" if kind == "batchtopk" else kind)
    with torch.no_grad():
        torch.testing.assert_close(plain(x).reconstruction, d(x).reconstruction, rtol=1e-5, atol=1e-5)


def test_load_reads_a_pre_6_saelens_config(tmp_path):
    d = small("topk", hook_name=HOOK)
    d.save(tmp_path)
    old = {
        "d_in": 6,
        "d_sae": 10,
        "hook_point": HOOK,
        "model_name": "gpt2",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 3},
        "apply_b_dec_to_input": True,
        "dtype": "torch.float32",
    }
    (tmp_path / "cfg.json").write_text(json.dumps(old))
    loaded = sae.load(tmp_path)
    assert (loaded.cfg.kind, loaded.cfg.k, loaded.cfg.hook_name, loaded.cfg.model_name) == (
        "topk",
        3,
        HOOK,
        "gpt2",
    )
    x = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), d.encode(x))


def test_load_refuses_bad_files_with_clear_errors(tmp_path):
    from safetensors.torch import load_file, save_file

    d = small("jumprelu", hook_name=HOOK)
    d.save(tmp_path)
    weights, cfg_path = tmp_path / "sae_weights.safetensors", tmp_path / "cfg.json"
    good = load_file(weights)
    cfg = json.loads(cfg_path.read_text())
    del cfg["workbench"]
    cfg_path.write_text(json.dumps(cfg))

    def refused(match):
        with pytest.raises((sae.SAEFileError, FileNotFoundError), match=match):
            sae.load(tmp_path)

    save_file({**good, "W_dec": good["W_dec"].T.contiguous()}, weights)
    refused(r"sae_weights.safetensors: 'W_dec' has shape \[6, 10\], expected \[10, 6\]")
    save_file({k: v for k, v in good.items() if k != "threshold"}, weights)
    refused(r"missing \['threshold'\]")
    save_file({**good, "extra": torch.zeros(2)}, weights)
    refused(r"unexpected \['extra'\]")
    save_file({**good, "b_enc": torch.full((10,), float("nan"))}, weights)
    refused("'b_enc' holds NaN")
    save_file({**good, "threshold": -good["threshold"]}, weights)
    refused("negative")
    weights.write_bytes(b"\x00" * 16)
    refused("not a readable safetensors file")
    save_file(good, weights)
    cfg_path.write_text(json.dumps({**cfg, "architecture": "gated"}))
    refused("cfg.json: architecture 'gated' is not supported")
    cfg_path.write_text(json.dumps({**cfg, "d_sae": "ten"}))
    refused("cfg.json: 'd_sae' must be a positive integer")
    cfg_path.write_text("{not json")
    refused("cfg.json is not valid JSON")
    cfg_path.unlink()
    refused("cfg.json does not exist")
    with pytest.raises(FileNotFoundError, match="no dictionary folder"):
        sae.load(tmp_path / "nowhere")


def test_train_from_the_probes_activation_store(lm, tmp_path):
    from probes.store import extract

    sentences = [text.rstrip(".").split() for text in TEXTS]
    store = extract(lm, sentences, tmp_path / "store", layers=[2], progress=False)
    batches = store.batches(2, batch_size=8)
    rows = torch.cat(list(batches))
    assert rows.shape == (store.n_words, lm.config.d_model)  # every word got a token here
    torch.testing.assert_close(torch.cat(list(batches)), rows)  # iterating again starts over
    d = sae.train(
        lm,
        "blocks.1.hook_resid_post",
        batches,
        d_sae=32,
        kind="relu",
        steps=5,
        batch_size=16,
        device="cpu",
        progress=False,
    )
    assert d.cfg.d_in == lm.config.d_model and [entry["step"] for entry in d.training_log] == [0, 4]


def test_training_from_texts_resumes_exactly(lm, tmp_path, monkeypatch):
    from workbench.sae import stream

    settings = dict(
        d_sae=32,
        kind="batchtopk",
        k=4,
        steps=12,
        batch_size=16,
        buffer_size=32,
        text_batch_size=2,
        lr=1e-2,
        device="cpu",
        progress=False,
        checkpoint_every=1,
    )
    whole = sae.train(lm, HOOK, TEXTS, checkpoint_dir=tmp_path / "a", **settings)
    real, calls = stream.activations_at, []

    def crash_on_sixth(*args):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("interrupted")
        return real(*args)

    monkeypatch.setattr(stream, "activations_at", crash_on_sixth)
    with pytest.raises(RuntimeError, match="interrupted"):
        sae.train(lm, HOOK, TEXTS, checkpoint_dir=tmp_path / "b", **settings)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] > 0
    monkeypatch.setattr(stream, "activations_at", real)
    resumed = sae.train(lm, HOOK, TEXTS, checkpoint_dir=tmp_path / "b", **settings)
    assert_same_weights(whole, resumed)


def test_a_one_shot_iterator_resumes_exactly_when_given_again_from_its_start(tmp_path):
    batches = [torch.randn(24, 8, generator=torch.Generator().manual_seed(i)) for i in range(10)]
    settings = dict(
        d_sae=16,
        kind="relu",
        steps=12,
        batch_size=16,
        buffer_size=32,
        lr=1e-2,
        device="cpu",
        progress=False,
        checkpoint_every=1,
    )

    def one_shot(crash_after=None):
        for index, batch in enumerate(batches):
            if index == crash_after:
                raise RuntimeError("interrupted")
            yield batch

    whole = sae.train(None, "x", one_shot(), checkpoint_dir=tmp_path / "a", **settings)
    with pytest.raises(RuntimeError, match="interrupted"):
        sae.train(None, "x", one_shot(crash_after=6), checkpoint_dir=tmp_path / "b", **settings)
    resumed = sae.train(None, "x", one_shot(), checkpoint_dir=tmp_path / "b", **settings)
    assert_same_weights(whole, resumed)
    short = sae.train(None, "x", one_shot(), **{**settings, "steps": 100})
    assert short.training_log[-1]["step"] < 20  # the iterator ran out (240 rows): the run stopped early


def test_load_from_a_hub_repository_subfolder_fetches_only_the_two_files(tmp_path, monkeypatch):
    import huggingface_hub

    d = small("relu", hook_name=HOOK)
    d.save(tmp_path / "snapshot" / "blocks.1.hook_resid_post")
    asked = {}

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        asked.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = sae.load("someone/some-saes/blocks.1.hook_resid_post", revision="v1")
    assert asked == {
        "repo_id": "someone/some-saes",
        "revision": "v1",
        "allow_patterns": [
            "blocks.1.hook_resid_post/cfg.json",
            "blocks.1.hook_resid_post/sae_weights.safetensors",
        ],
    }
    torch.testing.assert_close(loaded.W_dec, d.W_dec)


def test_bad_training_arguments_are_named():
    batches = [torch.randn(8, 4)]
    with pytest.raises(ValueError, match="exactly one of steps= and tokens="):
        sae.train(None, "x", batches, d_sae=8, kind="relu", steps=3, tokens=100)
    with pytest.raises(TypeError, match="data is one str"):
        sae.train(None, "x", "some text", d_sae=8, kind="relu", steps=3)
    with pytest.raises(ValueError, match="a model is needed"):
        sae.train(None, "x", ["some text"], d_sae=8, kind="relu", steps=3)
    with pytest.raises(ValueError, match=r"needs an int k in \[1, d_sae=8\]"):
        sae.train(None, "x", batches, d_sae=8, kind="topk", steps=3, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="kind is 'gated'"):
        sae.SAEConfig(d_in=4, d_sae=8, kind="gated")
    with pytest.raises(ValueError, match="cannot start training: the activation data ran out"):
        sae.train(
            None, "x", iter([torch.randn(3, 4)]), d_sae=8, kind="relu", steps=3, batch_size=4, progress=False
        )
    with pytest.raises(ValueError, match=r"expected floating-point activations \[n, d\]"):
        sae.train(None, "x", [torch.arange(8)], d_sae=8, kind="relu", steps=3, batch_size=4, progress=False)
