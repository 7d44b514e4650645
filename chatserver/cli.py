"""`chatserver migrate | serve | notifier | mail-in | demo` (SPEC section 8)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from chatserver.settings import Settings, SettingsError


def _settings(args: argparse.Namespace | None = None) -> Settings:
    settings = Settings.from_env()
    if args is not None and getattr(args, "workers", None):
        settings = settings.with_(workers=args.workers)
    if args is not None and getattr(args, "port", None):
        settings = settings.with_(port=args.port)
    if args is not None and getattr(args, "host", None):
        # Where it listens decides whether the development secret is allowed.
        settings = settings.with_(host=args.host)
    settings.validate()
    return settings


def migrate(settings: Settings) -> None:
    from chatserver.store.migrate import upgrade

    upgrade(settings)
    print("database is up to date")


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    if settings.embedded:
        migrate(settings)
    # Workers read their settings from the environment: they validate the
    # same bind address as this process did.
    os.environ["CHAT_HOST"] = host
    uvicorn.run(
        "chatserver.asgi:app",
        host=host,
        port=port,
        workers=workers,
        # The Sans-I/O websockets implementation: about 8 KiB less per idle
        # connection than the legacy one (docs/performance.md).
        ws="websockets-sansio",
        # Per-message compression costs memory per connection for little
        # gain on short chat messages (SPEC section 5).
        ws_per_message_deflate=False,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        proxy_headers=True,
        log_level=os.environ.get("CHAT_LOG_LEVEL", "info"),
    )


def notifier(settings: Settings) -> None:
    from chatserver.notify.worker import run_standalone

    asyncio.run(run_standalone(settings))


def mail_in(settings: Settings, host: str, port: int) -> None:
    from chatserver.mail_in import run_standalone

    asyncio.run(run_standalone(settings, host, port))


def demo(settings: Settings, host: str, port: int) -> None:
    from chatserver.demo import seed_and_print_links

    # Emails reach the local mailbox after 30 s instead of 2 minutes, so a
    # newcomer sees the notifier work while exploring.
    os.environ.setdefault("CHAT_NOTIFY_DELAY_SECONDS", "30")
    # Emails carry reply addresses, so the local mailbox can show replying
    # by email ("reply to this email" posts through the same path).
    os.environ.setdefault("CHAT_REPLY_DOMAIN", "reply.localhost")
    settings = settings.with_(demo_mode=True, reply_domain=os.environ["CHAT_REPLY_DOMAIN"])
    migrate(settings)
    asyncio.run(seed_and_print_links(settings))
    os.environ["CHAT_DEMO"] = "1"
    serve(settings, host, port, 1)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="chatserver")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the database schema")
    for name in ("serve", "demo"):
        cmd = sub.add_parser(
            name, help="serve the app" if name == "serve" else "seed demo data and serve"
        )
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, default=None)
        if name == "serve":
            cmd.add_argument("--workers", type=int, default=None)
    sub.add_parser("notifier", help="send email notifications")
    mail = sub.add_parser("mail-in", help="take replies to notification emails over SMTP")
    mail.add_argument("--host", default="127.0.0.1")
    mail.add_argument(
        "--port", dest="mail_port", type=int, default=None, help="default: CHAT_MAIL_IN_PORT (2525)"
    )
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"chatserver: {exc}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "serve":
        serve(settings, args.host, settings.port, args.workers or settings.workers)
    elif args.command == "notifier":
        notifier(settings)
    elif args.command == "mail-in":
        mail_in(settings, args.host, args.mail_port or settings.mail_in_port)
    elif args.command == "demo":
        demo(settings, args.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
