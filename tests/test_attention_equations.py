"""Each attention module against a small hand-computed example of its paper's equations.

The expected values are computed here with NumPy from the equations themselves (known weights,
known input), independently of the modules' code paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from registry import ATTENTION, ConfigError
from registry.attention.cbam import CBAM2d, CBAM3d
from registry.attention.eam import EAM, EAMSpatial, EAMTemporal
from registry.attention.eca import EfficientChannelAttention
from registry.attention.pooling import adaptive_eca_kernel, global_avg_max_pool
from registry.attention.se import SqueezeExcitation
from tests.conftest import prepare_gradient_check


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def conv1d_same(signal: np.ndarray, kernel: list[float]) -> np.ndarray:
    """Cross-correlation with zero padding k//2, as nn.Conv1d computes it."""
    k = len(kernel)
    padded = np.pad(signal, k // 2)
    return np.array([sum(kernel[j] * padded[i + j] for j in range(k)) for i in range(len(signal))])


# (C=4, T=1, H=1, W=2): per-channel values chosen so means and maxima differ
X = np.array([[1.0, 3.0], [-2.0, 0.0], [0.0, 0.0], [4.0, 4.0]]).reshape(1, 4, 1, 1, 2)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float32)


def set_weight(param: torch.nn.Parameter, values: list) -> None:
    with torch.no_grad():
        param.copy_(torch.tensor(values, dtype=torch.float32).reshape(param.shape))


def test_se_matches_squeeze_and_excitation_equations():
    module = SqueezeExcitation(4, reduction=2)
    w1 = [[1, 0, 0, 0], [0, 1, 0, 0]]
    w2 = [[1, 0], [0, 1], [1, 1], [0, -1]]
    set_weight(module.fc1.weight, w1)
    set_weight(module.fc2.weight, w2)
    squeeze = X.mean(axis=(2, 3, 4))[0]  # eq. 2: [2, -1, 0, 4]
    excitation = sigmoid(np.array(w2) @ np.maximum(np.array(w1) @ squeeze, 0))  # eq. 3
    expected = X * excitation.reshape(1, 4, 1, 1, 1)  # eq. 4
    np.testing.assert_allclose(module(as_tensor(X)).detach().numpy(), expected, rtol=1e-6)
    assert module.fc1.bias is None and module.fc2.bias is None


