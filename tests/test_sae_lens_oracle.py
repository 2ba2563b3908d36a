"""SAELens (the ``sae-lens`` package) as the oracle of the dictionary file format (workbench/sae/io.py).

Both directions, for every kind both libraries have: a dictionary built with random weights through
SAELens's own classes and written by its own ``save_model`` / ``save_inference_model`` loads with
``sae.load`` and gives SAELens's encode / decode / forward outputs; a dictionary saved by ``sae.save``
loads with SAELens's ``SAE.load_from_disk`` and gives ours. Tolerance 1e-5 (float32).

Kinds: standard (ReLU + L1), topk (also as SAELens's trainer saves it, with
``rescale_acts_by_decoder_norm``), jumprelu, batchtopk (which both save as the JumpReLU it is at
inference), transcoder and jumprelu_transcoder. Not covered: our top-k transcoder (SAELens has no such
architecture), SAELens's gated, skip-transcoder, matryoshka, temporal and matching-pursuit dictionaries
(the workbench has none; ``sae.load`` refuses them by name, tests/test_sae.py).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

pytest.importorskip(
    "sae_lens",
    reason="sae-lens is not installed (it is in the test extra: pip install 'workbench[test]'); "
    "the SAELens file-format oracle tests are skipped",
)

from sae_lens import SAE  # noqa: E402
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig  # noqa: E402
from sae_lens.saes.jumprelu_sae import (  # noqa: E402
    JumpReLUSAE,
    JumpReLUSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
)
from sae_lens.saes.sae import SAEMetadata  # noqa: E402
from sae_lens.saes.standard_sae import (  # noqa: E402
    StandardSAE,
    StandardSAEConfig,
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
)
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig  # noqa: E402
from sae_lens.saes.transcoder import (  # noqa: E402
    JumpReLUTranscoder,
    JumpReLUTranscoderConfig,
    Transcoder,
    TranscoderConfig,
)

from workbench import sae  # noqa: E402

D_IN, D_SAE, D_OUT, K = 16, 48, 12, 5
HOOK, HOOK_OUT, MODEL = "blocks.1.hook_resid_mid", "blocks.1.hook_mlp_out", "gpt2"
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def metadata(**extra) -> SAEMetadata:
    return SAEMetadata(model_name=MODEL, hook_name=HOOK, **extra)


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int) -> None:
    """Random weights of every parameter (thresholds in [0, 0.5), so a fair share of features fire)."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in module.named_parameters():
        if name == "threshold":
            parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.5)
        elif name == "log_threshold":
            parameter.copy_((torch.rand(parameter.shape, generator=generator) * 0.5 + 1e-3).log())
        else:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


# SAELens's dictionaries, each: (build it, how it saves, what our load should say) ------------------------
def standard(apply_b_dec_to_input: bool):
    return StandardSAE(
        StandardSAEConfig(
            d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec_to_input, metadata=metadata()
        )
    )


def topk_rescaled():
    # Inference-side rescaling with decoder rows of any norm: our load has to fold the norms.
    return TopKSAE(
        TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True, metadata=metadata())
    )


def batchtopk_trained():
    model = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=metadata()))
    model.topk_threshold = torch.tensor(0.3, dtype=torch.double)  # what training would have estimated
    return model


SAELENS_CASES = {
    # name: (builder, saved by save_inference_model (a training SAE) or save_model, our kind, our k)
    "standard": (lambda: standard(True), False, "relu", None),
    "standard, b_dec not subtracted": (lambda: standard(False), False, "relu", None),
    "topk": (
        lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=metadata())),
        False,
        "topk",
        K,
    ),
    "topk, rescale_acts_by_decoder_norm": (topk_rescaled, False, "topk", K),
    "jumprelu": (
        lambda: JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=metadata())),
        False,
        "jumprelu",
        None,
    ),
    "transcoder": (
        lambda: Transcoder(
            TranscoderConfig(
                d_in=D_IN,
                d_sae=D_SAE,
                d_out=D_OUT,
                apply_b_dec_to_input=False,
                metadata=metadata(hook_name_out=HOOK_OUT),
            )
        ),
        False,
        "relu",
        None,
    ),
    "jumprelu_transcoder": (
        lambda: JumpReLUTranscoder(
            JumpReLUTranscoderConfig(
                d_in=D_IN,
                d_sae=D_SAE,
                d_out=D_OUT,
                apply_b_dec_to_input=False,
                metadata=metadata(hook_name_out=HOOK_OUT),
            )
        ),
        False,
        "jumprelu",
        None,
    ),
    # As SAELens's trainer writes them at the end of a run (save_inference_model).
    "standard, trained": (
        lambda: StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=metadata())),
        True,
        "relu",
        None,
    ),
    "topk, trained (rescaled, folded on save)": (
        lambda: TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=metadata())),
        True,
        "topk",
        K,
    ),
    "jumprelu, trained": (
        lambda: JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=metadata())),
        True,
        "jumprelu",
        None,
    ),
    "batchtopk, trained (saved as jumprelu)": (batchtopk_trained, True, "jumprelu", None),
}


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, 7, D_IN, generator=torch.Generator().manual_seed(seed))  # [batch, pos, d_in]


def assert_same_outputs(ours: sae.SparseAutoencoder, theirs, x: torch.Tensor) -> None:
    """encode, decode (of the same features) and forward agree; the features are not all zero."""
    with torch.no_grad():
        features = theirs.encode(x)
        assert 0 < (features > 0).float().mean() < 1, "a degenerate case: every feature on or off"
        torch.testing.assert_close(ours.encode(x), features, **TOLERANCE)
        torch.testing.assert_close(ours.decode(features), theirs.decode(features), **TOLERANCE)
        torch.testing.assert_close(ours(x).reconstruction, theirs(x), **TOLERANCE)


