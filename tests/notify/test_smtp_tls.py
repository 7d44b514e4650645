"""CHAT_SMTP_URL forms against a real TLS-capable SMTP server on loopback:
STARTTLS (required or opportunistic), implicit TLS, and authentication."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from chatserver.notify.mime import Draft, build_message
from chatserver.notify.transport import SmtpTransport
from chatserver.settings import Settings
from scripts.load.processes import free_port
from tests.notify.conftest import Handler, Mailbag

# The smtps server must offer AUTH without knowing its connection is TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "mailer", "s3cret/with:odd@chars"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@pytest.fixture(params=["smtp+starttls", "smtp", "smtps"])
def tls_server(
    request: pytest.FixtureRequest,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Mailbag]]:
    cert, key = certificate
    # The client trusts our throwaway CA the way an operator would add a
    # private one: through OpenSSL's SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    scheme = str(request.param)
    bag, port = Mailbag(), free_port()
    options: dict[str, Any] = {"authenticator": authenticate, "auth_required": True}
    if scheme == "smtps":
        options["ssl_context"] = context
        options["server_hostname"] = "127.0.0.1"
        # aiosmtpd cannot tell that an implicit-TLS connection is encrypted.
        options["auth_require_tls"] = False
    else:
        options["tls_context"] = context
        options["require_starttls"] = True
    controller = Controller(Handler(bag), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}", bag
    finally:
        controller.stop()


def sample() -> EmailMessage:
    draft = Draft(
        from_name="Acme via chatserver",
        to_address="Cara <cara@mail.example>",
        subject="Hello",
        text="Hello Cara",
        html="<p>Hello Cara</p>",
        unsubscribe_url="http://testserver/email/unsubscribe?token=t",
    )
    created = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    return build_message(draft, "msg:test:1:candidate:cara", created, Settings())


async def test_an_email_goes_over_tls_with_authentication(tls_server: tuple[str, Mailbag]) -> None:
    url, bag = tls_server
    # The server refuses MAIL before a successful AUTH, and AUTH before TLS.
    await SmtpTransport(url).deliver(sample())
    [received] = bag.messages()
    assert received["Subject"] == "Hello"
