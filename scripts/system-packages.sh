#!/usr/bin/env bash
# Installs the Debian packages the tests and the dev stack use, skipping those already present.
# Idempotent: a second run does nothing but check. Needs root (or sudo) only when something is missing.
set -euo pipefail

# openssl: chain and CRL checks; secsipidx: PASSporT signing/verification (an outside verifier);
# softhsm2: the PKCS#11 token for the HSM signer; certspotter: an outside CT log monitor;
# chromium: the browser the operator/auditor UI tests drive through Playwright (tests/browser),
# launched from /usr/bin/chromium (Playwright's own browser downloads are never used).
# sqlite3 and postgresql-client-15 (pg_dump, pg_restore, createdb): the backup and restore
# walked from docs/deployment.md (tests/e2e/test_deployment_restore.py).
PACKAGES=(openssl secsipidx softhsm2 certspotter chromium sqlite3 postgresql-client-15 ${TNCA_EXTRA_PACKAGES:-})

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
