"""The ``retentiond`` command. Errors become messages and exit codes here and only here.

Exit codes: 0 success; 1 some actions failed; 2 usage error; 75 store busy; 78 invalid config.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from daemon import logs
from daemon.errors import EXIT_OK, EXIT_USAGE, RetentiondError, UsageError
from daemon.literal import print_line, visible

DESCRIPTION = """\
Retention and garbage collection for BentoML stores.

Policies (keep N newest, calendar buckets, ages, labels) decide which model and
bento versions stay; `plan` shows the decision for every version and why,
`apply` carries it out under the store lock and writes an audit log.

config: --config FILE, else $RETENTIOND_CONFIG, else /etc/retentiond/config.toml;
with no file the built-in defaults apply (store = $BENTOML_HOME or ~/bentoml,
no policy acts). Exit codes: 0 ok, 1 some actions failed or were refused (or a
provider could not list), 2 usage error, 75 store busy, 78 invalid config.

Output is for people (tables that fit the terminal; one line per row when piped);
--json on a command prints JSON for scripts instead. Logs go to stderr.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its error messages (which quote the command line and UsageError texts) shown literally."""

    def error(self, message: str) -> NoReturn:
        super().error(visible(message))


def installed_version() -> str:
    """Return the version of the installed ``retentiond`` distribution, or a note when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("retentiond")
    except PackageNotFoundError:
        return "(not installed: running from a source tree)"


class _VersionAction(argparse.Action):
    """``--version``: print ``retentiond X.Y.Z`` and exit 0. Reads the metadata only when asked (start-up time)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="print the installed version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"retentiond {installed_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    # Subparsers are made with the parser's own class, so every subcommand's errors go through _Parser too.
    parser = _Parser(
        prog="retentiond", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_VersionAction)
    # A global option has its own dest: argparse lets a subcommand's default overwrite a value of the same
    # dest parsed before the command, so `--config X plan` would silently lose X. main() merges the two.
    parser.add_argument(
        "--config", dest="global_config", metavar="FILE",
        help="config file for any command; may also follow the command (that one wins if both are given)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", help="run as a daemon: scheduled policies and disk watch (systemd Type=notify); exits 0 on SIGTERM"
    )
    _add_config(run)

    plan = commands.add_parser("plan", help="show what the policies would delete and keep, and why (changes nothing)")
    _add_config(plan)
    _add_policy(plan)
    plan.add_argument("--at", metavar="ISO8601", help="evaluate as of this instant instead of now (e.g. 2026-11-22T10:00:00Z)")
    output = plan.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    output.add_argument(
        "--summary", action="store_true",
        help="one line per policy and name (delete N, keep M, bytes to free) instead of every version",
    )

    apply = commands.add_parser("apply", help="run the policies once now, under the store lock, then exit")
    _add_config(apply)
    _add_policy(apply)
    apply.add_argument("--json", action="store_true", help="print the plan with each action's outcome as JSON")
    apply.add_argument(
        "--wait", metavar="SECONDS", type=_seconds, default=0,
        help="wait this long for the store lock instead of exiting 75 at once",
    )
    apply.add_argument(
        "--accept-shrink", action="store_true",
        help="run even though the store has far fewer versions than last time (store.max_shrink)",
    )

    status = commands.add_parser("status", help="store per name, disk against each limit, trash, last and next runs")
    _add_config(status)
    status.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    window = commands.add_parser("window", help="is a time spec active at these instants, and when does it next change")
    window.add_argument("spec", metavar="SPEC", help="e.g. 'Mon-Fri 20:00-07:00 Europe/Berlin, Sat-Sun 00:00-24:00 Europe/Berlin'")
    window.add_argument("--at", metavar="ISO8601", action="append", help="instant to check (repeatable; default now)")
    window.add_argument("--holiday", metavar="DATE[..DATE]", action="append", default=[], help="holiday (repeatable)")
    window.add_argument("--holiday-timezone", metavar="ZONE", default="UTC", help="timezone of --holiday dates")
    window.add_argument("--json", action="store_true", help="print JSON")

    deployments = commands.add_parser("deployments", help="list, terminate or restart deployments by hand (locked, audited)")
    _add_group_config(deployments)
    deployment_commands = deployments.add_subparsers(dest="deployments_command", metavar="SUBCOMMAND", required=True)
    listing = deployment_commands.add_parser("list", help="deployments of every provider, their owner record and the next window change")
    _add_config(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    for verb, text in (
        ("terminate", "terminate one deployment; recorded as manual, so off-hours never restarts it"),
        ("restart", "start one deployment again, unchanged; in downtime, off-hours leaves it up until the next window"),
    ):
        manual = deployment_commands.add_parser(verb, help=text)
        manual.add_argument("name", metavar="NAME")
        manual.add_argument("--provider", metavar="NAME", help="the provider, when several have a deployment of that name")
        _add_config(manual)
        manual.add_argument("--json", action="store_true", help="print the action and its outcome as JSON")

    restore = commands.add_parser("restore", help="take a deleted version back out of the trash (store.trash_retention)")
    restore.add_argument("tag", metavar="NAME:VERSION")
    restore.add_argument("--kind", choices=("model", "bento"), help="when both a model and a bento of that tag are in the trash")
    _add_config(restore)
    restore.add_argument("--json", action="store_true", help="print what was restored (or why not) as one JSON object")

    check = commands.add_parser(
        "check-config",
        help="validate the config, warn about policies that would surprise, print the effective values (secrets redacted)",
    )
    _add_config(check)
    check.add_argument("--json", action="store_true", help="print the effective config as JSON instead of TOML")

    audit = commands.add_parser("audit", help="read the audit log")
    _add_group_config(audit)
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    show = audit_commands.add_parser("show", help="print audit records")
    _add_config(show)
    show.add_argument("--since", metavar="WHEN", help="only records since an instant (ISO 8601) or a duration ago (2d, 6h)")
    show.add_argument("--policy", metavar="NAME", help="only records of this policy")
    show.add_argument("--json", action="store_true", help="print the records as JSON lines")
    verify = audit_commands.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first edited, removed or reordered record"
    )
    _add_config(verify)
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _seconds(text: str) -> float:
    """argparse type of a wait: a number of seconds, 0 or more (a usage error otherwise, exit 2)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more seconds")
    return seconds


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="config file (default: $RETENTIOND_CONFIG or /etc/retentiond/config.toml)")


