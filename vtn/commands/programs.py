"""`vtn programs check FILE...`: validate program files, print every problem.

Exit code 0 when every file loads, 1 when any file has a problem.
"""
from __future__ import annotations

import argparse
import sys

from schedules import model


def register(subparsers) -> None:
    parser = subparsers.add_parser("programs", help="program rule files")
    sub = parser.add_subparsers(dest="programs_command", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="validate program files and list every problem")
    check.add_argument("files", nargs="+", metavar="FILE",
                       help="program .toml file, or a program name under schedules/programs")
    check.set_defaults(func=check_files)


def check_files(args: argparse.Namespace) -> int:
    failed = False
    for name in args.files:
        try:
            program = model.load(name)
        except model.ProgramError as err:
            failed = True
            print(f"{err.source}: {len(err.problems)} problem(s)")
            for problem in err.problems:
                print(f"  {problem}")
            continue
        print(f"{name}: ok ({program.id}, {program.timezone.key}, "
              f"{program.budget.min_per_season}-{program.budget.max_per_season} events, "
              f"window {program.window.start:%H:%M}-{program.window.end:%H:%M})")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run just this subcommand (tests; and `python -m vtn.commands.programs`)."""
    parser = argparse.ArgumentParser(prog="vtn")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
