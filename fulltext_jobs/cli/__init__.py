"""The `fulltext-jobs` command line: migrate a database, load items, queue,
work, watch and repair jobs, and run the bundled demo.

It is a thin layer over the public API (`SqlAlchemyRepository`, `Worker`,
`upgrade`...): every command builds its engine when it runs (never at
import time), does one thing through the port, prints the result, and
disposes the engine on the way out.

Decisions:

- **typer** (over argparse or click): options, arguments, their types and
  their help come from one annotated signature per command, which mypy
  checks; subcommand groups (`migrate ...`, `items ...`) and environment
  variables need no code of ours. **rich** draws the tables, the progress
  bars and the log lines; typer already depends on it.
- **Output.** Data goes to stdout; with `--json`, stdout holds one JSON
  document and nothing else. Progress bars and logs go to stderr, and bars
  are drawn only when stderr is a terminal, so a pipe or a log file never
  sees them.
- **Errors.** Every expected failure (`JobsError`, an unreadable file, a
  handler that cannot be imported, an unknown destination) ends the command
  at its boundary (`_base.boundary`), with one line `error: <message>` on stderr and
  exit status 1; typer's own usage errors keep status 2. No traceback is
  shown for them (typer's pretty tracebacks are off too, so a real bug
  prints Python's plain one).
- **Unknown destinations.** A destination exists once it has a job. `work`
  (without `--produce`), `retry`, `rescue DEST` and `stats DEST` refuse a
  destination with no jobs at all, naming the known ones: a typo would
  otherwise wait forever or report zeros. The check is
  `Repository.has_destination` (index probes; only a refused destination
  costs a read of every job, to name the known ones). `enqueue` creates
  destinations, and `work --produce` enqueues before it claims, so neither
  checks.
- **`stats` counts jobs by status**, one read of the destination's jobs;
  the unqueued items, which cost a read of every item, only with
  `--unqueued`.
- **Fail fast, then ride it out.** Before a worker starts, `work` makes one
  call, so a database that is down or not migrated is one error line; once
  running, the worker backs off and retries through outages, logging them.
- **Logs** go to stderr: WARNING and up by default (a failed job is one
  line plus its exception's last line), INFO with `-v`, DEBUG with `-vv`;
  tracebacks in log lines from `-v` on. On a terminal rich draws them;
  elsewhere each record is one plain line with a timestamp. With
  `--log-format json` each record is one JSON object a line (see
  `fulltext_jobs.logs.JsonFormatter`), and so is a command's `error:` line,
  so that stderr holds nothing else.
- **The dashboard and metrics** need the `dashboard` (or `metrics`) extra;
  without it the command says which in one `error:` line.
- **Signals.** `work` runs the `Worker` in the main thread, which handles
  SIGINT and SIGTERM itself: a graceful stop, exit status 0. `demo` stops
  with its worker and exits 130; running it again finishes the work.
- **Handlers** are `module:attribute` (the attribute may be dotted, as
  `module:Class.method`); the working directory is put first on `sys.path`
  as `python -m` does, so a handler next to the user is found.
- **Start-up.** `--help` builds every command, so the command modules
  import only typer, rich's console and table, and the ledger's plain
  modules; SQLAlchemy, the repository, the worker, the dashboard and the
  demo are imported inside the commands that use them (and psycopg and the
  ORM not at all on SQLite). tests/test_startup.py checks what each start
  imports; benchmarks/startup.py times it.
- **Item files** are read as UTF-8, one id per line, surrounding white space
  stripped and blank lines skipped, and added in batches, so a ten-million-
  line file is never held in memory at once.
"""

from __future__ import annotations

from fulltext_jobs.cli._base import CommandError, app, items_app, migrate_app
from fulltext_jobs.cli._controls import cancel, limit, pause, prioritize, resume
from fulltext_jobs.cli._demo import demo
from fulltext_jobs.cli._items import enqueue, items_add
from fulltext_jobs.cli._ledger import audit, jobs, parse_duration, rescue, retry, stats
from fulltext_jobs.cli._migrate import (
    migrate_adopt,
    migrate_current,
    migrate_downgrade,
    migrate_upgrade,
)
from fulltext_jobs.cli._pipeline import depend, undepend
from fulltext_jobs.cli._serve import dashboard
from fulltext_jobs.cli._work import load_handler, work

__all__ = ["CommandError", "app", "load_handler", "main", "parse_duration"]

# The commands, in the order `--help` lists them.
migrate_app.command("upgrade")(migrate_upgrade)
migrate_app.command("downgrade")(migrate_downgrade)
migrate_app.command("adopt")(migrate_adopt)
migrate_app.command("current")(migrate_current)
items_app.command("add")(items_add)
for _command in (
    enqueue,
    work,
    stats,
    jobs,
    retry,
    rescue,
    pause,
    resume,
    limit,
    cancel,
    prioritize,
    depend,
    undepend,
    audit,
    dashboard,
    demo,
):
    app.command()(_command)


def main() -> None:
    """The `fulltext-jobs` entry point: run the command line and exit."""
    app(prog_name="fulltext-jobs")
