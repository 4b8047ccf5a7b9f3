"""The ``storefront`` command: serve the API, manage clients and keys, import products."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from core.crypto import SecretDigester
from core.errors import StorefrontError
from core.settings import Settings, SettingsError, load_settings, secret_pepper
from persistence import clients as clients_repo
from persistence.migrate import upgrade
from storefront import admin
from storefront.logs import configure_logging

DEMO_CATALOGUE = Path(__file__).with_name("data") / "demo_products.json"


def _fail(message: str) -> None:
    print(f"storefront: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storefront",
        description="Storefront API server. Configuration comes from STOREFRONT_* variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="migrate the database and serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--demo",
        action="store_true",
        help="load a small product catalogue and print the credentials of a demo client",
    )

    clients = sub.add_parser("clients", help="OAuth clients").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = clients.add_parser("create", help="create a client; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="read write", help='default: "read write"')
    create.add_argument("--json", action="store_true", help="print JSON")
    listing = clients.add_parser("list", help="list clients")
    listing.add_argument("--json", action="store_true", help="print JSON")
    disable = clients.add_parser("disable", help="disable a client; its tokens stop working")
    disable.add_argument("client_id", metavar="ID")
    set_limit = clients.add_parser(
        "set-limit", help="give a client its own rate limit, or 'default' for the server's"
    )
    set_limit.add_argument("client_id", metavar="ID")
    set_limit.add_argument("limit", metavar="LIMIT", help='e.g. "500/minute", or "default"')

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    key_create = keys.add_parser("create", help="create an API key; prints it once")
    key_create.add_argument("--client-id", required=True)
    key_create.add_argument("--json", action="store_true", help="print JSON")
    revoke = keys.add_parser("revoke", help="revoke an API key; it stops working at once")
    revoke.add_argument("key_id", metavar="KEY_ID")

    products = sub.add_parser("products", help="the product catalogue").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    imp = products.add_parser("import", help="import products from a JSON or CSV file")
    imp.add_argument("file", type=Path, metavar="FILE")

    db = sub.add_parser("db", help="the database schema").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="apply all migrations")
    return parser


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _digester(settings: Settings) -> SecretDigester:
    return SecretDigester(secret_pepper(settings))


def _show_once(fields: dict[str, str], as_json: bool) -> None:
    """Print a new credential; its last field is the secret, which is never shown again."""
    if as_json:
        _print_json(fields)
        return
    width = max(map(len, fields)) + 2
    *plain, (secret_name, secret) = fields.items()
    for name, value in plain:
        print(f"{name + ':':{width}}{value}")
    print(f"{secret_name + ':':{width}}{secret}   (shown only now)")


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    if args.workers > 1 and settings.rate_limit_storage_url.startswith("memory"):
        # Each worker would count on its own: the budget would silently become N times larger.
        raise SettingsError(
            f"--workers {args.workers} needs a shared rate-limit store: set "
            "STOREFRONT_RATE_LIMIT_STORAGE_URL=redis://host:6379 (or run one worker)"
        )

    from storefront.importer import import_file

    upgrade(settings.migrations_url)
    if args.demo:
        import_file(settings, DEMO_CATALOGUE, progress=False)
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
        print(f"Swagger UI: {base}/ui/")
        sys.stdout.flush()
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
        timeout_graceful_shutdown=int(settings.shutdown_grace),
    )


def _dispatch(settings: Settings, args: argparse.Namespace) -> None:
    command = (args.command, getattr(args, "action", None))
    if command == ("serve", None):
        _serve(settings, args)
        return
    upgrade(settings.migrations_url)
    if command == ("db", "upgrade"):
        print("database is at the latest migration")
        return
    if command == ("products", "import"):
        from storefront.importer import import_file

        count = import_file(settings, args.file, progress=sys.stderr.isatty())
        print(f"imported {count} products from {args.file}")
        return
    if command == ("clients", "create"):
        scopes = admin.parse_scopes(args.scopes)
        digester = _digester(settings)
        new = admin.run(
            settings, lambda s: admin.create_client(s, digester, name=args.name, scopes=scopes)
        )
        _show_once({"client_id": new.client_id, "client_secret": new.client_secret}, args.json)
    elif command == ("clients", "list"):
        rows = [
            {
                "client_id": c.id,
                "name": c.name,
                "scopes": c.scopes,
                "created_at": c.created_at.isoformat(),
                "disabled": c.disabled_at is not None,
                "rate_limit": c.rate_limit,
            }
            for c in admin.run(settings, clients_repo.list_clients)
        ]
        if args.json:
            _print_json(rows)
        else:
            for row in rows:
                state = "disabled" if row["disabled"] else "active"
                limit = row["rate_limit"] or "default"
                print(
                    f"{row['client_id']}  {state:8}  {row['scopes']:11}  {limit:12}  {row['name']}"
                )
    elif command == ("clients", "disable"):
        admin.run(settings, lambda s: clients_repo.disable_client(s, client_id=args.client_id))
        print(f"client {args.client_id} disabled")
    elif command == ("clients", "set-limit"):
        own = None if args.limit == "default" else admin.parse_rate_limit(args.limit)
        admin.run(
            settings,
            lambda s: clients_repo.set_rate_limit(s, client_id=args.client_id, rate_limit=own),
        )
        shown = own or f"the default ({settings.rate_limit})"
        print(f"client {args.client_id}: rate limit {shown}")
    elif command == ("keys", "create"):
        digester = _digester(settings)
        key = admin.run(
            settings, lambda s: admin.create_api_key(s, digester, client_id=args.client_id)
        )
        _show_once({"key_id": key.key_id, "api_key": key.api_key}, args.json)
    elif command == ("keys", "revoke"):
        admin.run(settings, lambda s: clients_repo.revoke_api_key(s, key_id=args.key_id))
        print(f"API key {args.key_id} revoked")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        _dispatch(settings, args)
    except SettingsError as exc:
        _fail(str(exc))
        return 2
    except StorefrontError as exc:
        _fail(exc.message)
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
