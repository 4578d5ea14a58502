"""Module-level fidelity: STAM's highlight threshold (AARM eq. 4), VCM without bias (AARM eq. 6)
and the non-local block as the official code computes it (Wang et al. 2018).

Every expected value is computed here by hand or with NumPy, independently of the modules' code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import load_spec
from registry import ConfigError, resolve_model
from registry.attention.aarm import AARM2d, STAM2d, STAM3d, VideoContextModule
from registry.attention.non_local import NonLocal3d

# --- STAM's highlight map (AARM eq. 4) -------------------------------------------------------

# A pre-sigmoid map F'_ST(M) of ten positions. At η = 0.9 the literal rule keeps m ≥ 0.9·10 = 9:
# {10, 9.5, 9.2}, 3 of 10. Thresholding σ(m) instead keeps σ(m) ≥ 0.9·σ(10) = 0.89996, i.e.
# m ≥ logit(0.89996) = 2.197: {10, 9.5, 9.2, 8, 5}, 5 of 10.
LOGITS = [10.0, 9.5, 9.2, 8.0, 5.0, 2.0, 0.0, -1.0, -3.0, -5.0]
LITERAL = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
ON_SIGMOID = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def pass_through_stam(cls: type, **options) -> torch.nn.Module:
    """A one-channel STAM whose convolutions pass the centre value through: F'_ST(M) = M."""
    stam = cls(1, eta=0.9, chi=1.0, **options).train()
    with torch.no_grad():
        for conv in stam.convs:
            conv.weight.zero_()
            conv.weight[(0, 0, *(k // 2 for k in conv.kernel_size))] = 1.0
    return stam


def highlight_of(stam: torch.nn.Module, rows: list[list[float]]) -> np.ndarray:
    """The highlight map of one-channel samples `rows` (a row of W values each), `(N, W)`."""
    x = torch.tensor(rows).view(len(rows), 1, *([1] * (stam.dims - 1)), -1)  # (N, 1, [1,] 1, W)
    hard, highlighted = stam.attention_map(x)
    assert highlighted
    return hard.detach().flatten(1).numpy()


@pytest.mark.parametrize("cls", [STAM2d, STAM3d])
def test_stam_highlight_thresholds_the_map_before_the_sigmoid_per_sample(cls):
    # Sample 2 is sample 1 halved: its own peak 5 gives threshold 4.5 and the same 3 positions
    # (a threshold shared by the batch, 9, would select none of it).
    got = highlight_of(pass_through_stam(cls), [LOGITS, [v / 2 for v in LOGITS]])
    counts = got.sum(axis=1).tolist()
    assert counts == [3, 3], (
        f"η=0.9 highlights {counts} of 10 positions per sample, expected [3, 3] "
        "(m ≥ η·max of the pre-sigmoid map, AARM eq. 4); [5, 5] is the sigmoid map's"
    )
    np.testing.assert_array_equal(got, [LITERAL, LITERAL])


@pytest.mark.parametrize("cls", [STAM2d, STAM3d])
def test_stam_highlight_on_sigmoid_restores_the_former_selection(cls):
    stam = pass_through_stam(cls, highlight_on="sigmoid")
    got = highlight_of(stam, [LOGITS, [v / 2 for v in LOGITS]])
    # sample 2: σ(m) ≥ 0.9·σ(5) = 0.894 ⟺ m ≥ 2.135: {5, 4.75, 4.6, 4, 2.5}
    np.testing.assert_array_equal(got, [ON_SIGMOID, ON_SIGMOID])
    soft = torch.sigmoid(torch.tensor(LOGITS))
    np.testing.assert_array_equal(got[0], (soft >= 0.9 * soft.max()).float().numpy())


def test_stam_highlight_with_a_negative_peak_keeps_the_peak():
    # Literally, η·max = -0.9 lies above every value of [-1, -2, -1, -5]: nothing is selected.
    # The threshold is min(η·max, max), so the peaks (-1, twice) are highlighted. With a peak of
    # 0 or above it is the literal rule: 0.9·4 = 3.6 keeps 4 and 3.7, not 3.5 (which σ keeps);
    # 0.9·0 = 0 keeps the two zeros.
    got = highlight_of(
        pass_through_stam(STAM2d), [[-1, -2, -1, -5], [4, -2, 3.7, 3.5], [0, -1, 0, -2]]
    )
    np.testing.assert_array_equal(got, [[1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 1, 0]])


def test_highlight_on_is_an_aarm_option_checked_at_resolve_time():
    assert AARM2d(16, highlight_on="sigmoid").stam.highlight_on == "sigmoid"
    assert AARM2d(16).stam.highlight_on == "logits"
    with pytest.raises(ConfigError, match=r"one of logits\|sigmoid"):
        resolve_model(
            "resnet2d_18",
            attention="aarm",
            placement="block",
            num_classes=3,
            highlight_on="softmax",
        )


def test_a_defaulted_option_leaves_trial_keys_unchanged():
    keys = [trial.key for trial in load_spec("experiments/aarm_table4.yaml").trials]
    assert keys and not any("highlight_on" in key for key in keys)
    assert any("-eta=0.9-" in key for key in keys)  # a given option still shows


# --- VCM (AARM eq. 6) ------------------------------------------------------------------------


def test_vcm_is_sigma_of_w_m_without_bias():
    vcm = VideoContextModule(101)
    n_params = sum(p.numel() for p in vcm.parameters())
    assert n_params == 101 * 101, f"VCM(101) has {n_params} parameters; eq. 6 has u² = 10201"
    m = torch.randn(4, 101)
    torch.testing.assert_close(vcm(m), m * torch.sigmoid(m @ vcm.fc.weight.T))


# --- Non-local block (Wang et al. 2018, eqs. 1-3 and 6; official code) -----------------------

# (N=1, C=2, T=2, H=3, W=3): H and W are odd, so floor pooling keeps one 2×2 window per frame
# (rows and columns 0-1) where ceil pooling keeps four (the last row and column alone).
NL_X = (np.arange(36, dtype=float).reshape(1, 2, 2, 3, 3) % 7 - 3) * np.array([1, -0.5]).reshape(
    1, 2, 1, 1, 1
)
W_THETA, B_THETA = np.array([[1.0, 0.5], [-0.5, 1.0]]), np.array([0.1, -0.2])
W_PHI, B_PHI = np.array([[0.5, -1.0], [1.0, 0.25]]), np.array([0.0, 0.3])
W_G, B_G = np.array([[1.0, 1.0], [0.0, -1.0]]), np.array([0.2, 0.0])
W_OUT, B_OUT = np.array([[0.5, 0.0], [0.25, -1.0]]), np.array([0.0, 0.1])


def max_pool_hw(x: np.ndarray, ceil: bool) -> np.ndarray:
    """Max pooling 1×2×2 with stride 1×2×2 of `(C, T, H, W)`, floor or ceil output size."""
    c, t, h, w = x.shape
    rows = -(-h // 2) if ceil else h // 2
    cols = -(-w // 2) if ceil else w // 2
    out = np.empty((c, t, rows, cols))
    for i in range(rows):
        for j in range(cols):
            out[:, :, i, j] = x[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max(axis=(2, 3))
    return out


def embed(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A 1×1×1 convolution of `(C, T, H, W)`: `(C', T, H, W)`."""
    return np.einsum("oc,cthw->othw", w, x) + b[:, None, None, None]


def positions(x: np.ndarray) -> np.ndarray:
    """`(C, T, H, W)` as `(T·H·W, C)`."""
    return x.reshape(x.shape[0], -1).T


def non_local_expected(x: np.ndarray, *, official: bool) -> np.ndarray:
    """`z = x + BN(W_z·y)`, `y = softmax(θᵀφ [/√d])·g` on the pooled positions (eval BN, γ = 1).
    official: pool x, then φ and g, floor sizes, scale 1/√d; else: φ and g, then pool, ceil."""
    x0 = x[0]
    theta = positions(embed(W_THETA, B_THETA, x0))  # (18, 2)
    if official:  # (2 positions, 2)
        pooled = max_pool_hw(x0, ceil=False)
        phi, g = embed(W_PHI, B_PHI, pooled), embed(W_G, B_G, pooled)
    else:  # (8 positions, 2)
        phi = max_pool_hw(embed(W_PHI, B_PHI, x0), ceil=True)
        g = max_pool_hw(embed(W_G, B_G, x0), ceil=True)
    phi, g = positions(phi), positions(g)
    logits = theta @ phi.T / (np.sqrt(2) if official else 1.0)
    affinity = np.exp(logits - logits.max(axis=1, keepdims=True))
    affinity /= affinity.sum(axis=1, keepdims=True)
    y = affinity @ g  # (18, 2)
    wy = (W_OUT @ y.T + B_OUT[:, None]).reshape(x0.shape) / np.sqrt(1 + 1e-5)  # eval BN
    return x + wy[None]


def set_non_local(block: NonLocal3d) -> NonLocal3d:
    block = block.double().eval()  # float64 before the weights go in: 0.1 is not exact in float32
    for conv, (w, b) in [
        (block.theta, (W_THETA, B_THETA)),
        (block.phi, (W_PHI, B_PHI)),
        (block.g, (W_G, B_G)),
        (block.out, (W_OUT, B_OUT)),
    ]:
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(w).view(conv.weight.shape))
            conv.bias.copy_(torch.tensor(b))
    torch.nn.init.ones_(block.bn.weight)
    return block


def test_non_local_default_is_the_official_code():
    # video-nonlocal-net lib/models/nonlocal_helper.py: max pool x (floor), then φ and g; θᵀφ·d^-½
    got = set_non_local(NonLocal3d(2, reduction=1))(torch.tensor(NL_X)).detach().numpy()
    expected = non_local_expected(NL_X, official=True)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert not np.allclose(expected, non_local_expected(NL_X, official=False))


def test_non_local_former_form_is_an_option():
    block = NonLocal3d(2, reduction=1, pool="embeddings", scale=False, ceil_mode=True)
    got = set_non_local(block)(torch.tensor(NL_X)).detach().numpy()
    np.testing.assert_allclose(
        got, non_local_expected(NL_X, official=False), rtol=1e-10, atol=1e-12
    )


def test_non_local_leaves_a_one_pixel_axis_unpooled():
    # H = 1: a 2-wide floor window has no room; that axis is kept (W = 4 still pools to 2).
    x = torch.randn(1, 8, 2, 1, 4, dtype=torch.float64)
    block = NonLocal3d(8).double().eval()
    torch.nn.init.ones_(block.bn.weight)
    pooled = torch.nn.functional.max_pool3d(x, (1, 1, 2))
    phi, g = block.phi(pooled).flatten(2), block.g(pooled).flatten(2)  # (1, 4, 4)
    theta = block.theta(x).flatten(2).transpose(1, 2)  # (1, 8, 4)
    y = torch.softmax(theta @ phi / 2.0, dim=-1) @ g.transpose(1, 2)  # d = 4: scale 1/2
    expected = x + block.bn(block.out(y.transpose(1, 2).reshape(1, 4, 2, 1, 4)))
    torch.testing.assert_close(block(x), expected)
