"""Sparse dictionaries: sparse autoencoders and transcoders on any hook point of any architecture.

>>> from workbench import sae                                                          # doctest: +SKIP
>>> dictionary = sae.train(lm, "blocks.3.hook_resid_post", texts, d_sae=1024, kind="topk", k=32, steps=2000)
>>> dictionary.metrics(lm, eval_texts)      # L0, explained variance, MSE, CE loss recovered, dead/dense
>>> with dictionary.spliced(lm):
...     out, cache = lm.run_with_cache(text)  # cache["blocks.3.hook_resid_post.sae.hook_feature_acts"]
>>> dictionary.top_examples(lm, corpus, n=20)
>>> with dictionary.steered(lm, {7: 8.0}):   # or dictionary.ablated(lm, [7]); only those features change
...     lm.generate("The weather is")
>>> dictionary.feature_attribution(lm, text, target=" Paris").top(10)   # gradient x activation per feature
>>> dictionary.logit_effects(lm, k=10)      # each feature's top / bottom tokens through the unembedding
>>> dictionary.save("folder"); sae.load("folder")   # SAELens's cfg.json + sae_weights.safetensors
>>> dictionaries = sae.train_per_model({"minilm": lm, "gpt2": gpt2}, texts, depth=0.5, steps=500)
>>> sae.compare(dictionaries, {"minilm": lm, "gpt2": gpt2}, texts).summary   # shared vs unique features

See docs/sae.md.
"""

from .compare import FeatureComparison, compare, layer_at_depth, train_per_model
from .config import KINDS, SAEConfig
from .dictionary import SAEOutput, SparseAutoencoder
from .evaluation import metrics, top_examples
from .feature_analysis import FeatureAttribution, attribution_patching, feature_attribution, logit_effects
from .interventions import ablated, steered
from .io import SAEFileError, load, save
from .splice import spliced
from .training import train

__all__ = [
    "KINDS",
    "FeatureAttribution",
    "FeatureComparison",
    "SAEConfig",
    "SAEFileError",
    "SAEOutput",
    "SparseAutoencoder",
    "ablated",
    "attribution_patching",
    "compare",
    "feature_attribution",
    "layer_at_depth",
    "load",
    "logit_effects",
    "metrics",
    "save",
    "spliced",
    "steered",
    "top_examples",
    "train",
    "train_per_model",
]
