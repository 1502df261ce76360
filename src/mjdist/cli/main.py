"""``mjdist train|play|bench ...``: one command for the three, the same code as the ``train``, ``play`` and ``bench``
commands (which mjlab's own ``train`` and ``play`` shadow when both packages are installed)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mjdist.cli import bench, play, train
from mjdist.cli.usage import fail_usage

PROG = "mjdist"

COMMANDS: dict[str, Callable[[list[str], str], int]] = {"train": train.main, "play": play.main, "bench": bench.main}

USAGE = f"""usage: {PROG} {{train,play,bench}} ...

  train <task> [flags]    train a PPO policy (the `train` command)
  play <task> [flags]     play a trained policy (the `play` command)
  bench [flags]           measure mjdist on this machine (the `bench` command)

'{PROG} <command> --help' lists a command's flags."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``mjdist``: the subcommand runs with the rest of the arguments."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not args or args[0] not in COMMANDS:
        given = f"unknown command {args[0]!r}" if args else "no command given"
        return fail_usage(PROG, f"{given}; commands: {', '.join(COMMANDS)} ('{PROG} --help' says more)")
    return COMMANDS[args[0]](args[1:], f"{PROG} {args[0]}")


def run() -> None:
    """``mjdist`` console script."""
    sys.exit(main())
