"""What a GPU machine needs beside the checkout to run the harness and its tests, for
`tools/gpu/proof.sh`: wheels in `.whl/`, the shared fixtures and torchcodec in `.gpu/`.

The GPU machine (device tool) has Python 3.12, a CUDA build of torch and many packages
(`image-packages.txt`) but not fvcore, iopath, yacs, av or mlflow, and it cannot reach a package
index. This script resolves, from the packages installed here (the versions CI tests), every
package the harness and its dev extras need that the machine lacks, downloads the target
Python's wheels of those exact versions into `.whl/` (git-ignored), builds wheels for the few
published only as source (pure Python), and checks that they fit the device tool's 64 MiB per
call together with the checkout and `.gpu/`: `shared.tar.xz`, ../shared's fixtures, papers and
reference (../shared does not travel), which the tests read there through HARNESS_SHARED, and
`torchcodec.tar.xz`, the optional decoder built for the GPU's torch, with only its FFmpeg 8
libraries (proof.sh links it to the FFmpeg 8 that PyAV's wheel bundles: the image has none).

Left out to fit, each with what it costs there:
- the full `mlflow` package (its web UI and `mlflow server`; 12 MB plus Flask, gunicorn …):
  `mlflow-skinny` has the tracking client and the SQL stores, so runs, reports and the SQLite
  store work; `harness ui` exits 2 saying so, and the test that serves the UI skips.
- `opencv-contrib-python-headless` (69 MB): the machine's `opencv-python-headless` is used, so
  `harness data flow` computes Farneback flow instead of TV-L1 (`harness.data.prepare`).
- `ruff` and `psycopg2-binary`: lint is CI's; the PostgreSQL test needs Debian's server anyway.

    python tools/gpu/pack.py      # → .whl/*.whl, .whl/manifest.txt, .gpu/*.tar.xz, .gpu/commit
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LIMIT_BYTES = 64 * 2**20  # the device tool's working tree, carried paths included
# what the harness and its tests import, with `mlflow` as its client and SQL store only
NEEDED = [
    "mlflow-skinny", "sqlalchemy", "alembic", "fvcore", "iopath", "av", "deepsig",
    "dask[distributed]", "pytest-xdist",
]  # fmt: skip
SHARED_FOLDERS = ("fixtures", "papers", "reference")
OTHER_FFMPEG = re.compile(r"libtorchcodec_\w+[4-7]\.so$|__pycache__")  # torchcodec's FFmpeg 4-7
LEFT_OUT = {"mlflow", "opencv-contrib-python-headless", "ruff", "psycopg2-binary"}
PLATFORMS = [
    "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
    "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64",
]  # fmt: skip


def image_packages() -> set[str]:
    lines = (HERE / "image-packages.txt").read_text().splitlines()
    return {canonicalize_name(line) for line in lines if line and not line.startswith("#")}


def missing_there(python: str) -> dict[str, str]:
    """`{name: version installed here}` for every package `NEEDED` pulls in (markers evaluated
    for Linux x86-64 and `python`) that the GPU image lacks."""
    present = image_packages()
    environment = {"python_version": python, "python_full_version": f"{python}.0",
                   "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                   "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython"}  # fmt: skip
    found: dict[str, set[str]] = {}
    pending = [Requirement(text) for text in NEEDED]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in present or name in LEFT_OUT:
            continue
        if name in found and set(requirement.extras) <= found[name]:
            continue
        extras = found.setdefault(name, set())
        extras.update(requirement.extras)
        for text in metadata.distribution(name).requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(
                needed.marker.evaluate({**environment, "extra": extra}) for extra in ["", *extras]
            ):
                pending.append(Requirement(f"{needed.name}{_extras(needed)}"))
    return {name: metadata.version(name) for name in sorted(found)}


def _extras(requirement: Requirement) -> str:
    return f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""


def download(packages: dict[str, str], python: str, out: Path) -> None:
    """The target's binary wheel of each pinned version; a pure-Python wheel built here for a
    package published only as a source archive."""
    platforms = _platform_args()
    for name, version in packages.items():
        pinned = f"{name}=={version}"
        fetched = _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", python,
                       "--implementation", "cp", *platforms, "--platform", "any", "-d", str(out),
                       pinned)  # fmt: skip
        if not fetched:
            if not _pip("wheel", "--no-deps", "--no-binary", name, "-w", str(out), pinned):
                sys.exit(f"no wheel of {pinned} for Python {python}, and none could be built")


def _platform_args() -> list[str]:
    return [arg for platform in PLATFORMS for arg in ("--platform", platform)]


def _pip(*args: str) -> bool:
    command = [sys.executable, "-m", "pip", "-q", *args]
    return subprocess.run(command, stderr=subprocess.DEVNULL).returncode == 0


def pack_shared(archive: Path) -> None:
    """../shared's folders the tests read, as one xz archive (the split lists compress 10x)."""
    with tarfile.open(archive, "w:xz") as tar:
        for name in SHARED_FOLDERS:
            tar.add(ROOT.parent / "shared" / name, arcname=name)


