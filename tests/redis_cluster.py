"""A private Redis Cluster (three primaries, three replicas) on loopback ports.

Started by the cluster tests and the scaling benchmark, torn down after;
never the machine's shared Redis. Nothing here imports pytest. Failover is
tuned to be quick (a one-second node timeout, replicas always eligible), so
a killed primary's replica takes over within a few seconds, and the
cluster keeps serving the other shards meanwhile (full coverage is not
required). Every wait is bounded.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import redis

from scripts.load.backends import launch_redis
from scripts.load.processes import free_ports, wait_until
from tests.e2e.servers import START_TIMEOUT, RedisProcess
from tests.helpers import eventually

PRIMARIES = 3
# A primary unseen for this long is failing; its replica is promoted about a
# second later. Production clusters use 15 s; tests want it over quickly.
NODE_TIMEOUT_MS = 1000
# Failover, from SIGKILL to a promoted replica everyone agrees on.
FAILOVER_TIMEOUT = 20.0
# Keys moved per MIGRATE, and at most this many rounds of them per slot.
MIGRATE_BATCHES = 100


def command(port: int, *args: str, timeout: float = 5.0) -> str:
    """One redis-cli command against a node; its output, stripped."""
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        timeout=timeout,
        check=True,
    )
    return result.stdout.decode().strip()


class ClusterNode(RedisProcess):
    """One cluster-enabled redis-server with its own working directory; a
    restart keeps its ports and nodes.conf, so it rejoins as itself."""

    def __init__(self, log_dir: Path, port: int, bus_port: int) -> None:
        super().__init__(log_dir, port)
        # The bus port would be port + 10000 by default, which may be taken
        # or past 65535; a free port of its own avoids both.
        self.bus_port = bus_port

    def start(self) -> ClusterNode:
        workdir = self.log_dir / f"node-{self.port}"
        workdir.mkdir(exist_ok=True)
        self.process = launch_redis(
            self.port,
            self.log_dir,
            "--dir",
            str(workdir),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            str(self.bus_port),
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            "--cluster-replica-validity-factor",
            "0",
            "--cluster-require-full-coverage",
            "no",
        )
        # A node that cannot listen exits: that fails at once, not after
        # the whole wait.
        wait_until(self._answers, START_TIMEOUT, f"cluster node :{self.port}", self._alive)
        return self

    def info(self, section: str = "") -> dict[str, str]:
        fields: dict[str, str] = {}
        for line in command(self.port, "INFO", *([section] if section else [])).splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key] = value.strip()
        return fields

    @property
    def node_id(self) -> str:
        return command(self.port, "CLUSTER", "MYID")

    def is_primary(self) -> bool:
        return self.info("replication").get("role") == "master"


class RedisClusterProcesses:
    """Six nodes made into a cluster with `redis-cli --cluster create`."""

    def __init__(self, log_dir: Path, primaries: int = PRIMARIES) -> None:
        ports = free_ports(primaries * 2 * 2)
        self.nodes = [
            ClusterNode(log_dir, port, bus_port)
            for port, bus_port in zip(ports[::2], ports[1::2], strict=True)
        ]

    @property
    def url(self) -> str:
        """The seed nodes, as REDIS_URL names a cluster."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        return f"redis+cluster://{seeds}"

    def start(self) -> RedisClusterProcesses:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=START_TIMEOUT,
                check=True,
            )
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def primaries(self) -> list[ClusterNode]:
        return [node for node in self.alive() if node.is_primary()]

    def wait_healthy(self, timeout: float = FAILOVER_TIMEOUT) -> None:
        """Every live node says the cluster is ok, with every slot served by a
        live primary and each primary's replicas attached."""

        def healthy() -> bool:
            try:
                alive = self.alive()
                if not all(n.info("cluster").get("cluster_enabled") == "1" for n in alive):
                    return False
                states = [command(n.port, "CLUSTER", "INFO") for n in alive]
                if not all("cluster_state:ok" in state for state in states):
                    return False
                return self._slots_on_live_primaries()
            except (subprocess.SubprocessError, OSError):
                return False

        eventually(healthy, within=timeout, what="the Redis cluster healthy")

    def _slots_on_live_primaries(self) -> bool:
        """No live node believes a slot is served by a dead or failing primary."""
        live = {f"127.0.0.1:{n.port}" for n in self.alive()}
        for node in self.alive():
            for line in command(node.port, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                address, flags = fields[1].split("@")[0], fields[2]
                serves_slots = "master" in flags and len(fields) > 8
                if serves_slots and (address not in live or "fail" in flags):
                    return False
        return True

    def owner_of(self, slot: int) -> ClusterNode:
        """The live primary that serves `slot` according to the cluster."""
        for node in self.primaries():
            for start, end in _own_slots(node):
                if start <= slot <= end:
                    return node
        raise LookupError(f"no live primary serves slot {slot}")

    def migrate_slot(self, slot: int, target: ClusterNode) -> ClusterNode:
        """Move `slot` and its keys to `target` the way `redis-cli --cluster
        reshard` does (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE); returns
        the primary that owned it."""
        source = self.owner_of(slot)
        if source is target:
            raise ValueError(f"slot {slot} is already on :{target.port}")
        source_id, target_id = source.node_id, target.node_id
        command(target.port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        command(source.port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        with redis.Redis(host="127.0.0.1", port=source.port) as client:
            for _ in range(MIGRATE_BATCHES):
                keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                client.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )
            else:
                raise RuntimeError(f"slot {slot} kept gaining keys while migrating")
        # The target first, so the source's redirections point somewhere
        # that accepts them; then every other primary learns it.
        command(target.port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        command(source.port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        for node in self.primaries():
            if node not in (source, target):
                command(node.port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        return source

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _own_slots(node: ClusterNode) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for line in command(node.port, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" not in fields[2]:
            continue
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated or imported
            start, _, end = part.partition("-")
            ranges.append((int(start), int(end or start)))
    return ranges


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
