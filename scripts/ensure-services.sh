#!/usr/bin/env bash
# Makes sure the PostgreSQL, MariaDB and Redis the integration tests use are reachable on 127.0.0.1,
# starting the machine's own servers if they are installed but stopped. Tests never mock them.
set -uo pipefail

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
maria_up() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
fi
if ! maria_up; then
  if [ -x /etc/init.d/mariadb ]; then
    echo "starting MariaDB"
    /etc/init.d/mariadb start >/dev/null 2>&1 || true
  fi
fi
for _ in $(seq 1 30); do
  if pg_up && redis_up && maria_up; then
    echo "PostgreSQL, MariaDB and Redis are up"
    exit 0
  fi
  sleep 1
done
pg_up && echo "PostgreSQL up" || echo "PostgreSQL NOT reachable on 127.0.0.1:5432"
maria_up && echo "MariaDB up" || echo "MariaDB NOT reachable on 127.0.0.1:3306"
redis_up && echo "Redis up" || echo "Redis NOT reachable on 127.0.0.1:6379"
if [ "${CI:-}" = "true" ]; then
  echo "CI=true: integration tests need all three servers" >&2
  exit 1
fi
