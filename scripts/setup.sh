#!/usr/bin/env bash
# Installs what toolmarks needs on a fresh Debian machine: the Debian tools the
# scenario images and tests use, then toolmarks itself (with --test: and pytest),
# then pyewf rebuilt with zlib (scripts/build_pyewf.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(ntfs-3g fdisk ewf-tools sleuthkit libhivex-bin hashdeep yara dosfstools e2fsprogs
    gcc make patch zlib1g-dev)
# The report's tests open it in a real headless browser, with CJK fonts for the
# seed's Japanese text.
[ "${1:-}" = "--test" ] && DEBIAN_PACKAGES+=(chromium fonts-noto-cjk)
# The distributed tests start their own redis-server (the broker of Celery).
[ "${1:-}" = "--test" ] && DEBIAN_PACKAGES+=(redis-server)
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -e ".${extra}"
# An editable install leaves toolmarks' modules uncompiled; where
# PYTHONDONTWRITEBYTECODE is set (container images often set it), every run
# would compile them again: 0.1 s of each scan's start-up.
python3 -m compileall -q toolmarks

# Optional: without it E01 images are read correctly, only slower, and verified
# by ewfverify beside the scan (a second decode).
bash scripts/build_pyewf.sh \
    || echo "setup: pyewf not rebuilt; E01 decoding and verification stay slower" >&2
if [ "${1:-}" = "--test" ]; then bash scripts/setup_old_plaso.sh; fi
