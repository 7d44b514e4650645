"""Measuring the cyclic garbage a scenario leaves in the test's own process
(the live server runs in it): what is ours, what is on a cycle, when the
server has let go of its sockets (tests/realtime/test_*_garbage.py)."""

from __future__ import annotations

import gc
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from chatserver.realtime.hub import Hub
from tests.waits import eventually_async
from tests.ws_helpers import LiveServer

RELEASE_WITHIN = 10.0


@contextmanager
def collector_off() -> Iterator[list[object]]:
    """Run the block with the cycle collector off; the list it gives is
    filled, when the block ends, with every object the block left in
    reference cycles (a collection with DEBUG_SAVEALL)."""
    gc.collect()
    flags = gc.get_debug()
    gc.disable()
    garbage: list[object] = []
    try:
        yield garbage
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage.extend(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(flags)
        gc.enable()


def chatserver_name(obj: object) -> str | None:
    """What names `obj` as chatserver's, or None for other libraries' objects."""
    if isinstance(obj, types.FrameType):
        code = obj.f_code
    elif isinstance(obj, types.CoroutineType):
        code = obj.cr_code
    elif isinstance(obj, types.FunctionType):
        code = obj.__code__
    else:
        module = type(obj).__module__
        return f"{module}.{type(obj).__qualname__}" if module.startswith("chatserver") else None
    if "/chatserver/" not in code.co_filename:
        return None
    return f"{type(obj).__name__} {code.co_filename.split('/chatserver/')[-1]}:{code.co_name}"


def counts(garbage: list[object]) -> str:
    """The garbage by type, and frames and coroutines by file:function."""
    kinds: Counter[str] = Counter()
    for obj in garbage:
        if isinstance(obj, types.FrameType):
            code = obj.f_code
            kinds[f"frame {code.co_filename.split('/')[-1]}:{code.co_name}"] += 1
        elif isinstance(obj, types.CoroutineType):
            code = obj.cr_code
            kinds[f"coroutine {code.co_filename.split('/')[-1]}:{code.co_name}"] += 1
        else:
            kinds[f"{type(obj).__module__}.{type(obj).__qualname__}"] += 1
    return "\n".join(f"{n:6d} {kind}" for kind, n in kinds.most_common())


async def released(server: LiveServer, hub: Hub) -> None:
    """Until the hub has no connection and no room left, and uvicorn let go
    of every connection and its task (nothing the test could hear about)."""
    uv = server.uvicorn
    assert uv is not None

    def done() -> bool:
        state = uv.server_state
        return (
            not hub.local_connections()
            and hub.room_count == 0
            and not hub._stopping
            and not state.connections
            and not state.tasks
        )

    await eventually_async(done, within=RELEASE_WITHIN, what="the server to release the sockets")


def in_cycles(garbage: list[object]) -> set[int]:
    """The ids of the objects that are themselves on a reference cycle (a
    strongly connected component of two or more, or one referring to
    itself), as opposed to those only held by one (Tarjan, iteratively)."""
    members = {id(obj): obj for obj in garbage}
    edges = {
        key: [id(ref) for ref in gc.get_referents(obj) if id(ref) in members]
        for key, obj in members.items()
    }
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    cyclic: set[int] = set()
    for root in members:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            for at in range(position, len(edges[node])):
                ref = edges[node][at]
                if ref not in index:
                    work.append((node, at + 1))
                    work.append((ref, 0))
                    break
                if ref in on_stack:
                    low[node] = min(low[node], index[ref])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1 or node in edges[node]:
                        cyclic.update(component)
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return cyclic
