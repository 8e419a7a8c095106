"""The ``bridge`` command: serve, dev, check, send-push, migrate, jobs, emulator.

Settings are built here, once, and passed down; a problem with them ends the command with a
one-line message and exit status 2 (never a traceback, never a secret).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import httpx
from pydantic import ValidationError

from bridge import __version__
from bridge.core.errors import BridgeError
from bridge.core.events import ZERO_SHA
from bridge.core.jobs import REQUEUABLE_STATES, JobState
from bridge.core.signature import sign
from bridge.samples import encode, fake_sha, push_payload
from bridge.settings import Settings, StoreSettings

EXIT_CONFIG = 2
EXIT_PIPE = 1  # the output's reader went away
DEV_DIR = Path(".bridge-dev")
DEV_TOKEN = "dev-token"  # noqa: S105 - the local emulator's fixed token, not a credential
DEMO_ROUTES = """\
# Demo routes for `bridge dev`: every branch of acme/* goes to the emulator's demo source.
routes:
  - repository: "acme/*"
    branches: ["*", "release/**"]
    source:
      database_name: demo
  - repository: acme/api
    source_id: {source_id}
    collection: "api-{{branch}}-{{sha12}}"
"""


_S = TypeVar("_S", bound=StoreSettings)


def fail(message: str) -> NoReturn:
    print(f"bridge: {message}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; report problems by field, never by value."""
    return _load(Settings, overrides)


def load_store_settings() -> StoreSettings:
    """Only what opening the store needs (``migrate``, ``jobs``): no webhook secret is asked for."""
    return _load(StoreSettings, {})


def _load(kind: type[_S], overrides: dict[str, Any]) -> _S:
    try:
        return kind(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"BRIDGE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid settings: {problems}")


# --------------------------------------------------------------------------- serve
def build_service(settings: Settings) -> Any:
    from bridge.metrics import Metrics
    from bridge.routes_file import load_routes
    from bridge.service import Service, sync_client
    from bridge.store import open_store
    from bridge.store.sqlite import SqliteStore
    from bridge.worker_process import RemoteStore, WorkerProcess

    if settings.worker != "off" and (
        settings.sync_token is None or not settings.sync_token.get_secret_value()
    ):
        fail("BRIDGE_SYNC_TOKEN is required (the Chroma Cloud API key)")
    try:
        routes = load_routes(settings.routes_file)
        store = open_store(settings.database_url)  # SQLite: one replica, so a dead one's leases are freed
    except BridgeError as exc:
        fail(str(exc))
    metrics = Metrics()
    if settings.worker == "process":
        process = WorkerProcess(settings, metrics=metrics)
        # SQLite: the worker process is the database's one writer; the ingress accepts through it.
        ingress_store = RemoteStore(process) if isinstance(store, SqliteStore) else store
        return Service(
            settings=settings, routes=routes, store=ingress_store, metrics=metrics, worker_process=process
        )
    sync = sync_client(settings) if settings.worker == "inline" else None
    return Service(settings=settings, routes=routes, store=store, sync=sync, metrics=metrics)


def run_server(settings: Settings, *, host: str, port: int) -> None:
    import uvicorn

    from bridge.http.app import create_app
    from bridge.logging import configure_logging
    from bridge.service import freeze_startup_objects

    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())
    app = create_app(build_service(settings))
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the handler it
    # found; a no-op one here makes a graceful stop exit with status 0 instead of "killed by SIGTERM".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    freeze_startup_objects()  # the app and its route table are built
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout)),
        server_header=False,
    )


def cmd_serve(args: argparse.Namespace) -> None:
    run_server(load_settings(), host=args.host, port=args.port)


