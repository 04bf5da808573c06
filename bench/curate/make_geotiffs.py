#!/usr/bin/python3
"""Writes N uncompressed 13-band uint16 64x64 TIFFs in EuroSAT's folder layout
(10 class folders), fast enough for tens of thousands of files: the baseline
TIFF is assembled directly rather than through one gdal_translate per file.

  make_geotiffs.py OUT N [--size 64] [--bands 13]
"""
import argparse
import os
import struct

import numpy as np

SHORT, LONG = 3, 4


def tiff_bytes(img):
    """img: (bands, rows, cols) uint16 -> a little-endian, pixel-interleaved baseline TIFF."""
    bands, rows, cols = img.shape
    pixels = np.ascontiguousarray(img.transpose(1, 2, 0)).astype("<u2").tobytes()
    entries = [(256, SHORT, 1, cols), (257, SHORT, 1, rows), (258, SHORT, bands, None), (259, SHORT, 1, 1),
               (262, SHORT, 1, 1), (273, LONG, 1, None), (277, SHORT, 1, bands), (278, SHORT, 1, rows),
               (279, LONG, 1, len(pixels)), (284, SHORT, 1, 1), (338, SHORT, bands - 1, None),
               (339, SHORT, bands, None)]
    arrays = {258: [16] * bands, 338: [0] * (bands - 1), 339: [1] * bands}
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    extra_offset = ifd_offset + ifd_size
    extra = b""
    where = {}
    for tag, values in arrays.items():
        if len(values) > 2:
            where[tag] = extra_offset + len(extra)
            extra += struct.pack(f"<{len(values)}H", *values)
    data_offset = extra_offset + len(extra)
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_offset
        if tag in arrays:
            values = arrays[tag]
            if len(values) > 2:
                ifd += struct.pack("<HHII", tag, typ, count, where[tag])
            else:
                ifd += struct.pack("<HHI", tag, typ, count) + struct.pack("<2H", *(values + [0] * (2 - len(values))))
            continue
        packed = struct.pack("<H2x", value) if typ == SHORT else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + extra + pixels


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out")
    p.add_argument("n", type=int)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--bands", type=int, default=13)
    a = p.parse_args()
    stamp = os.path.join(a.out, f".complete_{a.n}_{a.size}_{a.bands}")
    if os.path.exists(stamp):
        return
    rng = np.random.default_rng(1)
    for k in range(10):
        os.makedirs(os.path.join(a.out, f"class_{k}"), exist_ok=True)
    for i in range(a.n):
        img = rng.integers(0, 10000, size=(a.bands, a.size, a.size), dtype=np.uint16)
        with open(os.path.join(a.out, f"class_{i % 10}", f"img_{i:06d}.tif"), "wb") as f:
            f.write(tiff_bytes(img))
    open(stamp, "w").close()


if __name__ == "__main__":
    main()
