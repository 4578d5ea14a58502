"""Every registered backbone × attention × placement builds with one module per insertion point;
the smallest backbone of each block type runs forward and backward with each of them.

Parametrized over the registries themselves (`BACKBONES`, `ATTENTION`, `list_placements()`), so a
newly registered backbone, module or placement is tested the moment it exists:

- The run set: the smallest backbone (fewest parameters) of each block type, a block type being
  the set of module classes a plain backbone is made of (3D and 2D BasicBlock and Bottleneck,
  ResNeXt, VGG16, C3D; a new family brings its own). It runs every module × placement forward and
  backward on a tiny clip: logits of the right shape, and a finite gradient that reaches the input
  and every attention parameter. The backbone's weights come from one real build per backbone,
  shared by its cases and frozen; the attention modules are built for each case.
- Every other depth × module × placement is built on the meta device (shapes only).
- Both check the parameter count: the plain backbone's plus, for each resolved insertion point,
  that of the attention class built alone for the point's channels (plus the head module, AARM's
  VCM, built with `build_head`), with exactly one placed module per point, each of its point's
  size, all under attention-named submodules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from collections import defaultdict
from unittest import mock

import pytest
import torch
from torch import nn

from registry import ATTENTION, BACKBONES, ResolvedModel, build_model, list_placements
from registry import resolve_model as resolve
from tests.conftest import prepare_gradient_check

NUM_CLASSES = 5
PLACEMENTS = tuple(where for where in list_placements() if where != "none")
# The submodule names placed modules live under: what checkpoint loading leaves as initialised
# and `trainable: [attention]` selects.
ATTENTION_SEGMENTS = frozenset({"attention", "stage_attention", "head_attention"})


# Forward and backward that would cost more than the rest of this file: non-local's affinity at
# C3D's conv1.out on the fixed clip is (16·56·56)×(16·28·28) = 50,176×12,544 (2.5 GB, ~15 s of
# CPU). Built and counted on the meta device like every other combination; non-local runs on the
# 3D ResNet families, and C3D runs with every other module.
TOO_COSTLY_TO_RUN = {("c3d", "nonlocal")}

# A meta tensor has no values to fill, and torch's random initialisers cost ~2 ms a call on one
# (a Python reference implementation), so they skip meta tensors here. The run set builds every
# block type and module class with real values, so no initialiser goes unexercised.
RANDOM_INITIALISERS = ("normal_", "uniform_", "kaiming_normal_", "kaiming_uniform_")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: these tensors are tiny, and on a busy two-core machine two OpenMP
    threads wait on each other at every operation (several times slower, not faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _skipping_meta(initialiser):
    def initialise(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return tensor if tensor.is_meta else initialiser(tensor, *args, **kwargs)

    return initialise


@contextlib.contextmanager
def shapes_only():
    """Build on the meta device (shapes only: no memory, no arithmetic, no random values)."""
    init = torch.nn.init
    skipping = {name: _skipping_meta(getattr(init, name)) for name in RANDOM_INITIALISERS}
    with torch.device("meta"), mock.patch.multiple(init, **skipping):
        yield


@functools.cache
def plain_on_meta(backbone: str) -> nn.Module:
    with shapes_only():
        return build_model(backbone, num_classes=NUM_CLASSES)


@functools.cache
def alone_params(cls: type[nn.Module], channels: int, *, head: bool = False) -> int:
    """Parameters of one attention module built by itself for `channels` (default options)."""
    with shapes_only():
        return n_params(cls.build_head(channels) if head else cls(channels))


def block_type(backbone: str) -> frozenset[type[nn.Module]]:
    """The module classes a plain backbone is made of: depths of one family share them."""
    return frozenset(type(module) for module in plain_on_meta(backbone).modules())


def smallest_of_each_block_type() -> list[str]:
    families: dict[frozenset, list[str]] = defaultdict(list)
    for name in BACKBONES:
        families[block_type(name)].append(name)
    size = {name: n_params(plain_on_meta(name)) for name in BACKBONES}
    chosen = {min(names, key=lambda n: (size[n], n)) for names in families.values()}
    return [name for name in BACKBONES if name in chosen]


RUN = smallest_of_each_block_type()


def combinations(backbones: list[str]):
    for backbone in backbones:
        entry = BACKBONES.get(backbone)
        yield pytest.param(backbone, "none", "none", id=f"{backbone}-none")
        for attention in ATTENTION:
            if attention == "none" or entry.dims not in ATTENTION.get(attention).classes:
                continue
            for placement in PLACEMENTS:
                if any(p.where == placement for p in entry.points()):
                    yield pytest.param(
                        backbone, attention, placement, id=f"{backbone}-{attention}-{placement}"
                    )


def run_cases():
    for case in combinations(RUN):
        if tuple(case.values[:2]) in TOO_COSTLY_TO_RUN:
            reason = "too costly on its fixed input; built and counted on the meta device"
            case = pytest.param(*case.values, id=case.id, marks=pytest.mark.skip(reason=reason))
        yield case


def meta_cases():
    for case in combinations(list(BACKBONES)):
        if case.values[0] not in RUN or tuple(case.values[:2]) in TOO_COSTLY_TO_RUN:
            yield case


def check_one_module_per_point(model: nn.Module, resolved: ResolvedModel) -> dict:
    """`model` is the plain backbone plus, at each resolved point, one module of the registered
    class sized for that point's channels (and the head module at `resolved.head`), all under
    attention-named submodules, and nothing else. Returns the attention parameters by name."""
    backbone = resolved.backbone
    attention_params = {
        name: param
        for name, param in model.named_parameters()
        if ATTENTION_SEGMENTS.intersection(name.split("."))
    }
    placed_total = sum(p.numel() for p in attention_params.values())
    assert n_params(model) == n_params(plain_on_meta(backbone.name)) + placed_total
    if not resolved.points:
        assert resolved.head is None and not attention_params
        return attention_params
    cls = resolved.attention.for_dims(backbone.dims, backbone.name)
    per_point = [alone_params(cls, point.channels) for point in resolved.points]
    placed = [n_params(module) for module in model.modules() if type(module) is cls]
    assert sorted(placed) == sorted(per_point), "one module per point, each sized for its point"
    head = alone_params(cls, resolved.head.channels, head=True) if resolved.head else 0
    assert placed_total == sum(per_point) + head
    return attention_params


@pytest.mark.parametrize("backbone, attention, placement", list(meta_cases()))
def test_every_other_combination_places_one_module_per_point(backbone, attention, placement):
    resolved = resolve(backbone, attention=attention, placement=placement, num_classes=NUM_CLASSES)
    with shapes_only():
        model = resolved.build()
    check_one_module_per_point(model, resolved)


class _BuiltForReal:
    """Stands for an attention class while the backbone around it is built on the meta device:
    its modules are built on the CPU, with their own initialisation."""

    def __init__(self, cls: type[nn.Module]) -> None:
        self.cls = cls

    def __call__(self, channels: int, **options) -> nn.Module:
        with torch.device("cpu"):
            return self.cls(channels, **options)

    def build_head(self, channels: int, **options) -> nn.Module:
        with torch.device("cpu"):
            return self.cls.build_head(channels, **options)

    def __getattr__(self, name: str):
        return getattr(self.cls, name)


@pytest.fixture(scope="module")
def plain_weights():
    """The tensors of one real build of each plain backbone, shared by all its run cases:
    initialising 15–134 M backbone weights for every module × placement would cost more than
    running them. The cases come grouped by backbone, so one backbone is held at a time."""
    weights = functools.lru_cache(maxsize=1)(
        lambda backbone: build_model(backbone, num_classes=NUM_CLASSES).state_dict()
    )
    yield weights
    weights.cache_clear()


def build_for_gradient_check(resolved: ResolvedModel, weights: dict) -> nn.Module:
    """`resolved.build()` with the backbone's layers on the meta device and the attention modules
    built for real, made ready for `prepare_gradient_check`, then given the backbone tensors of
    `weights`: the parameters shared (they stay frozen and unwritten), the buffers copied (the
    running statistics change in training)."""
    entry = resolved.attention
    real = {dims: _BuiltForReal(cls) for dims, cls in entry.classes.items()}
    resolved = dataclasses.replace(resolved, attention=dataclasses.replace(entry, classes=real))
    with shapes_only():
        model = resolved.build()
    prepare_gradient_check(model)  # before loading, so that it writes no shared tensor
    buffers = {name for name, _ in model.named_buffers()}
    state = {k: v.clone() if k in buffers else v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    assert not unexpected and all(ATTENTION_SEGMENTS.intersection(k.split(".")) for k in missing)
    assert not any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))
    return model


def tiny_input(backbone: str) -> torch.Tensor:
    entry = BACKBONES.get(backbone)
    if entry.fixed_input is not None:  # e.g. C3D: fc6 needs its 16×112×112 clip
        return torch.randn(1, *entry.fixed_input)
    channels = entry.input_shape[0]
    if entry.dims == 3:
        return torch.randn(2, channels, 8, 32, 32)
    return torch.randn(2, channels, 32, 32)


@pytest.mark.parametrize("backbone, attention, placement", list(run_cases()))
def test_smallest_of_each_block_type_runs_and_trains(backbone, attention, placement, plain_weights):
    resolved = resolve(backbone, attention=attention, placement=placement, num_classes=NUM_CLASSES)
    model = build_for_gradient_check(resolved, plain_weights(backbone))
    attention_params = check_one_module_per_point(model, resolved)
    trained = {id(param) for param in attention_params.values()}
    for param in model.parameters():  # backbone weight gradients are not under test here
        param.requires_grad_(id(param) in trained)
    clip = tiny_input(backbone).requires_grad_()
    logits = model(clip)
    assert logits.shape == (clip.shape[0], NUM_CLASSES)
    logits.logsumexp(dim=1).mean().backward()
    # the gradient reaches the input through the placed modules
    assert clip.grad is not None and torch.isfinite(clip.grad).all() and clip.grad.abs().sum() > 0
    # Every attention parameter is connected to the loss. A zero gradient can be legitimate here:
    # a small reduction MLP (64 channels → 4 hidden units) may have every ReLU unit dead on a tiny
    # input. test_attention_equations checks each module's parameters for non-zero gradients at
    # 256 channels; here the attention parameters together must learn.
    for name, param in attention_params.items():
        assert param.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(param.grad).all(), name
    if attention_params:
        assert sum(p.grad.abs().sum() for p in attention_params.values()) > 0


def test_the_run_set_has_one_backbone_of_each_block_type():
    assert {block_type(name) for name in RUN} == {block_type(name) for name in BACKBONES}
    assert len({block_type(name) for name in RUN}) == len(RUN)
    # The families the papers use (3D BasicBlock, Bottleneck, ResNeXt; 2D BasicBlock, Bottleneck)
    # stay apart: fails if a refactor merges block classes and the rule then drops one from the run.
    expected = {"resnet3d_10", "resnet3d_50", "resnext3d_101", "resnet2d_18", "resnet2d_50"}
    assert expected | {"vgg16", "c3d"} <= set(RUN)


@pytest.mark.parametrize("frames", [16, 64])
def test_any_clip_length_works(frames):
    model = build_model("resnet3d_10", attention="eam", placement="stage_output", num_classes=3)
    assert model.eval()(torch.randn(1, 3, frames, 48, 48)).shape == (1, 3)


def test_stage_output_points_follow_the_placement_rule():
    resolved = resolve(
        "resnet3d_50",
        attention="se",
        placement={"where": "stage_output", "stages": ["res3", "res5"]},
        num_classes=51,
    )
    assert [(p.name, p.channels) for p in resolved.points] == [
        ("res3.out", 512),
        ("res5.out", 2048),
    ]
    with shapes_only():
        model = resolved.build()
    assert sorted(model.stage_attention) == ["res3", "res5"]


@pytest.mark.parametrize(
    "kernel, stride, padding, ceil_mode, shape",
    [
        (3, 2, 1, False, (2, 3, 7, 9, 9)),  # the 3D ResNets' stem
        ((1, 2, 2), None, 0, False, (2, 3, 4, 8, 8)),  # C3D's pool1, non-local subsampling
        ((2, 2, 2), None, (0, 1, 1), False, (1, 2, 3, 7, 7)),  # C3D's pool5
        ((1, 2, 2), (1, 2, 2), 0, True, (1, 2, 3, 5, 7)),  # non-local's ceil_mode, odd sizes
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_separable_max_pooling_picks_the_values_and_gradient_elements_max_pool3d_picks(
    kernel, stride, padding, ceil_mode, shape, channels_last
):
    """What a deterministic CUDA step pools with (`registry.max_pool3d`): integers in 0..3 make
    ties common, so each box's first maximum in (t, h, w) order must be the one that takes the
    gradient; integer upstream gradients keep every sum exact."""
    import torch.nn.functional as F

    from registry.max_pool3d import separable_max_pool3d

    x = torch.randint(0, 4, shape, generator=torch.Generator().manual_seed(0)).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    reference, separable = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = F.max_pool3d(reference, kernel, stride, padding, ceil_mode=ceil_mode)
    pooled = separable_max_pool3d(separable, kernel, stride, padding, ceil_mode)
    assert pooled.shape == expected.shape and torch.equal(pooled, expected)
    upstream = torch.randint(-3, 4, expected.shape, generator=torch.Generator().manual_seed(1))
    expected.backward(upstream.float())
    pooled.backward(upstream.float())
    assert torch.equal(separable.grad, reference.grad)