# --------------------------------------------------------------------------- dev
def cmd_dev(args: argparse.Namespace) -> None:
    from bridge.emulator.testing import run_emulator_in_thread

    DEV_DIR.mkdir(exist_ok=True)
    secret_file = DEV_DIR / "webhook-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(20))
        secret_file.chmod(0o600)
    secret = os.environ.get("BRIDGE_WEBHOOK_SECRET") or secret_file.read_text().strip()
    overrides: dict[str, Any] = {"webhook_secret": secret, "log_format": "console"}
    if "BRIDGE_LOG_LEVEL" not in os.environ:  # a line per delivery, which serve at info leaves out
        overrides["log_level"] = "debug"
    if "BRIDGE_DATABASE_URL" not in os.environ:
        overrides["database_url"] = f"sqlite:///{DEV_DIR / 'bridge.db'}"
    use_emulator = "BRIDGE_SYNC_URL" not in os.environ
    with run_emulator_in_thread(token=DEV_TOKEN, port=args.emulator_port) as (emulator_url, state):
        if use_emulator:
            overrides["sync_url"] = emulator_url
            overrides["sync_token"] = DEV_TOKEN
            source_id = state.add_source(database_name="demo", repository="acme/api")
            routes_file = DEV_DIR / "routes.yaml"
            routes_file.write_text(DEMO_ROUTES.format(source_id=source_id))
            overrides.setdefault("routes_file", routes_file)
        if "BRIDGE_ROUTES_FILE" not in os.environ and "routes_file" not in overrides:
            overrides["routes_file"] = DEV_DIR / "routes.yaml"
        settings = load_settings(**overrides)
        url = f"http://{args.host}:{args.port}"
        print(
            f"\nbridge dev: {url}  (Sync: {settings.sync_url}, store: {settings.database_url})\n"
            f"  routes:     {settings.routes_file}\n"
            f"  secret:     {secret_file} (or BRIDGE_WEBHOOK_SECRET)\n"
            f"  send a signed sample push from another terminal:\n"
            f"    .venv/bin/bridge send-push --url {url}/webhooks/github "
            f"--secret-file {secret_file} --repo acme/api --branch main\n"
            f"  then watch:  curl -s {emulator_url}/_emulator/state | python3 -m json.tool\n",
            flush=True,
        )
        run_server(settings, host=args.host, port=args.port)


# --------------------------------------------------------------------------- check
async def _check(settings: Settings) -> list[str]:
    from bridge.clients.sync_errors import SyncError
    from bridge.routes_file import load_routes
    from bridge.service import sync_client
    from bridge.store import open_store

    lines = []
    routes = load_routes(settings.routes_file)
    lines.append(f"routes: {len(routes.routes)} in {settings.routes_file}")
    store = open_store(settings.database_url, release_leases=False)
    await store.open()
    await store.ping()
    await store.close()
    lines.append("store: reachable, migrations applied")
    if settings.sync_token is None:
        fail("BRIDGE_SYNC_TOKEN is required (the Chroma Cloud API key)")
    async with sync_client(settings) as sync:
        try:
            await sync.list_sources(limit=1)
        except SyncError as exc:
            fail(f"Chroma Sync at {settings.sync_url} is not usable: {exc}")
        lines.append(f"sync: {settings.sync_url} answers and accepts the token")
        for route in routes.routes:
            where = f"route at line {route.line} ({route.repository})"
            if route.source_id is not None:
                try:
                    source = await sync.get_source(route.source_id)
                except SyncError as exc:
                    fail(f"{where}: source {route.source_id} is not usable: {exc}")
                lines.append(f"{where}: source {source.id} found")
            elif route.source is not None:
                lines.append(
                    f"{where}: described source in database {route.source.database_name!r}, "
                    "found or created on each repository's first push"
                )
    return lines


def cmd_check(args: argparse.Namespace) -> None:
    settings = load_settings()
    try:
        for line in asyncio.run(_check(settings)):
            print(f"ok  {line}")
    except BridgeError as exc:
        fail(str(exc))
    print("bridge check: all good")


