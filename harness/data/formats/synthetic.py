"""The synthetic action dataset (`harness data synth`): UCF101's layout and split files, so it
is read exactly as UCF101 is."""

from __future__ import annotations

from dataclasses import replace

from harness.data.formats import ucf101

FORMAT = replace(
    ucf101.FORMAT,
    name="synthetic",
    description="synthetic videos in UCF101's layout (<Class>/v_<Class>_gXX_cYY.avi and "
    "ucfTrainTestlist/), as `harness data synth` writes them",
)
