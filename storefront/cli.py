"""The ``storefront`` command: serve the API, manage clients and keys, import products."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import logging
import os
import shlex
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from core.crypto import SecretDigester
from core.errors import StorefrontError
from core.scopes import CLIENT_SCOPES
from core.settings import (
    Settings,
    SettingsError,
    load_settings,
    masked_url,
    secret_pepper,
    sqlite_file,
)
from persistence import clients as clients_repo
from persistence.models import ApiKey, Client
from persistence.provisioning import CannotCreateDatabase, create_database_if_missing
from persistence.revisions import head_revision
from storefront import admin, docsite, usage_report
from storefront.keyring import (
    bind_secrets,
    database_label,
    database_setting,
    missing_sqlite_file,
    require_database,
)
from storefront.logs import configure_logging

logger = logging.getLogger("storefront")
DEMO_CATALOGUE = Path(__file__).with_name("data") / "demo_products.json"
#: A few users, so that a demo's first GET /users is not an empty list.
DEMO_USERS = Path(__file__).with_name("data") / "demo_users.json"
#: The commands that digest a new secret under the pepper.
MAKE_CREDENTIALS = {("clients", "create"), ("clients", "rotate-secret"), ("keys", "create")}


IMPORT_HELP = """\
FILE is either format, told apart by its extension (.json, .csv) or else by its first
character:

  JSON  an array of objects:
          [{"id": "prod_mug", "name": "Mug", "description": "350 ml",
            "price": 9.5, "category": "Home"}]
  CSV   UTF-8, the header first, its columns in any order:
          id,name,description,price,category
          prod_mug,Mug,350 ml,9.50,Home

name, price and category are required; description may be empty. price is a number >= 0
with at most two decimals.

Ids: an id is 'prod_' and 1 to 59 letters, digits, '_' or '-' (prod_mug). A row whose id
exists updates that product; any other row adds one. A row without an id gets a stable one
derived from its name and category (prod_ and 24 hex digits), so importing the same file
again updates those products instead of adding copies. Two rows of a file may not share an
id, given or derived.

All or nothing: the rows are checked and written in one transaction, and a bad one stops
the import with one line naming its row and field; nothing is written then. The file is
read as it is written, so its size does not matter. The command reports how many products
were inserted, updated and already stored unchanged.
"""


class StartupError(Exception):
    """The command cannot do its work as configured; the message is one line saying why."""


def _fail(message: str) -> None:
    print(f"storefront: {message}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """A mistake on the command line is one line naming the fix, not usage and an error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, or says that it is required."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if "(default: " in text:  # says it in words, as where None means "all of them"
            return text
        if action.required:
            return f"{text} (required)"
        if action.nargs == 0:  # a flag
            return f"{text} (default: off)"
        return f"{text} (default: %(default)s)"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number from 1 to 65535, got {text!r}"
        ) from None
    if not 1 <= port <= 65535:
        # uvicorn would log "running on 99999" and listen on a port of the OS's choosing.
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535, got {port}")
    return port


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= workers <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256, got {workers}")
    return workers


