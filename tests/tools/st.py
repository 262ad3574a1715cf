"""Minimal safetensors reader/writer for the shell tests (stdlib only)."""
import json
import struct


def read(path):
    """Returns (header dict without __metadata__, {name: raw bytes})."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    hdr.pop("__metadata__", None)
    base = 8 + n
    return hdr, {k: data[base + v["data_offsets"][0]: base + v["data_offsets"][1]] for k, v in hdr.items()}


def write(path, tensors):
    """tensors: {name: (dtype, shape, bytes)}; data in sorted key order."""
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for k in sorted(tensors):
        dt, shape, b = tensors[k]
        hdr[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