# --------------------------------------------------------------------------- send-push
def cmd_send_push(args: argparse.Namespace) -> None:
    if args.secret_file:
        secret = Path(args.secret_file).read_text().strip()
    else:
        secret = (args.secret or os.environ.get("BRIDGE_WEBHOOK_SECRET") or "").split(",")[0].strip()
    if not secret:
        fail("a secret is needed: --secret-file, --secret or BRIDGE_WEBHOOK_SECRET")
    if args.file:
        body = Path(args.file).read_bytes()
    else:
        payload = push_payload(
            repository=args.repo,
            branch=args.branch,
            before=args.before or ZERO_SHA,
            after=args.after or fake_sha(uuid.uuid4().hex),
        )
        body = encode(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"GitHub-Hookshot/bridge-send-push-{__version__}",
        "X-GitHub-Event": args.event,
        "X-GitHub-Delivery": args.delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": str(args.hook_id),
        "X-Hub-Signature-256": sign(body, secret.encode()),
    }
    try:
        response = httpx.post(args.url, content=body, headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        fail(f"could not reach {args.url}: {type(exc).__name__}")
    print(f"{response.status_code} {response.text}")
    if response.status_code >= 400:
        raise SystemExit(1)


# --------------------------------------------------------------------------- migrate, jobs
def cmd_migrate(args: argparse.Namespace) -> None:
    from bridge.store import open_store, redact_url

    settings = load_store_settings()

    async def run() -> None:
        store = open_store(settings.database_url, release_leases=False)
        await store.open()
        await store.close()

    try:
        asyncio.run(run())
    except BridgeError as exc:
        fail(str(exc))
    print(f"bridge migrate: {redact_url(settings.database_url)} is up to date")


def cmd_jobs(args: argparse.Namespace) -> None:
    import time

    from bridge.store import open_store

    settings = load_store_settings()

    async def run() -> None:
        store = open_store(settings.database_url, release_leases=False)
        await store.open()
        try:
            if args.action == "requeue":
                ids = list(args.ids)
                if args.all:
                    ids += [j.id for j in await store.list_jobs(states=REQUEUABLE_STATES, limit=100_000)]
                count = await store.requeue(ids, now=time.time())
                print(f"requeued {count} job(s)")
                return
            counts = await store.counts()
            print("  ".join(f"{state}={counts.get(state, 0)}" for state in JobState))
            states = [JobState(s) for s in args.state] if args.state else None
            for job in await store.list_jobs(states=states, limit=args.limit):
                print(
                    f"{job.id:>8} {job.state:<10} {job.repository}@{job.branch} {job.after[:12]} "
                    f"{job.collection} {job.invocation_id or '-'} {job.invocation_status or '-'} "
                    f"attempts={job.attempts} {job.error or ''}".rstrip()
                )
        finally:
            await store.close()

    asyncio.run(run())


def cmd_emulator(args: argparse.Namespace) -> None:
    from bridge.emulator.app import serve_emulator

    token = args.token or os.environ.get("BRIDGE_SYNC_TOKEN") or DEV_TOKEN
    print(f"Chroma Sync emulator on http://{args.host}:{args.port}", flush=True)
    serving = serve_emulator(host=args.host, port=args.port, token=token)
    try:  # uvicorn[standard] brings uvloop, as for the bridge's own processes
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(serving)
    else:
        uvloop.run(serving)


# --------------------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bridge",
        description="Keep Chroma Sync indexes of GitHub repositories fresh: every push to a watched "
        "branch becomes one Chroma Sync invocation. Settings come from BRIDGE_* variables (see README).",
    )
    p.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the webhook endpoint and the worker")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="run everything locally: SQLite, a Sync emulator, a demo routes file")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--emulator-port", type=int, default=8765, help="the local Sync emulator's port")
    dev.set_defaults(func=cmd_dev)

    check = sub.add_parser("check", help="validate settings and routes, reach Sync, resolve every source")
    check.set_defaults(func=cmd_check)

    send = sub.add_parser("send-push", help="sign a sample push and send it to a running bridge")
    send.add_argument("--url", default="http://127.0.0.1:8080/webhooks/github")
    send.add_argument("--secret", help="webhook secret (default: BRIDGE_WEBHOOK_SECRET)")
    send.add_argument("--secret-file", help="read the webhook secret from this file")
    send.add_argument("--file", help="send this payload file as it is instead of building one")
    send.add_argument("--repo", default="acme/api", help="owner/name (default acme/api)")
    send.add_argument("--branch", default="main")
    send.add_argument("--before", help="previous head (default: 40 zeros, a new branch)")
    send.add_argument("--after", help="pushed commit (default: random)")
    send.add_argument("--event", default="push")
    send.add_argument("--delivery-id", help="X-GitHub-Delivery (default: random); reuse it to redeliver")
    send.add_argument("--hook-id", type=int, default=1)
    send.set_defaults(func=cmd_send_push)

    migrate = sub.add_parser("migrate", help="apply the store's schema migrations and exit")
    migrate.set_defaults(func=cmd_migrate)

    jobs = sub.add_parser("jobs", help="list jobs by state, or requeue failed and dead ones")
    jobs.add_argument("action", nargs="?", choices=["list", "requeue"], default="list")
    jobs.add_argument("ids", nargs="*", type=int, help="job ids to requeue")
    jobs.add_argument("--all", action="store_true", help="with requeue: every failed and dead job")
    jobs.add_argument("--state", action="append", choices=[s.value for s in JobState])
    jobs.add_argument("--limit", type=int, default=50)
    jobs.set_defaults(func=cmd_jobs)

    emulator = sub.add_parser("emulator", help="run the Chroma Sync emulator on its own")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument(
        "--token", help="token the emulator accepts (default BRIDGE_SYNC_TOKEN or dev-token)"
    )
    emulator.set_defaults(func=cmd_emulator)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()  # here, not at exit, so that a reader gone early is caught below
    except BrokenPipeError:
        # The reader of the output went away (``bridge jobs list | head``): stop quietly with status 1,
        # as Python's documentation advises (signal module, "Note on SIGPIPE"). Standard output is
        # pointed at /dev/null first so that the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(EXIT_PIPE) from None


if __name__ == "__main__":  # pragma: no cover
    main()
