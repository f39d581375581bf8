"""The `townsquare` command line: serve, worker, check-config, migrate, create-admin, chat."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from townsquare.config import Settings


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from townsquare.main import create_app
    from townsquare.platform.logging import configure_logging
    from townsquare.platform.server import DrainingServer, connection_options

    configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=args.port or settings.port,
        log_config=None,  # configure_logging above: JSON lines, our own access log
        access_log=False,
        proxy_headers=True,
        # X-Forwarded-For is believed from these peers only (README, "Behind a proxy").
        forwarded_allow_ips=settings.forwarded_allow_ips,
        **connection_options(settings),
    )
    server = DrainingServer(
        config, drain=app.state.drain, graceful_timeout=settings.graceful_timeout
    )
    server.run()
    return 0 if server.started else 1


def describe_invalid_settings(exc: ValidationError) -> str:
    """One line per bad variable, named as the operator sets it (SECRET_KEY, not secret_key)."""
    lines = ["townsquare: invalid configuration, refusing to start:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {field}: {message}" if field else f"  {message}")
    return "\n".join(lines)


async def _migrate(settings: Settings, revision: str) -> None:
    from townsquare.platform import migrations
    from townsquare.platform.database import create_database

    database = create_database(settings.database_url)
    try:
        await migrations.upgrade(database.engine, revision)
    finally:
        await database.dispose()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    from_env = os.environ.get("TOWNSQUARE_ADMIN_PASSWORD")
    if from_env:
        return from_env
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise SystemExit("passwords differ")
    return first


async def _create_admin(settings: Settings, *, name: str, email: str, password: str) -> str:
    from townsquare.auth.passwords import PasswordHasher
    from townsquare.platform import migrations
    from townsquare.platform.database import create_database
    from townsquare.users import service as users_service

    database = create_database(settings.database_url)
    try:
        if settings.is_sqlite:
            await migrations.upgrade(database.engine)
        hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
        )
        async with database.sessions() as session:
            existing = await users_service.get_user_by_email(session, email)
            if existing is not None:
                existing.is_admin = True
                await session.commit()
                return f"user {existing.id} <{existing.email}> is now an admin"
            user = await users_service.create_user(
                session,
                name=name,
                email=email,
                password_hash=await hasher.hash(password),
                is_admin=True,
            )
            return f"created admin {user.id} <{user.email}>"
    finally:
        await database.dispose()


def _chat(args: argparse.Namespace) -> int:
    from townsquare.client.chat import chat, read_lines

    email = args.email or input("Email: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")

    async def run() -> int:
        return await chat(
            args.url,
            args.room,
            email=email,
            password=password,
            lines=read_lines(sys.stdin),
            say=lambda text: print(text, flush=True),
        )

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 130


DESCRIPTION = """\
townsquare: accounts, token auth, a users API and live WebSocket rooms on FastAPI.

Every command reads its settings from the environment (and ./.env); `townsquare
check-config` validates them. The README lists every variable."""

EPILOG = """\
examples:
  townsquare serve                          # http://127.0.0.1:8000, SQLite + in-memory broker
  townsquare migrate                        # bring DATABASE_URL's schema up to date
  townsquare create-admin --email a@b.org   # asks for the password
  gunicorn -c gunicorn.conf.py              # production: WEB_CONCURRENCY workers
  townsquare chat general                   # a terminal chat against a running service

Run `townsquare COMMAND --help` for a command's options."""


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="townsquare",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        commands,
        "serve",
        "serve the API and the web client in one process",
        "Serve the API, /ws and the web client with uvicorn in one process, with JSON\n"
        "logs and a draining shutdown (SIGTERM: bye + 1012 to WebSockets). The SQLite\n"
        "default is created and migrated at start; PostgreSQL needs `townsquare migrate`\n"
        "first. For several workers use gunicorn: gunicorn -c gunicorn.conf.py",
    )
    serve.add_argument("--host", help="interface to listen on (default: HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: PORT, 8000)")

    _command(
        commands,
        "worker",
        "run background jobs (mail, purges) from Redis, apart from the web processes",
        "Run the background jobs (sending mail with retries, purging spent tokens and\n"
        "old idempotency keys, message retention) from the Redis queue, apart from the\n"
        "web processes; several workers share the queue. Needs REDIS_URL (without it\n"
        "the web process runs the jobs itself). Serves its metrics on WORKER_METRICS_PORT.",
    )

    _command(
        commands,
        "check-config",
        "validate the settings and exit (0 valid, 2 invalid)",
        "Validate the settings from the environment and ./.env as the server would,\n"
        "without starting anything: exit 0 when valid, else 2 with one line per\n"
        "problem, named by its variable (for deploy pipelines).",
    )

    migrate = _command(
        commands,
        "migrate",
        "bring the database schema up to date (Alembic)",
        "Apply the Alembic migrations to DATABASE_URL, up to REVISION. Run it once\n"
        "per release, before the new workers start: /ready answers 503 naming the\n"
        "schema while the database is behind the code.",
    )
    migrate.add_argument(
        "revision", nargs="?", default="head", help="target revision (default: head, the latest)"
    )

    admin = _command(
        commands,
        "create-admin",
        "create an admin account, or make an existing account an admin",
        "Create an admin account, or grant admin to the account with that email.\n"
        "The password is read from standard input with --password-stdin, else from\n"
        "TOWNSQUARE_ADMIN_PASSWORD, else asked for twice on the terminal; it follows\n"
        "the signup rules (8-128 characters).",
    )
    admin.add_argument("--email", required=True, help="the account's email (sign-in name)")
    admin.add_argument(
        "--name", default="Administrator", help="display name (default: Administrator)"
    )
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )

    chat = _command(
        commands,
        "chat",
        "chat in a room from the terminal (a client of a running service)",
        "Sign in, show the room's recent messages, then live ones; each line typed is\n"
        "sent. /who lists who is online, /quit (or end of input) leaves. A client: the\n"
        "service's own settings do not apply.",
    )
    chat.add_argument("room", help="the room's name")
    chat.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the service (default: %(default)s)"
    )
    chat.add_argument("--email", help="the account's email (default: asked)")
    chat.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (default: asked)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "chat":  # a client: the service's settings do not apply
        return _chat(args)
    try:
        # `serve --host` is validated like HOST (the development key is refused on a
        # public interface).
        overrides = {"host": args.host} if getattr(args, "host", None) else {}
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(describe_invalid_settings(exc), file=sys.stderr)
        return 2

    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "worker":
        from townsquare import worker

        return worker.main(settings)
    if args.command == "check-config":
        print(f"configuration valid (ENV={settings.env.value})")
        return 0
    if args.command == "migrate":
        asyncio.run(_migrate(settings, args.revision))
        print(f"database migrated to {args.revision}")
        return 0
    # create-admin: validate with the same rules as signup.
    from townsquare.users.schemas import UserCreate

    try:
        data = UserCreate(name=args.name, email=args.email, password=_read_password(args))
    except ValidationError as exc:
        print(f"townsquare: {exc}", file=sys.stderr)
        return 2
    print(
        asyncio.run(
            _create_admin(settings, name=data.name, email=data.email, password=data.password)
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
