"""ResNets in 3D (Hara et al., CVPR 2018) and 2D (He et al., CVPR 2016, torchvision's naming).

3D: parameter names and shapes are those of the released Kinetics checkpoints (`conv1`, `bn1`,
`layer1`…`layer4` of `conv1, bn1, conv2, bn2[, conv3, bn3]` blocks with `downsample.0/1`, `fc`), so
those files load strictly. The one departure: the final pooling is global (adaptive), so any clip
length works (the 2018 code fixed the pooling window to the training clip size).

2D: the same structure with 2D layers is torchvision's ResNet (v1.5, stride on the 3×3 of the
bottleneck), with identical parameter names, so ImageNet weights saved from torchvision load
strictly. `in_channels=20` makes the optical-flow stream of two-stream networks (10 stacked x/y
flow frames); pretrained RGB weights then initialise its first convolution by TSN's cross-modality
averaging (`registry.checkpoints`).

Data flow (stage names as in the EAM paper, res2–res5 = layer1–layer4)::

    clip (N, 3, T, H, W)                        2D: frame (N, C_in, H, W)
      → conv1 7×7×7 /(1,2,2) → bn1 → relu → maxpool /2          (N, 64, T/2, H/4, W/4)
      → res2 → [attention] → res3 → [attention] → res4 → [attention] → res5 → [attention]
      → global average pool → fc                                (N, num_classes)

Attention modules sit where the placement puts them: at a stage output (``resK.out``) or inside a
block on the residual branch before the addition (``resK.blockI``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from registry.backbones.base import (
    AttentionAt,
    BackboneEntry,
    HeadAttention,
    head_points,
    no_attention,
)
from registry.max_pool3d import MaxPool3d
from registry.placement import InsertionPoint

STAGES = ("res2", "res3", "res4", "res5")
GRADCAM_LAYER = "feature_map"  # see `ResNet.feature_map`
Shortcut = Literal["A", "B"]
CONV = {2: nn.Conv2d, 3: nn.Conv3d}
BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _conv3x3(dims: int, in_planes: int, out_planes: int, stride: int = 1, groups: int = 1):
    return CONV[dims](in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


class ZeroPadShortcut(nn.Module):
    """Shortcut type A: a parameter-free strided identity with zero channels appended.

    Hara's code strides with a 1×1×1 average pool; slicing selects the same elements.
    """

    def __init__(self, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        x = x[:, :, ::s, ::s, ::s] if x.dim() == 5 else x[:, :, ::s, ::s]
        pad = [0, 0] * (x.dim() - 2) + [0, self.out_channels - x.shape[1]]
        return F.pad(x, pad)


class ResidualBlock(nn.Module):
    """`relu(attention(residual(x)) + shortcut(x))`: what every ResNet block shares.

    Subclasses build their layers, then call `_attach` so that, as in the released checkpoints,
    `downsample` is registered after the convolutions.
    """

    expansion = 1

    def _attach(self, downsample: nn.Module | None, attention: nn.Module | None) -> None:
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.attention = attention

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.residual(x)
        if self.attention is not None:
            out = self.attention(out)  # on the residual branch, before the addition
        return self.relu(out + identity)


class BasicBlock(ResidualBlock):
    """Two 3×3(×3) convolutions (ResNet-10/18/34)."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attention: nn.Module | None = None,
        *,
        dims: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(dims, inplanes, planes, stride)
        self.bn1 = BATCH_NORM[dims](planes)
        self.conv2 = _conv3x3(dims, planes, planes)
        self.bn2 = BATCH_NORM[dims](planes)
        self._attach(downsample, attention)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1×1 → 3×3 (strided) → 1×1, expansion 4 (ResNet-50 and deeper)."""

    expansion = 4
    cardinality = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attention: nn.Module | None = None,
        *,
        dims: int = 3,
    ) -> None:
        super().__init__()
        width = self.cardinality * (planes // 32) if self.cardinality > 1 else planes
        self.conv1 = CONV[dims](inplanes, width, 1, bias=False)
        self.bn1 = BATCH_NORM[dims](width)
        self.conv2 = _conv3x3(dims, width, width, stride, self.cardinality)
        self.bn2 = BATCH_NORM[dims](width)
        self.conv3 = CONV[dims](width, planes * self.expansion, 1, bias=False)
        self.bn3 = BATCH_NORM[dims](planes * self.expansion)
        self._attach(downsample, attention)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNeXtBottleneck(Bottleneck):
    """Hara's 2018 ResNeXt block: expansion 2, grouped 3×3×3 of width cardinality·planes/32."""

    expansion = 2
    cardinality = 32


