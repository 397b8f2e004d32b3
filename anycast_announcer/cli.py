"""Command line: argument parsing only; the work happens in ``app``, ``http.client`` and
``rescue.cli``.

Exit codes: 0 success, 1 runtime failure (or the sidecar answered with an error), 2 the
user's input (arguments, config, token file) is wrong, 3 the sidecar cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from anycast_announcer import __version__
from anycast_announcer.config import Config, ConfigError, config_warnings, load_config
from anycast_announcer.http.client import DEFAULT_URL
from anycast_announcer.http.target import TOKEN_FILE_ENV, resolve_target
from anycast_announcer.rescue import cli as rescue_cli

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 3600 seconds")
    return value


def _client_options(*, mutating: bool) -> argparse.ArgumentParser:
    """-c/--url/--socket (and --token-file) shared by the commands that talk to a sidecar."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "-c",
        "--config",
        metavar="CONFIG",
        help="the sidecar's configuration file: reach it at its http.listen (or "
        "http.unix_socket)" + (", with its http.token_file" if mutating else ""),
    )
    where = options.add_mutually_exclusive_group()
    where.add_argument(
        "--url", help=f"the sidecar's status API (default: from -c, else {DEFAULT_URL})"
    )
    where.add_argument("--socket", metavar="PATH", help="talk over this unix socket instead")
    options.add_argument(
        "--timeout", type=_seconds, default=10.0, metavar="SECONDS", help="default: 10"
    )
    if mutating:
        options.add_argument(
            "--token-file",
            metavar="PATH",
            help="file holding the API token (mode 0600; default: the http.token_file of "
            f"-c, else ${TOKEN_FILE_ENV})",
        )
    return options


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

    schema = commands.add_parser("schema", help="print the configuration's JSON Schema")
    schema.add_argument(
        "--markdown",
        action="store_true",
        help="print the configuration reference (docs/configuration.md) instead",
    )

    reader = _client_options(mutating=False)
    writer = _client_options(mutating=True)
    status = commands.add_parser(
        "status", parents=[reader], help="show what a running sidecar announces, and why"
    )
    status.add_argument("--json", action="store_true", help="print the raw JSON status")
    drain = commands.add_parser(
        "drain", parents=[writer], help="withdraw prefixes gracefully and keep them withdrawn"
    )
    drain.add_argument("prefixes", nargs="*", metavar="PREFIX", help="default: every prefix")
    drain.add_argument("--reason", help="shown in the status and the logs")
    undrain = commands.add_parser(
        "undrain", parents=[writer], help="announce drained prefixes again (when healthy)"
    )
    undrain.add_argument("prefixes", nargs="*", metavar="PREFIX", help="default: every prefix")
    commands.add_parser(
        "reload", parents=[writer], help="make a running sidecar re-read its config file"
    )
    rescue_cli.add_parser(commands)
    return parser


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The method, path and JSON body of the command's request."""
    if args.command == "status":
        return "GET", "/status", None
    body: dict[str, Any] = {}
    if args.command in {"drain", "undrain"} and args.prefixes:
        body["prefixes"] = args.prefixes
    if args.command == "drain" and args.reason is not None:
        body["reason"] = args.reason
    return "POST", f"/{args.command}", body


def _show_status(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """``status``: the JSON as it came, or the tables people read."""
    from pydantic import ValidationError

    from anycast_announcer.http.client import format_status
    from anycast_announcer.status import SidecarStatus

    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return EXIT_OK
    try:
        status = SidecarStatus.model_validate(data)
    except ValidationError as error:
        print(f"error: the sidecar's status does not parse: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(format_status(status))
    return EXIT_OK


def _remote(args: argparse.Namespace) -> int:
    """status, drain, undrain, reload: one request to a running sidecar."""
    from anycast_announcer.http.client import SidecarUnreachableError, call
    from anycast_announcer.http.token import TokenFileError, load_token

    try:
        target = resolve_target(
            config_path=args.config,
            url=args.url,
            unix_socket=args.socket,
            token_file=getattr(args, "token_file", None),
            mutating=args.command != "status",
        )
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    token: str | None = None
    token_file = target.token_file
    if token_file:
        try:
            token = load_token(token_file)
        except TokenFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
    method, path, body = _request(args)
    try:
        answer = call(
            method,
            path,
            url=target.url,
            unix_socket=target.unix_socket,
            token=token,
            body=body,
            timeout=args.timeout,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SidecarUnreachableError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not answer.ok or not isinstance(answer.data, dict):
        print(f"error: {answer.error_message()}", file=sys.stderr)
        if answer.status == 401 and token is None:
            print(
                f"hint: pass -c CONFIG (its http.token_file), --token-file, or set "
                f"${TOKEN_FILE_ENV}",
                file=sys.stderr,
            )
        return EXIT_FAILURE
    if args.command == "status":
        return _show_status(args, answer.data)
    message = str(answer.data.get("message", "ok"))
    prefixes = answer.data.get("prefixes") or []
    print(f"{message}: {', '.join(map(str, prefixes))}" if prefixes else message)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anycast-announcer`` command."""
    args = _parser().parse_args(argv)
    if args.command in {"status", "drain", "undrain", "reload"}:
        return _remote(args)
    if args.command == "rescue":
        return rescue_cli.run(args)
    if args.command == "schema":
        if args.markdown:
            from anycast_announcer.config.reference import markdown

            sys.stdout.write(markdown())
        else:
            print(json.dumps(Config.model_json_schema(), indent=2, sort_keys=True))
        return EXIT_OK
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check-config":
        for warning in config_warnings(config) + rescue_cli.check_warnings(config):
            print(f"{args.config}: warning: {warning}", file=sys.stderr)
        print(f"{args.config}: ok")
        return EXIT_OK

    from anycast_announcer.app import run_sidecar  # the asyncio shell is only needed here
    from anycast_announcer.limits import raise_nofile_limit

    try:
        # Before anything opens a socket: a soft limit of 1024 is reached by a few hundred
        # idle API clients, and a probe's socket() would then fail.
        raise_nofile_limit()
    except (OSError, ValueError) as error:
        print(f"warning: cannot raise the open-file limit: {error}", file=sys.stderr)
    return run_sidecar(config, config_path=args.config)