def _version() -> str:
    """The installed distribution's version: what a bug report needs, and what pip installed
    (a checkout run without installing it has none to tell)."""
    try:
        return metadata.version("storefront-api")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="storefront",
        description="Storefront API server. Configuration comes from STOREFRONT_* variables.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {_version()}",
        help="print the version of the installed package and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: argparse._SubParsersAction[_Parser], name: str, summary: str, **kwargs: Any
    ) -> _Parser:
        kwargs.setdefault("description", summary[0].upper() + summary[1:] + ".")
        return group.add_parser(name, help=summary, formatter_class=_HelpFormatter, **kwargs)

    serve = command(sub, "serve", "migrate the database and serve the API")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="the TCP port to listen on")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes; more than one needs STOREFRONT_RATE_LIMIT_STORAGE_URL=redis://…",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="load a small product catalogue and five users, and print a demo client's credentials",
    )

    clients = command(sub, "clients", "OAuth clients").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = command(
        clients,
        "create",
        "create a client; prints its secret once",
        epilog=CREATE_KEYS_HELP,
    )
    create.add_argument("--name", required=True, help="a name to know the client by")
    create.add_argument(
        "--scopes",
        default="read write",
        help="space-separated, of: " + " ".join(CLIENT_SCOPES) + " (default: read write)",
    )
    _key_source_options(create, required=False)
    create.add_argument(
        "--require-dpop",
        action="store_true",
        help="its token requests must carry a DPoP proof (RFC 9449): every token it gets is "
        "bound to its key",
    )
    _json_flag(create)
    listing = command(clients, "list", "list clients, oldest first")
    _json_flag(listing)
    disable = command(clients, "disable", "disable a client; its tokens and keys stop working")
    disable.add_argument("client_id", metavar="ID", help="the client's id (cli_…)")
    set_limit = command(
        clients,
        "set-limit",
        "give a client its own rate limits (one or more), or 'default' for the server's",
        epilog=LIMITS_HELP,
    )
    set_limit.add_argument("client_id", metavar="ID", help="the client's id (cli_…)")
    set_limit.add_argument(
        "limit",
        nargs="+",
        metavar="LIMIT",
        help='requests per period, as "100/minute" "10000/day"; or "default"',
    )
    _rotate_secret_parser(command(clients, "rotate-secret", ROTATE_SUMMARY, epilog=ROTATE_HELP))
    set_jwks = command(clients, "set-jwks", SET_JWKS_SUMMARY, epilog=SET_JWKS_HELP)
    set_jwks.add_argument("client_id", metavar="ID", help="the client's id (cli_…)")
    _key_source_options(set_jwks, required=True)

    keys = command(sub, "keys", "API keys, and the keys that sign access tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    key_create = command(keys, "create", "create an API key; prints it once")
    key_create.add_argument(
        "--client-id", required=True, help="the client (cli_…) whose scopes the key carries"
    )
    key_create.add_argument(
        "--expires-in",
        default=None,
        metavar="DURATION",
        help="the key stops working this long from now: 30m, 12h, 90d, 1w (default: never expires)",
    )
    key_create.add_argument(
        "--uses",
        type=int,
        default=None,
        metavar="N",
        help="the key stops after N accepted requests (default: no count)",
    )
    key_create.add_argument(
        "--refill",
        default=None,
        metavar="N/PERIOD",
        help="with --uses: the count comes back to N every PERIOD, as 1000/month (default: never)",
    )
    _json_flag(key_create)
    key_limit = command(
        keys,
        "set-limit",
        "give an API key its own rate limits (one or more), or 'default' for its client's",
        epilog=LIMITS_HELP,
    )
    key_limit.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_…), not the key")
    key_limit.add_argument(
        "limit",
        nargs="+",
        metavar="LIMIT",
        help='requests per period, as "100/minute" "10000/day"; or "default"',
    )
    key_list = command(keys, "list", "list API keys, oldest first (never the keys themselves)")
    key_list.add_argument(
        "--client-id", default=None, help="only this client's keys (default: every client's)"
    )
    _json_flag(key_list)
    revoke = command(
        keys,
        "revoke",
        "revoke an API key; it stops working within STOREFRONT_AUTH_CACHE_TTL (1 s)",
        # Not "at once": a server remembers a key it has checked for that long.
        description=(
            "Revoke an API key. Every instance refuses it within STOREFRONT_AUTH_CACHE_TTL "
            "seconds (1 by default): how long a server remembers a key it has checked."
        ),
    )
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_…), not the key")
    _signing_key_parsers(keys, command)

    products = command(sub, "products", "the product catalogue").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    imp = command(
        products,
        "import",
        "import products from a JSON or CSV file",
        description="Import products from a JSON or CSV file, all or nothing.",
        epilog=IMPORT_HELP,
    )
    imp.add_argument("file", type=Path, metavar="FILE", help="a .json or .csv file")

    usage_report.add_arguments(
        command(sub, "usage", "requests per day, per client and per API key: accepted and refused")
    )

    db = command(sub, "db", "the database schema").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    command(db, "upgrade", "apply all migrations")
    docsite.add_commands(command(sub, "docs", "the documentation as a static site"), command)
    return parser


#: The ``keys`` actions on the keys that sign access tokens (the others are API keys').
SIGNING_KEY_ACTIONS = ("rotate-signing", "list-signing")


def _signing_key_parsers(keys: Any, command: Any) -> None:
    rotate = command(
        keys,
        "rotate-signing",
        "add a token-signing key that takes over from the current one without an outage",
        description=(
            "Add a token-signing key. Every instance publishes it in the JWKS within its "
            "refresh window (STOREFRONT_AUTH_CACHE_TTL, at least 1 s) and signs with it a few "
            "seconds later; the key it replaces keeps verifying until the last token it signed "
            "has expired (STOREFRONT_TOKEN_TTL and 10 s), then retires."
        ),
    )
    rotate.add_argument(
        "--algorithm",
        choices=["EdDSA", "ES256", "HS256"],
        default=None,
        help="the new key's algorithm (default: STOREFRONT_JWT_ALGORITHM)",
    )
    _json_flag(rotate)
    listing = command(
        keys, "list-signing", "list the token-signing keys and their state, oldest first"
    )
    _json_flag(listing)


