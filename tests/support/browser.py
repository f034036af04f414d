"""Debian's chromium, driven by Playwright for the browser tests (nothing is downloaded: no
`playwright install`). .ci/run installs chromium; without it those tests are skipped."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
