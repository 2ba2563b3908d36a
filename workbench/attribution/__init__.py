"""Attribution: which input tokens drove an output (captum methods and attention-based ones), and how
faithful each method is.

>>> attr = wb.attribute(clf, "The movie was not good at all.", target=1, method=["integrated_gradients", "saliency"])  # doctest: +SKIP
>>> attr.to_frame()  # doctest: +SKIP
"""

from .core import (
    Attribution,
    activation_target,
    attribute,
    baseline_ids,
    direct_logit_attribution,
    layer_attribute,
    make_target,
    methods,
    prediction_positions,
)
from .faithfulness import FaithfulnessResult, evaluate

__all__ = ["Attribution", "FaithfulnessResult", "evaluate", "activation_target", "attribute", "direct_logit_attribution", "layer_attribute", "baseline_ids", "make_target", "methods", "prediction_positions"]