def _signing_key_command(settings: Settings, args: argparse.Namespace) -> None:
    """``keys rotate-signing`` and ``keys list-signing``."""
    from storefront.access.signing import state
    from storefront.keyring import list_signing_keys, rotate_signing_key

    require_database(settings)
    _upgrade(settings)
    # A rotation on a database without keys yet makes the secret (the key-encryption key)
    # and the first key, as a first start would.
    bind_secrets(settings, generate=args.action == "rotate-signing")
    if args.action == "rotate-signing":
        done = rotate_signing_key(settings, algorithm=args.algorithm)
        if args.json:
            _print_json(
                {
                    "kid": done.kid,
                    "algorithm": done.algorithm,
                    "activates_at": _when(done.activates_at, round_up=True),
                    "previous": [
                        {"kid": kid, "retires_at": _when(done.retires_at)} for kid in done.replaced
                    ],
                    "deleted": done.deleted,
                }
            )
            return
        print(
            f"new signing key {done.kid} ({done.algorithm}), "
            f"signs from {_when(done.activates_at, round_up=True)}"
        )
        for kid in done.replaced:
            print(f"previous key {kid} verifies until {_when(done.retires_at)}, then retires")
        for kid in done.deleted:
            print(f"retired key {kid} deleted")
        return
    now = datetime.now(UTC)
    rows = list_signing_keys(settings)
    if args.json:
        _print_json(
            [
                {
                    "kid": row.kid,
                    "algorithm": row.algorithm,
                    "state": state(row, now),
                    "created_at": _when(row.created_at),
                    "activates_at": _when(row.activates_at, round_up=True),
                    "deactivates_at": _iso(row.deactivates_at),
                    "retires_at": _iso(row.retires_at),
                    "published": row.public_jwk is not None,
                }
                for row in rows
            ]
        )
        return
    _table(
        ("KID", "ALGORITHM", "STATE", "SIGNS FROM", "SIGNS UNTIL", "RETIRES"),
        [
            (
                row.kid,
                row.algorithm,
                state(row, now),
                _when(row.activates_at, round_up=True),
                _when_or(row.deactivates_at, "-"),
                _when_or(row.retires_at, "-"),
            )
            for row in rows
        ],
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, the header first; the last column unpadded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]))


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _when(moment: datetime, *, round_up: bool = False) -> str:
    """A stored time as every command prints it, in tables and JSON alike: RFC 3339 in UTC,
    to the second (``2026-12-07T01:17:11Z``), as the API writes its times.

    Cut to the second, a time says a moment slightly earlier than stored, which keeps "works
    until" and "verifies until" true; ``round_up`` is for the moment something starts ("signs
    from"), where a script that waits until the printed second must not be early."""
    moment = moment.astimezone(UTC)
    if round_up and moment.microsecond:
        moment += timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _when_or(moment: datetime | None, absent: str) -> str:
    """:func:`_when`, or ``absent`` ("-", "never") for a time not set."""
    return absent if moment is None else _when(moment)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _digester(settings: Settings) -> SecretDigester:
    return SecretDigester(secret_pepper(settings))


def _show_once(
    fields: Mapping[str, str | None], as_json: bool, *, text: Mapping[str, str] | None = None
) -> None:
    """Print a new credential; its last field is the secret, which is never shown again.
    ``text`` gives other fields' values as the plain-text output words them."""
    if as_json:
        _print_json(dict(fields))
        return
    width = max(map(len, fields)) + 2
    *plain, (secret_name, secret) = fields.items()
    for name, value in plain:
        print(f"{name + ':':{width}}{(text or {}).get(name, value)}")
    print(f"{secret_name + ':':{width}}{secret}   (shown only now)")


