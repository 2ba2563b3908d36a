"""The bridge: the workbench's hook points on any Hugging Face model (``pip install workbench[hf]``).

``wb.from_hf(hf_model)`` wraps a ``transformers`` model; ``wb.load`` goes through it for a checkpoint whose
``model_type`` has no native implementation. See ``docs/bridge.md``. Nothing here imports ``transformers`` at
import time: the models handed in bring it, and the attention registry is reached only when a run hooks
attention.
"""

from .adapters import Adapter, Stack
from .catalog import adapted_model_types, all_adapters, find_adapter
from .discover import discover_adapter
from .model import BridgeConfig, HookedHF, from_hf

__all__ = [
    "Adapter", "BridgeConfig", "HookedHF", "Stack", "adapted_model_types", "all_adapters", "discover_adapter",
    "find_adapter", "from_hf",
]
