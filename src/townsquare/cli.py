"""`townsquare serve | check-config | migrate | create-admin | chat`."""

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
    config = uvicorn.Config(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,  # configure_logging above: JSON lines, our own access log
        access_log=False,
        proxy_headers=True,
        # X-Forwarded-For is believed from these peers only (README, "Behind a proxy").
        forwarded_allow_ips=settings.forwarded_allow_ips,
        **connection_options(settings),
    )
    server = DrainingServer(config, graceful_timeout=settings.graceful_timeout)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="townsquare", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve the API with uvicorn in one process (production: gunicorn -c gunicorn.conf.py)",
    )
    serve.add_argument("--host", help="interface (default: HOST)")
    serve.add_argument("--port", type=int, help="port (default: PORT)")

    commands.add_parser(
        "check-config", help="validate the environment's settings and exit (0 when valid)"
    )

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("revision", nargs="?", default="head")

    admin = commands.add_parser(
        "create-admin",
        help="create an admin account, or make an existing account an admin",
        description="The password is read from --password-stdin, else from "
        "TOWNSQUARE_ADMIN_PASSWORD, else asked for on the terminal.",
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", default="Administrator")
    admin.add_argument("--password-stdin", action="store_true")

    chat = commands.add_parser(
        "chat",
        help="chat in a room from the terminal (a client of a running service)",
        description="Sign in, show the room's recent messages, then live ones; each line "
        "typed is sent. /who lists who is online, /quit (or end of input) leaves.",
    )
    chat.add_argument("room")
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
        settings = Settings()
    except ValidationError as exc:
        print(describe_invalid_settings(exc), file=sys.stderr)
        return 2

    if args.command == "serve":
        return _serve(settings, args)
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