def _check_can_listen(host: str, port: int) -> None:
    """Bind the address once, before migrating, so that a port in use is one line naming it,
    not uvicorn's nine lines of log after the migrations."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on --host {host}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as sock:
        # As uvicorn binds: with SO_REUSEADDR a port still in TIME_WAIT is free; a listening
        # one is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            where = f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"cannot listen on {where}: port {port} is in use by another program; "
                    "stop it, or choose another port with --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise StartupError(
                    f"cannot listen on {where}: port {port} needs privileges; choose a port "
                    "above 1023 with --port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise StartupError(
                    f"cannot listen on {where}: {host} is not an address of this machine; "
                    "fix --host"
                ) from None
            raise StartupError(f"cannot listen on {where}: {exc.strerror}") from None


def _upgrade(settings: Settings) -> list[str]:
    """Migrate: the first thing every command does with the database, so the one place that
    turns an unreachable database into a line naming the setting and where it points. The
    revisions applied, oldest first."""
    # Alembic and the migrations, imported here only: `serve` migrates in a child process
    # (_in_child), so that they never take room in the serving process.
    from persistence.migrate import upgrade

    try:
        # Straight to PostgreSQL when a pooler sits in front (STOREFRONT_MIGRATION_DATABASE_URL).
        return upgrade(settings.migrations_url)
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(_unreachable(settings, exc, migrating=True)) from None


def migrations_done(applied: Sequence[str]) -> str:
    """What migrating did, as ``db upgrade`` prints it and ``serve`` logs it: the revisions
    applied, first→last, or the one the database was at already."""
    if not applied:
        return f"already at {head_revision()}"
    if len(applied) == 1:
        return f"applied {applied[0]}"
    return f"applied {applied[0]}→{applied[-1]}"


def _unreachable(settings: Settings, exc: BaseException, *, migrating: bool = False) -> str:
    """One line: the database that could not be reached, the setting that names it (its
    password masked, wherever in the URL it is), and why."""
    variable, value = "STOREFRONT_DATABASE_URL", settings.database_url
    if migrating and settings.migration_database_url is not None:
        variable, value = "STOREFRONT_MIGRATION_DATABASE_URL", settings.migration_database_url
    url = make_url(value)
    shown = f"({variable}={masked_url(value)})"
    if url.get_backend_name() == "sqlite":
        path = Path(url.database).resolve() if url.database else "in memory"
        return f"cannot open the database file {path} {shown}: {_reason(exc)}"
    where = f"host {url.host or 'localhost'}, port {url.port or 5432}"
    return f"cannot reach the database at {where} {shown}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    """What the driver said, in one line, without the SQL or the traceback."""
    if isinstance(exc, TimeoutError):
        return "no answer within STOREFRONT_DATABASE_TIMEOUT"
    if isinstance(exc, SQLAlchemyError) and getattr(exc, "orig", None) is not None:
        exc = exc.orig  # type: ignore[attr-defined]
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({type(exc).__name__})"
    first_line = next(iter(str(exc).splitlines()), "")
    return f"{first_line} ({type(exc).__name__})" if first_line else type(exc).__name__


def _create_database(
    settings: Settings, say: Callable[[str], object], *, say_unchanged: bool
) -> None:
    """Migrate the database, which ``serve`` and ``db upgrade`` create when it is missing (a
    SQLite file's directory too, a PostgreSQL database when the role may), and ``say`` in
    one line each what was created and what was applied; with ``say_unchanged``, also that
    there was nothing to apply."""
    missing = missing_sqlite_file(settings)
    if missing is not None:
        # The words of the other commands' "no database at …", which refuse where these
        # two create: a server started in the wrong directory says so on its first line.
        try:
            missing.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where the directory should be, no permission, ...
            raise StartupError(_unreachable(settings, exc)) from None
        say(f"no database at {missing} ({database_setting(settings)}): creating it")
    elif sqlite_file(settings.database_url) is None:
        _create_postgres_database(settings, say)
    applied = _upgrade(settings)
    if applied or say_unchanged:
        # serve logs a change only: a restart's log starts with what is new, and a refusal
        # that follows (another pepper, say) stays the one line on stderr.
        say(f"{migrations_done(applied)} ({database_label(settings)})")


def _create_postgres_database(settings: Settings, say: Callable[[str], object]) -> None:
    url = make_url(settings.migrations_url)
    where = f"host {url.host or 'localhost'}, port {url.port or 5432}"
    try:
        # Where the migrations run: behind a pooler, PostgreSQL itself.
        created = create_database_if_missing(
            settings.migrations_url, timeout=settings.database_timeout
        )
    except CannotCreateDatabase as exc:
        raise StartupError(_cannot_create(settings, exc, where)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(_unreachable(settings, exc, migrating=True)) from None
    if created:
        say(f'created the database "{url.database}" at {where}')


def _cannot_create(settings: Settings, exc: CannotCreateDatabase, where: str) -> str:
    """One line: the database is missing, the role may not create it, and what to run as one
    that may (the password is in neither: createdb asks for its own)."""
    variable, value = "STOREFRONT_DATABASE_URL", settings.database_url
    if settings.migration_database_url is not None:
        variable, value = "STOREFRONT_MIGRATION_DATABASE_URL", settings.migration_database_url
    url = make_url(value)
    host, port = url.host or "localhost", url.port or 5432
    database, role = exc.database, exc.role
    createdb = shlex.join(
        ["createdb", "-h", host, "-p", str(port), "-U", "postgres", "-O", role, database]
    )
    return (
        f'the database "{database}" does not exist at {where} '
        f'({variable}={masked_url(value)}), and the role "{role}" may not create it (it '
        f"lacks CREATEDB): as a role that may, run {createdb} (in SQL: CREATE DATABASE "
        f"{_identifier(database)} OWNER {_identifier(role)}), then storefront db upgrade again"
    )


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _prepare_to_serve(settings: Settings, args: argparse.Namespace) -> None:
    """What ``serve`` does before it listens: migrate (creating the database), make or check
    the keys, and with ``--demo`` load the demo catalogue and client."""
    _create_database(settings, say=logger.info, say_unchanged=False)
    # Before any worker: a first start makes and records the keys once, and a mismatch stops
    # here with one line rather than in every worker's log.
    bind_secrets(settings, generate=True)
    if args.demo:
        from storefront.importer import import_file

        import_file(settings, DEMO_CATALOGUE, progress=False)
        admin.ensure_demo_users(settings, json.loads(DEMO_USERS.read_text(encoding="utf-8")))
        digester = _digester(settings)
        demo = admin.run(settings, lambda s: admin.ensure_demo_client(s, digester))
        base = f"http://{args.host}:{args.port}"
        print("Demo client (the secret is shown only now; it changes at every --demo start):")
        print(f"  client_id:     {demo.client_id}")
        print(f"  client_secret: {demo.client_secret}")
        print("Fetch a token:")
        print(
            f"  curl -s -X POST {base}/auth/token"
            " -H 'Content-Type: application/x-www-form-urlencoded'"
            f" -d 'grant_type=client_credentials&client_id={demo.client_id}"
            f"&client_secret={demo.client_secret}'"
        )
        # The README's step 2, filled in: its later commands use $TOKEN.
        print("Or keep the token in $TOKEN, as the README's examples use it:")
        print(
            f"  TOKEN=$(curl -s -X POST {base}/auth/token"
            f" -d 'grant_type=client_credentials&client_id={demo.client_id}"
            f"&client_secret={demo.client_secret}'"
            " | python3 -c 'import sys, json; print(json.load(sys.stdin)[\"access_token\"])')"
        )
        print(f"Swagger UI: {base}/ui/")


def _in_child(work: Callable[[], None]) -> None:
    """Run ``work`` in a forked child process and wait for it.

    What the child imports (Alembic and the migrations, the importer and rich) never enters
    this process, which goes on to serve: 9 MiB of a worker's memory (bench/memory.py). The
    child prints its own one-line error, as ``main`` does, and this process then ends with the
    child's exit code. No other thread runs yet, so forking is safe; where there is no fork
    (Windows), the work runs here."""
    if not hasattr(os, "fork"):
        work()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _handled(work)
        except Exception:
            # Not one of the errors _handled words: a bug, whose traceback os._exit below
            # would otherwise swallow, leaving an exit status and nothing said.
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(code)


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    if args.workers > 1 and settings.rate_limit_storage_url.startswith("memory"):
        # Each worker would count on its own: the budget would silently become N times larger.
        raise SettingsError(
            f"--workers {args.workers} needs a shared rate-limit store: set "
            "STOREFRONT_RATE_LIMIT_STORAGE_URL=redis://host:6379 (or run one worker)"
        )

    _check_can_listen(args.host, args.port)
    _in_child(lambda: _prepare_to_serve(settings, args))
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its samples here and /metrics sums them (prometheus_client's
        # multiprocess mode); set before any worker imports core.metrics.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="storefront-metrics-")
    if settings.metrics_port is not None:
        from prometheus_client import start_http_server

        from core.metrics import registry

        start_http_server(settings.metrics_port, addr=args.host, registry=registry())
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down gracefully, so that the process
    # dies of the signal; with this handler in place the re-raise is absorbed and a clean
    # shutdown exits 0, as process managers expect.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        "storefront.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=None,  # storefront.logs has configured logging already
        access_log=False,  # storefront.access writes the access log, without query strings
        server_header=False,
        # httptools, with header fields counted, framing judged before the app runs, slow
        # and surplus connections bounded, and refusals answered in the error shape, in
        # order (storefront.server).
        http="storefront.server:BoundedHttpToolsProtocol",
        # No WebSocket protocol: an upgrade request reaches the app as plain HTTP, which
        # refuses it in the error shape (with one, uvicorn handed it to a WebSocket library
        # that answered a text/plain 400 or, once the app declined, a 500).
        ws="none",
        timeout_keep_alive=settings.keep_alive_timeout,
        # uvloop, accepting every waiting connection in one turn (storefront.eventloop); where
        # uvloop is missing (it comes with uvicorn[standard], not on Windows), asyncio's loop,
        # which accepts that way already.
        loop=_event_loop(),
        # Explicitly, never uvicorn's default (127.0.0.1 and FORWARDED_ALLOW_IPS from the
        # environment): a forwarded address is believed only from a proxy the operator listed.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )


def _event_loop() -> str:
    """uvicorn's ``loop=``: the import string of storefront.eventloop's loop, or asyncio's."""
    if importlib.util.find_spec("uvloop") is None:
        return "asyncio"
    return "storefront.eventloop:new_event_loop"


def _dispatch(settings: Settings, args: argparse.Namespace) -> None:
    command = (args.command, getattr(args, "action", None))
    if command == ("serve", None):
        _serve(settings, args)
        return
    if command == ("db", "upgrade"):
        _create_database(settings, say=print, say_unchanged=True)
        # Checks the secrets at hand, if any, and records them on a new database; makes none.
        bind_secrets(settings, generate=False)
        return
    if args.command == "keys" and args.action in SIGNING_KEY_ACTIONS:
        _signing_key_command(settings, args)
        return
    # Only serve and db upgrade create a database; the others say where they looked.
    try:
        require_database(settings)
    except (SQLAlchemyError, OSError) as exc:
        raise StartupError(_unreachable(settings, exc)) from None
    _upgrade(settings)
    # Every command checks the secrets at hand; those that make credentials need the pepper,
    # and make the keys on a database that has none yet.
    bind_secrets(settings, generate=command in MAKE_CREDENTIALS)
    if command == ("products", "import"):
        from storefront.importer import import_file

        counts = import_file(settings, args.file, progress=sys.stderr.isatty())
        print(
            f"imported {counts.total} products from {args.file}: {counts.inserted} inserted, "
            f"{counts.updated} updated, {counts.unchanged} unchanged"
        )
        return
    if command == ("clients", "create") and (args.jwks or args.jwks_uri):
        _create_key_client(settings, args)
    elif command == ("clients", "create"):
        scopes = admin.parse_scopes(args.scopes)
        digester = _digester(settings)
        new = admin.run(
            settings,
            lambda s: admin.create_client(
                s, digester, name=args.name, scopes=scopes, require_dpop=args.require_dpop
            ),
        )
        _show_once({"client_id": new.client_id, "client_secret": new.client_secret}, args.json)
    elif command == ("clients", "list"):
        clients = admin.run(settings, clients_repo.list_clients)
        if args.json:
            _print_json(
                [
                    {
                        "client_id": c.id,
                        "name": c.name,
                        "scopes": c.scopes,
                        "created_at": _when(c.created_at),
                        "disabled": c.disabled_at is not None,
                        "rate_limit": c.rate_limit,
                        "previous_secret_expires_at": _grace_end(c),
                        "auth_methods": _auth_methods(c),
                        "jwks_uri": c.jwks_uri,
                        "require_dpop": c.require_dpop,
                    }
                    for c in clients
                ]
            )
        else:
            _table(
                ("CLIENT ID", "STATUS", "SCOPES", "RATE LIMIT", "DPOP", "CREATED", "NAME"),
                [
                    (
                        c.id,
                        "active" if c.disabled_at is None else "disabled",
                        c.scopes,
                        c.rate_limit or "default",
                        "required" if c.require_dpop else "optional",
                        _when(c.created_at),
                        c.name,
                    )
                    for c in clients
                ],
            )
    elif command == ("clients", "disable"):
        admin.run(settings, lambda s: clients_repo.disable_client(s, client_id=args.client_id))
        print(f"client {args.client_id} disabled")
    elif command == ("clients", "set-limit"):
        own = admin.parse_rate_limits(args.limit)
        admin.run(
            settings,
            lambda s: clients_repo.set_rate_limit(s, client_id=args.client_id, rate_limit=own),
        )
        print(
            f"client {args.client_id}: {_limits_shown(own, f'the default ({settings.rate_limit})')}"
        )
    elif command == ("keys", "set-limit"):
        own = admin.parse_rate_limits(args.limit)
        admin.run(
            settings,
            lambda s: clients_repo.set_key_rate_limit(s, key_id=args.key_id, rate_limit=own),
        )
        print(f"API key {args.key_id}: {_limits_shown(own, OWN_CLIENTS)}")
    elif command == ("clients", "rotate-secret"):
        _rotate_secret(settings, args)
    elif command == ("clients", "set-jwks"):
        _set_jwks(settings, args)
    elif command == ("keys", "create"):
        _create_key(settings, args)
    elif command == ("keys", "list"):
        _list_keys(settings, args)
    elif command == ("usage", None):
        usage_report.show(settings, args)
    elif command == ("keys", "revoke"):
        admin.run(settings, lambda s: clients_repo.revoke_api_key(s, key_id=args.key_id))
        print(f"API key {args.key_id} revoked")


# --- clients without a secret: private_key_jwt (RFC 7523) ---

CREATE_KEYS_HELP = """\
With --jwks FILE or --jwks-uri URL the client has no secret: it authenticates at
/auth/token, /auth/revoke and /auth/introspect with a JWT it signs with one of those keys
(private_key_jwt, RFC 7523), and nothing secret is stored or sent. FILE is a JWK Set of
public keys (RSA of 2048 bits or more, P-256 or Ed25519); URL is
where the client publishes one, fetched now to check it (within STOREFRONT_JWKS_FETCH_TIMEOUT)
and by the server when needed, kept for STOREFRONT_JWKS_CACHE_TTL seconds.
"""
SET_JWKS_SUMMARY = "replace a client's public keys (private_key_jwt)"
SET_JWKS_HELP = """\
The new keys are accepted at once by every instance (each reads a client's registered keys
with the client, at every authentication), and the keys they replace are refused from the
same moment. To move to a new key without an outage, register a set with both keys, move the
client to signing with the new one, then register the new key alone. With --jwks-uri, the
client changes its keys at that URL instead: a key published there is fetched as soon as an
assertion names its kid, and a key withdrawn there works on for at most
STOREFRONT_JWKS_CACHE_TTL seconds.
"""


def _key_source_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--jwks",
        type=Path,
        default=None,
        metavar="FILE",
        help="a JWK Set file of the client's public keys; no secret"
        + ("" if required else " (default: a client secret)"),
    )
    group.add_argument(
        "--jwks-uri",
        default=None,
        metavar="URL",
        help="where the client publishes its JWK Set (https://…); no secret"
        + ("" if required else " (default: a client secret)"),
    )


