"""The command lines the harness suggests: `next: harness report …` after a run, and a report's
"rebuild it with" line. Each repeats the options that chose the runs (`--smoke`, every `--set`,
`--tracking-uri`) and the report's folder, so that copying it finds the same runs; a password in
the tracking URI is masked."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from harness.tracking.uri import redacted


def command(verb: str, spec: str | Path, *, smoke: bool = False, overrides: Sequence[str] = (),
            uri: str | None = None, out: Path | None = None) -> str:  # fmt: skip
    """`harness VERB SPEC` with the given options, quoted for a POSIX shell."""
    words = ["harness", verb, str(spec)]
    words += ["--smoke"] if smoke else []
    for override in overrides:
        words += ["--set", override]
    words += ["--tracking-uri", redacted(uri)] if uri else []
    words += ["--out", str(out)] if out is not None else []
    return shlex.join(words)
