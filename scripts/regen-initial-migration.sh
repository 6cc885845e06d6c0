#!/usr/bin/env bash
# Regenerates ca/records/migrations/versions/0001_initial.py from ca/records/store.py.
# Only while the project is unreleased: after a release, add a new revision instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f ca/records/migrations/versions/0001_initial.py
.venv/bin/python - "$tmp/gen.db" <<'PY'
import sys
from alembic import command
from ca.records import store
from ca.records.migrate import alembic_config
cfg = alembic_config(store.make_engine(f"sqlite:///{sys.argv[1]}"))
command.revision(cfg, message="initial", autogenerate=True, rev_id="0001")
PY
rm -rf "$tmp"
