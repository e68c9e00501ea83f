"""Who on the LAN can reach what: every server of the native stack and the Spark driver listen on
loopback only (real processes; their listening sockets read from /proc)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from apt_energy.stack import NativeStack
from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    # /proc/net/tcp{,6} print each 32-bit word in host (little-endian) order
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def listening(pid: int) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """The TCP sockets process ``pid`` listens on (address, port)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addr, port = fields[1].split(":")
                out.append((_address(addr), int(port, 16)))
    return out


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_the_spark_drivers_rpc_and_block_manager_listen_on_loopback_only(spark: SparkSession) -> None:
    pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    sockets = listening(pid)
    ports = {int(spark.conf.get("spark.driver.port")), int(spark.sparkContext._jsc.sc()  # type: ignore[union-attr]
                                                           .env().blockManager().blockManagerId().port())}
    assert ports <= {port for _, port in sockets}, sockets  # both found: the check below is not empty
    assert [s for s in sockets if not _loopback(s[0])] == []
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"


def test_every_server_of_the_native_stack_listens_on_loopback_only(native_stack: NativeStack) -> None:
    pids = {s.name: s.pid for s in native_stack.status()}
    assert all(pids.values()), pids
    for name, pid in pids.items():
        # PostgreSQL listens in its postmaster; Kafka's JVM and Mosquitto in their one process
        sockets = listening(pid)  # type: ignore[arg-type]
        assert sockets, name
        assert [s for s in sockets if not _loopback(s[0])] == [], name
