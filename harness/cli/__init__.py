"""The `harness` command line: argparse only, a module per command group.

    harness run SPEC [--dry-run] [--set K=V]   train, evaluate and log a spec's trials (MLflow)
    harness report SPEC|--all [--out DIR]      tables, comparisons and charts from MLflow
    harness coverage                           every paper table row, its spec and state
    harness ui [SPEC] [--port P]               the MLflow UI for the store, and the spec's runs page
    harness list [--json]                      what can be built
    harness profile SPEC [--latency] [--json]  Params and GFLOPs of every model in a spec's grid
    harness data synth|check|prepare|flow …    datasets
    harness bench data DATASET …               data pipeline throughput against raw decoding
    harness bench train BACKBONE [--attention A]  training clips/s, MFU, speed-up over fp32

Each group's module (`run`, `report`, `ui`, `catalogue`, `data`, `bench`) adds its parsers with
`add_*_command(s)(subparsers)` and holds their handlers. User mistakes (unknown names, bad options,
broken spec files, unusable checkpoints) print one paragraph and exit with code 2; there is no
traceback for them.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from harness.cli.bench import add_bench_commands
from harness.cli.catalogue import add_catalogue_commands
from harness.cli.data import add_data_commands
from harness.cli.report import add_report_commands
from harness.cli.run import add_run_command
from harness.cli.ui import add_ui_command
from harness.data.torchcodec_reader import requested_decoder, uses_torchcodec
from registry import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:  # said with the usage of the command they were given to, not harness's
        _command_parser(parser, argv).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if requested_decoder() == "torchcodec":  # asked for: where it cannot load, say so now
            uses_torchcodec()
        return args.command(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as error:  # the machine, not the code: a full disk, a permission, a path
        print(f"error: {_os_problem(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C): nothing finished was lost; run again to resume.",
              file=sys.stderr)  # fmt: skip
        return 130


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command `argv` names: `harness data check …` → data check's."""
    for word in argv:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands:
            break
        parser = commands[0].choices.get(word, parser)
    return parser


def _os_problem(error: OSError) -> str:
    """One paragraph: the file, what the system said, and the usual fix."""
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error)
    hints = {
        errno.ENOSPC: " Free some space (checkpoints/, mlruns/, the dataset cache) and run again.",
        errno.EACCES: " Check the permissions of that path.",
    }
    hint = hints.get(error.errno, "")
    return f"{where}{reason}.{hint}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Attention modules for video action recognition."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    # in the order `harness --help` has always listed them
    add_catalogue_commands(commands)  # list, profile
    add_run_command(commands)
    add_report_commands(commands)  # report, coverage
    add_ui_command(commands)
    add_data_commands(commands)  # data synth|check|prepare|flow
    add_bench_commands(commands)  # bench data|train
    return parser