class ResNet(nn.Module):
    """ResNet / ResNeXt in 2D or 3D with attention modules where `attention_at` puts them."""

    def __init__(
        self,
        block: type[ResidualBlock],
        layers: tuple[int, int, int, int],
        stage_planes: tuple[int, int, int, int],
        *,
        dims: int,
        num_classes: int,
        in_channels: int = 3,
        shortcut: Shortcut = "B",
        attention_at: AttentionAt = no_attention,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.inplanes = 64
        if dims == 3:  # Hara: 7×7×7, stride (1, 2, 2)
            self.conv1 = nn.Conv3d(in_channels, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BATCH_NORM[dims](64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (MaxPool3d if dims == 3 else nn.MaxPool2d)(3, stride=2, padding=1)
        self.stage_attention = nn.ModuleDict()
        for index, (stage, blocks, planes) in enumerate(
            zip(STAGES, layers, stage_planes, strict=True)
        ):
            stride = 1 if index == 0 else 2
            layer = self._make_layer(stage, block, planes, blocks, stride, shortcut, attention_at)
            self.add_module(f"layer{index + 1}", layer)
            module = attention_at(f"{stage}.out")
            if module is not None:
                self.stage_attention[stage] = module
        # A parameter-free tap on the tensor that is pooled: res5's output after any stage
        # attention there, which `layer4` alone would miss. Grad-CAM hooks it (`GRADCAM_LAYER`).
        self.feature_map = nn.Identity()
        self.avgpool = (nn.AdaptiveAvgPool3d if dims == 3 else nn.AdaptiveAvgPool2d)(1)
        self.fc = nn.Linear(stage_planes[-1] * block.expansion, num_classes)
        self.head_attention = HeadAttention(attention_at)
        _init_weights(self)

    def _make_layer(
        self,
        stage: str,
        block: type[ResidualBlock],
        planes: int,
        blocks: int,
        stride: int,
        shortcut: Shortcut,
        attention_at: AttentionAt,
    ) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            if shortcut == "A":
                downsample = ZeroPadShortcut(out_channels, stride)
            else:
                downsample = nn.Sequential(
                    CONV[self.dims](self.inplanes, out_channels, 1, stride=stride, bias=False),
                    BATCH_NORM[self.dims](out_channels),
                )
        layers = []
        for i in range(blocks):
            first = i == 0
            attention = attention_at(f"{stage}.block{i}")
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    stride if first else 1,
                    downsample if first else None,
                    attention,
                    dims=self.dims,
                )
            )
            self.inplanes = out_channels
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps of the last stage, `(N, C, [T',] H', W')` (Grad-CAM uses these)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, [T/2,] H/4, W/4)
        for index, stage in enumerate(STAGES):
            x = getattr(self, f"layer{index + 1}")(x)
            if stage in self.stage_attention:
                x = self.stage_attention[stage](x)
        return self.feature_map(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.avgpool(self.features(x)).flatten(1)  # (N, C)
        return self.head_attention(pooled, self.fc)  # (N, num_classes)


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BatchNorm (Hara's and torchvision's initialisation).

    Attention modules keep their own initialisation.
    """
    for name, module in model.named_modules():
        if "attention" in name:
            continue
        if isinstance(module, nn.Conv3d | nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm3d | nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


# depth → (block, blocks per stage); stage widths ("planes") 64/128/256/512
RESNET_DEPTHS: dict[int, tuple[type[ResidualBlock], tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}
RESNET_PLANES = (64, 128, 256, 512)
RESNEXT_PLANES = (128, 256, 512, 1024)


def _insertion_points(
    block: type[ResidualBlock], layers: tuple[int, ...], planes: tuple[int, ...], num_classes: int
) -> tuple[InsertionPoint, ...]:
    points = []
    for stage, blocks, width in zip(STAGES, layers, planes, strict=True):
        channels = width * block.expansion
        points += [
            InsertionPoint(f"{stage}.block{i}", "block", stage, channels) for i in range(blocks)
        ]
        points.append(InsertionPoint(f"{stage}.out", "stage_output", stage, channels))
    return tuple(points) + head_points(planes[-1] * block.expansion, num_classes)


def _resnet3d_entry(depth: int) -> BackboneEntry:
    block, layers = RESNET_DEPTHS[depth]

    def build(
        *, num_classes: int, attention_at: AttentionAt = no_attention, shortcut: Shortcut = "B"
    ) -> ResNet:
        return ResNet(
            block,
            layers,
            RESNET_PLANES,
            dims=3,
            num_classes=num_classes,
            shortcut=shortcut,
            attention_at=attention_at,
        )

    def points(*, num_classes: int = 1, shortcut: Shortcut = "B") -> tuple[InsertionPoint, ...]:
        return _insertion_points(block, layers, RESNET_PLANES, num_classes)

    return BackboneEntry(
        name=f"resnet3d_{depth}",
        build=build,
        points=points,
        dims=3,
        input_shape=(3, 16, 112, 112),
        classifier="fc",
        first_conv="conv1",
        description=f"3D ResNet-{depth} (Hara et al. 2018); shortcut A|B",
        display_name=f"3D ResNet-{depth}",
        gradcam_layer=GRADCAM_LAYER,
    )


def _resnext3d_101_entry() -> BackboneEntry:
    layers = (3, 4, 23, 3)

    def build(*, num_classes: int, attention_at: AttentionAt = no_attention) -> ResNet:
        return ResNet(
            ResNeXtBottleneck,
            layers,
            RESNEXT_PLANES,
            dims=3,
            num_classes=num_classes,
            shortcut="B",
            attention_at=attention_at,
        )

    def points(*, num_classes: int = 1) -> tuple[InsertionPoint, ...]:
        return _insertion_points(ResNeXtBottleneck, layers, RESNEXT_PLANES, num_classes)

    return BackboneEntry(
        name="resnext3d_101",
        build=build,
        points=points,
        dims=3,
        input_shape=(3, 16, 112, 112),
        classifier="fc",
        first_conv="conv1",
        description="3D ResNeXt-101, cardinality 32 (Hara et al. 2018 release layout)",
        display_name="3D ResNeXt-101",
        gradcam_layer=GRADCAM_LAYER,
    )


def _resnet2d_entry(depth: int) -> BackboneEntry:
    block, layers = RESNET_DEPTHS[depth]

    def build(
        *, num_classes: int, attention_at: AttentionAt = no_attention, in_channels: int = 3
    ) -> ResNet:
        return ResNet(
            block,
            layers,
            RESNET_PLANES,
            dims=2,
            num_classes=num_classes,
            in_channels=in_channels,
            attention_at=attention_at,
        )

    def points(*, num_classes: int = 1, in_channels: int = 3) -> tuple[InsertionPoint, ...]:
        return _insertion_points(block, layers, RESNET_PLANES, num_classes)

    return BackboneEntry(
        name=f"resnet2d_{depth}",
        build=build,
        points=points,
        dims=2,
        input_shape=(3, 224, 224),
        classifier="fc",
        first_conv="conv1",
        description=f"2D ResNet-{depth} (torchvision naming); in_channels 3 (RGB) or 20 (flow)",
        display_name=f"ResNet-{depth}",
        gradcam_layer=GRADCAM_LAYER,
    )


def entries() -> list[BackboneEntry]:
    """3D: `resnet3d_{10,…,200}`, `resnext3d_101`; 2D: `resnet2d_{18,34,50,101,152}`."""
    found = [_resnet3d_entry(depth) for depth in RESNET_DEPTHS]
    found.append(_resnext3d_101_entry())
    found += [_resnet2d_entry(depth) for depth in (18, 34, 50, 101, 152)]
    return found