def test_eca_matches_local_cross_channel_equation():
    module = EfficientChannelAttention(4, k_size=3)
    kernel = [1.0, 2.0, 0.5]
    set_weight(module.conv.weight, kernel)
    descriptor = X.mean(axis=(2, 3, 4))[0]
    weights = sigmoid(conv1d_same(descriptor, kernel))  # [σ(3.5), σ(0), σ(1), σ(8)]
    np.testing.assert_allclose(weights, sigmoid(np.array([3.5, 0.0, 1.0, 8.0])))
    expected = X * weights.reshape(1, 4, 1, 1, 1)
    np.testing.assert_allclose(module(as_tensor(X)).detach().numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("channels, k", [(64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_adaptive_kernel_follows_eq_14(channels, k):
    assert adaptive_eca_kernel(channels) == k
    assert EfficientChannelAttention(channels).conv.kernel_size == (k,)


def _cbam_expected(x: np.ndarray, spatial_kernel: list[float]) -> np.ndarray:
    avg, mx = x.mean(axis=(2, 3, 4))[0], x.max(axis=(2, 3, 4))[0]
    channel = sigmoid(np.maximum(avg, 0) + np.maximum(mx, 0))  # identity MLP layers
    refined = x * channel.reshape(1, -1, 1, 1, 1)
    pooled_mean, pooled_max = refined.mean(axis=1), refined.max(axis=1)
    bn_scale = 1 / np.sqrt(1 + 1e-5)  # eval-mode BatchNorm with initial statistics
    spatial = sigmoid((spatial_kernel[0] * pooled_mean + spatial_kernel[1] * pooled_max) * bn_scale)
    return refined * spatial[:, None]


def test_cbam_matches_channel_then_spatial_equations():
    x = X[:, :2]  # two channels: [1, 3] and [-2, 0]
    module = CBAM3d(2, reduction=1, kernel_size=1).eval()
    set_weight(module.channel.mlp[0].weight, [[1, 0], [0, 1]])
    set_weight(module.channel.mlp[2].weight, [[1, 0], [0, 1]])
    set_weight(module.spatial.conv.weight, [1.0, -1.0])
    expected = _cbam_expected(x, [1.0, -1.0])
    np.testing.assert_allclose(module(as_tensor(x)).detach().numpy(), expected, rtol=1e-5)


def test_cbam_spatial_kernel_is_1x7x7_in_3d_and_7x7_in_2d():
    assert CBAM3d(64).spatial.conv.kernel_size == (1, 7, 7)
    assert CBAM2d(64).spatial.conv.kernel_size == (7, 7)


# EAM: (C=3, T=2, H=1, W=1) for EAM-S and (C=2, T=3, H=1, W=2) for EAM-T
V_S = np.array([[1.0, 2.0], [0.0, -4.0], [3.0, 3.0]]).reshape(1, 3, 2, 1, 1)
V_T = np.arange(12, dtype=float).reshape(1, 2, 3, 1, 2) * np.array([1, -1]).reshape(1, 2, 1, 1, 1)
KERNEL = [0.5, 1.0, -1.0]


def eam_s_expected(v: np.ndarray, kernel: list[float]) -> np.ndarray:
    s = v.mean(axis=(2, 3, 4))[0] + v.max(axis=(2, 3, 4))[0]  # eqs. 4–6
    return v * sigmoid(conv1d_same(s, kernel)).reshape(1, -1, 1, 1, 1)  # eq. 7


def eam_t_expected(v: np.ndarray, kernel: list[float]) -> np.ndarray:
    f = v.mean(axis=(1, 3, 4))[0] + v.max(axis=(1, 3, 4))[0]  # eqs. 8–10
    return v * sigmoid(conv1d_same(f, kernel)).reshape(1, 1, -1, 1, 1)  # eq. 11


def test_eam_s_matches_eqs_4_to_7():
    module = EAMSpatial(3, k_c=3)
    set_weight(module.gate.conv.weight, KERNEL)
    # s = [3.5, -2, 6]; conv: [5.5, -6.25, 5]
    expected = V_S * sigmoid(np.array([5.5, -6.25, 5.0])).reshape(1, 3, 1, 1, 1)
    np.testing.assert_allclose(eam_s_expected(V_S, KERNEL), expected)
    np.testing.assert_allclose(module(as_tensor(V_S)).detach().numpy(), expected, rtol=1e-6)


def test_eam_t_matches_eqs_8_to_11():
    module = EAMTemporal(2, k_t=3)
    set_weight(module.gate.conv.weight, KERNEL)
    expected = eam_t_expected(V_T, KERNEL)
    np.testing.assert_allclose(module(as_tensor(V_T)).detach().numpy(), expected, rtol=1e-6)
    weights = module.frame_weights(as_tensor(V_T)).detach().numpy()[0]
    np.testing.assert_allclose(weights, expected[0, 1, :, 0, 1] / V_T[0, 1, :, 0, 1], rtol=1e-6)


@pytest.mark.parametrize("order", ["st", "ts", "parallel"])
def test_eam_combinations_and_residual_eq_3(order):
    v = V_T
    module = EAM(2, k_c=3, k_t=3, order=order)
    set_weight(module.spatial.gate.conv.weight, [0.2, -0.3, 0.7])
    set_weight(module.temporal.gate.conv.weight, KERNEL)
    s_kernel = [0.2, -0.3, 0.7]
    if order == "st":
        refined = eam_t_expected(eam_s_expected(v, s_kernel), KERNEL)  # eqs. 1–2
    elif order == "ts":
        refined = eam_s_expected(eam_t_expected(v, KERNEL), s_kernel)
    else:
        refined = 0.5 * (eam_s_expected(v, s_kernel) + eam_t_expected(v, KERNEL))
    expected = v + refined  # eq. 3
    np.testing.assert_allclose(module(as_tensor(v)).detach().numpy(), expected, rtol=1e-5)


def test_eam_parameter_count_is_k_c_plus_k_t():
    assert sum(p.numel() for p in EAM(2048, k_c=5, k_t=7).parameters()) == 12


@pytest.mark.parametrize("cls, option", [(EAMSpatial, "k_c"), (EAMTemporal, "k_t")])
def test_eam_submodule_residual_option(cls, option):
    module = cls(2, **{option: 3}, residual=True)
    plain = cls(2, **{option: 3})
    plain.load_state_dict(module.state_dict())
    x = as_tensor(V_T)
    torch.testing.assert_close(module(x), x + plain(x))


@pytest.mark.parametrize(
    "make",
    [
        lambda: EfficientChannelAttention(8, k_size=4),
        lambda: EAMSpatial(8, k_c=2),
        lambda: EAMTemporal(8, k_t=0),
        lambda: EAM(8, k_c=3, k_t=6),
        lambda: CBAM3d(32, kernel_size=4),
    ],
)
def test_even_kernels_are_refused(make):
    with pytest.raises(ConfigError, match="odd"):
        make()


@pytest.mark.parametrize(
    "make, usable",
    [
        (lambda channels, k: EfficientChannelAttention(channels, k_size=k), True),
        (lambda channels, k: EAMSpatial(channels, k_c=k), True),
        (lambda channels, k: EAM(channels, k_c=k), True),
        (lambda channels, k: EAMTemporal(channels, k_t=k), False),  # slides over frames
    ],
)
def test_a_channel_kernel_longer_than_its_channels_can_use_is_refused(make, usable):
    make(8, 15)  # 2·8 − 1: the last taps still reach a channel
    if usable:
        with pytest.raises(ConfigError, match="up to 15"):
            make(8, 17)
    else:
        make(8, 17)


def _module_cases():
    for name in ATTENTION:
        for dims, cls in sorted(ATTENTION.get(name).classes.items()):
            yield pytest.param(cls, dims, id=f"{name}-{dims}d")


@pytest.mark.parametrize("cls, dims", list(_module_cases()))
def test_every_module_preserves_shape_and_is_differentiable(cls, dims):
    # 256 channels: reduction-16 MLPs keep 16 hidden units, so no layer is dead by chance
    shape = (2, 256, 4, 5, 6) if dims == 3 else (2, 256, 5, 6)
    x = torch.randn(shape, requires_grad=True)
    module = cls(256)
    prepare_gradient_check(module)
    out = module(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls, dims", list(_module_cases()))
def test_every_module_backpropagates_the_derivative_of_its_output(cls, dims):
    # Autograd against float64 finite differences (fast mode: random projections). A module that
    # detaches a path or routes its gradient wrongly fails here even when its outputs are right.
    shape = (2, 16, 3, 4, 5) if dims == 3 else (2, 16, 4, 5)
    module = cls(16).double()
    prepare_gradient_check(module)  # STAM's random highlight pick off
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,), fast_mode=True)


@pytest.mark.parametrize("dims", [(2, 3, 4), (1, 3, 4)], ids=["channels", "frames"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
def test_eam_descriptor_and_its_one_pass_backward_are_autograds_mean_plus_amax(dims, channels_last):
    """`GlobalAvgMaxPool` (EAM eqs. 4–6 / 8–10) gives `mean + amax` and their gradient, ties
    shared as `amax`'s backward shares them: a whole channel of ReLU zeros, a frame of them,
    repeated maxima; and gradchecks, the gradient of its gradient included."""
    x = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64).relu()
    x[0, 2] = 0.0  # a dead channel: every element ties at the maximum
    x[1, :, 1] = 0.0  # a dead frame
    x[1, 4, 2, :2, :2] = 7.0  # four tied maxima
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_()
    upstream = torch.randn(2, x.shape[1 if dims[0] == 2 else 2], dtype=torch.float64)
    ours = global_avg_max_pool(x, dims)
    reference = x.mean(dims) + x.amax(dims)
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    (expected,) = torch.autograd.grad((reference * upstream).sum(), x)
    (got,) = torch.autograd.grad((ours * upstream).sum(), x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    probe = torch.rand(2, 6, 3, 4, 5, dtype=torch.float64, requires_grad=True)  # no ties
    assert torch.autograd.gradgradcheck(lambda v: global_avg_max_pool(v, dims), (probe,))


def test_eam_t_gates_frames_as_the_transposed_tensor_would_be_gated():
    """The paper's `T_trans` (eqs. 8–11): the frame gate pools channels, height and width; here
    without the transposed copy, checked against the transpose written out."""
    module = EAMTemporal(6, k_t=3).double()
    v = torch.randn(2, 6, 5, 4, 3, dtype=torch.float64).relu()
    transposed = v.transpose(1, 2)  # (N, T, C, H, W)
    descriptor = transposed.mean((2, 3, 4)) + transposed.amax((2, 3, 4))
    expected = torch.sigmoid(module.gate.conv(descriptor.unsqueeze(1)).squeeze(1))
    torch.testing.assert_close(module.frame_weights(v), expected, rtol=1e-12, atol=1e-12)
