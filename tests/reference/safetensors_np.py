"""Minimal numpy safetensors reader/writer for the reference tests (no torch, no safetensors package).

Format: 8-byte little-endian u64 header length N, N bytes of JSON header
{name: {"dtype": "F32"|"BF16"|"F16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
then the raw little-endian tensor bytes; data_offsets are relative to the first byte after the header.
"""

import json
import struct

import numpy as np

_NP_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8")}


def f32_to_bf16_bits(x):
    """Round float32 values to bfloat16 (round to nearest, ties to even); returns the uint16 bit patterns."""
    bits = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    if np.any((bits & 0x7F800000) == 0x7F800000):
        raise ValueError("f32_to_bf16_bits: inf/nan not expected in test weights")
    rounding = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + rounding) >> 16).astype("<u2")


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype="<u2").astype("<u4") << 16).view("<f4")


def round_to_bf16(x):
    """The float32 value a BF16 store of x reads back as."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x)).reshape(np.shape(x))


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: dict name -> numpy array (any float dtype); stored as `dtype` ("F32", "BF16" or "F16")."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if dtype == "BF16":
            raw = f32_to_bf16_bits(arr.astype(np.float32)).tobytes()
        else:
            raw = np.ascontiguousarray(arr, dtype=_NP_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # pad like the reference implementation does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)
    return offset


def read_safetensors(path):
    """Returns dict name -> float64 numpy array (BF16/F16 upcast exactly)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[base + b : base + e]
        dt = info["dtype"]
        if dt == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        elif dt in _NP_DTYPES:
            arr = np.frombuffer(raw, dtype=_NP_DTYPES[dt])
        else:
            raise ValueError(f"{path}: unsupported dtype {dt} for {name}")
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out
