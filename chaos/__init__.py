"""`make chaos` / `python -m chaos`: fault scenarios against a real `kefu serve` subprocess, one table.

Each scenario is a named entry in `chaos.harness.SCENARIOS` (an async function taking `Options` and
returning a `Result` of counts); `python -m chaos` runs them all (or `--only NAME`) and prints one row per
scenario. `python -m chaos`: `fuzz` (≥ 10,000 malformed inputs over every inbound endpoint and the agent API,
`chaos.fuzz`), `api-outage` (the WeChat 客服消息 API failing for 10 simulated minutes, `chaos.outage`) and
`schemathesis` (a long all-checks run, `chaos.conformance`). `python -m chaos.crash`: kill -9 mid-burst,
SQLite's write lock held 8 s / 40 s, and a PostgreSQL of its own restarted and frozen (`chaos.postgres`).
Short forms run inside `make test` (tests/chaos, and tests/gateway/test_openapi_conformance.py).
"""
