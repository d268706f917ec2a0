"""Destinations that follow one another: a destination's dependencies on
others (`Dependency`), the checks of a declaration, and the rule that
refuses a cycle.

A destination with upstreams gets a job for an item only once the item's
job of every upstream has one of the statuses its dependency names
(finished, by default), besides the item source's own eligibility. The
adapters keep the declarations; this module holds what they share, so
that every adapter refuses the same declarations with the same words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Final

from fulltext_jobs.domain import DestinationStats, JobStatus, check_destination
from fulltext_jobs.errors import InvalidInput

__all__ = [
    "DEFAULT_ON_STATUSES",
    "DEPENDABLE",
    "Dependency",
    "check_acyclic",
    "check_on_statuses",
    "check_upstreams",
    "known_without_jobs",
    "named_destinations",
    "shown_without_jobs",
    "waiting_on_upstreams",
]

#: The statuses a dependency may name: the ends of an upstream job. A job
#: that is ready or running has not ended, so nothing can follow from it.
DEPENDABLE: Final = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.SKIPPED})
#: What a dependency names when the caller names nothing.
DEFAULT_ON_STATUSES: Final = frozenset({JobStatus.FINISHED})
#: The most upstreams a destination may have: a declaration is a handful of
#: names, not data.
MAX_UPSTREAMS: Final = 100


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Dependency:
    """`destination` follows `upstream`: an item gets a job for
    `destination` once its job for `upstream` has one of `statuses` (and so
    for every upstream the destination has)."""

    destination: str
    upstream: str
    statuses: frozenset[JobStatus] = DEFAULT_ON_STATUSES

    def met_by(self, status: JobStatus) -> bool:
        """Whether an upstream job of this status lets the item follow."""
        return status in self.statuses


def check_upstreams(destination: str, on: str | Iterable[str]) -> list[str]:
    """The upstreams named by `on` (one name, or an iterable of names),
    sorted, each once. Raises `InvalidInput` for a bad name, none given,
    more than `MAX_UPSTREAMS`, or `destination` itself among them."""
    names = [on] if isinstance(on, str) else _listed(on, "on")
    upstreams = sorted({check_destination(name) for name in names})
    if not upstreams:
        msg = "name at least one upstream destination (on=...)"
        raise InvalidInput(msg)
    if len(upstreams) > MAX_UPSTREAMS:
        msg = f"at most {MAX_UPSTREAMS} upstreams, not {len(upstreams)}"
        raise InvalidInput(msg)
    if destination in upstreams:
        msg = f"{destination!r} cannot follow itself"
        raise InvalidInput(msg)
    return upstreams


def check_on_statuses(statuses: Iterable[JobStatus | str]) -> frozenset[JobStatus]:
    """The statuses a dependency names, as `JobStatus`. Raises
    `InvalidInput` for none, an unknown status, or one that is not the end
    of a job (`DEPENDABLE`: finished, failed, skipped)."""
    if isinstance(statuses, str):
        statuses = [part.strip() for part in statuses.split(",")]
    chosen: set[JobStatus] = set()
    for status in _listed(statuses, "statuses"):
        try:
            value = JobStatus(status) if isinstance(status, str) else JobStatus("")
        except ValueError:
            msg = f"{status!r} is not a job status; a dependency names finished, failed or skipped"
            raise InvalidInput(msg) from None
        if value not in DEPENDABLE:
            msg = (
                f"a dependency names statuses a job ends in (finished, failed, skipped), "
                f"not {value.value!r}"
            )
            raise InvalidInput(msg)
        chosen.add(value)
    if not chosen:
        msg = "name at least one status the upstream jobs must reach"
        raise InvalidInput(msg)
    return frozenset(chosen)


def check_acyclic(
    existing: Iterable[Dependency], destination: str, upstreams: Iterable[str]
) -> None:
    """Raise `InvalidInput` if `destination` following `upstreams`, beside
    the `existing` dependencies, would make a cycle (an item could then
    never get a job for any destination on it); the message shows one."""
    follows: dict[str, set[str]] = {}
    for dependency in existing:
        follows.setdefault(dependency.destination, set()).add(dependency.upstream)
    for upstream in upstreams:
        path = _path(follows, upstream, destination)
        if path is not None:
            cycle = " -> ".join([destination, *path])
            msg = f"{destination!r} cannot follow {upstream!r}: that makes a cycle ({cycle})"
            raise InvalidInput(msg)


def waiting_on_upstreams(
    dependencies: Iterable[Dependency], stats: Iterable[DestinationStats]
) -> dict[str, int]:
    """For each destination with upstreams, how many jobs of its upstreams
    have not ended yet (ready or running): the items that will reach it
    from them. Read from counts the caller already has."""
    counts: Mapping[str, DestinationStats] = {s.destination: s for s in stats}
    waiting: dict[str, int] = {}
    for dependency in dependencies:
        upstream = counts.get(dependency.upstream)
        open_jobs = (
            0
            if upstream is None
            else upstream.counts[JobStatus.READY] + upstream.counts[JobStatus.RUNNING]
        )
        waiting[dependency.destination] = waiting.get(dependency.destination, 0) + open_jobs
    return waiting


def named_destinations(dependencies: Iterable[Dependency]) -> set[str]:
    """Every destination the declarations name, as a follower or as an
    upstream: a destination an operator has declared, jobs or none."""
    return {name for d in dependencies for name in (d.destination, d.upstream)}


def known_without_jobs(dependencies: Iterable[Dependency], steered: Iterable[str]) -> set[str]:
    """The destinations known though they may have no job: those
    `dependencies` name (as follower or upstream) and the `steered` ones
    (with a pause, a cap or a rate set). A follower is steered, and its
    workers started, before its first job is made, and what was set on a
    destination must stay in reach to be undone."""
    return named_destinations(dependencies) | set(steered)


def shown_without_jobs(
    dependencies: Iterable[Dependency], steered: Iterable[str], present: Iterable[str]
) -> list[str]:
    """The destinations a listing of destinations shows though they are not
    among `present` (those with jobs), sorted: each follower of
    `dependencies`, so that an operator sees what it waits for before its
    first job is made, and each `steered` one (with a pause, a cap or a
    rate set), so that what was set stays in sight and can be undone."""
    return sorted(({d.destination for d in dependencies} | set(steered)) - set(present))


def _path(follows: Mapping[str, set[str]], start: str, goal: str) -> list[str] | None:
    """The destinations from `start` up its upstreams to `goal`, or None."""
    stack = [[start]]
    seen = {start}
    while stack:
        path = stack.pop()
        if path[-1] == goal:
            return path
        for upstream in sorted(follows.get(path[-1], ())):
            if upstream not in seen:
                seen.add(upstream)
                stack.append([*path, upstream])
    return None


def _listed(values: Iterable[object], name: str) -> list[object]:
    try:
        return list(values)
    except TypeError:
        msg = f"{name} must be a name or an iterable of names, not {type(values).__name__}"
        raise InvalidInput(msg) from None
