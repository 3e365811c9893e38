#!/usr/bin/env bash
# Start the local PostgreSQL and Redis the test suite uses, when they are installed but stopped.
# On a machine without them the tests that need them skip with a reason (CI turns that into a failure).
set -u
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  fi
fi
if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null || true
    for _ in $(seq 1 20); do redis_up && break; sleep 0.25; done
  fi
fi
pg_up && echo "PostgreSQL: up at 127.0.0.1:5432" || echo "PostgreSQL: not available (its tests will skip)"
redis_up && echo "Redis: up at 127.0.0.1:6379" || echo "Redis: not available (its tests will skip)"
exit 0
