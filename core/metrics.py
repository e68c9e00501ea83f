"""Metrics in Prometheus' text exposition format, served by each long-lived process on a loopback port.

A process hands :func:`serve` a function that reads its counters (the bridge's ``BridgeStats``, the fleet's
``FleetStats``, the stream job's ``JobStats``, the notifier's ``NotifierStats``) *at scrape time*: the hot
paths keep incrementing the plain integers they already keep, and nothing is added per message. Off by
default (``metrics.enabled``); when on, it listens on ``metrics.host`` — 127.0.0.1 unless set otherwise — so
only the machine's own Prometheus (or an SSH tunnel) reads it.

``prometheus_client`` does the format (types, HELP/TYPE lines, escaping, ``_total`` suffixes, content
negotiation incl. OpenMetrics) and the HTTP server thread; it is pure Python without dependencies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from apt_energy.config.settings import MetricsSettings
from apt_energy.core.errors import ConfigError
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

__all__ = ["MetricsServer", "Sample", "collect", "serve", "serve_if_enabled"]

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Sample:
    """One value of one metric: ``name`` without the ``apt_`` prefix or a ``_total`` suffix."""

    name: str
    kind: Kind
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


Read = Callable[[], Iterable[Sample]]


def collect(samples: Iterable[Sample], *, constant: Mapping[str, str] | None = None) -> list[Metric]:
    """Group samples by name into metric families (``apt_<name>``), with the process's ``constant`` labels."""
    constant = dict(constant or {})
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    for s in samples:
        labels = {**constant, **s.labels}
        family = families.get(s.name)
        if family is None:
            cls = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
            family = families[s.name] = cls(f"apt_{s.name}", s.help, labels=list(labels))
        family.add_metric(list(labels.values()), s.value)
    return list(families.values())


class _Callback(Collector):
    def __init__(self, read: Read, constant: Mapping[str, str]) -> None:
        self.read = read
        self.constant = constant

    def collect(self) -> Iterator[Metric]:
        yield from collect(self.read(), constant=self.constant)


@dataclass
class MetricsServer:
    """A running exposition endpoint; :meth:`close` stops it."""

    host: str
    port: int
    _server: object

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()        # type: ignore[attr-defined]
        self._server.server_close()    # type: ignore[attr-defined]


def serve(read: Read, *, host: str, port: int, constant: Mapping[str, str] | None = None) -> MetricsServer:
    """Serve ``read()``'s samples at ``http://host:port/metrics`` from a daemon thread (port 0: any free one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Callback(read, constant or {}))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"metrics: cannot listen on {host}:{port} ({exc.strerror}); set metrics.*_port "
                          "(env APT_ENERGY_METRICS_…) to a free port or metrics.enabled false") from None
    bound = int(server.server_port)
    logger.info("metrics serving url=http://%s:%d/metrics", host, bound)
    return MetricsServer(host, bound, server)


def serve_if_enabled(settings: MetricsSettings, port: int, read: Read, *,
                     constant: Mapping[str, str] | None = None) -> MetricsServer | None:
    """:func:`serve` on ``settings.host``:``port`` when ``metrics.enabled``; None (and no thread) when off."""
    if not settings.enabled:
        return None
    return serve(read, host=settings.host, port=port, constant=constant)