def _key_source(settings: Settings, args: argparse.Namespace) -> admin.ClientKeySource:
    if args.jwks is not None:
        return admin.read_key_set(args.jwks)
    return admin.published_key_set(args.jwks_uri, timeout=settings.jwks_fetch_timeout)


def _auth_methods(client: Client) -> list[str]:
    """How the client may authenticate: with its secret, its keys, or both."""
    methods = ["client_secret"] if client.secret_digest else []
    if client.jwks is not None or client.jwks_uri is not None:
        methods.append("private_key_jwt")
    return methods


def _create_key_client(settings: Settings, args: argparse.Namespace) -> None:
    scopes = admin.parse_scopes(args.scopes)
    keys = _key_source(settings, args)
    new = admin.run(
        settings,
        lambda s: admin.create_key_client(
            s, name=args.name, scopes=scopes, keys=keys, require_dpop=args.require_dpop
        ),
    )
    shown = {
        "client_id": new.client_id,
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": new.jwks_uri,
    }
    if args.json:
        _print_json(shown)
        return
    print(f"client_id:                  {new.client_id}")
    print("token_endpoint_auth_method: private_key_jwt (no secret)")
    print(f"keys:                       {new.jwks_uri or 'registered from ' + str(args.jwks)}")


def _set_jwks(settings: Settings, args: argparse.Namespace) -> None:
    keys = _key_source(settings, args)
    admin.run(settings, lambda s: admin.set_client_keys(s, client_id=args.client_id, keys=keys))
    where = keys.jwks_uri or f"the key set of {args.jwks}"
    print(f"client {args.client_id}: keys replaced by {where}")


