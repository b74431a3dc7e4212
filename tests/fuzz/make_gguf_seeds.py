#!/usr/bin/env python3
"""make_gguf_seeds.py: writes the small GGUF seed files of corpus/gguf/.

  python3 tests/fuzz/make_gguf_seeds.py tests/fuzz/corpus/gguf

The shared fixture is a seed too (run.sh adds it), but at 2 MB it is slow
to mutate; these files are a few hundred bytes each and between them hold
every value type, nested arrays, both versions, an alignment key, tensors
of several ggml types and shapes, and the smallest file there is. They are
committed; rerun this only to change them.
"""
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
          F32: "<f", BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id: (elements per block, bytes per block)
BLOCKS = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}


def string(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def value(kind, v):
    if kind == STRING:
        return string(v)
    if kind == ARRAY:
        elem_kind, items = v
        return (struct.pack("<IQ", elem_kind, len(items)) +
                b"".join(value(elem_kind, item) for item in items))
    return struct.pack(SCALAR[kind], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, ggml_type, dims)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, kind, v in kvs:
        out += string(key) + struct.pack("<I", kind) + value(kind, v)
    offset, sizes = 0, []
    for name, ggml_type, dims in tensors:
        elems, block_bytes = BLOCKS[ggml_type]
        rows = 1
        for d in dims[1:]:
            rows *= d
        size = rows * dims[0] // elems * block_bytes
        out += string(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
        sizes.append(size)
        offset += (size + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for i, size in enumerate(sizes):
        # data: a recognisable, non-zero pattern, padded to the alignment
        out += bytes((i * 31 + j * 7 + 1) & 0xFF for j in range(size))
        out += b"\0" * (-size % alignment)
    return out


def seeds():
    every_type = [
        ("general.architecture", STRING, "llama"),
        ("t.u8", U8, 200), ("t.i8", I8, -100), ("t.u16", U16, 60000),
        ("t.i16", I16, -30000), ("t.u32", U32, 4000000000), ("t.i32", I32, -2000000000),
        ("t.f32", F32, 1.5), ("t.bool", BOOL, 1), ("t.u64", U64, 2**63 + 5),
        ("t.i64", I64, -2**62), ("t.f64", F64, -2.25), ("t.empty", STRING, ""),
    ]
    arrays = [
        ("t.ints", ARRAY, (I32, [3, -1, 4, -1, 5, -9, 2, 6, 5, 3])),
        ("t.strings", ARRAY, (STRING, ["a", "", "token", "\n\"x\"", "\xe2\x82\xac"])),
        ("t.nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["deep"]), (ARRAY, [(F64, [0.5])])])),
        ("t.no_elements", ARRAY, (U64, [])),
    ]
    tensors = [("w.q4k", 12, [256, 2]), ("w.q6k", 14, [256, 1]), ("norm", 0, [7]),
               ("w.f16", 1, [3, 2, 2]), ("w.q8", 8, [32, 1, 1, 2]), ("w.bf16", 30, [5])]
    yield "empty-v3.gguf", gguf([], [])
    yield "empty-v2.gguf", gguf([], [], version=2)
    yield "every-type.gguf", gguf(every_type, [])
    yield "arrays.gguf", gguf(arrays, [])
    yield "tensors.gguf", gguf([("general.architecture", STRING, "llama")], tensors)
    yield "aligned-64.gguf", gguf([("general.alignment", U32, 64)], tensors[:3], alignment=64)
    yield "all.gguf", gguf(every_type + arrays, tensors, version=2)
    # More names than the reader's first hash table holds (it grows at 33).
    many_kvs = [(f"k.{i}", U8, i) for i in range(40)]
    many_tensors = [(f"t.{i}", 0, [1]) for i in range(40)]
    yield "many-names.gguf", gguf(many_kvs, many_tensors)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                                "corpus", "gguf")
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
