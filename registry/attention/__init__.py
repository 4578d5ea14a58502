"""Attention modules, one per file; importing this package registers them."""

from registry.attention import cbam, eam, eca, se  # noqa: F401  (registration side effects)
from registry.attention.base import ATTENTION, AttentionEntry, register_attention

__all__ = ["ATTENTION", "AttentionEntry", "register_attention"]
