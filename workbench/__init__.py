"""workbench: an interpretability workbench for transformer language models.

One API over many architectures, with named hook points everywhere:

>>> import workbench as wb
>>> lm = wb.load("minilm")  # doctest: +SKIP
>>> out, cache = lm.run_with_cache("The keys to the cabinet are on the table.")  # doctest: +SKIP
>>> cache["blocks.3.attn.hook_pattern"].shape  # doctest: +SKIP
torch.Size([1, 12, 13, 13])
"""

# .generation, .lens and .mask_filling also give the models their methods model.generate, .logit_lens and
# .fill_mask (see the note above GenerationMixin in workbench/model.py): keep importing them here.
from . import attribution, bench, interventions, viz, zoo
from .ablation import ablate_heads, head_ablation_hooks
from .api import default_device, load
from .attribution import Attribution, attribute
from .auto import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)
from .cache import ActivationCache
from .config import ConfigError, ModelConfig
from .generation import GenerationResult, generate
from .hook_points import HookPoint
from .hub import CheckpointNotFoundError
from .lens import LogitLens, logit_lens
from .loading import CheckpointError
from .mask_filling import fill_mask
from .memory import keep_freed_memory
from .model import HookedTransformer
from .models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from .models.distilbert import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
)
from .models.gpt2 import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Model
from .models.openai_gpt import (
    OpenAIGPTConfig,
    OpenAIGPTForSequenceClassification,
    OpenAIGPTLMHeadModel,
    OpenAIGPTModel,
)
from .models.roberta import (
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForMultipleChoice,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)
from .models.transfo_xl import (
    TransfoXLConfig,
    TransfoXLForSequenceClassification,
    TransfoXLLMHeadModel,
    TransfoXLModel,
)
from .models.xlm import (
    XLMConfig,
    XLMForMultipleChoice,
    XLMForQuestionAnsweringSimple,
    XLMForSequenceClassification,
    XLMForTokenClassification,
    XLMModel,
    XLMWithLMHeadModel,
)
from .models.xlnet import (
    XLNetConfig,
    XLNetForMultipleChoice,
    XLNetForQuestionAnsweringSimple,
    XLNetForSequenceClassification,
    XLNetForTokenClassification,
    XLNetLMHeadModel,
    XLNetModel,
)
from .tokenizers import Encoding, Tokenizer, TransfoXLTokenizer, XLMTokenizer, XLNetTokenizer
from .version import __version__ as __version__

__all__ = [
    "ActivationCache",
    "Attribution",
    "AutoConfig",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForMaskedLM",
    "AutoModelForMultipleChoice",
    "AutoModelForQuestionAnswering",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoTokenizer",
    "BertConfig",
    "BertForMaskedLM",
    "BertForMultipleChoice",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "CheckpointError",
    "CheckpointNotFoundError",
    "ConfigError",
    "DistilBertConfig",
    "DistilBertForMaskedLM",
    "DistilBertForMultipleChoice",
    "DistilBertForQuestionAnswering",
    "DistilBertForSequenceClassification",
    "DistilBertForTokenClassification",
    "DistilBertModel",
    "Encoding",
    "GPT2Config",
    "GenerationResult",
    "LogitLens",
    "GPT2ForSequenceClassification",
    "GPT2LMHeadModel",
    "GPT2Model",
    "HookPoint",
    "HookedTransformer",
    "ModelConfig",
    "OpenAIGPTConfig",
    "OpenAIGPTForSequenceClassification",
    "OpenAIGPTLMHeadModel",
    "OpenAIGPTModel",
    "RobertaConfig",
    "RobertaForMaskedLM",
    "RobertaForMultipleChoice",
    "RobertaForQuestionAnswering",
    "RobertaForSequenceClassification",
    "RobertaForTokenClassification",
    "RobertaModel",
    "Tokenizer",
    "TransfoXLConfig",
    "TransfoXLForSequenceClassification",
    "TransfoXLLMHeadModel",
    "TransfoXLModel",
    "TransfoXLTokenizer",
    "XLMConfig",
    "XLMForMultipleChoice",
    "XLMForQuestionAnsweringSimple",
    "XLMForSequenceClassification",
    "XLMForTokenClassification",
    "XLMModel",
    "XLMTokenizer",
    "XLMWithLMHeadModel",
    "XLNetConfig",
    "XLNetForMultipleChoice",
    "XLNetForQuestionAnsweringSimple",
    "XLNetForSequenceClassification",
    "XLNetForTokenClassification",
    "XLNetLMHeadModel",
    "XLNetModel",
    "XLNetTokenizer",
    "ablate_heads",
    "attribute",
    "attribution",
    "bench",
    "default_device",
    "fill_mask",
    "generate",
    "logit_lens",
    "head_ablation_hooks",
    "interventions",
    "zoo",
    "keep_freed_memory",
    "load",
    "viz",
]
