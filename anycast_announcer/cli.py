"""Command line: argument parsing only; the work happens in ``app``.

Exit codes: 0 success, 1 runtime failure, 2 the user's input (arguments, config) is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from anycast_announcer import __version__
from anycast_announcer.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anycast-announcer",
        description="Announce anycast prefixes over BGP while their local services are healthy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the sidecar in the foreground")
    run.add_argument("-c", "--config", required=True, help="configuration file (YAML)")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", help="configuration file (YAML)")

    commands.add_parser("schema", help="print the configuration's JSON Schema")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anycast-announcer`` command."""
    args = _parser().parse_args(argv)
    if args.command == "schema":
        print(json.dumps(Config.model_json_schema(), indent=2, sort_keys=True))
        return EXIT_OK
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return EXIT_OK

    from anycast_announcer.app import run_sidecar  # the asyncio shell is only needed here

    return run_sidecar(config, config_path=args.config)