def pack_torchcodec(version: str, python: str, archive: Path) -> None:
    """torchcodec `version` (the one built for the GPU's torch), keeping only the libraries for
    FFmpeg 8, the major PyAV's wheel bundles (proof.sh points torchcodec at those)."""
    with tempfile.TemporaryDirectory() as folder:
        if not _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", python,
                    "--implementation", "cp", *_platform_args(), "-d", folder,
                    f"torchcodec=={version}"):  # fmt: skip
            sys.exit(f"no wheel of torchcodec=={version} for Python {python}")
        with zipfile.ZipFile(next(Path(folder).glob("*.whl"))) as wheel:
            names = [n for n in wheel.namelist() if not OTHER_FFMPEG.search(n)]
            wheel.extractall(folder, names)
        with tarfile.open(archive, "w:xz") as tar:
            for name in names:
                tar.add(Path(folder) / name, arcname=name)


def commit() -> str:
    """HEAD, with `-dirty` when the working tree (which travels) differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain") else "")


def tree_bytes() -> int:
    """The checkout's tracked and untracked-but-not-ignored files, as the device tool sends."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout  # fmt: skip
    paths = [ROOT / name for name in listed.decode().split("\0") if name]
    return sum(path.stat().st_size for path in paths if path.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--out", type=Path, default=ROOT / ".whl")
    parser.add_argument("--torchcodec", default="0.11.1", help="the release for the GPU's torch "
                        "(0.11 for torch 2.11: torchcodec's compatibility table)")  # fmt: skip
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    packages = missing_there(args.python)
    download(packages, args.python, args.out)
    wheels = sorted(args.out.glob("*.whl"))
    manifest = [f"{name}=={version}" for name, version in packages.items()]
    (args.out / "manifest.txt").write_text("\n".join(manifest) + "\n")
    gpu = ROOT / ".gpu"
    shutil.rmtree(gpu, ignore_errors=True)
    gpu.mkdir()
    pack_shared(gpu / "shared.tar.xz")
    pack_torchcodec(args.torchcodec, args.python, gpu / "torchcodec.tar.xz")
    (gpu / "commit").write_text(commit() + "\n")  # proof.sh: HARNESS_GIT_COMMIT
    carried = sum(p.stat().st_size for p in [*wheels, *gpu.iterdir()])
    total = carried + tree_bytes()
    print(f"{len(wheels)} wheels for {len(packages)} packages in {args.out}; with the checkout "
          f"and .gpu/: {total / 2**20:.1f} MiB of the device tool's 64 MiB")  # fmt: skip
    if len(wheels) != len(packages):
        sys.exit(f"expected one wheel per package ({len(packages)}), found {len(wheels)}")
    return 0 if total <= LIMIT_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
