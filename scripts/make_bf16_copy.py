#!/usr/bin/env python3
"""Writes a copy of a Hugging Face model directory with its float tensors stored in bf16 (round to nearest even).

    python3 scripts/make_bf16_copy.py models/stories15M .gpu-carry/stories15M-bf16

Half the bytes: stories15M in f32 (61 MB) plus the rest of the tree does not fit the GPU machine's 64 MiB
transfer, its bf16 copy does. Tests that compare the CUDA backend with the CPU backend load the same copy on
both sides, so the comparison is exact in kind; only golden-token tests need the original f32 weights.
Other files of the directory are copied as they are. Needs numpy only.
"""
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from safetensors_np import read_safetensors, write_safetensors  # noqa: E402


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    if not os.path.isfile(os.path.join(src, "model.safetensors")):
        print(f"error: {src}/model.safetensors not found (sharded models are not supported)", file=sys.stderr)
        return 1
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        if name != "model.safetensors" and os.path.isfile(os.path.join(src, name)):
            shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    tensors = read_safetensors(os.path.join(src, "model.safetensors"))
    nbytes = write_safetensors(os.path.join(dst, "model.safetensors"), tensors, dtype="BF16")
    print(f"{dst}/model.safetensors: {len(tensors)} tensors, {nbytes / 1e6:.1f} MB in bf16")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
