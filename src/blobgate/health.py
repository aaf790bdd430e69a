"""The private listener: Prometheus ``/metrics``, liveness ``/healthz`` and readiness
``/readyz``, none of which changes anything (the admin endpoints are ``admin``'s).

It runs on its own port so none of it is exposed where clients pull from. Readiness
asks what a pull needs: trusted signing keys, working URL signing (the storage
backend's), an upstream that answers ``/v2/`` within a short time, and (with a shared
Redis) an invalidation listener not stopped by a failure of its own. A database
that is down (Harbor's, or the audit one) is reported as ``degraded`` without failing
readiness: membership falls back to the upstream and audit records are dropped and
counted, so pulls keep working, and taking every pod out of service because a shared
database is down would stop them.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from blobgate.app import SERVICES
from blobgate.errors import RegistryError, StorageError
from blobgate.ops.metrics import STATS, StatsCollector
from blobgate.reference import Digest

GATEWAY = web.AppKey("gateway", web.Application)
REGISTRY = web.AppKey("registry", CollectorRegistry)
READY_TIMEOUT_S = 2.0
PROBE_DIGEST = Digest("sha256:" + "0" * 64)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _problems(gateway: web.Application) -> list[str]:
    services = gateway.get(SERVICES)
    if services is None:
        return ["starting: clients not open yet"]
    blobs = services.blobs
    problems = []
    if not blobs.gate.verifier.keys.by_kid:
        problems.append("no token-signing certificates loaded")
    if blobs.urls is not None:
        try:
            await blobs.urls.presigner.presign_blob(PROBE_DIGEST)
        except StorageError as exc:
            problems.append(f"{blobs.urls.presigner.name} signing unavailable: {exc.reason}")
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            response = await blobs.upstream.check("GET", "/v2/")
            async with response:
                if response.status >= 500:
                    problems.append(f"upstream answered /v2/ with {response.status}")
    except (RegistryError, TimeoutError, aiohttp.ClientError) as exc:
        problems.append(f"upstream unreachable: {type(exc).__name__}")
    listener = services.replicas.listener
    if listener is not None and listener.down:
        problems.append(f"invalidation listener down: {listener.down}")
    return problems


async def _degraded(gateway: web.Application) -> list[str]:
    """Databases or Redis down: reported, but pulls go on without them (fallback/drops)."""
    services = gateway.get(SERVICES)
    if services is None:
        return []
    errors = [(name, await pool.probe()) for name, pool in services.databases.items()]
    degraded = [f"{name} database unavailable: {error}" for name, error in errors if error]
    shared = services.replicas.shared
    if shared is not None and shared.failing:
        degraded.append(f"redis unavailable: {shared.last_error}")
    return degraded


async def readyz(request: web.Request) -> web.Response:
    problems = await _problems(request.app[GATEWAY])
    if problems:
        return web.json_response({"status": "not ready", "reasons": problems}, status=503)
    degraded = await _degraded(request.app[GATEWAY])
    if degraded:
        return web.json_response({"status": "ready", "degraded": degraded})
    return web.json_response({"status": "ready"})


def create_metrics_app(gateway: web.Application) -> web.Application:
    """The private app for ``gateway``: metrics of its ``Stats`` and its probes."""
    registry = CollectorRegistry()
    registry.register(StatsCollector(gateway[STATS]))
    registry.register(ProcessCollector(registry=None))
    app = web.Application()
    app[GATEWAY] = gateway
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
