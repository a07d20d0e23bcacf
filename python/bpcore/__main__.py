"""Command line: `python -m bpcore demo` trains a digit classifier and prints its accuracy."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Runs the command named in `argv` (default: the process's arguments)."""
    parser = argparse.ArgumentParser(prog="python -m bpcore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train on scikit-learn's digits, print accuracy")
    demo.add_argument("--epochs", type=int, default=40)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from bpcore.demo import main as demo_main

        demo_main(epochs=args.epochs, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