LIMITS_HELP = """\
Every limit counts: a request is accepted only while each has room, and a 429 names the
limit reached. One limit is named "client" (or "key"); each of several is named by its
window: per-minute, per-day, per-5-minutes. Each window may have one limit.
"""


OWN_CLIENTS = "its client's"


def _limits_shown(own: str | None, default: str) -> str:
    if own is None:
        return f"rate limit {default}"
    parts = own.split(";")
    return f"rate limit{'s' if len(parts) > 1 else ''} {', '.join(parts)}"


# --- credential lifecycles: expiring keys, their last use, secrets rotated with a grace ---

ROTATE_SUMMARY = "give a client a new secret; the old one works on for a grace period"
ROTATE_HELP = """\
The new secret is printed once. The secret it replaces keeps working at /auth/token,
/auth/revoke and /auth/introspect until the grace ends, so that the client's deployments
can move to the new one without an outage; --grace 0 ends it at once (a leaked secret).

Only one previous secret is kept: rotating again within a grace replaces it with the secret
current until then, and the one before stops working at once.
"""


def _rotate_secret_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client_id", metavar="ID", help="the client's id (cli_…)")
    parser.add_argument(
        "--grace",
        default=admin.DEFAULT_GRACE,
        metavar="DURATION",
        help="how long the old secret keeps working: 0 (not at all), 30m, 12h, 7d …",
    )
    _json_flag(parser)


