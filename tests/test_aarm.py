"""AARM's parts against its equations (shared/papers/aarm.md §3) and the paper's switches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from registry import BACKBONES, ConfigError, build_model, resolve_model
from registry.attention.aarm import (
    AARM2d,
    AARM3d,
    ChannelAttentionModule,
    STAM2d,
    STAM3d,
    VideoContextModule,
)

# (C=2, H=1, W=3): channel 0 = [1, 2, 6] (avg 3, max 6), channel 1 = [-3, 0, 0] (avg -1, max 0)
X = torch.tensor([[1.0, 2.0, 6.0], [-3.0, 0.0, 0.0]]).reshape(1, 2, 1, 3)


def sigmoid(v):
    return 1 / (1 + np.exp(-np.asarray(v, dtype=float)))


def identity_cam(alpha: float) -> ChannelAttentionModule:
    cam = ChannelAttentionModule(2, alpha=alpha, reduction=1)
    with torch.no_grad():
        cam.fc1.weight.copy_(torch.eye(2))
        cam.fc2.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    return cam


@pytest.mark.parametrize(
    "alpha, descriptor",
    [(1.0, [3.0, -1.0]), (0.0, [6.0, 0.0]), (0.5, [4.5, -0.5])],
)
def test_cam_mixed_pooling_eq_3(alpha, descriptor):
    # α=1: average-pooled channel attention; α=0: max-pooled; W2·relu(W1·d) with W1 = I
    hidden = np.maximum(descriptor, 0)
    weights = sigmoid([hidden[0], hidden[0] + hidden[1]])
    expected = X.numpy() * weights.reshape(1, 2, 1, 1)
    got = identity_cam(alpha)(X).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_cam_alpha_extremes_equal_plain_pooling_attention():
    x = torch.randn(3, 32, 4, 5)
    avg_only, max_only = (
        ChannelAttentionModule(32, alpha=1.0),
        ChannelAttentionModule(32, alpha=0.0),
    )
    max_only.load_state_dict(avg_only.state_dict())
    pooled_avg, pooled_max = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    for module, pooled in [(avg_only, pooled_avg), (max_only, pooled_max)]:
        weights = torch.sigmoid(module.fc2(torch.relu(module.fc1(pooled))))
        torch.testing.assert_close(module(x), x * weights[:, :, None, None])


def test_stam_map_eq_4_and_threshold():
    stam = STAM2d(2, alpha=0.5, eta=0.9, chi=0.25).eval()
    with torch.no_grad():  # three 3×3 convolutions that pass the centre pixel through
        for conv in stam.convs:
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
    pooled = 0.5 * X.mean(dim=1) + 0.5 * X.amax(dim=1)  # [[-1+1, 1+2, 3+6]/…]
    np.testing.assert_allclose(pooled.numpy().ravel(), [0.0, 1.5, 4.5])
    soft, highlighted = stam.attention_map(X)
    assert not highlighted
    np.testing.assert_allclose(soft.detach().numpy().ravel(), sigmoid([0.0, 1.5, 4.5]), rtol=1e-6)
    stam.train()
    stam.chi = 1.0
    hard, highlighted = stam.attention_map(X)
    assert highlighted
    # σ(4.5)=0.989 is the peak; σ(1.5)=0.818 < 0.9·0.989; σ(0)=0.5 < 0.9·0.989
    np.testing.assert_array_equal(hard.detach().numpy().ravel(), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("cls, shape", [(STAM2d, (2, 8, 6, 6)), (STAM3d, (2, 8, 4, 6, 6))])
def test_stam_highlight_is_picked_in_about_chi_of_training_calls_and_never_in_eval(cls, shape):
    torch.manual_seed(123)
    stam = cls(8, chi=0.25)
    x = torch.randn(shape)
    picks = [stam.attention_map(x)[1] for _ in range(2000)]
    assert 0.22 < sum(picks) / len(picks) < 0.28
    stam.eval()
    assert not any(stam.attention_map(x)[1] for _ in range(500))
    stam.train()
    stam.chi = 0.0
    assert not any(stam.attention_map(x)[1] for _ in range(200))


def test_stam_3d_is_a_2_plus_1_d_pair():
    stam = STAM3d(16)
    assert [c.kernel_size for c in stam.convs] == [(1, 7, 7), (7, 1, 1)]
    assert sum(p.numel() for p in stam.parameters()) == 49 + 7
    assert sum(p.numel() for p in STAM2d(16).parameters()) == 3 * 9


def test_vcm_eq_6():
    vcm = VideoContextModule(5)
    m = torch.randn(4, 5)
    assert vcm.fc.bias is None  # eq. 6: σ(W M), no bias
    torch.testing.assert_close(vcm(m), m * torch.sigmoid(m @ vcm.fc.weight.T))


def test_parallel_fusion_eq_5_starts_as_the_average():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 5)
    for fusion_conv in ("channelwise", "full"):
        block = AARM2d(16, fusion_conv=fusion_conv).eval()
        expected = 0.5 * (block.cam(x) + block.stam(x))
        torch.testing.assert_close(block(x), expected)
    assert sum(p.numel() for p in AARM2d(16).fuse.parameters()) == 2 * 16
    assert sum(p.numel() for p in AARM2d(16, fusion_conv="full").fuse.parameters()) == 2 * 16 * 16


def test_sequential_fusion_applies_stam_to_cam_output():
    x = torch.randn(2, 16, 3, 5, 5)
    block = AARM3d(16, fusion="sequential").eval()
    assert block.fuse is None
    torch.testing.assert_close(block(x), block.stam(block.cam(x)))


@pytest.mark.parametrize(
    "parts, head",
    [
        ({"cam": True, "stam": False, "vcm": False}, None),
        ({"cam": True, "stam": True, "vcm": False, "fusion": "sequential"}, None),
        ({"cam": True, "stam": True, "vcm": True, "fusion": "sequential"}, "head.logits"),
        ({"vcm_position": "features"}, "head.features"),
    ],
)
def test_table_1_switches_build_the_ablation_models(parts, head):
    resolved = resolve_model(
        "resnet2d_18", attention="aarm", placement="block", num_classes=7, **parts
    )
    assert (resolved.head.name if resolved.head else None) == head
    model = resolved.build().eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    blocks = [m for m in model.modules() if isinstance(m, AARM2d)]
    assert len(blocks) == 8
    assert all((b.stam is not None) == parts.get("stam", True) for b in blocks)
    vcm = model.head_attention.logits if head == "head.logits" else model.head_attention.features
    assert (vcm is not None) == (head is not None)
    if head == "head.features":
        assert vcm.fc.in_features == 512


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_vcm_on_logits_has_num_classes_units_on_every_backbone(backbone):
    # built on the meta device (shapes only); test_registry_models runs AARM on every block type
    resolved = resolve_model(backbone, attention="aarm", placement="stage_output", num_classes=9)
    assert (resolved.head.name, resolved.head.channels) == ("head.logits", 9)
    with torch.device("meta"):
        model = resolved.build()
    assert model.head_attention.logits.fc.weight.shape == (9, 9)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": 1.5}, r"alpha=1.5 must lie in \[0, 1\]"),
        ({"chi": -0.1}, "chi=-0.1"),
        ({"cam": False, "stam": False, "vcm": False}, "all off"),
        ({"fusion": "concat"}, "one of parallel|sequential"),
    ],
)
def test_bad_aarm_options(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model("resnet2d_18", attention="aarm", placement="block", num_classes=3, **options)
