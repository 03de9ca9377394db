"""The `waferline` command: one entry point, each subcommand owned by the package that does the work.

lsp_server depends on runtime, never the reverse, so the entry point lives here and hands `model`, `generate` and
`simulate` to runtime's own parsers.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from runtime import cli as runtime_cli
from runtime.errors import WaferlineError
from runtime.wafer import cli as wafer_cli

from . import cli_serve


class _Parser(argparse.ArgumentParser):
    """argparse whose usage mistakes read like every other user error: one `waferline: error:` line, exit 2.
    Subcommand parsers inherit it (add_subparsers defaults parser_class to the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"waferline: error: {_one_line(message)} (see `{self.prog} --help`)\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="waferline", description="Local code completion on ONNX Runtime, with a wafer-scale simulator.")
    sub = parser.add_subparsers(dest="command", required=True)
    runtime_cli.add_parsers(sub)
    wafer_cli.add_parser(sub)
    wafer_cli.add_explore_parser(sub)
    cli_serve.add_serve_parser(sub)
    cli_serve.add_complete_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"simulate": wafer_cli.run, "explore": wafer_cli.run_explore, "serve": cli_serve.run_serve, "complete": cli_serve.run_complete}
    try:
        return handlers.get(args.command, runtime_cli.run)(args)
    except WaferlineError as exc:
        print(f"waferline: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
