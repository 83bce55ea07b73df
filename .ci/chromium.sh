#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/service/test_review_browser.py drives it with Playwright)
# when it is missing, as .ci/postgres.sh does for PostgreSQL. Prints the browser's path; nothing if it cannot.
set -uo pipefail
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; exit 0; fi
done
(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || exit 0
command -v chromium || true
