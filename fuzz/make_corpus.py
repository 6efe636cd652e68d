#!/usr/bin/python3
"""Writes the seed corpus fuzz/corpus/<harness>/: a few small valid files per parser plus
edge cases (truncated, oversized headers, deep nesting, a small decompression bomb).
Deterministic; re-run after changing it and commit the result (keep it well under 200 KB)."""
import gzip
import io
import json
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def gz(b):
    return gzip.compress(b, mtime=0)


# ---- IDX
def idx_images(n, r, c, extra=b""):
    return struct.pack(">IIII", 0x803, n, r, c) + bytes((i * 7) % 256 for i in range(n * r * c)) + extra


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


put("idx", "images_2x4x4", idx_images(2, 4, 4))
put("idx", "labels_3", idx_labels([1, 2, 9]))
put("idx", "images_2x4x4.gz", gz(idx_images(2, 4, 4)))
put("idx", "labels_3.gz", gz(idx_labels([0, 5, 7])))
put("idx", "two_members.gz", gz(idx_labels([1, 2])[:5]) + gz(idx_labels([1, 2])[5:]))
put("idx", "truncated", idx_images(3, 4, 4)[:40])
put("idx", "huge_dims", struct.pack(">IIII", 0x803, 0x7FFFFFFF, 65536, 65536))
put("idx", "bomb_one_image.gz", gz(idx_images(1, 2, 2, extra=bytes(20000))))

# ---- npy
def npy(a, version=None):
    b = io.BytesIO()
    np.lib.format.write_array(b, a, version=version, allow_pickle=False)
    return b.getvalue()


def npy_raw(header, data=b"", major=1):
    h = header.encode()
    if major == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + data
    return b"\x93NUMPY" + bytes([major, 0]) + struct.pack("<I", len(h)) + h + data


put("npy", "f4_2x3.npy", npy(np.arange(6, dtype=np.float32).reshape(2, 3)))
put("npy", "i8_3.npy", npy(np.array([1, -2, 3], dtype=np.int64)))
put("npy", "u1_2x2x2.npy", npy(np.arange(8, dtype=np.uint8).reshape(2, 2, 2)))
put("npy", "f2_4.npy", npy(np.array([0.5, -1, 65504, np.inf], dtype=np.float16)))
put("npy", "f8_big_endian_fortran.npy", npy(np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))))
put("npy", "bool_3.npy", npy(np.array([True, False, True])))
put("npy", "v2_i4.npy", npy(np.array([7, 8], dtype=np.int32), version=(2, 0)))
put("npy", "huge_shape.npy", npy_raw("{'descr': '<f8', 'fortran_order': False, 'shape': (281474976710655, 281474976710655), }\n"))
put("npy", "huge_dtype.npy", npy_raw("{'descr': '<f99999999999', 'fortran_order': False, 'shape': (2,), }\n"))
put("npy", "empty_huge_rows.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 281474976710655, 281474976710655), }\n"))
put("npy", "v3_truncated.npy", npy_raw("{'descr': '<i2', 'fortran_order': False, 'shape': (4,), }\n", b"\x01\x00", major=3))


# ---- npz and imagenet32 (zip archives written by numpy)
def npz(compressed, **arrays):
    b = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(b, **arrays)
    return b.getvalue()


put("npz", "stored.npz", npz(False, a=np.arange(4, dtype=np.int64), b=np.ones((2, 2), np.float32)))
put("npz", "deflated.npz", npz(True, a=np.arange(10, dtype=np.uint8)))
zb = io.BytesIO()
with zipfile.ZipFile(zb, "w", compression=zipfile.ZIP_DEFLATED) as z:
    z.writestr(zipfile.ZipInfo("x.npy", date_time=(2020, 1, 1, 0, 0, 0)), npy(np.arange(3, dtype=np.float64)),
               compress_type=zipfile.ZIP_DEFLATED)
    z.writestr(zipfile.ZipInfo("y.npy", date_time=(2020, 1, 1, 0, 0, 0)), npy(np.zeros(2, np.int32)))
put("npz", "zipfile.npz", zb.getvalue())
zb = io.BytesIO()
with zipfile.ZipFile(zb, "w") as z:
    with z.open(zipfile.ZipInfo("z.npy", date_time=(2020, 1, 1, 0, 0, 0)), "w", force_zip64=True) as f:
        f.write(npy(np.arange(2, dtype=np.int16)))
put("npz", "zip64.npz", zb.getvalue())
put("npz", "bomb.npz", npz(True, a=np.zeros(60000, np.uint8)))
put("npz", "truncated.npz", npz(False, a=np.arange(8, dtype=np.int64))[:-30])

img = (np.arange(2 * 12) % 256).astype(np.uint8).reshape(2, 12)  # 2 images of 3x2x2
put("imagenet32", "batch_stored.npz", npz(False, data=img, labels=np.array([1, 1000], np.int64)))
put("imagenet32", "batch_deflated.npz", npz(True, data=img, labels=np.array([3, 4], np.int64)))
put("imagenet32", "label0.npz", npz(False, data=img, labels=np.array([0, 4], np.int64)))
put("imagenet32", "mismatch.npz", npz(True, data=img, labels=np.array([1, 2, 3], np.int64)))

