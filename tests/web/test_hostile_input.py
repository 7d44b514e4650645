"""Crafted input never gets a 500 (issue 8 item 6): every request to the host
API (`/api/v1`) and the session API (`/api`) answers success or the spec's
error object, with the status its code maps to.

Hypothesis generates requests that start from a valid one and replace one
query or body field (at any depth) with a hostile value: wrong JSON types,
huge numbers, control characters, timestamps that overflow when converted
to UTC, naive timestamps, cursors built around those, unknown fields, path
ids that are not ids. Known regressions are pinned as explicit examples.
The generated requests are replayed against the app on both backends, and
afterwards a normal request still works (nothing was lost or wedged).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chatserver.errors import ErrorCode
from chatserver.store.tables import attachments
from chatserver.web.responses import HTTP_STATUS
from tests.conftest import Scene
from tests.helpers import AUTH, Host, Person, count_rows, upload

# Examples per API per backend: enough to reach every field with several
# kinds of hostile value, few enough for a two-core machine.
EXAMPLES = 250
SUCCESS = {200, 201, 204}


def cursor(flag: object, at: object, last_id: object = "abc") -> str:
    raw = orjson.dumps([flag, at, last_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Values that broke (or could break) parsing further down: timestamps that
# overflow in UTC, naive ones, separators, NUL, bidi and line separators,
# numbers past 64 bits, an address list posing as one address.
CRAFTED_STRINGS = [
    "",
    " ",
    "\x00",
    "a\r\nBcc: x@evil.example",
    "Rita\u2028Smith",
    "\u202eevil",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00",
    "2026-11-02T09:30:00",
    "2026-11-02T09:30:00Z",
    "2026-02-30T00:00:00Z",
    "-1",
    "1e309",
    "9" * 40,
    "null",
    "../../etc/passwd",
    "%00",
    "x" * 400,
    "rita@example.com>, <attacker@evil.example",
    "rïta@example.com",
    "rita@exämple.com",
    "Mars/Olympus_Mons",
    "Europe/London",
    "each",
    "everyone",
    "me",
    str(uuid.uuid4()),
    cursor(0, "0001-01-01T00:00:00+14:00"),
    cursor(1, "9999-12-31T23:59:59-14:00"),
    cursor(0, "2026-01-01T00:00:00"),
    cursor(0, "2026-01-01T00:00:00+00:00", "x" * 65),
    cursor(2, "2026-01-01T00:00:00+00:00"),
    cursor(0, 5),
    cursor(True, "2026-01-01T00:00:00+00:00"),
    "not-a-cursor",
    "====",
]

strings = st.sampled_from(CRAFTED_STRINGS) | st.text(max_size=60)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
# Query values are strings; the crafted ones matter most.
query_values = st.sampled_from(CRAFTED_STRINGS) | st.text(max_size=40) | st.integers().map(str)
path_ids = (
    st.sampled_from(["app-1", "alice", "x" * 129, "has space", "nul\x00", "ü", ".", "..", "%"])
    | st.text(min_size=1, max_size=30)
).map(lambda s: quote(s, safe=""))


@dataclass(frozen=True)
class Call:
    """One request: method, path, JSON body (or raw bytes) and query."""

    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    session: str = "host"  # host | staff | candidate


def _paths(body: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field path of a JSON body (nested objects included)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(body, dict):
        for key, value in body.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    return found


def _replace(body: Any, path: tuple[Any, ...], value: Any, drop: bool) -> Any:
    if not path:
        return value
    copy = dict(body)
    head, rest = path[0], path[1:]
    if not rest and drop:
        copy.pop(head, None)
    else:
        copy[head] = _replace(copy[head], rest, value, drop)
    return copy


@st.composite
def mutated(draw: st.DrawFn, base: Call) -> Call:
    """The base call with one body field replaced, dropped or added, or one
    query parameter replaced or added."""
    choice = draw(st.sampled_from(["body", "query", "extra", "whole"]))
    if choice == "body" and isinstance(base.body, dict):
        path = draw(st.sampled_from(_paths(base.body)))
        drop = draw(st.booleans())
        value = draw(json_values)
        return Call(
            base.method,
            base.path,
            _replace(base.body, path, value, drop),
            None,
            base.params,
            base.session,
        )
    if choice == "extra" and isinstance(base.body, dict):
        extra = {**base.body, draw(st.text(max_size=12)): draw(json_values)}
        return Call(base.method, base.path, extra, None, base.params, base.session)
    if choice == "whole":
        raw = draw(
            st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"a": NaN}'])
            | json_values.map(lambda v: json.dumps(v).encode())
        )
        return Call(base.method, base.path, None, raw, base.params, base.session)
    params = dict(base.params)
    name = draw(st.sampled_from([*base.params, "cursor", "for", "limit", "x"]))
    params[name] = draw(query_values)
    return Call(base.method, base.path, base.body, None, params, base.session)


def host_calls() -> st.SearchStrategy[Call]:
    staff = {
        "org": {"id": "acme", "name": "Acme"},
        "name": "Alice Recruiter",
        "email": "alice@acme.example",
        "timezone": "Europe/London",
        "email_notifications": "daily",
        "ops": False,
    }
    application = {
        "org": {"id": "acme", "name": "Acme"},
        "job": {"id": "acme-job-1", "title": "Teacher of Mathematics"},
        "candidate": {
            "id": "cara",
            "name": "Cara",
            "email": "cara@mail.example",
            "timezone": "Europe/Paris",
            "email_notifications": "each",
        },
        "status": "interviewing",
        "applied_at": "2026-11-02T09:30:00Z",
    }
    bases = [
        Call("PUT", "/api/v1/staff/alice", staff),
        Call("PUT", "/api/v1/applications/app-1", application),
    ]
    by_path = st.builds(
        lambda template, ident: Call(template[0], template[1].format(ident)),
        st.sampled_from(
            [
                ("PUT", "/api/v1/staff/{}"),
                ("DELETE", "/api/v1/staff/{}"),
                ("PUT", "/api/v1/applications/{}"),
                ("POST", "/api/v1/staff/{}/login-link"),
                ("POST", "/api/v1/applications/{}/candidate-link"),
                ("GET", "/api/v1/applications/{}/audit"),
            ]
        ),
        path_ids,
    )
    return st.one_of(*(mutated(b) for b in bases), by_path)


def session_calls(conversation: str, message_id: str) -> st.SearchStrategy[Call]:
    c = f"/api/conversations/{conversation}"
    send = {"client_id": str(uuid.uuid4()), "body": "Hello **there**", "attachments": []}
    bases = [
        Call(
            "GET",
            "/api/conversations",
            params={
                "filter": "all",
                "q": "a",
                "sort": "newest",
                "cursor": cursor(0, "2026-01-01T00:00:00+00:00"),
            },
        ),
        Call("GET", f"{c}/messages", params={"before": "5", "after": "0", "limit": "10"}),
        Call("POST", f"{c}/messages", send),
        Call("POST", f"{c}/read", {"seq": 1}),
        Call("PUT", "/api/me/settings", {"timezone": "Europe/Paris", "email_notifications": "off"}),
        Call("DELETE", f"/api/messages/{message_id}", params={"for": "me"}),
        Call("POST", f"{c}/end"),
        Call("POST", f"{c}/archive"),
        Call("POST", f"{c}/unarchive"),
        Call("POST", "/api/notifications/read"),
    ]
    by_path = st.builds(
        lambda template, ident: Call(template[0], template[1].format(ident)),
        st.sampled_from(
            [
                ("GET", "/api/conversations/{}"),
                ("GET", "/api/conversations/{}/messages"),
                ("POST", "/api/conversations/{}/read"),
                ("POST", "/api/conversations/{}/end"),
                ("DELETE", "/api/messages/{}"),
                ("GET", "/api/attachments/{}"),
            ]
        ),
        path_ids,
    )
    calls = st.one_of(*(mutated(b) for b in bases), by_path)
    return st.builds(
        lambda call, who: Call(call.method, call.path, call.body, call.raw, call.params, who),
        calls,
        st.sampled_from(["staff", "candidate"]),
    )


def collect(strategy: st.SearchStrategy[Call], pinned: list[Call]) -> list[Call]:
    generated: list[Call] = list(pinned)

    @hypothesis_settings(
        max_examples=EXAMPLES, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def draw(call: Call) -> None:
        generated.append(call)

    draw()
    return generated


def problem(call: Call, response: httpx.Response) -> str | None:
    """What is wrong with the answer, or None: success, or the error object
    with a known code and the status that code maps to."""
    if response.status_code in SUCCESS:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{call}: {response.status_code} is not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or list(body) != ["error"] or not isinstance(body["error"], dict):
        return f"{call}: {response.status_code} not the error object: {body!r}"
    error = body["error"]
    if error.get("code") not in {code.value for code in ErrorCode}:
        return f"{call}: unknown code {error!r}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return f"{call}: no message {error!r}"
    expected = {HTTP_STATUS[ErrorCode(error["code"])]}
    if error["code"] == "invalid":
        expected |= {400, 405}  # a body that is not JSON; a method the route lacks
    if response.status_code not in expected:
        return f"{call}: status {response.status_code} for code {error['code']}"
    return None


async def replay(
    calls: list[Call], clients: dict[str, tuple[httpx.AsyncClient, dict[str, str]]]
) -> list[str]:
    problems = []
    for call in calls:
        client, headers = clients[call.session]
        kwargs: dict[str, Any] = {"headers": headers, "params": call.params}
        if call.raw is not None:
            kwargs["content"] = call.raw
            kwargs["headers"] = {**headers, "Content-Type": "application/json"}
        elif call.body is not None:
            kwargs["content"] = json.dumps(call.body).encode()
            kwargs["headers"] = {**headers, "Content-Type": "application/json"}
        response = await client.request(call.method, call.path, **kwargs)
        found = problem(call, response)
        if found is not None:
            problems.append(found)
    return problems


HOST_PINNED = [
    # An id ending in an encoded "/" once got Starlette's empty 307 redirect.
    Call("PUT", "/api/v1/staff/alice%2F", {"org": {"id": "acme", "name": "Acme"}}),
    Call(
        "PUT",
        "/api/v1/applications/app-1",
        {
            "org": {"id": "acme", "name": "Acme"},
            "job": {"id": "acme-job-1", "title": "Teacher"},
            "candidate": {"id": "cara", "name": "Cara", "email": "cara@mail.example"},
            "status": "submitted",
            "applied_at": "0001-01-01T00:00:00+14:00",
        },
    ),
    Call(
        "PUT",
        "/api/v1/staff/alice",
        {
            "org": {"id": "acme", "name": "Acme"},
            "name": "Alice",
            "email": "rita@example.com>, <attacker@evil.example",
        },
    ),
]


async def test_generated_host_requests_answer_success_or_the_error_object(
    host: Host, scene: Scene
) -> None:
    calls = collect(host_calls(), HOST_PINNED)
    problems = await replay(calls, {"host": (host.client, AUTH)})
    assert not problems, "\n".join(problems[:20])
    # Still working: a normal upsert and the audit trail answer.
    await host.staff("alice", name="Alice Recruiter")
    audit = await host.client.get("/api/v1/applications/app-1/audit", headers=AUTH)
    assert audit.status_code == 200, audit.text


async def test_generated_session_requests_answer_success_or_the_error_object(
    scene: Scene,
) -> None:
    sent = await scene.alice.send(scene.conversation, "Something to delete")
    assert sent.status_code == 201, sent.text
    pinned = [
        Call("GET", "/api/conversations", params={"cursor": cursor(0, at)}, session=who)
        for at in ("2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
        for who in ("staff", "candidate")
    ]
    # An id ending in an encoded "/" once got Starlette's empty 307 redirect.
    pinned += [
        Call("DELETE", "/api/messages/%C2%86%2Bf%2F", session="candidate"),
        Call("GET", f"/api/conversations/{scene.conversation}%2F", session="staff"),
    ]
    calls = collect(session_calls(scene.conversation, sent.json()["id"]), pinned)

    def session(person: Person) -> tuple[httpx.AsyncClient, dict[str, str]]:
        return person.client, person.csrf

    problems = await replay(
        calls, {"staff": session(scene.alice), "candidate": session(scene.cara)}
    )
    assert not problems, "\n".join(problems[:20])
    # Still working: both can read the conversation and the staff member can send.
    assert await scene.cara.history(scene.conversation)
    again = await scene.alice.send(scene.conversation, "Still here")
    assert again.status_code == 201, again.text


async def cut_off(app: Any, path: str, headers: dict[str, str], start: bytes) -> list[Any]:
    """A POST whose client leaves after the first part of its body: what
    the app sent back (the ASGI messages)."""
    parts = [{"type": "http.request", "body": start, "more_body": True}]

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


async def test_a_client_leaving_midway_through_its_body_is_one_quiet_line(
    app: Any, scene: Scene, caplog: Any
) -> None:
    """An upload cancelled, a tab closed while posting: no ERROR with a
    traceback (anyone could repeat it, before signing in, to flood the log),
    a 400 that nobody reads, and nothing stored."""
    signed_in = {
        "Cookie": "; ".join(f"{k}={v}" for k, v in scene.cara.client.cookies.items()),
        **scene.cara.csrf,
    }
    multipart = {**signed_in, "Content-Type": "multipart/form-data; boundary=b7f3a"}
    attempts = [
        ("/auth/switch", {"Content-Type": "application/x-www-form-urlencoded"}, b"csrf=ab"),
        ("/api/preview", {**signed_in, "Content-Type": "application/json"}, b'{"body": "Hel'),
        (
            "/api/attachments",
            multipart,
            b'--b7f3a\r\nContent-Disposition: form-data; name="file"; filename="cv.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nMy CV, first half",
        ),
    ]
    caplog.set_level(logging.INFO)
    for path, headers, start in attempts:
        sent = await cut_off(app, path, headers, start)
        assert sent[0]["type"] == "http.response.start", path
        assert sent[0]["status"] == 400, path
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r for r in caplog.records if "client left" in r.getMessage()] != []
    assert await count_rows(app, attachments) == 0
    uploaded = await upload(scene.cara, "cv.txt", b"My CV, whole")
    assert uploaded.status_code == 201, uploaded.text
