"""Placement rules expand, purely, into explicit insertion points checked against a backbone."""

from __future__ import annotations

import pytest

from registry import BACKBONES, ConfigError, build_model, parse_placement
from registry.placement import PlacementRule, expand_placement

R50_POINTS = BACKBONES.get("resnet3d_50").points()


def names(rule) -> list[str]:
    return [p.name for p in expand_placement(parse_placement(rule), R50_POINTS, backbone="r50")]


def test_stage_output_on_all_stages():
    assert names("stage_output") == ["res2.out", "res3.out", "res4.out", "res5.out"]


def test_stage_subset_in_backbone_order():
    assert names({"where": "stage_output", "stages": ["res4", "res2"]}) == ["res2.out", "res4.out"]
    assert names({"stages": "res3"}) == ["res3.out"]


def test_block_on_every_residual_block():
    blocks = names("block")
    assert len(blocks) == 3 + 4 + 6 + 3
    assert blocks[:4] == ["res2.block0", "res2.block1", "res2.block2", "res3.block0"]
    assert names({"where": "block", "stages": ["res5"]}) == [f"res5.block{i}" for i in range(3)]


def test_none_expands_to_nothing():
    assert names("none") == []


def test_rule_labels():
    assert parse_placement("block").label == "block"
    assert (
        parse_placement({"where": "block", "stages": ["res3", "res4"]}).label == "block[res3,res4]"
    )
    assert parse_placement(PlacementRule("stage_output")) == PlacementRule("stage_output")


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"where": "stage_output", "stages": ["res6"]}, "res2.out"),
        ("blocks", "must be one of none, stage_output, block"),
        ({"where": "block", "stage": ["res2"]}, "unknown key"),
        ({"stages": []}, "lists no stages"),
        (3, "not a rule"),
    ],
)
def test_impossible_or_malformed_rules_name_the_alternatives(rule, message):
    with pytest.raises(ConfigError, match=message):
        build_model("resnet3d_50", attention="se", placement=rule, num_classes=5)


def test_impossible_message_lists_only_placeable_points():
    with pytest.raises(ConfigError) as caught:
        build_model("c3d", attention="se", placement="block", num_classes=5)
    message = str(caught.value)
    assert "conv1.out, conv2.out, conv3.out, conv4.out, conv5.out." in message
    assert "head." not in message


def test_attention_without_placement_is_an_error():
    with pytest.raises(ConfigError, match="needs a placement"):
        build_model("resnet3d_18", attention="se", placement="none", num_classes=5)


def test_every_backbone_declares_consistent_points():
    for name in BACKBONES:
        points = BACKBONES.get(name).points()
        assert len({p.name for p in points}) == len(points), name
        assert all(p.channels > 0 for p in points), name
