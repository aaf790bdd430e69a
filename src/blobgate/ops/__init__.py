"""Running blobgate: what an operator sees of it and what it keeps for them.

``metrics`` (integers on the request path, Prometheus families at scrape time),
``logs`` (JSON lines on stderr) and ``redact`` (no secret in any line), ``accesslog``
(one line, the metrics and an audit record per request, from what a handler recorded)
and ``audit`` (the trail of blob access, as lines or into PostgreSQL through ``db``, the
pool that never makes a request wait on a database that is down), and ``watch``
(re-reading files that rotate under a running process). Every other wing may count,
log and watch through this one; nothing here decides whether a request is served.

May import: ``routing`` (the client address the access log and audit name), and the
ground floor.
"""
