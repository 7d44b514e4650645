"""`chatserver migrate | serve | notifier | mail-in | demo | check`.

Settings come from the environment (`chatserver/settings.py`), and
`--host`/`--port`/`--workers` override them (for `mail-in`, `--host` and
`--port` are its own address); the resulting `Settings` value is handed to
the web workers as it is (pickled with uvicorn's config), so a worker never
re-reads the environment and the CLI never writes it.

Every configuration mistake ends the command with one line on stderr that
names the setting and the fix, and a non-zero exit status (2 for a setting,
1 for a dependency that does not answer or a server that could not start).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from chatserver import logs
from chatserver.settings import Settings, SettingsError, mask_url

log = logging.getLogger("chatserver")

EXIT_SETTINGS = 2
EXIT_FAILED = 1


class StartFailed(Exception):
    """A dependency does not answer or the server did not start: one line."""


def migrate(settings: Settings) -> None:
    from sqlalchemy.exc import DBAPIError

    from chatserver.store.migrate import NewerSchema, head_revision, upgrade

    shown = mask_url(settings.database_url) or settings.sqlalchemy_url
    try:
        upgrade(settings)
    except NewerSchema as exc:
        raise StartFailed(f"cannot migrate DATABASE_URL={shown}: {exc}") from None
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise StartFailed(
            f"cannot migrate DATABASE_URL={shown}: {reason}. "
            "Start the database or correct DATABASE_URL."
        ) from None
    log.info("database is up to date (revision %s)", head_revision())


def _probe_before_serving(settings: Settings) -> None:
    """A dead database stops the process with a line that says so; a dead Redis
    is a warning (live fan-out waits for it, nothing is lost)."""
    from chatserver.broker import broker_from_url
    from chatserver.ops.probes import probe_database, probe_redis

    # An unsupported REDIS_URL is a setting to fix, not a service to wait for.
    broker_from_url(settings.redis_url, prefix=settings.redis_prefix)

    async def both() -> tuple[Any, Any]:
        return await asyncio.gather(probe_database(settings), probe_redis(settings))

    database, redis = asyncio.run(both())
    if not database.ok:
        raise StartFailed(database.detail)
    if not redis.ok:
        log.warning("%s", redis.detail)


def _prepare(settings: Settings) -> None:
    """Before a long-running process starts: the embedded database is
    migrated (no release step runs for it); a production one must answer,
    at the schema this version needs."""
    if settings.embedded:
        migrate(settings)
    else:
        _probe_before_serving(settings)


def _free_port(settings: Settings) -> None:
    """The web address must be free before anything else is done."""
    from chatserver.web.server import why_not_listening

    reason = why_not_listening(settings.host, settings.port)
    if reason is not None:
        raise StartFailed(
            f"cannot listen on {settings.host}:{settings.port} ({reason}): stop what "
            "holds it, or choose a free port with PORT or --port."
        )


def serve(settings: Settings, *, migrated: bool = False) -> None:
    from chatserver.web.server import run

    _free_port(settings)
    if not migrated:
        _prepare(settings)
    for warning in settings.warnings():
        log.warning("%s", warning)
    if not run(settings):
        raise StartFailed("the server did not start: see the lines above.")


def notifier(settings: Settings) -> None:
    from chatserver.notify.worker import run_standalone

    _prepare(settings)
    for warning in settings.warnings(host_api=False):
        log.warning("%s", warning)
    asyncio.run(run_standalone(settings))


def mail_in(settings: Settings) -> None:
    """Take replies to notification emails over SMTP until SIGTERM."""
    from chatserver.mail_in import CannotListen, run_standalone

    if not settings.reply_domain:
        raise SettingsError(
            "mail-in takes replies sent to reply addresses, which exist only with "
            "CHAT_REPLY_DOMAIN: set it (the domain the web workers' emails use), "
            "or do not run mail-in."
        )
    _prepare(settings)
    for warning in settings.warnings(host_api=False):
        log.warning("%s", warning)
    try:
        asyncio.run(run_standalone(settings))
    except CannotListen as exc:
        raise StartFailed(str(exc)) from None


def demo(settings: Settings) -> None:
    from chatserver.demo import seed_and_print_links

    # Before seeding and printing links that would lead nowhere.
    _free_port(settings)
    migrate(settings)
    asyncio.run(seed_and_print_links(settings))
    serve(settings.with_(workers=1), migrated=True)


def check(settings: Settings) -> bool:
    """Print the effective configuration (secrets masked) and probe the
    database, Redis and SMTP; whether everything answered."""
    from chatserver.notify.smtp_probe import probe_smtp
    from chatserver.ops.probes import probe_database, probe_redis

    print("chatserver configuration:")
    for name, value in settings.described():
        print(f"  {name:<32} {value}")
    for warning in settings.warnings():
        print(f"warning: {warning}")

    async def probes() -> list[Any]:
        return list(
            await asyncio.gather(
                probe_database(settings), probe_redis(settings), probe_smtp(settings)
            )
        )

    results = asyncio.run(probes())
    for probe in results:
        mark = "skip" if probe.skipped and probe.ok else ("ok" if probe.ok else "FAIL")
        print(f"{mark:>4}  {probe.name}: {probe.detail}")
    return all(probe.ok for probe in results)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatserver")
    sub = parser.add_subparsers(dest="command", required=True)
    migrate_cmd = sub.add_parser("migrate", help="create or upgrade the database schema")
    for name, text in (("serve", "serve the app"), ("demo", "seed demo data and serve")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
        cmd.add_argument("--port", type=int, default=None, help="port (PORT, else 8000)")
        if name == "serve":
            cmd.add_argument("--workers", type=int, default=None, help="(WEB_CONCURRENCY)")
    for cmd in (migrate_cmd, sub.choices["serve"], sub.choices["demo"]):
        cmd.add_argument("--verbose", action="store_true", help="log each migration step (alembic)")
    sub.add_parser("notifier", help="send email notifications")
    mail = sub.add_parser("mail-in", help="take replies to notification emails over SMTP")
    mail.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
    mail.add_argument("--port", type=int, default=None, help="port (CHAT_MAIL_IN_PORT, else 2525)")
    sub.add_parser("check", help="print the configuration (secrets masked) and probe its services")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(demo=args.command == "demo")
    if args.command in ("serve", "demo"):
        settings = settings.listening_on(args.host, args.port)
    if args.command == "mail-in":
        settings = settings.with_(
            mail_in_host=settings.mail_in_host if args.host is None else args.host,
            mail_in_port=settings.mail_in_port if args.port is None else args.port,
        )
    if getattr(args, "workers", None) is not None:
        settings = settings.with_(workers=args.workers)
    settings.validate()
    return settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"chatserver: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    role = {"serve": "web"}.get(args.command, args.command)
    logs.configure(settings, role, verbose=getattr(args, "verbose", False))
    try:
        if args.command == "migrate":
            migrate(settings)
        elif args.command == "serve":
            serve(settings)
        elif args.command == "notifier":
            notifier(settings)
        elif args.command == "mail-in":
            mail_in(settings)
        elif args.command == "demo":
            demo(settings)
        elif args.command == "check":
            return 0 if check(settings) else EXIT_FAILED
    except SettingsError as exc:
        print(f"chatserver: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    except StartFailed as exc:
        print(f"chatserver: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
