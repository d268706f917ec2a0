"""`dashboard`, and serving a worker's metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fulltext_jobs._defaults import DEFAULT_REFRESH
from fulltext_jobs.cli._base import (
    CommandError,
    ReadUrlOption,
    UrlOption,
    boundary,
    check_sqlite_file,
)

if TYPE_CHECKING:
    import socket

    from fulltext_jobs.metrics import WorkerMetrics


def prometheus_registry() -> Any:  # noqa: ANN401 - a prometheus_client CollectorRegistry
    """A fresh registry for a worker's metrics (the process's global one
    would add Python's own process metrics, which a job's dashboard does not
    need). Raises `MissingDependency` without prometheus_client."""
    from fulltext_jobs.metrics import require_prometheus  # noqa: PLC0415 - only with metrics

    return require_prometheus().CollectorRegistry()


@contextmanager
def serve_metrics(metrics: WorkerMetrics, destination: str, host: str, port: int) -> Iterator[None]:
    """Serve a worker's metrics while the block runs, saying where; an
    address that cannot be bound, or a host name that cannot be one, is a
    `CommandError`."""
    with ExitStack() as stack:
        try:
            bound = stack.enter_context(metrics.serving(port, host))
        except OSError as exc:
            where = host_port(host, port)
            raise CommandError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from None
        except UnicodeError:
            raise CommandError(_not_a_host("serve metrics on", host)) from None
        # WARNING, so that it shows without -v: where to scrape is not noise.
        logging.getLogger(__name__).warning(
            "metrics of %s on http://%s/metrics", destination, host_port(host, bound)
        )
        yield


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: any free port). Raises
    `CommandError` naming the address if it cannot be bound or `host`
    cannot be a host name."""
    import socket  # noqa: PLC0415 - only the dashboard listens

    sock = None
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        if sock is not None:
            sock.close()
        where = host_port(host, port)
        raise CommandError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    except UnicodeError:
        raise CommandError(_not_a_host("listen on", host)) from None
    return sock


def _not_a_host(doing: str, host: str) -> str:
    # The resolver's IDNA codec refuses such a name before any lookup (a
    # label over 63 characters, a lone surrogate), with a UnicodeError.
    shown = host if len(host) <= 80 else host[:80] + "\u2026"
    return f"cannot {doing} {shown!r}: not a host name or address"


def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="The address to listen on; behind a proxy, keep 127.0.0.1.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The port to listen on (0: any free port).")
    ] = 8080,
    refresh: Annotated[
        float, typer.Option(min=0.2, help="Seconds between the page's refreshes.")
    ] = DEFAULT_REFRESH,
    unqueued: Annotated[
        bool,
        typer.Option(
            "--unqueued",
            help="Also count each destination's unqueued items, on every refresh: reads "
            "every item (seconds at millions of items).",
        ),
    ] = False,
    database_url: UrlOption = None,
    read_url: ReadUrlOption = None,
) -> None:
    """Serve a read-only web page of the ledger, per destination (counts,
    progress, throughput, the oldest running job, the latest failures), and
    its Prometheus metrics at /metrics, until SIGINT or SIGTERM. With
    --read-url, read that replica, saying so on the page and in /metrics.
    Needs the dashboard extra: pip install 'fulltext-jobs[dashboard]'."""
    # Imported here: the dashboard and its reads import SQLAlchemy, which
    # `--help` and the other commands' start must not pay for.
    from fulltext_jobs.dashboard import (  # noqa: PLC0415
        Snapshots,
        create_app,
        require_dashboard,
        serve,
    )
    from fulltext_jobs.sql.overview import read_only_engine, read_overview  # noqa: PLC0415

    with boundary(ctx, database_url, read_url=read_url) as state:
        require_dashboard()
        if state.read_url is None:
            check_sqlite_file(state.url, creates=False)
            state.engine_ = read_only_engine(state.url)
        engine = state.read_engine()
        snapshots = Snapshots(engine, unqueued=unqueued)
        # Fail fast on a database that is down or not migrated.
        read_overview(engine)
        title = engine.url.render_as_string(hide_password=True)
        app = create_app(snapshots, refresh=refresh, title=title)
        sock = _bind(host, port)
        where = host_port(host, sock.getsockname()[1])
        typer.echo(f"dashboard of {title} on http://{where}/ (Ctrl-C stops it)")
        try:
            serve(app, [sock])
        finally:
            sock.close()