@pytest.mark.parametrize("name", list(SAELENS_CASES))
def test_an_sae_saved_by_saelens_loads_with_the_same_outputs(tmp_path, name):
    build, training_save, kind, k = SAELENS_CASES[name]
    theirs = build()
    randomize(theirs, seed=len(name))
    if training_save:
        theirs.save_inference_model(tmp_path)
        theirs = SAE.load_from_disk(tmp_path)  # SAELens's own inference model of that file
    else:
        theirs.save_model(tmp_path)
    theirs.eval()
    ours = sae.load(tmp_path)
    assert (ours.cfg.kind, ours.cfg.k, ours.cfg.hook_name, ours.cfg.model_name) == (kind, k, HOOK, MODEL)
    assert ours.cfg.is_transcoder == ("transcoder" in name)
    if ours.cfg.is_transcoder:
        assert (ours.cfg.hook_name_out, ours.cfg.d_out) == (HOOK_OUT, D_OUT)
    assert_same_outputs(ours, theirs, inputs())


def test_the_rescaled_topk_case_has_decoder_rows_far_from_unit_norm(tmp_path):
    """The fold is exercised: the rows' norms are far from 1, so loading without folding would disagree."""
    theirs = topk_rescaled()
    randomize(theirs, seed=0)
    norms = theirs.W_dec.norm(dim=-1)
    assert (norms - 1).abs().max() > 0.3
    theirs.save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["rescale_acts_by_decoder_norm"] = False  # what ignoring the setting would compute
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with torch.no_grad():
        unfolded = sae.load(tmp_path)(inputs()).reconstruction
        assert not torch.allclose(unfolded, theirs(inputs()), **TOLERANCE)


# Ours, loaded by SAELens ---------------------------------------------------------------------------------
OUR_CASES = [
    (kind, transcoder)
    for kind in sae.KINDS
    for transcoder in (False, True)
    if (kind, transcoder) != ("topk", True)
]
SAELENS_CLASS = {
    ("relu", False): StandardSAE,
    ("topk", False): TopKSAE,
    ("jumprelu", False): JumpReLUSAE,
    ("batchtopk", False): JumpReLUSAE,
    ("relu", True): Transcoder,
    ("jumprelu", True): JumpReLUTranscoder,
    ("batchtopk", True): JumpReLUTranscoder,
}


def our_dictionary(kind: str, transcoder: bool, seed: int) -> sae.SparseAutoencoder:
    """Random weights, a random batchtopk threshold, and training scales (folded into the file on save)."""
    extra = dict(d_out=D_OUT, hook_name_out=HOOK_OUT) if transcoder else {}
    cfg = sae.SAEConfig(
        d_in=D_IN,
        d_sae=D_SAE,
        kind=kind,
        k=K if "topk" in kind else None,
        hook_name=HOOK,
        model_name=MODEL,
        **extra,
    )
    dictionary = sae.SparseAutoencoder(cfg, seed=seed)
    randomize(dictionary, seed)
    with torch.no_grad():
        if kind == "batchtopk":
            dictionary.threshold.uniform_(0.0, 0.5, generator=torch.Generator().manual_seed(seed))
        dictionary.scale_in.fill_(1.7)  # an autoencoder that subtracts b_dec needs scale_in == scale_out
        dictionary.scale_out.fill_(0.6 if transcoder else 1.7)
    return dictionary.eval()


@pytest.mark.parametrize(("kind", "transcoder"), OUR_CASES)
def test_our_save_loads_in_saelens_with_the_same_outputs(tmp_path, kind, transcoder):
    ours = our_dictionary(kind, transcoder, seed=3)
    ours.save(tmp_path)
    theirs = SAE.load_from_disk(tmp_path).eval()
    assert type(theirs) is SAELENS_CLASS[(kind, transcoder)]
    assert (theirs.cfg.metadata.hook_name, theirs.cfg.metadata.model_name) == (HOOK, MODEL)
    if transcoder:
        assert (theirs.cfg.metadata.hook_name_out, theirs.cfg.d_out) == (HOOK_OUT, D_OUT)
    if kind == "topk":
        assert theirs.cfg.k == K
    assert_same_outputs(ours, theirs, inputs(seed=4))


def test_saelens_metadata_we_do_not_use_survives_a_load_and_save(tmp_path):
    extra = dict(context_size=128, prepend_bos=False, neuronpedia_id="gpt2-small/1-res", dataset_path="x/y")
    theirs = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=metadata(**extra)))
    randomize(theirs, seed=5)
    theirs.save_model(tmp_path / "saelens")
    ours = sae.load(tmp_path / "saelens")
    assert {key: ours.cfg.sae_lens_metadata[key] for key in extra} == extra
    ours.save(tmp_path / "ours")
    again = SAE.load_from_disk(tmp_path / "ours")
    assert {key: again.cfg.metadata[key] for key in extra} == extra
    assert again.cfg.metadata.hook_name == HOOK and again.cfg.metadata.sae_lens_version == "6.0.0"
    assert_same_outputs(sae.load(tmp_path / "ours"), theirs.eval(), inputs())


def test_a_one_head_saelens_dictionary_loads_with_a_warning(tmp_path):
    theirs = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=metadata(hook_head_index=2)))
    theirs.save_model(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sae.load(tmp_path)
    assert any("hook_head_index=2" in str(w.message) for w in caught)
