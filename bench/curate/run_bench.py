#!/usr/bin/python3
"""bench/curate: images ingested per second by `ackd curate` at 1 and 2 ranks,
beside the bytes per second of `cat` over the same files, measured in the same
run with a warm page cache for both (so the ratio compares decode + checks +
parallel HDF5 writes against pure reading). Medians over --repeat runs.

Last lines: bench=curate ranks=P img_s=X ratio_to_cat=Y

  run_bench.py --ackd build/release/bin/ackd --mpirun mpirun [--files 20000] [--ranks 1 2] [--repeat 3]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd, **kw):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ackd", required=True)
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", default="out/bench_curate")
    a = p.parse_args()

    images = os.path.join(a.workdir, f"geotiffs_{a.files}")
    t = timed([sys.executable, os.path.join(HERE, "make_geotiffs.py"), images, str(a.files)])
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(images) for f in fs if f.endswith(".tif"))
    total_bytes = sum(os.path.getsize(f) for f in paths)
    print(f"# {len(paths)} GeoTIFFs, 13 bands 64x64 uint16, {total_bytes / 1e6:.1f} MB (made in {t:.1f} s)")

    listing = os.path.join(a.workdir, "files.txt")
    with open(listing, "w") as f:
        f.write("\0".join(paths))
    cat = ["sh", "-c", f"xargs -0 cat < {listing} > /dev/null"]
    timed(cat)  # warm the page cache for both sides
    cat_s = statistics.median(timed(cat) for _ in range(a.repeat))
    cat_bps = total_bytes / cat_s
    print(f"# cat: {cat_s:.3f} s, {cat_bps / 1e9:.2f} GB/s")

    out = os.path.join(a.workdir, "curated.h5")
    records = []
    for ranks in a.ranks:
        cmd = [a.mpirun, "-n", str(ranks), a.ackd, "curate", "-curate_ms_dir", images, "-curate_ms_bands",
               "1,2,3,4,5,6,7,8,9,10,11,12,13", "-curate_output", out, "-curate_force", "-quiet"]
        seconds = statistics.median(timed(cmd) for _ in range(a.repeat))
        img_s = len(paths) / seconds
        ratio = img_s * (total_bytes / len(paths)) / cat_bps
        print(f"# ackd curate on {ranks} rank(s): {seconds:.3f} s")
        records.append(f"bench=curate ranks={ranks} img_s={img_s:.0f} ratio_to_cat={ratio:.3f}")
    print("\n".join(records))


if __name__ == "__main__":
    main()
