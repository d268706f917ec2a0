"""PGQueuer's side of the peer comparison (`benchmarks/run.py --only peers`).

Runs in the peers' own environment, not the project's (the project does not
depend on PGQueuer):

    python -m venv benchmarks/.peers-venv
    benchmarks/.peers-venv/bin/pip install pgqueuer asyncpg 'psycopg[binary]'

`run.py` creates that environment itself when it is missing and pip is
reachable (`--peers-venv` to put it elsewhere; `--no-peers` to skip), and
calls this script once per measurement:

    python benchmarks/peers.py DSN MODE JOBS BATCH

MODE `prepare` installs PGQueuer's schema if need be and queues JOBS no-op
jobs in an empty queue; the others drain them. MODE is `drain-asyncpg` or
`drain-psycopg` (PGQueuer's own batch calls,
`Queries.dequeue` then `Queries.log_jobs`, until the queue is empty) or
`worker-asyncpg` (its worker loop, `QueueManager.run(mode=drain)`, with a
no-op entrypoint). Each prints one line of JSON, `{"jobs": ...,
"seconds": ...}` (the drain's time, the process's start left out), after
checking that every job was done.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

ENTRYPOINT = "noop"
HEARTBEAT_TIMEOUT = timedelta(seconds=30)


async def connect(dsn: str, driver_name: str) -> tuple[Any, Any]:
    """A PGQueuer driver on a connection of its own, and that connection."""
    if driver_name == "asyncpg":
        import asyncpg  # noqa: PLC0415 - the peers' environment only
        from pgqueuer import AsyncpgDriver  # noqa: PLC0415

        connection = await asyncpg.connect(dsn)
        return AsyncpgDriver(connection), connection
    import psycopg  # noqa: PLC0415
    from pgqueuer import PsycopgDriver  # noqa: PLC0415

    connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    return PsycopgDriver(connection), connection


async def prepare(dsn: str, jobs: int) -> None:
    """PGQueuer's schema, an empty queue and log, then `jobs` queued jobs."""
    from pgqueuer import Queries  # noqa: PLC0415

    driver, connection = await connect(dsn, "asyncpg")
    queries = Queries(driver)
    if not await queries.has_table(queries.qbe.settings.queue_table):
        await queries.install()
    await connection.execute(
        f"TRUNCATE {queries.qbe.qualified.queue_table}, {queries.qbe.qualified.queue_table_log}"
    )
    for start in range(0, jobs, 5_000):
        size = min(5_000, jobs - start)
        await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
    await connection.execute(f"VACUUM ANALYZE {queries.qbe.qualified.queue_table}")
    await connection.close()


async def drain(dsn: str, driver_name: str, batch: int) -> int:
    """PGQueuer's batch calls, as its worker makes them, with no work between."""
    from pgqueuer import Queries  # noqa: PLC0415
    from pgqueuer.ports.repository import EntrypointExecutionParameter  # noqa: PLC0415

    driver, connection = await connect(dsn, driver_name)
    queries = Queries(driver)
    entrypoints = {ENTRYPOINT: EntrypointExecutionParameter(concurrency_limit=0)}
    manager = uuid.uuid4()
    done = 0
    while jobs := await queries.dequeue(
        batch_size=batch,
        entrypoints=entrypoints,  # type: ignore[arg-type]
        queue_manager_id=manager,  # type: ignore[arg-type]
        global_concurrency_limit=None,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
    ):
        await queries.log_jobs([(job, "successful", None) for job in jobs])
        done += len(jobs)
    await connection.close()
    return done


async def worker(dsn: str, batch: int) -> None:
    """PGQueuer's own worker loop, with a no-op entrypoint, until the queue
    is empty."""
    from pgqueuer import Queries, QueueManager  # noqa: PLC0415
    from pgqueuer.domain.types import QueueExecutionMode  # noqa: PLC0415

    driver, connection = await connect(dsn, "asyncpg")
    manager = QueueManager(Queries(driver))

    @manager.entrypoint(ENTRYPOINT)
    async def noop(job: object) -> None:
        del job

    await manager.run(batch_size=batch, mode=QueueExecutionMode.drain)
    await connection.close()


async def left(dsn: str) -> int:
    from pgqueuer import Queries  # noqa: PLC0415

    driver, connection = await connect(dsn, "asyncpg")
    queries = Queries(driver)
    count = await connection.fetchval(f"SELECT count(*) FROM {queries.qbe.qualified.queue_table}")
    await connection.close()
    return int(count)


async def main(dsn: str, mode: str, jobs: int, batch: int) -> dict[str, float]:
    if mode == "prepare":
        await prepare(dsn, jobs)
        return {"jobs": jobs, "seconds": 0.0}
    start = time.perf_counter()
    if mode == "worker-asyncpg":
        await worker(dsn, batch)
        done = jobs
    else:
        done = await drain(dsn, mode.removeprefix("drain-"), batch)
    seconds = time.perf_counter() - start
    remaining = await left(dsn)
    if done != jobs or remaining:
        msg = f"{mode}: {done} jobs done of {jobs}, {remaining} left in the queue"
        raise RuntimeError(msg)
    return {"jobs": jobs, "seconds": seconds}


if __name__ == "__main__":
    dsn_arg, mode_arg, jobs_arg, batch_arg = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(dsn_arg, mode_arg, int(jobs_arg), int(batch_arg)))))