def _iso(moment: datetime | None) -> str | None:
    """:func:`_when` for JSON, where a time not set is null."""
    return None if moment is None else _when(moment)


def _grace_end(client: Client) -> str | None:
    """Until when the secret the last rotation replaced still works; None when it does not."""
    until = client.previous_secret_expires_at
    return None if until is None or until <= datetime.now(UTC) else _when(until)


def _rotate_secret(settings: Settings, args: argparse.Namespace) -> None:
    grace = admin.parse_duration(args.grace, option="--grace", maximum=admin.GRACE_MAX, zero=True)
    digester = _digester(settings)
    rotated = admin.run(
        settings,
        lambda s: admin.rotate_client_secret(s, digester, client_id=args.client_id, grace=grace),
    )
    until = rotated.previous_secret_expires_at
    _show_once(
        {
            "client_id": rotated.client_id,
            "previous_secret_expires_at": _iso(until),
            "client_secret": rotated.client_secret,
        },
        args.json,
        text={
            "previous_secret_expires_at": (
                "stopped working now" if until is None else f"works until {_when(until)}"
            )
        },
    )


def _create_key(settings: Settings, args: argparse.Namespace) -> None:
    expires_in = None
    if args.expires_in is not None:
        expires_in = admin.parse_duration(
            args.expires_in, option="--expires-in", maximum=admin.KEY_LIFETIME_MAX
        )
    uses, refill = admin.parse_uses(args.uses, args.refill)
    digester = _digester(settings)
    key = admin.run(
        settings,
        lambda s: admin.create_api_key(
            s,
            digester,
            client_id=args.client_id,
            expires_in=expires_in,
            uses=uses,
            uses_refill=refill,
        ),
    )
    shown: dict[str, Any] = {"key_id": key.key_id, "expires_at": _iso(key.expires_at)}
    text = {"expires_at": _when_or(key.expires_at, "never")}
    if uses is not None:
        shown |= {"uses": uses, "uses_refill": refill}
        text |= {"uses": str(uses), "uses_refill": refill or "never"}
    _show_once({**shown, "api_key": key.api_key}, args.json, text=text)


