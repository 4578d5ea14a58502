"""Outputs that would replace what a user has: each refused with exit 2 before anything is
written (a CLI probe found them overwriting a spec, a real dataset's split files and a report of
finished runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.data.synthetic import MARKER, check_synthetic_out
from tests.conftest import ROOT
from tests.test_hostile_inputs import one_paragraph_error


def test_coverage_never_overwrites_a_file_it_did_not_write(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments" / "papers").mkdir(parents=True)
    spec = tmp_path / "experiments" / "mine.yaml"
    spec.write_text("name: mine\n")
    assert main(["coverage", "--out", str(spec)]) == 2
    one_paragraph_error(capsys, f"--out {spec}", "not written by harness coverage")
    assert spec.read_text() == "name: mine\n"


def test_synth_never_writes_into_a_real_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    splits = tmp_path / "ucf" / "ucfTrainTestlist"
    splits.mkdir(parents=True)
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n")
    assert main(["data", "synth", "--preset", "tiny", "--out", "ucf", "--workers", "1"]) == 2
    one_paragraph_error(capsys, "--out ucf", "did not write")
    assert [p.name for p in splits.iterdir()] == ["classInd.txt"]
    assert not (tmp_path / "ucf" / "UCF-101").exists()


def test_synth_writes_the_same_preset_again_but_not_another_over_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s" / "UCF-101").mkdir(parents=True)
    (tmp_path / "s" / MARKER).write_text('{"preset": "tiny", "seed": 0}')  # as synth writes it
    check_synthetic_out(tmp_path / "s", "tiny", 0)  # the same files again: accepted
    synth = ["data", "synth", "--preset", "tiny", "--out", "s", "--workers", "1"]
    assert main([*synth, "--seed", "3"]) == 2
    one_paragraph_error(capsys, "'tiny' preset (seed 0)", "Give a new folder")
    assert main([*synth, "--preset", "large"]) == 2
    assert [p.name for p in (tmp_path / "s" / "UCF-101").iterdir()] == []


def test_synth_cut_short_is_written_again_by_the_same_command(tmp_path, monkeypatch, capsys):
    """Ctrl-C says "run again to resume": the folder it left is its own, not refused."""
    import harness.data.synthetic as synthetic

    written = []

    def cut_short(job):
        if written:
            raise KeyboardInterrupt
        written.append(job)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(synthetic, "_write_clip", cut_short)
    synth = ["data", "synth", "--preset", "tiny", "--out", "s", "--workers", "1"]
    assert main(synth) == 130
    assert "run again" in capsys.readouterr().err
    check_synthetic_out(tmp_path / "s", "tiny", 0)  # its own folder: accepted
    with pytest.raises(Exception, match="'tiny' preset"):
        check_synthetic_out(tmp_path / "s", "tiny", 1)  # another seed over it: refused


def test_report_from_a_missing_store_keeps_a_report_of_finished_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "reports" / "quickstart"
    report.mkdir(parents=True)
    table = (ROOT / "reports" / "examples" / "quickstart" / "table.csv").read_text()
    (report / "table.csv").write_text(table)
    typo = tmp_path / "nowhere" / "mlflow.db"
    quickstart = str(ROOT / "experiments" / "quickstart.yaml")
    assert main(["report", quickstart, "--tracking-uri", f"sqlite:///{typo}", "--no-count"]) == 2
    one_paragraph_error(capsys, f"no store at {typo}", "--tracking-uri")
    assert (report / "table.csv").read_text() == table
    assert [p.name for p in report.iterdir()] == ["table.csv"]
    assert not Path(typo).parent.exists()


def test_a_cache_folder_of_another_dataset_is_not_rebuilt_over(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    held = tmp_path / "cache"
    held.mkdir()
    index = '{"version": 1, "root": "/data/hmdb51", "videos": {}}'
    (held / "index.json").write_text(index)
    assert main(["data", "cache", "synthetic", "--root", "videos", "--out", "cache"]) == 2
    one_paragraph_error(capsys, "holds the clip cache of '/data/hmdb51'", "another folder")
    assert [p.name for p in held.iterdir()] == ["index.json"]


def test_a_folder_that_is_no_clip_cache_is_not_built_into(tmp_path, monkeypatch, capsys):
    """A mistyped --out (or dataset.cache) naming a folder of the user's: refused before any
    file is written there, and a build's cleanup (`*.partial`) touches none of its files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    mine = tmp_path / "downloads"
    mine.mkdir()
    for name in ("notes.txt", "film.mp4.partial"):
        (mine / name).write_text("the user's")
    assert main(["data", "cache", "synthetic", "--root", "videos", "--out", "downloads"]) == 2
    one_paragraph_error(capsys, "'downloads' is not a clip cache folder", "2 file(s) of its own",
                        "'film.mp4.partial', 'notes.txt'", "another folder")  # fmt: skip
    assert sorted(p.name for p in mine.iterdir()) == ["film.mp4.partial", "notes.txt"]


# Every --out, under a file or in a file system that takes no folders: one paragraph naming the
# flag and the blocking path, before anything runs (a bare "Not a directory." before).
DATA = ["synthetic", "--root", "r"]
OUT_COMMANDS = {
    "report": ["report", str(ROOT / "experiments" / "quickstart.yaml"), "--out", "{out}"],
    "coverage": ["coverage", "--out", "{out}/coverage.md"],
    "data synth": ["data", "synth", "--out", "{out}"],
    "data prepare": ["data", "prepare", *DATA, "--out", "{out}"],
    "data cache": ["data", "cache", *DATA, "--out", "{out}"],
    "data flow": ["data", "flow", *DATA, "--out", "{out}"],
}


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
def test_an_out_no_folder_can_be_made_at_is_one_paragraph(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT if command == "coverage" else tmp_path)  # coverage: the repository's
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "sub"
    assert main([arg.replace("{out}", str(out)) for arg in OUT_COMMANDS[command]]) == 2
    one_paragraph_error(capsys, f"--out {out}", f"{tmp_path / 'afile'} is a file")
    if Path("/sys/kernel").is_dir():  # sysfs: no folder can be made there, even by root
        assert main([a.replace("{out}", "/sys/out") for a in OUT_COMMANDS[command]]) == 2
        one_paragraph_error(capsys, "--out /sys/out", "nothing can be written in /sys")
