"""`make chaos` / `python -m chaos`: fault scenarios against a real `kefu serve` subprocess, one table.

Each scenario is a named entry in `chaos.harness.SCENARIOS` (an async function taking `Options` and
returning a `Result` of counts); `python -m chaos` runs them all (or `--only NAME`) and prints one row per
scenario. Scenarios so far: `fuzz` (≥ 10,000 malformed inputs over every inbound endpoint and the agent API,
`chaos.fuzz`). A short form of the fuzz runs inside `make test` (tests/chaos).
"""
