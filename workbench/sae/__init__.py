"""Sparse dictionaries: sparse autoencoders and transcoders on any hook point of any architecture.

>>> from workbench import sae                                                          # doctest: +SKIP
>>> dictionary = sae.train(lm, "blocks.3.hook_resid_post", texts, d_sae=1024, kind="topk", k=32, steps=2000)
>>> dictionary.metrics(lm, eval_texts)      # L0, explained variance, MSE, CE loss recovered, dead/dense
>>> with dictionary.spliced(lm):
...     out, cache = lm.run_with_cache(text)  # cache["blocks.3.hook_resid_post.sae.hook_feature_acts"]
>>> dictionary.top_examples(lm, corpus, n=20)
>>> dictionary.save("folder"); sae.load("folder")   # SAELens's cfg.json + sae_weights.safetensors

See docs/sae.md.
"""

from .config import KINDS, SAEConfig
from .dictionary import SAEOutput, SparseAutoencoder
from .evaluation import metrics, top_examples
from .io import SAEFileError, load, save
from .splice import spliced
from .training import train

__all__ = [
    "KINDS",
    "SAEConfig",
    "SAEFileError",
    "SAEOutput",
    "SparseAutoencoder",
    "load",
    "metrics",
    "save",
    "spliced",
    "top_examples",
    "train",
]