def _add_group_config(parser: argparse.ArgumentParser) -> None:
    """``--config`` also between a command group and its subcommand (``audit --config F show``): there argparse
    would otherwise take F for the subcommand and answer "invalid choice: 'F'"."""
    parser.add_argument("--config", dest="group_config", metavar="FILE", help="config file (may also follow the subcommand)")


def _add_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy", metavar="NAME", action="append",
        help="only this policy acts (repeatable); the keeps of all policies still protect",
    )


def main(argv: Sequence[str] | None = None) -> int:
    _never_fail_to_encode()
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if getattr(arguments, "config", None) is None:  # the one nearest the subcommand wins
        arguments.config = getattr(arguments, "group_config", None) or arguments.global_config
    logs.configure()
    try:
        return _dispatch(arguments)
    except UsageError as error:
        parser.error(str(error))
    except RetentiondError as error:
        # A config error has one line per problem, so its line breaks are kept; every other character
        # of a value inside a line (a path, a policy name) is shown literally.
        for line in f"retentiond: {error}".split("\n"):
            print_line(line, sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print_line("retentiond: interrupted", sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away; that is not our failure.
        sys.stderr.close()
        return EXIT_OK
    return EXIT_USAGE  # pragma: no cover - parser.error exits


def _never_fail_to_encode() -> None:
    # A label in UTF-8 on a stdout whose encoding cannot hold it (PYTHONIOENCODING=ascii, a Latin-1
    # terminal) is shown as \u escapes instead of ending the command in UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _dispatch(arguments: argparse.Namespace) -> int:
    from daemon import commands

    handler = {
        "run": commands.run,
        "plan": commands.plan,
        "apply": commands.apply,
        "status": commands.status,
        "restore": commands.restore,
        "window": commands.window,
        "deployments": commands.deployments,
        "check-config": commands.check_config,
        "audit": commands.audit,
    }[arguments.command]
    return handler(arguments)

