"""``bridge jobs``: list jobs by state, requeue failed and dead ones (the real command, as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.core.jobs import DeliveryRecord, Job, JobState
from bridge.store.base import FieldValue, JobUpdate
from bridge.store.sqlite import SqliteStore
from tests.factories import new_job, sha

pytestmark = pytest.mark.anyio

#: One job per state the operator cares about, each in its own lane, in this (id) order.
STATES = [JobState.ACTIVE, JobState.FAILED, JobState.DEAD, JobState.QUEUED, JobState.DONE]


async def prepare(db: Path) -> dict[JobState, Job]:
    """A database holding one job in each of ``STATES``; the jobs by state."""
    store = SqliteStore(db)
    await store.open()
    try:
        for n in range(1, len(STATES) + 1):
            job = new_job(lane=f"L{n}", after=n, before=0, branch=f"b{n}", collection=f"c-{n}")
            delivery = DeliveryRecord(
                hook_id="1", delivery_id=f"d-{n}", event="push", repository=job.repository,
                ref=f"refs/heads/{job.branch}", after=job.after, received_at=1_000.0,
            )  # fmt: skip
            assert await store.accept(delivery, [job])
        jobs = sorted(await store.list_jobs(limit=100), key=lambda j: j.id)
        fields: dict[JobState, dict[str, FieldValue]] = {
            JobState.ACTIVE: {"invocation_id": "inv-1", "invocation_status": "pending"},
            JobState.FAILED: {"attempts": 1, "error": "400: collection name is not valid"},
            JobState.DEAD: {"attempts": 9, "error": "503: still unavailable"},
        }
        updates = [
            JobUpdate(job.id, {"state": state.value, **fields.get(state, {})})
            for job, state in zip(jobs, STATES, strict=True)
        ]
        assert await store.apply(updates, now=2_000.0)
        return {job.state: job for job in await store.list_jobs(limit=100)}
    finally:
        await store.close()


async def read(db: Path) -> dict[int, Job]:
    store = SqliteStore(db, release_leases=False)
    await store.open()
    try:
        return {job.id: job for job in await store.list_jobs(limit=100)}
    finally:
        await store.close()


def cli_env(db: Path) -> dict[str, str]:
    """This process's environment without its ``BRIDGE_`` settings, pointed at ``db``: an operator's
    shell holds the database's address, not the webhook secret, and needs no more."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(BRIDGE_DATABASE_URL=f"sqlite:///{db}")
    return env


def bridge_jobs(db: Path, *args: str) -> str:
    """Run ``bridge jobs ARGS`` against ``db``; its standard output (the command must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "jobs", *args],
        env=cli_env(db),
        cwd=db.parent,  # no stray .env is read
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.db"
    await prepare(path)
    return path


async def test_list_shows_counts_and_every_job(db: Path) -> None:
    """Without arguments: a line of counts per state, then one line per job, newest first."""
    jobs = await read(db)
    lines = bridge_jobs(db).splitlines()
    assert lines[0] == "queued=1  creating=0  active=1  done=1  superseded=0  failed=1  dead=1"
    assert [int(line.split()[0]) for line in lines[1:]] == sorted(jobs, reverse=True)
    active = next(line for line in lines[1:] if " active " in line)
    assert f"acme/api@b1 {sha(1)[:12]} c-1 inv-1 pending attempts=0" in active


async def test_list_filters_by_state(db: Path) -> None:
    """--state failed --state dead lists only those jobs, with their errors."""
    lines = bridge_jobs(db, "--state", "failed", "--state", "dead").splitlines()[1:]
    assert [line.split()[1] for line in lines] == ["dead", "failed"]
    assert lines[0].endswith("attempts=9 503: still unavailable")
    assert lines[1].endswith("attempts=1 400: collection name is not valid")


async def test_requeue_by_id_puts_a_failed_job_back(db: Path) -> None:
    """requeue ID makes that failed job queued again with a fresh retry budget; others are untouched."""
    before = await read(db)
    failed = next(job for job in before.values() if job.state is JobState.FAILED)
    assert bridge_jobs(db, "requeue", str(failed.id)) == "requeued 1 job(s)\n"
    after = await read(db)
    job = after[failed.id]
    assert (job.state, job.attempts, job.error, job.first_attempt_at) == (JobState.QUEUED, 0, None, None)
    assert {i: j.state for i, j in after.items() if i != failed.id} == {
        i: j.state for i, j in before.items() if i != failed.id
    }


async def test_requeue_ignores_jobs_that_are_not_failed_or_dead(db: Path) -> None:
    """requeue of an active, queued or done job changes nothing and says so."""
    before = await read(db)
    others = [str(i) for i, j in before.items() if j.state not in (JobState.FAILED, JobState.DEAD)]
    assert bridge_jobs(db, "requeue", *others) == "requeued 0 job(s)\n"
    assert {i: j.state for i, j in (await read(db)).items()} == {i: j.state for i, j in before.items()}


async def test_requeue_all_puts_every_failed_and_dead_job_back(db: Path) -> None:
    """requeue --all requeues the failed and the dead job and nothing else."""
    assert bridge_jobs(db, "requeue", "--all") == "requeued 2 job(s)\n"
    states = sorted(j.state for j in (await read(db)).values())
    assert states == sorted(
        [JobState.ACTIVE, JobState.QUEUED, JobState.QUEUED, JobState.QUEUED, JobState.DONE]
    )
    assert bridge_jobs(db).splitlines()[0].startswith("queued=3  creating=0  active=1  done=1")


def bridge_jobs_into_a_closed_pipe(db: Path) -> subprocess.CompletedProcess[str]:
    """Run ``bridge jobs list`` against ``db`` with its standard output a pipe no one reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        return subprocess.run(
            [sys.executable, "-m", "bridge", "jobs", "list"],
            env=cli_env(db),
            cwd=db.parent,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


async def test_list_into_a_closed_pipe_stops_quietly(db: Path) -> None:
    """``bridge jobs list | head -0``: the output's reader is gone before the first line. The command
    stops with status 1 and one quiet exit, not a traceback nor Python's "Exception ignored" at exit."""
    done = bridge_jobs_into_a_closed_pipe(db)
    assert (done.returncode, done.stderr) == (1, "")
