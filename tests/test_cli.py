"""The command line as a user runs it: listing, profiling, and one-paragraph errors (exit 2)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from registry import ATTENTION, BACKBONES
from tests.conftest import ROOT

TINY_SPEC = """
name: tiny
model: {num_classes: 4, frames: 8, size: 32}
grid:
  backbone: [resnet3d_10]
  attention: [none, eam]
  placement: [stage_output]
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_list_shows_every_registered_name_and_options(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in [*BACKBONES, *ATTENTION, "stage_output", "block"]:
        assert name in text
    assert "k_c: int = 3" in text and "shortcut: one of A|B = 'B'" in text
    assert main(["list", "--json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    assert catalogue["attention"]["eam"]["options"]["order"]["default"] == "'st'"
    assert catalogue["backbones"]["resnet3d_50"]["stages"] == ["res2", "res3", "res4", "res5"]
    # each description is a whole first paragraph, not a docstring's first line cut mid-sentence
    for name, entry in catalogue["attention"].items():
        described = entry["description"]
        assert described.endswith((".", ")")) and described.count("`") % 2 == 0, name
        assert described.count("(") == described.count(")"), name
    assert "(Wang et al. eqs. 1–3, 6," in catalogue["attention"]["nonlocal"]["description"]


def test_profile_table_and_latency(tmp_path, capsys):
    seeds = "dataset: {name: synthetic, root: x}\ntrain: {seeds: [0, 1, 2]}\n"
    spec = write(tmp_path, TINY_SPEC + seeds)  # 6 trials of 2 models: each model once
    assert main(["profile", str(spec)]) == 0
    text = capsys.readouterr().out
    assert "tiny: 2 models" in text  # it listed each model once per seed
    assert "resnet3d_10 + eam @ stage_output" in text
    assert "multiply-add" in text and "skipped ops" in text
    assert main(["profile", str(spec), "--json", "--latency", "--batch", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["attention"] for r in rows] == ["none", "eam"]
    assert all(r["latency_ms"] > 0 and r["clips_per_s"] > 0 for r in rows)
    assert rows[1]["insertion_points"] == ["res2.out", "res3.out", "res4.out", "res5.out"]
    assert rows[1]["params"] == rows[0]["params"] + 4 * (3 + 3)


BAD_SPECS = {
    "unknown backbone": ("grid: {backbone: [resnet3d_51]}", "Unknown backbone 'resnet3d_51'"),
    "unknown attention": (
        "grid: {backbone: [resnet3d_10], attention: [sse], placement: [block]}",
        "Did you mean 'se'",
    ),
    "unknown placement": (
        "grid: {backbone: [resnet3d_10], attention: [se], placement: [stage]}",
        "'where' must be one of none, stage_output, block",
    ),
    "unknown option": (
        "grid: {backbone: [resnet3d_10], attention: [eca], placement: [block], kc: [3]}",
        "unknown axis",
    ),
    "option of another module": (
        "grid: {backbone: [resnet3d_10], attention: [eca], placement: [block], k_c: [3]}",
        "Unknown option(s) ['k_c']",
    ),
    "wrong option type": (
        "grid: {backbone: [resnet3d_10], attention: [eam], placement: [block], k_t: [three]}",
        "expected int, got str",
    ),
    "even kernel": (
        "grid: {backbone: [resnet3d_10], attention: [eca], placement: [block], k_size: [4]}",
        "positive odd integer",
    ),
    "missing stage": (
        "grid: {backbone: [resnet3d_10], attention: [se], "
        "placement: [{where: stage_output, stages: [res6]}]}",
        "Available insertion points: res2.block0",
    ),
    "misspelled key": ("grids: {backbone: [resnet3d_10]}", "unknown key 'grids'"),
    "wrong type": (
        "model: {num_classes: many}\ngrid: {backbone: [resnet3d_10]}",
        "expected an integer",
    ),
    "bad shortcut": ("grid: {backbone: [resnet3d_18], shortcut: [C]}", "one of A|B"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_spec_mistakes_give_one_paragraph_and_exit_2(tmp_path, capsys, case):
    body, expected = BAD_SPECS[case]
    if "model:" not in body:
        body = "model: {num_classes: 4}\n" + body
    spec = write(tmp_path, "name: bad\n" + body)
    assert main(["profile", str(spec)]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert str(spec) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_yaml_syntax_and_missing_file(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    spec = write(tmp_path, "name: [unclosed\n")
    assert main(["profile", str(spec)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_console_script_exits_2_without_traceback(tmp_path):
    spec = write(tmp_path, "name: bad\nmodel: {num_classes: 4}\ngrid: {backbone: [c4d]}\n")
    done = subprocess.run(
        [sys.executable, "-m", "harness", "profile", str(spec)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "Unknown backbone 'c4d'" in done.stderr and "Traceback" not in done.stderr


RUN_FLAG_MISTAKES = {
    "no jobs": (["--jobs", "0"], "--jobs 0: expected 1 or more trials at a time."),
    "dask without scheduler": (["--backend", "dask"], "--backend dask needs --scheduler"),
    "scheduler without dask": (["--scheduler", "tcp://host:8786"], "needs --backend dask"),
}


@pytest.mark.parametrize("case", list(RUN_FLAG_MISTAKES))
def test_run_flag_mistakes_exit_2_before_any_store_is_made(tmp_path, monkeypatch, capsys, case):
    flags, expected = RUN_FLAG_MISTAKES[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: ./mlflow.db
    assert main(["run", str(ROOT / "experiments" / "quickstart.yaml"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()
    assert list(tmp_path.iterdir()) == []  # no other store either (mlruns/)


@pytest.mark.parametrize(
    "argv, command",
    [(["report", "a.yaml", "b.yaml"], "harness report"), (["list", "backbones"], "harness list"),
     (["data", "check", "synthetic", "--root", "r", "--jsn"], "harness data check")],
)  # fmt: skip
def test_a_stray_argument_is_told_with_its_commands_usage(argv, command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith(f"usage: {command} ") and f"{command}: error: unrecognized" in err, err


def test_suggested_commands_repeat_what_chose_the_runs_and_mask_a_password():
    from harness.cli.suggested import command

    assert command("report", "experiments/q.yaml") == "harness report experiments/q.yaml"
    line = command("report", "my specs/q.yaml", smoke=True, overrides=["grid.attention=[none, se]"],
                   uri="postgresql://me:secret@db/runs", out=Path("out dir"))  # fmt: skip
    assert line == ("harness report 'my specs/q.yaml' --smoke --set 'grid.attention=[none, se]' "
                    "--tracking-uri 'postgresql://me:***@db/runs' --out 'out dir'")  # fmt: skip


def test_ctrl_c_while_the_command_line_starts_ends_quietly():
    """A Ctrl-C in the seconds `harness` spends importing torch ends as one later does: a line,
    exit 130, no traceback (before, the import's KeyboardInterrupt printed one)."""
    command = [sys.executable, "-X", "importtime", "-m", "harness", "list"]
    started = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in started.stderr:  # import times as each module loads: Python's handler is set
        if "torch" in line:
            break
    started.send_signal(signal.SIGINT)
    _, error = started.communicate(timeout=120)
    error = "".join(line for line in error.splitlines(True) if not line.startswith("import time"))
    assert started.returncode == 130 and "Traceback" not in error, error
    assert error.strip().startswith("interrupted (Ctrl-C)"), error
