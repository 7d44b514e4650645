"""Runs the request examples of a Markdown document against a real server,
in document order, so that a document that lies fails the suite.

The conventions (also written at the top of docs/api.md):

- A fenced block marked `http` whose first line is a request line
  (`GET /path HTTP/1.1`) is a request: headers, a blank line, the body. The
  next `http` block that starts with `HTTP/1.1 <status>` is its answer; a
  request without one must answer 2xx or 3xx.
- `http NAME` sends the request as NAME: each name is a browser of its own
  (its own cookies), so `http cara` opening a candidate link signs Cara in
  for her later blocks. A block without a name is the browser `default`.
- An answer block's status must match, every header it lists must be there
  with that value, and its JSON body must equal the server's: the same keys
  (no more, no fewer), the same values. An answer without a body checks no
  body.
- Values the server makes up (ids, tokens, timestamps, cursors) are written
  as plausible samples: a run of 16 or more letters, digits, `-`, `_`, `.` or
  `~` with at least one letter and one digit, or an ISO 8601 timestamp. The
  first time a sample appears in an answer it stands for the value the
  server sent there; from then on the sample is replaced by that value in
  requests and must equal it in answers. A sample that an earlier request
  sent must come back exactly. `https://chat.example` is the server's own
  address, and `Bearer 3f9c2a7e0b14d5c8e6a9f1b2c3d4e5f6` its API key.
- A block marked `ws NAME` is NAME's WebSocket (`/ws`, with NAME's cookies
  and the page's Origin), opened at its first use and kept open: a line
  `> {…}` sends a frame, `< {…}` expects one (a frame may go on over the
  following lines). Consecutive `<` lines may arrive in any order; any
  other frame is a failure. `< close 1008` expects the server to close the
  socket with that code. At the end of each `ws` block the runner sends a
  `ping` on every socket the block used and expects nothing before the
  `pong`, so a frame the document does not show fails too.
- Other blocks (`json`, `sh`, …) are illustrations and are not run.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from markdown_it import MarkdownIt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DOC_BASE = "https://chat.example"
DOC_API_KEY = "3f9c2a7e0b14d5c8e6a9f1b2c3d4e5f6"
DEFAULT_ACTOR = "default"
# An answer frame or response is expected within this; a loaded machine
# answers in well under a second.
FRAME_TIMEOUT = 10.0

_REQUEST_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.1$")
_STATUS_LINE = re.compile(r"^HTTP/1\.1 (\d{3})\b")
_TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"
_RUN = r"[A-Za-z0-9_.~-]{16,}"
_SAMPLE = re.compile(f"{_TIMESTAMP}|{_RUN}")


class DocLies(AssertionError):
    """The server did not do what the document shows."""


@dataclass
class Block:
    kind: str  # "http" or "ws"
    actor: str
    text: str
    line: int  # 1-based line of the fence in the document

    def where(self, source: str) -> str:
        return f"{source}:{self.line}"


def blocks(markdown: str) -> Iterator[Block]:
    """The runnable fenced blocks of a document, in order."""
    for token in MarkdownIt().parse(markdown):
        if token.type != "fence" or token.map is None:
            continue
        words = token.info.split()
        if not words or words[0] not in ("http", "ws"):
            continue
        actor = words[1] if len(words) > 1 else DEFAULT_ACTOR
        yield Block(words[0], actor, token.content, token.map[0] + 1)


def _is_sample(text: str) -> bool:
    if re.fullmatch(_TIMESTAMP, text):
        return True
    return bool(re.search(r"[A-Za-z]", text) and re.search(r"\d", text))


@dataclass
class Samples:
    """What each documented sample stands for, and what requests sent."""

    bound: dict[str, str] = field(default_factory=dict)
    sent: set[str] = field(default_factory=set)
    base: str = ""

    def fill(self, text: str) -> str:
        """A documented request with the server's address and every bound
        sample replaced by its value."""
        text = text.replace(DOC_BASE, self.base)
        for sample in sorted(self.bound, key=len, reverse=True):
            text = text.replace(sample, self.bound[sample])
        return text

    def note_sent(self, text: str) -> None:
        self.sent.update(m.group(0) for m in _SAMPLE.finditer(text))

    def match_text(self, doc: str, actual: str, where: str) -> None:
        filled = self.fill(doc)
        if filled == actual:
            return
        pattern: list[str] = []
        groups: list[str] = []
        position = 0
        for found in _SAMPLE.finditer(filled):
            sample = found.group(0)
            if not _is_sample(sample) or sample in self.sent or sample in self.bound.values():
                continue
            pattern.append(re.escape(filled[position : found.start()]))
            pattern.append(f"({_TIMESTAMP})" if re.fullmatch(_TIMESTAMP, sample) else f"({_RUN})")
            groups.append(sample)
            position = found.end()
        pattern.append(re.escape(filled[position:]))
        matched = re.fullmatch("".join(pattern), actual) if groups else None
        if matched is None:
            raise DocLies(f"{where}: documented {doc!r}, server sent {actual!r}")
        for sample, value in zip(groups, matched.groups(), strict=True):
            known = self.bound.setdefault(sample, value)
            if known != value:
                raise DocLies(
                    f"{where}: {sample!r} stood for {known!r} earlier, "
                    f"now the server sent {value!r}"
                )

    def match(self, doc: Any, actual: Any, where: str) -> None:
        """Structural equality, with samples bound or checked."""
        if isinstance(doc, dict):
            if not isinstance(actual, dict):
                raise DocLies(f"{where}: documented an object, server sent {actual!r}")
            missing = sorted(set(doc) - set(actual))
            extra = sorted(set(actual) - set(doc))
            if missing or extra:
                raise DocLies(
                    f"{where}: fields the server did not send {missing}, "
                    f"fields the document does not show {extra} (server sent {actual!r})"
                )
            for key in doc:
                self.match(doc[key], actual[key], f"{where}.{key}")
        elif isinstance(doc, list):
            if not isinstance(actual, list) or len(doc) != len(actual):
                raise DocLies(f"{where}: documented {doc!r}, server sent {actual!r}")
            for index, (d, a) in enumerate(zip(doc, actual, strict=True)):
                self.match(d, a, f"{where}[{index}]")
        elif isinstance(doc, str) and isinstance(actual, str):
            self.match_text(doc, actual, where)
        elif doc != actual or type(doc) is not type(actual):
            raise DocLies(f"{where}: documented {doc!r}, server sent {actual!r}")


@dataclass
class HttpMessage:
    first: str
    headers: list[tuple[str, str]]
    body: str


def parse_http(text: str) -> HttpMessage:
    head, _, body = text.partition("\n\n")
    lines = head.splitlines()
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise DocLies(f"not a header line: {line!r}")
        headers.append((name.strip(), value.strip()))
    return HttpMessage(lines[0].strip(), headers, body.strip("\n"))


def parse_frames(text: str) -> list[tuple[str, str]]:
    """(direction, frame text) pairs of a `ws` block."""
    frames: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith(("> ", "< ")):
            frames.append((line[0], line[2:].strip()))
        elif not line.strip():
            continue
        elif frames:
            frames[-1] = (frames[-1][0], frames[-1][1] + "\n" + line)
        else:
            raise DocLies(f"a ws block line must start with '> ' or '< ': {line!r}")
    return frames


def _json(text: str, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DocLies(f"{where}: not JSON ({exc}): {text!r}") from None


@dataclass
class Actor:
    name: str
    client: httpx.AsyncClient
    socket: ClientConnection | None = None


class Runner:
    """Runs one document's examples against the server at `base_url`."""

    def __init__(self, base_url: str, source: str) -> None:
        self.base_url = base_url
        self.source = source
        self.samples = Samples(base=base_url)
        self.actors: dict[str, Actor] = {}
        self.ran = 0

    def actor(self, name: str) -> Actor:
        if name not in self.actors:
            client = httpx.AsyncClient(base_url=self.base_url, timeout=FRAME_TIMEOUT)
            self.actors[name] = Actor(name, client)
        return self.actors[name]

    async def aclose(self) -> None:
        for actor in self.actors.values():
            if actor.socket is not None:
                await actor.socket.close()
            await actor.client.aclose()

    async def run(self, markdown: str) -> int:
        """Run every example; how many blocks ran."""
        pending: tuple[Block, HttpMessage] | None = None
        for block in blocks(markdown):
            where = block.where(self.source)
            if block.kind == "ws":
                if pending is not None:
                    await self._request(*pending, None)
                    pending = None
                await self._ws(block, where)
                continue
            message = parse_http(block.text)
            if _REQUEST_LINE.match(message.first):
                if pending is not None:
                    await self._request(*pending, None)
                pending = (block, message)
            elif _STATUS_LINE.match(message.first):
                if pending is None:
                    raise DocLies(f"{where}: an answer block without a request before it")
                await self._request(*pending, message)
                pending = None
            else:
                raise DocLies(f"{where}: an http block starts with {message.first!r}")
            self.ran += 1
        if pending is not None:
            await self._request(*pending, None)
        return self.ran

    # -- HTTP ------------------------------------------------------------

    async def _request(
        self, block: Block, request: HttpMessage, answer: HttpMessage | None
    ) -> None:
        where = block.where(self.source)
        first = _REQUEST_LINE.match(request.first)
        assert first is not None
        method, path = first.group(1), self.samples.fill(first.group(2))
        headers = {}
        for name, value in request.headers:
            headers[name] = self.samples.fill(value)
        body = self.samples.fill(request.body)
        self.samples.note_sent(request.first + "\n" + request.body)
        content = body.encode()
        if headers.get("Content-Type", "").startswith("multipart/"):
            content = body.replace("\n", "\r\n").encode()
        client = self.actor(block.actor).client
        response = await client.request(method, path, headers=headers, content=content)
        if answer is None:
            if response.status_code >= 400:
                raise DocLies(
                    f"{where}: {method} {path} answered {response.status_code}: {response.text}"
                )
            return
        expected = _STATUS_LINE.match(answer.first)
        assert expected is not None
        if response.status_code != int(expected.group(1)):
            raise DocLies(
                f"{where}: {method} {path} answered {response.status_code}, "
                f"documented {expected.group(1)}: {response.text[:500]}"
            )
        for name, value in answer.headers:
            if name.lower() not in response.headers:
                raise DocLies(f"{where}: {method} {path} has no {name} header")
            self.samples.match_text(value, response.headers[name], f"{where} {name}")
        if answer.body.strip():
            self.samples.match(_json(answer.body, where), _json(response.text, where), where)

    # -- WebSocket -------------------------------------------------------

    async def _socket(self, actor: Actor) -> ClientConnection:
        if actor.socket is None:
            ws_url = "ws" + self.base_url.removeprefix("http") + "/ws"
            cookies = "; ".join(f"{k}={v}" for k, v in actor.client.cookies.items())
            actor.socket = await connect(
                ws_url,
                origin=self.base_url,  # type: ignore[arg-type]
                additional_headers={"Cookie": cookies} if cookies else {},
                open_timeout=FRAME_TIMEOUT,
            )
        return actor.socket

    async def _ws(self, block: Block, where: str) -> None:
        actor = self.actor(block.actor)
        frames = parse_frames(block.text)
        expected: list[str] = []
        for direction, text in [*frames, (">", "")]:
            if direction == "<":
                expected.append(text)
                continue
            if expected:
                await self._receive(actor, expected, where)
                expected = []
            if text:
                socket = await self._socket(actor)
                filled = self.samples.fill(text)
                self.samples.note_sent(text)
                _json(filled, where)
                try:
                    await socket.send(filled)
                except ConnectionClosed as exc:
                    raise DocLies(f"{where}: {actor.name}'s socket closed: {exc!r}") from None
        if actor.socket is not None:
            await self._barrier(actor, where)
        self.ran += 1

    async def _receive(self, actor: Actor, expected: list[str], where: str) -> None:
        """Frames that match `expected`, in any order, and nothing else."""
        socket = await self._socket(actor)
        remaining = list(expected)
        while remaining:
            if remaining[0].startswith("close "):
                code = int(remaining.pop(0).split()[1])
                await self._closed(actor, socket, code, where)
                return
            try:
                raw = await asyncio.wait_for(socket.recv(), FRAME_TIMEOUT)
            except (TimeoutError, ConnectionClosed) as exc:
                raise DocLies(f"{where}: {actor.name} waited for {remaining}: {exc!r}") from None
            frame = _json(str(raw), where)
            problems = []
            for index, text in enumerate(remaining):
                trial = Samples(dict(self.samples.bound), set(self.samples.sent), self.base_url)
                try:
                    trial.match(_json(trial.fill(text), where), frame, f"{where} {actor.name}")
                except DocLies as exc:
                    problems.append(str(exc))
                    continue
                self.samples = trial
                remaining.pop(index)
                break
            else:
                raise DocLies(
                    f"{where}: {actor.name} got a frame the document does not show here: "
                    f"{raw!r}\n" + "\n".join(problems)
                )

    async def _closed(self, actor: Actor, socket: ClientConnection, code: int, where: str) -> None:
        try:
            while True:
                raw = await asyncio.wait_for(socket.recv(), FRAME_TIMEOUT)
                raise DocLies(f"{where}: {actor.name} expected close {code}, got {raw!r}")
        except ConnectionClosed as closed:
            got = closed.rcvd.code if closed.rcvd else None
            if got != code:
                raise DocLies(f"{where}: {actor.name} closed with {got}, not {code}") from None
        except TimeoutError:
            raise DocLies(f"{where}: {actor.name} expected close {code}; still open") from None
        actor.socket = None

    async def _barrier(self, actor: Actor, where: str) -> None:
        """Nothing but the pong arrives after a ping: no undocumented frame."""
        socket = actor.socket
        assert socket is not None
        try:
            await socket.send('{"type": "ping"}')
            raw = await asyncio.wait_for(socket.recv(), FRAME_TIMEOUT)
        except (TimeoutError, ConnectionClosed) as exc:
            raise DocLies(f"{where}: {actor.name} got no pong: {exc!r}") from None
        if orjson.loads(raw) != {"type": "pong"}:
            raise DocLies(f"{where}: {actor.name} got a frame the document does not show: {raw!r}")
