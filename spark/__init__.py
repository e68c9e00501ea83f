"""The stream job: schema, pure transforms and rules, the exact PostgreSQL sink (alerts into the outbox)."""

from __future__ import annotations

__all__ = ["BatchResult", "PostgresSink", "StreamJob"]


def __getattr__(name: str) -> object:
    # pyspark is heavy to import: load the job's pieces only when they are used.
    if name in ("StreamJob",):
        from apt_energy.spark import job

        return getattr(job, name)
    if name in ("PostgresSink", "BatchResult"):
        from apt_energy.spark import sink

        return getattr(sink, name)
    raise AttributeError(name)
