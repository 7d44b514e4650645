"""Running the app under uvicorn, with one worker or several.

The CLI's `Settings` reach every worker as a value: `ChatConfig` carries
them through uvicorn's pickled config into each spawned worker and builds
the app from them there, so workers never re-read the environment (and the
CLI's `--host`/`--port` reach the links, emails and Origin check of every
worker). Each worker applies the same logging set-up (`chatserver.logs`).

A start that fails (the lifespan could not open the database, say) ends
`run` with False, with one worker or several: uvicorn's supervisor would
otherwise restart a worker that fails the same way for ever and exit 0 on
the operator's Ctrl-C.
"""

from __future__ import annotations

import logging
import socket as sockets
from socket import socket
from typing import Any

from uvicorn import Config, Server
from uvicorn.supervisors.multiprocess import Multiprocess

from chatserver import logs
from chatserver.ops import collector
from chatserver.settings import Settings
from chatserver.web.ws_protocol import LeanWebSocketProtocol

log = logging.getLogger(__name__)

# How long each worker may take to open its pools and start its hub before
# the start counts as failed. A worker is ready in about a second on an idle
# machine; a minute leaves room for a loaded one without hiding a hang.
WORKER_START_SECONDS = 60.0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for serving the app, beyond where and how many: the
    same for `chatserver serve` and the tests' live server
    (tests/ws_helpers.py), so frame limits and close codes under test are
    the ones production has."""
    return {
        # uvicorn's Sans-I/O websockets implementation (about 8 KiB less per
        # idle connection than the legacy one), holding less again for each
        # idle socket (`web/ws_protocol.py`, docs/performance.md). On
        # shutdown it closes every socket with 1012 (service restart).
        "ws": LeanWebSocketProtocol,
        # Per-message compression costs memory per connection for little
        # gain on short chat messages (docs/protocol.md).
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_frame_bytes,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        "proxy_headers": True,
        "forwarded_allow_ips": list(settings.forwarded_allow_ips),
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }


class ChatConfig(Config):
    """uvicorn's config, holding our settings; `load` (run in the worker
    process) builds the app from them."""

    def __init__(self, settings: Settings, role: str = "web") -> None:
        self.chat_settings = settings
        super().__init__(
            # Only a placeholder: `load` replaces it with the built app.
            "chatserver.asgi:app",
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            **uvicorn_options(settings),
            log_config=logs.config_dict(settings, role),
        )

    def load(self) -> None:
        from chatserver.app import create_app

        self.app = create_app(self.chat_settings)
        super().load()
        # What was built so far lives as long as the worker.
        collector.tune(self.chat_settings.gc_young_threshold)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, which also waits for every worker's start-up
    and gives up (instead of restarting) when one fails."""

    failed = False

    def init_processes(self) -> None:
        super().init_processes()
        for process in self.processes:
            if not process.wait_until_ready(WORKER_START_SECONDS, self.should_exit):
                if not self.should_exit.is_set():
                    log.error("web worker [%s] did not start; stopping", process.pid)
                    self.failed = True
                    self.should_exit.set()
                return


def why_not_listening(host: str, port: int) -> str | None:
    """Why this process could not listen on `host:port` (the system's
    reason, such as "Address already in use"), or None when it can: asked
    before uvicorn starts, which would log the error and exit with a status
    of its own. Bound the way uvicorn binds, then let go."""
    family = sockets.AF_INET6 if ":" in host else sockets.AF_INET
    with socket(family, sockets.SOCK_STREAM) as probe:
        probe.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def run(settings: Settings) -> bool:
    """Serve until SIGTERM/SIGINT; False if the server did not start."""
    config = ChatConfig(settings)
    if settings.workers == 1:
        server = Server(config)
        server.run()
        return server.started
    sock: socket = config.bind_socket()
    supervisor = _Supervisor(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
    return not supervisor.failed
