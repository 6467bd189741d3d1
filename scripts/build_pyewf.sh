#!/usr/bin/env bash
# Rebuilds pyewf (libewf-python) from its PyPI source with zlib and with the
# checksum errors exposed. Same version, same libewf; two changes:
# - The PyPI build configures libewf with --disable-shared-libs, which also turns
#   zlib off, so E01 chunks are inflated by libewf's own decoder: about half the
#   speed of zlib (see bench/README.md).
# - libewf notes each chunk whose checksum fails as it reads it, but pyewf does
#   not say which: pyewf_checksum_errors.patch adds get_number_of_checksum_errors()
#   and get_checksum_error(index) to pyewf's handle, the calls of libewf's C API,
#   so a scan verifies the chunks it decodes instead of decoding them twice.
# Needs a C compiler, patch and zlib's headers (gcc, make, patch, zlib1g-dev).
set -euo pipefail

PYTHON=${PYTHON:-python3}
pip=("$PYTHON" -m pip --disable-pip-version-check)

patch_file=$(cd "$(dirname "$0")" && pwd)/pyewf_checksum_errors.patch

uses_zlib() {
    local module libraries
    module=$("$PYTHON" -c 'import pyewf; print(pyewf.__file__)') || return 1
    # Not `ldd | grep -q`: grep's early exit can fail ldd, and so the pipe.
    libraries=$(ldd "$module") || return 1
    [[ "$libraries" == *libz.so* ]]
}

has_checksum_errors() {
    "$PYTHON" -c 'import pyewf; pyewf.handle.get_checksum_error' 2>/dev/null
}

if uses_zlib && has_checksum_errors; then
    echo "pyewf already inflates with zlib and tells its checksum errors"
    exit 0
fi

version=$("$PYTHON" -c \
    'import importlib.metadata as m; print(m.version("libewf-python"))')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"${pip[@]}" download --quiet --no-deps --no-binary :all: \
    "libewf-python==$version" -d "$work"
tar xzf "$work/libewf_python-$version.tar.gz" -C "$work"
source_dir="$work/libewf_python-$version"

# Keep the bundled libyal libraries (--disable-shared-libs) but let configure
# look for zlib anyway.
sed -i 's/test "x$ac_cv_enable_shared_libs" = xno || test "x$ac_cv_with_zlib" = xno/test "x$ac_cv_with_zlib" = xno/' \
    "$source_dir/configure"
grep -q 'if test "x$ac_cv_with_zlib" = xno' "$source_dir/configure" || {
    echo "build_pyewf: libewf-python $version's configure changed; zlib not enabled" >&2
    exit 1
}

patch --quiet -p1 -d "$source_dir" < "$patch_file" || {
    echo "build_pyewf: libewf-python $version's pyewf_handle.c changed; patch failed" >&2
    exit 1
}

LDFLAGS="-Wl,--no-as-needed -lz" "${pip[@]}" wheel --quiet --no-deps \
    "$source_dir" -w "$work/wheel"
"${pip[@]}" install --quiet --root-user-action=ignore --no-deps --force-reinstall "$work"/wheel/*.whl
uses_zlib && has_checksum_errors || {
    echo "build_pyewf: the rebuilt pyewf does not link zlib or tell checksum errors" >&2
    exit 1
}
echo "pyewf $version rebuilt with zlib and checksum errors"
