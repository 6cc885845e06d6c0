#!/usr/bin/env bash
# The package as an operator gets it (`make wheel-smoke`, and a step of .ci/run):
#
#   1. build the sdist, and the wheel from that sdist (python -m build), so both must carry
#      the migrations, the default policy, the templates and the static files;
#   2. install the wheel into a fresh venv outside the checkout, its declared dependencies
#      resolved by pip (from pip's cache when it has them);
#   3. from that install only: `tnca --home H init`, `tnca serve` (2 workers), wait for
#      /readyz, then issue a delegate certificate with certbot's `acme` client
#      (examples/issue_certificate.py on tnca.acme_client), verify it with openssl, and check
#      /metrics counted it and the request log is JSON with request ids.
#
# Nothing of the checkout is importable from the fresh venv: commands run in a temporary
# directory, and the client script checks that `ca` and `tnca` come from site-packages.
# Env: PYTHON (the interpreter for the fresh venv, default python3), KEEP=1 keeps the
# temporary directory, TNCA_TEST_PORT_BLOCK (tests/helpers.py) picks the server's port.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
checkout_py="$repo/.venv/bin/python"
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/tnca-wheel-smoke.XXXXXX")
server_pid=
start=$(date +%s)

cleanup() {
  status=$?
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" != 0 ] && [ -f "$work/serve.log" ]; then
    echo "== last lines of the server's log"; tail -40 "$work/serve.log"
  fi
  if [ "${KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
fail() { echo "wheel smoke: FAILED: $*" >&2; exit 1; }
# http_get URL [FILE]: succeeds on HTTP 200 only, the body into FILE (python: no curl needed).
http_get() {
  "$checkout_py" -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    body = response.read()
if len(sys.argv) > 2:
    open(sys.argv[2], "wb").write(body)
' "$@" 2>/dev/null
}

echo "== build the sdist, then the wheel from it"
# From a copy of the files git knows (committed or not, ignored ones left out): a stale
# tnca.egg-info/SOURCES.txt of an editable install would otherwise put files into the sdist
# that the package configuration no longer names.
mkdir "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
   | while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done \
   | tar --null -T - -cf -) | tar -xf - -C "$work/src"
"$checkout_py" -m build --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }
if grep -iE "SetuptoolsDeprecationWarning|License classifiers are deprecated|project.license. as a TOML table" "$work/build.log"; then
  fail "setuptools warned about the package metadata (above)"
fi
sdist=$(ls "$work"/dist/tnca-*.tar.gz)
wheel=$(ls "$work"/dist/tnca-*.whl)
# Listings in files: `grep -q` in a pipeline would stop its writer early (SIGPIPE, pipefail).
tar -tzf "$sdist" >"$work/sdist.txt"
"$checkout_py" -m zipfile -l "$wheel" >"$work/wheel.txt"
for member in ca/policies/default.toml ca/records/migrations/env.py ca/records/migrations/script.py.mako \
              ca/records/migrations/versions/0001_initial.py acme_server/admin/static/tnca.css \
              acme_server/admin/templates/admin/layout.html acme_server/auth/templates/auth/login.html; do
  grep -qx "tnca-[0-9.]*/$member" "$work/sdist.txt" || fail "the sdist lacks $member"
  grep -q "^$member " "$work/wheel.txt" || fail "the wheel lacks $member"
done
if grep -q "^migrations/\|^policies/" "$work/wheel.txt"; then fail "the wheel has top-level data directories"; fi
"$checkout_py" -c 'import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
sys.stdout.write(wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode())
' "$wheel" >"$work/METADATA"
grep -qx "License-Expression: Apache-2.0" "$work/METADATA" || fail "no SPDX License-Expression"

echo "== a fresh venv outside the checkout, and the wheel with its dependencies"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel" >"$work/pip.log" 2>&1 || { grep -v "Location '" "$work/pip.log"; fail "pip install"; }
cd "$work"
tnca="$work/venv/bin/tnca"
home="$work/home"
port=$(cd "$repo" && "$checkout_py" -c 'from tests.helpers import free_port; print(free_port())')
base="http://127.0.0.1:$port"

echo "== tnca init, tnca serve on $base"
"$tnca" --home "$home" init --base-url "$base" >/dev/null
"$tnca" --home "$home" serve --port "$port" --workers 2 >"$work/serve.log" 2>&1 &
server_pid=$!
ready=no
for _ in $(seq 150); do
  kill -0 "$server_pid" 2>/dev/null || fail "tnca serve exited"
  if http_get "$base/readyz"; then ready=yes; break; fi
  sleep 0.2
done
[ "$ready" = yes ] || fail "/readyz did not answer 200 within 30 s"
grep -q "transparency is off" "$work/serve.log" || fail "serve did not say that transparency is off"

echo "== issue a certificate with certbot's acme client from the installed package"
cp "$repo/examples/issue_certificate.py" "$work/issue_certificate.py"
client() { "$work/venv/bin/python" -c '
import runpy, sys
import ca, tnca
for module in (ca, tnca):
    if not module.__file__.startswith(sys.argv[1]):
        sys.exit(f"{module.__name__} imported from {module.__file__}, not from the installed wheel")
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
' "$work/venv/" "$work/issue_certificate.py" "$@"; }
client fingerprint --account-key account.key >fingerprint.txt
delegation=$("$tnca" --home "$home" delegation create --delegate "Smoke Enterprise" --range 12025550100:100 --json \
             | "$work/venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
"$tnca" --home "$home" token mint --delegation "$delegation" --fingerprint "$(cat fingerprint.txt)" \
        --tn 12025550123 --ttl 1h >token.jwt
client issue --directory "$base/acme/directory" --account-key account.key --token-file token.jwt \
       --key delegate.key --chain chain.pem
openssl verify -CAfile "$home/certs/root.pem" -untrusted "$home/certs/issuing.pem" chain.pem

echo "== /metrics counted it; the request log is JSON with request ids"
http_get "$base/metrics" metrics.txt || fail "/metrics"
grep -qE '^tnca_issuance_duration_seconds_count\{.*outcome="issued".*\} 1\.0$' metrics.txt \
  || { grep "^tnca_issuance" metrics.txt; fail "/metrics has no issuance"; }
"$work/venv/bin/python" - "$work/serve.log" <<'PY'
import json, sys
requests = []
for line in open(sys.argv[1]):
    if line.startswith("{"):
        record = json.loads(line)
        if record.get("event") == "request":
            requests.append(record)
finalize = [r for r in requests if r["path"].endswith("/finalize")]
assert finalize and all(r["request_id"] and r["status"] == 200 and r["account"] and r["order"] for r in finalize), finalize
print(f"{len(requests)} request lines, finalize: {finalize[0]['request_id']}")
PY
echo "== wheel smoke passed in $(( $(date +%s) - start ))s"
