"""Helpers of `tools/gpu/proof.sh` on the GPU machine.

python3 tools/gpu/environment.py                       # versions; every import the suite needs
python3 tools/gpu/environment.py --clips-per-s LOG     # run-settings clips/s of a bench JSON
python3 tools/gpu/environment.py --split URI NAME      # a spec's data and compute seconds
python3 tools/gpu/environment.py --prepare SPEC        # its synthetic data and clip cache, built
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import warnings
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "opencv-python-headless", "av",
            "fvcore", "mlflow-skinny", "sqlalchemy", "alembic", "deepsig", "distributed",
            "pytest", "pytest-xdist")  # fmt: skip
IMPORTS = ("harness.cli", "registry", "fvcore.nn", "mlflow.tracking", "av", "cv2", "distributed",
           "deepsig", "alembic", "sqlalchemy", "seaborn", "xdist")  # fmt: skip


def describe() -> int:
    """The stack, then each import the harness and its tests need; 1 if one fails."""
    import torch

    print(f"python {platform.python_version()}; torch {torch.__version__}, CUDA "
          f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, GPU available: "
          f"{torch.cuda.is_available()}")  # fmt: skip
    for name in PACKAGES:
        try:
            print(f"  {name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            print(f"  {name}: not installed")
    failed = 0
    for module in IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - every failure is the report
            failed += 1
            print(f"  import {module} FAILED: {type(error).__name__}: {error}")
    print(f"imports: {len(IMPORTS) - failed} of {len(IMPORTS)} work")
    return 1 if failed or not tf32_flags_are_quiet() else 0


def tf32_flags_are_quiet() -> bool:
    """Whether setting torch's legacy TF32 flags (as `harness.train.step` does) warns: some torch
    releases did, and the suite turns every warning into an error."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32
        except Warning as warning:
            print(f"the legacy TF32 flags warn: {type(warning).__name__}: {warning}")
            return False
    print("the legacy TF32 flags set without a warning")
    return True


def prepare(spec_path: str) -> None:
    """Generate the spec's synthetic dataset and build its clip cache where its trials look for
    it, with every core, so that the trials' time goes to training (a trial builds them itself,
    with fewer workers, where they are missing)."""
    from harness.config import load_spec
    from harness.data.cache import build_cache
    from harness.train.inputs import cache_folder, dataset_config

    spec = load_spec(spec_path)
    for split in spec.dataset.splits:
        config = dataset_config(spec, split)
        if spec.dataset.layout == "cache":
            folder = cache_folder(spec, config)
            counts = build_cache(config, folder, short_side=spec.dataset.short_side)
            print(f"split {split}: {counts['videos']} videos, {counts['decoded']} decoded, "
                  f"{counts['bytes'] / 2**30:.2f} GiB in {folder}")  # fmt: skip


def clips_per_s(log: Path) -> int:
    """The `run settings` loop's clips/s from a `harness bench train --json` log."""
    text = log.read_text()
    result = json.loads(text[text.index("{") : text.rindex("}") + 1])
    loop = next(loop for loop in result["loops"] if loop["name"] == "run settings")
    return int(loop["clips_per_s"])


def split(uri: str, experiment: str) -> str:
    """Per run and in all, the seconds its epochs spent waiting for data and computing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return f"no experiment {experiment!r} in {uri}"
    lines, totals = [], [0.0, 0.0]
    for run in client.search_runs([found.experiment_id]):
        seconds = [sum(m.value for m in client.get_metric_history(run.info.run_id, key))
                   for key in ("data_seconds", "compute_seconds")]  # fmt: skip
        totals = [a + b for a, b in zip(totals, seconds, strict=True)]
        lines.append(f"{run.info.run_name}: data {seconds[0]:.1f} s, compute {seconds[1]:.1f} s")
    share = totals[0] / max(sum(totals), 1e-9)
    lines.append(f"all runs: data {totals[0]:.1f} s, compute {totals[1]:.1f} s "
                 f"(data {100 * share:.1f} % of the epochs' time)")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips-per-s", type=Path, metavar="LOG")
    parser.add_argument("--split", nargs=2, metavar=("URI", "EXPERIMENT"))
    parser.add_argument("--prepare", metavar="SPEC")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    if args.clips_per_s:
        print(clips_per_s(args.clips_per_s))
        return 0
    if args.split:
        print(split(*args.split))
        return 0
    return describe()


if __name__ == "__main__":
    sys.exit(main())
