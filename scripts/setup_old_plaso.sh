#!/usr/bin/env bash
# Installs plaso 20240308 into .cache/venv-plaso-20240308: a plaso that writes
# storage format 20230327, as labs' older plaso does, for the tests of
# toolmarks/plugins/store.py. Idempotent: does nothing when that venv's
# log2timeline already runs. About 35 s here (all binary parts come as wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=20240308
VENV=".cache/venv-plaso-${VERSION}"
STAMP="${VENV}/toolmarks-pins.txt"

# plaso only sets lower bounds; today's acstore, dfvfs, dfdatetime… changed
# their APIs (log2timeline 20240308 fails writing with acstore 20260411), so
# the pure-Python libraries are pinned to the releases plaso 20240308 shipped
# with. The libyal bindings stay at their newest (stable C APIs, with wheels).
PINS=(acstore==20240128 artifacts==20230928 dfdatetime==20240220 dfvfs==20240115
    dfwinreg==20240229 dtfabric==20230520)

# The stamp says the venv was made with these pins: a venv with today's
# libraries also answers --version, but cannot write a store.
if [ "$(cat "${STAMP}" 2>/dev/null)" = "${PINS[*]}" ] \
    && "${VENV}/bin/log2timeline" --version >/dev/null 2>&1; then
    exit 0
fi
# Some of those are sdists whose setup.py imports pkg_resources, which newer
# setuptools no longer has.
constraints="$(mktemp)"
trap 'rm -f "${constraints}"' EXIT
echo "setuptools<70" >"${constraints}"

rm -rf "${VENV}"
python3 -m venv "${VENV}"
PIP_CONSTRAINT="${constraints}" "${VENV}/bin/python" -m pip install --quiet \
    --disable-pip-version-check "plaso==${VERSION}" "${PINS[@]}"
"${VENV}/bin/log2timeline" --version
echo "${PINS[*]}" >"${STAMP}"
