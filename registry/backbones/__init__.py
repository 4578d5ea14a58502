"""Backbones, registered by name; each declares its insertion points."""

from registry.backbones import c3d, resnet, vgg
from registry.backbones.base import AttentionAt, BackboneEntry, no_attention
from registry.registry import Registry

BACKBONES: Registry[BackboneEntry] = Registry("backbone")
for _entry in [*resnet.entries(), *vgg.entries(), *c3d.entries()]:
    BACKBONES.add(_entry.name, _entry)

__all__ = ["BACKBONES", "AttentionAt", "BackboneEntry", "no_attention"]
