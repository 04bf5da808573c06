#!/usr/bin/python3
"""No cycles between the files of a module, nor between modules: file A depends on file B when A's
object file uses a symbol B's defines (nm: U in A, T/D/B/R in B), module M on module N when one of
M's files depends on one of N's. A cycle means no part of it can be read, tested or replaced
without the others; the dependencies must point one way (docs/DESIGN.md, "Modules").

  check_file_cycles.py OBJECT_DIR     (the library's objects: .../CMakeFiles/ackd_lib.dir)"""
import collections
import glob
import os
import subprocess
import sys


def symbols(paths):
    """{path: (defined, used)} from one nm over every object file (-A: each line names its file)."""
    table = {p: (set(), set()) for p in paths}
    out = subprocess.run(["nm", "-A", *paths], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        path, _, rest = line.partition(":")
        parts = rest.split()
        if path not in table:
            continue
        if len(parts) == 3 and parts[1] in "TDBRCV":
            table[path][0].add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            table[path][1].add(parts[1])
    return table


def strongly_connected(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1]
    objects = glob.glob(os.path.join(root, "**", "*.c.o"), recursive=True)
    if len(objects) < 20:
        print(f"check_file_cycles: only {len(objects)} objects under {root}; build the library first")
        return 1
    defined, used = {}, {}
    for o, (d, u) in symbols(objects).items():
        name = os.path.relpath(o, root)[:-2]
        defined[name], used[name] = d, u
    owner = {s: f for f, ds in defined.items() for s in ds}
    edges, modules_of = collections.defaultdict(set), collections.defaultdict(set)
    for f, us in used.items():
        for s in us:
            g = owner.get(s)
            if not g or g == f:
                continue
            if os.path.dirname(g) == os.path.dirname(f):
                edges[f].add(g)  # within a module: file to file
            else:
                modules_of[os.path.dirname(f)].add(os.path.dirname(g))
    module_cycles = strongly_connected({os.path.dirname(f) for f in defined}, modules_of)
    for c in module_cycles:
        print(f"MODULE CYCLE: {' '.join(c)}")
    cycles = strongly_connected(defined, edges)
    for c in cycles:
        why = []
        for f in c:
            for g in sorted(edges[f] & set(c)):
                why.append(f"{f} -> {g} ({', '.join(sorted(s for s in used[f] if owner.get(s) == g)[:3])})")
        print(f"CYCLE: {' '.join(c)}\n  " + "\n  ".join(why))
    modules = sorted({os.path.dirname(f) for f in defined})
    print(f"check_file_cycles: {len(objects)} files in {len(modules)} modules, {len(cycles)} file cycle(s), "
          f"{len(module_cycles)} module cycle(s)")
    for m in modules:
        print(f"  {m} -> {' '.join(sorted(modules_of[m])) or '(nothing)'}")
    return 1 if cycles or module_cycles else 0


if __name__ == "__main__":
    sys.exit(main())