def _key_status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _uses_left(key: ApiKey, left: Mapping[str, int | None]) -> str:
    """ "-" for a key without uses; "?" when the store that counts them cannot be read."""
    if key.uses is None:
        return "-"
    found = left.get(key.id)
    refill = f" (refills {key.uses_refill})" if key.uses_refill else ""
    return f"{'?' if found is None else found}{refill}"


def _list_keys(settings: Settings, args: argparse.Namespace) -> None:
    keys = admin.run(settings, lambda s: clients_repo.list_api_keys(s, client_id=args.client_id))
    now = datetime.now(UTC)
    left = admin.remaining_uses(settings, keys)
    if args.json:
        _print_json(
            [
                {
                    "key_id": k.id,
                    "prefix": k.prefix,
                    "client_id": k.client_id,
                    "status": _key_status(k, now),
                    "created_at": _when(k.created_at),
                    "expires_at": _iso(k.expires_at),
                    "last_used_at": _iso(k.last_used_at),
                    "revoked_at": _iso(k.revoked_at),
                    "rate_limit": k.rate_limits,
                    "uses": k.uses,
                    "uses_refill": k.uses_refill,
                    "uses_remaining": left.get(k.id),
                }
                for k in keys
            ]
        )
        return
    _table(
        ("KEY ID", "PREFIX", "CLIENT ID", "STATUS", "CREATED", "EXPIRES", "LAST USED", "USES LEFT"),
        [
            (
                k.id,
                k.prefix or "-",  # a key made before prefixes were kept
                k.client_id,
                _key_status(k, now),
                _when(k.created_at),
                _when_or(k.expires_at, "never"),
                _when_or(k.last_used_at, "never"),
                _uses_left(k, left),
            )
            for k in keys
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "docs":  # no settings, no database
        return docsite.main(args)

    def work() -> None:
        settings = load_settings()
        configure_logging(settings)
        _dispatch(settings, args)

    return _handled(work)


def _handled(work: Callable[[], None]) -> int:
    """Run ``work``; an error it raises is one line on stderr and an exit code, never a
    traceback."""
    try:
        work()
    except SettingsError as exc:
        _fail(str(exc))
        return 2
    except StorefrontError as exc:
        _fail(exc.message)
        return 1
    except StartupError as exc:
        _fail(str(exc))
        return 1
    except TimeoutError:
        # Before OSError, of which it is a kind; it carries no text of its own.
        _fail(
            "database error: a database operation took longer than STOREFRONT_DATABASE_TIMEOUT "
            "allows (the database is busy or locked by another writer)"
        )
        return 1
    except (SQLAlchemyError, OSError) as exc:
        # An unreachable or unwritable database: one line, not a traceback.
        first_line = next(iter(str(exc).splitlines()), "")
        _fail(f"database error: {type(exc).__name__}: {first_line}".rstrip(": "))
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
