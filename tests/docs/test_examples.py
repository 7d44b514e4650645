"""Every request example of docs/api.md and docs/protocol.md runs, in order,
against a real server (PostgreSQL and Redis, a database of its own per
document): a document that lies fails here. The conventions are in
tests/docs/runner.py and at the top of docs/api.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.docs.runner import DOC_API_KEY, DocLies, Runner, blocks
from tests.e2e.servers import REPO, PgDatabase, ServerProcess, unique

pytestmark = pytest.mark.slow

DOCS = ["docs/api.md", "docs/protocol.md"]
# Each document shows at least this many runnable examples: a converter that
# silently found none would otherwise pass.
MIN_EXAMPLES = {"docs/api.md": 30, "docs/protocol.md": 15}


@pytest.fixture
async def server(
    pg_template: str, redis_available: str, tmp_path: Path
) -> AsyncIterator[ServerProcess]:
    db = PgDatabase().create(template=pg_template)
    server = ServerProcess(
        tmp_path,
        database_url=db.url,
        redis_url=redis_available,
        prefix=f"{unique('docs')}:",
        # The documents show the service as shipped: its own limits.
        extra_env={
            "CHAT_API_KEYS": DOC_API_KEY,
            "CHAT_SEND_RATE": "2",
            "CHAT_SEND_BURST": "20",
            "CHAT_MAX_CONNECTIONS_PER_USER": "20",
            # Reply by email turned on, as the inbound-email webhook is shown.
            "CHAT_REPLY_DOMAIN": "reply.example.com",
        },
    )
    try:
        yield server.start()
    finally:
        server.stop()
        db.drop()


@pytest.mark.parametrize("doc", DOCS)
async def test_every_documented_example_runs(server: ServerProcess, doc: str) -> None:
    markdown = (REPO / doc).read_text()
    runner = Runner(server.url, doc)
    try:
        ran = await runner.run(markdown)
    except DocLies as exc:
        pytest.fail(f"{exc}\n--- server log\n{server.log_tail()}", pytrace=False)
    finally:
        await runner.aclose()
    assert ran >= MIN_EXAMPLES[doc]


LYING = {
    "a wrong status": """
```http
GET /api/me HTTP/1.1
```

```http
HTTP/1.1 200 OK
```
""",
    "a field the server does not send": """
```http
PUT /api/v1/staff/zed HTTP/1.1
Authorization: Bearer 3f9c2a7e0b14d5c8e6a9f1b2c3d4e5f6
Content-Type: application/json

{"org": {"id": "o", "name": "O"}, "name": "Zed", "email": "zed@o.example"}
```

```http
HTTP/1.1 200 OK

{"id": "zed", "org": {"id": "o", "name": "O"}, "name": "Zed", "email": "zed@o.example",
 "timezone": "UTC", "nickname": "z"}
```
""",
    "a wrong value": """
```http
PUT /api/v1/staff/zed HTTP/1.1
Authorization: Bearer 3f9c2a7e0b14d5c8e6a9f1b2c3d4e5f6
Content-Type: application/json

{"org": {"id": "o", "name": "O"}, "name": "Zed", "email": "zed@o.example"}
```

```http
HTTP/1.1 200 OK

{"id": "zed", "org": {"id": "o", "name": "O"}, "name": "Zed", "email": "zed@o.example",
 "timezone": "Europe/Paris"}
```
""",
    "a request that fails without an answer block": """
```http
GET /api/conversations/0123456789abcdef HTTP/1.1
```
""",
    "a frame the server does not send": """
```ws nobody
> {"type": "ping"}
< {"type": "pong", "at": 1}
```
""",
    "an undocumented frame": """
```ws nobody
> {"type": "ping"}
> {"type": "ping"}
< {"type": "pong"}
```
""",
}


@pytest.mark.parametrize("lie", sorted(LYING))
async def test_the_runner_catches_a_lying_document(server: ServerProcess, lie: str) -> None:
    runner = Runner(server.url, lie)
    try:
        with pytest.raises(DocLies):
            await runner.run(LYING[lie])
    finally:
        await runner.aclose()


def test_samples_are_bound_once_and_then_must_agree() -> None:
    from tests.docs.runner import Samples

    samples = Samples(base="http://127.0.0.1:1")
    samples.match({"id": "d9f7f3201aa02d52"}, {"id": "0aa1bb2cc3dd4ee5"}, "first")
    assert (
        samples.fill("/api/conversations/d9f7f3201aa02d52") == "/api/conversations/0aa1bb2cc3dd4ee5"
    )
    with pytest.raises(DocLies):
        samples.match({"id": "d9f7f3201aa02d52"}, {"id": "ffffffffffffffff"}, "later")
    with pytest.raises(DocLies):  # a human-chosen value is never a sample
        samples.match({"status": "submitted"}, {"status": "hired"}, "status")
    samples.note_sent('{"client_id": "7b0e4c1e-8a55-4a0a-9a53-0c3f1f3b2b11"}')
    with pytest.raises(DocLies):  # what a request sent must come back as sent
        samples.match(
            {"client_id": "7b0e4c1e-8a55-4a0a-9a53-0c3f1f3b2b11"},
            {"client_id": "00000000-0000-4000-8000-000000000000"},
            "client_id",
        )


def test_every_document_has_runnable_blocks() -> None:
    for doc in DOCS:
        found = list(blocks((REPO / doc).read_text()))
        assert len(found) >= MIN_EXAMPLES[doc], doc