# ---- CIFAR
def cifar(labels, label_bytes):
    out = b""
    for k, l in enumerate(labels):
        lab = bytes([l % 20, l]) if label_bytes == 2 else bytes([l])
        out += lab + bytes(((k + i) * 13) % 256 for i in range(3072))
    return out


put("cifar", "c10_1.bin", cifar([3], 1))
put("cifar", "c10_2.bin.gz", gz(cifar([9, 0], 1)))
put("cifar", "c100_1.bin", cifar([99], 2))
put("cifar", "truncated.bin", cifar([1], 1)[:1000])
put("cifar", "bad_label.bin", cifar([10], 1))

# ---- pickles of NumPy arrays (small synthetic dicts; never the MNIST-1D data file)
def pkl(obj, protocol):
    return pickle.dumps(obj, protocol=protocol)


tiny = {"x": np.arange(6, dtype=np.float64).reshape(2, 3), "y": np.array([0, 1], dtype=np.int64),
        "templates": {"x": np.zeros((2, 3)), "t": np.linspace(-1, 1, 3), "y": np.array([0, 1], dtype=np.int64)}}
put("pickle", "tiny_mnist1d_p3.pkl", pkl(tiny, 3))
put("pickle", "tiny_mnist1d_p4.pkl", pkl(tiny, 4))
put("pickle", "kinds_p3.pkl", pkl({"f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
                                   "be": np.array([1.0, 2.5], dtype=">f8"), "u": np.array([1, 255], np.uint8),
                                   "q": np.array([True]), "z": np.zeros((0, 3)), "s": np.array(7.0), "n": 3}, 3))
put("pickle", "truncated_p3.pkl", pkl(tiny, 3)[:150])
put("pickle", "protocol2_codecs.pkl", pkl({"a": np.arange(3, dtype=np.int8)}, 2))

# ---- TOML (the harness's schema: flag, n, x, name, net.layers, net.w, net.sub.kinds)
put("toml", "all_keys.toml", 'flag = true\nn = 3\nx = 1.5e-3\nname = "abc"\n[net]\nlayers = [784, 256, 10]\n'
    'w = [0.1, -2.0, inf]\n[net.sub]\nkinds = ["a", \'b\', """c"""]\n')
put("toml", "dotted.toml", "# comment [[[\nnet.layers = [1]\nnet.sub.kinds = []\nx = -0.0\n")
put("toml", "strings.toml", "name = '''multi\nline ]]] '''\n")
put("toml", "wrong_type.toml", "n = 1.5\n")
put("toml", "unknown.toml", "[nett]\nlayers = [1]\n")
put("toml", "inline.toml", "net = { layers = [1, 2], sub = { kinds = ['x'] } }\n")
put("toml", "deep_array.toml", "n = " + "[" * 80 + "]" * 80 + "\n")
put("toml", "deep_dotted.toml", "a." * 80 + "b = 1\n")


# ---- checkpoints: "EQPROPCK" u32 version u64 header_length header data u32 crc
def checkpoint(meta, arrays, corrupt=False, header_text=None):
    table, data = [], b""
    for name, a in arrays:
        dt = {np.float32: "f32", np.float64: "f64", np.int64: "i64", np.uint8: "u8"}[a.dtype.type]
        table.append({"name": name, "dtype": dt, "shape": list(a.shape), "offset": len(data), "length": a.nbytes})
        data += a.tobytes() + bytes((-a.nbytes) % 8)
    text = header_text or json.dumps({"meta": meta, "arrays": table, "data_length": len(data)})
    text += " " * ((-(20 + len(text))) % 8)
    body = b"EQPROPCK" + struct.pack("<IQ", 1, len(text)) + text.encode() + data
    crc = zlib.crc32(body) ^ (1 if corrupt else 0)
    return body + struct.pack("<I", crc)


cfg = {"n": 2, "net": {"layers": [4, 3]}}
arrs = [("w", np.arange(6, dtype=np.float32).reshape(2, 3)), ("step", np.array([5], np.int64))]
put("checkpoint", "valid.eqck", checkpoint({"config": cfg, "epoch": 1}, arrs))
put("checkpoint", "no_arrays.eqck", checkpoint({"config": {"n": 1}}, []))
put("checkpoint", "bad_crc.eqck", checkpoint({"config": cfg}, arrs, corrupt=True))
put("checkpoint", "huge_shape.eqck", checkpoint({}, [], header_text=json.dumps(
    {"meta": {}, "arrays": [{"name": "a", "dtype": "f64", "shape": [2**31, 2**31], "offset": 0, "length": 0}],
     "data_length": 0})))
put("checkpoint", "deep_config.eqck", checkpoint({}, [], header_text='{"meta": {"config": ' + "[" * 80 + "]" * 80 +
                                                 '}, "arrays": [], "data_length": 0}'))
