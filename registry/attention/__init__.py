"""Attention modules, one per file; importing this package registers them."""

from registry.attention import aarm, cbam, eam, eca, non_local, se  # noqa: F401 (registers)
from registry.attention.base import ATTENTION, AttentionEntry, register_attention

__all__ = ["ATTENTION", "AttentionEntry", "register_attention"]
