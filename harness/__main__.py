"""`python -m harness` and the `harness` command: the command line (`harness.cli`), started so
that a Ctrl-C while its libraries load (torch alone takes seconds) ends as quietly as one later
does: a line, exit 130, no traceback."""

import sys


def start() -> int:
    try:
        from harness.cli import main
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C) while starting: nothing ran.", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    raise SystemExit(start())
