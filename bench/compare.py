#!/usr/bin/env python3
"""pikl vs CPython vs serde-pickle on the files of bench/gen_data.py; prints Markdown tables.

    compare.py --data target/bench-data --bench-once target/release/examples/bench_once \
               [--bench-once-mimalloc target/release/examples/bench_once_mimalloc] \
               --pikl target/release/pikl [--json OUT.json] [--criterion target/criterion] [--quick]

In-process timings are CPU time of the process (user + system: time.process_time here,
CLOCK_PROCESS_CPUTIME_ID in bench_once), so other jobs sharing the cores do not inflate them. Each
is the best of N repeats (default 15 for the small files, each repeat looping until it takes
>= 0.05 s; 3 repeats of one call for the large files). Every file is measured in two passes,
the second after the whole-process runs, and each cell keeps the better of the two: this shared
machine drifts over minutes (dict.p5 through pikl read 1.70 us at the start of one run and
1.37-1.45 us in the same binary minutes later; records.p2 80.0 ms, then 51.9 ms), and one
disturbed stretch would otherwise decide a whole row. Both passes measure CPython and pikl
alike.
  CPython  pickle.loads(data) / pickle.dumps(obj, P), in this interpreter (C accelerator
           `_pickle`), timeit's default of the cyclic GC off while timing
  pikl     pikl::loads(&data) (strs and bytes borrow from the input) / pikl::dumps(graph, root, P),
           and pikl::load(&data[..]) through the BufRead path (everything owned); with the
           system allocator (bench_once) and with mimalloc (bench_once_mimalloc, the allocator
           the pikl command ships with, run with MIMALLOC_PURGE_DELAY=-1)
  serde    serde_pickle::value_from_slice / value_to_vec (which always writes protocol 3)
  memcpy   data.to_vec(): copying the input once into a fresh allocation
Whole process: `pikl convert --protocol 5 F -o /dev/null` and the same in python3, each under
/usr/bin/time -v for peak RSS and CPU time (user + system); wall time measured around the
process; best of 3 of each.
"""

import argparse
import gc
import json
import os
import pickle
import re
import subprocess
import sys
import time
import timeit

SMALL = ["dict", "tuple", "dict_group", "list", "micro_dict"]
LARGE = ["ints", "floats", "strs", "nested", "records", "bytes"]
SMALL_PROTOCOLS = [0, 2, 5]
LARGE_PROTOCOLS = [2, 5]


def files(data_dir, cases=None):
    out = []
    for name in SMALL:
        for p in SMALL_PROTOCOLS:
            out.append((name, p, False))
    for name in LARGE:
        for p in LARGE_PROTOCOLS:
            out.append((name, p, True))
    if cases:
        out = [f for f in out if f[0] in cases]
    result = []
    for name, p, large in out:
        path = os.path.join(data_dir, "%s.p%d.pkl" % (name, p))
        if not os.path.exists(path):
            sys.exit("missing %s: run `python3 bench/gen_data.py %s` first" % (path, data_dir))
        result.append((name, p, large, path))
    return result


def py_time(fn, repeat, min_time):
    t = timeit.Timer(fn, timer=time.process_time)
    loops = 1
    i = 0
    first = t.timeit(loops)
    while first < min_time:
        i += 1
        loops = (1, 2, 5)[i % 3] * 10 ** (i // 3)
        first = t.timeit(loops)
    per = [first / loops] + [t.timeit(loops) / loops for _ in range(repeat - 1)]
    per.sort()
    return {"best_s": per[0], "median_s": per[len(per) // 2], "loops": loops}


# mimalloc returns freed memory to the kernel after a delay (purging); in a loop of loads each
# purged page comes back as a page fault (records.p5: 113 ms a load with purging, 54 ms
# without). A service loading pickles over and over would turn it off the same way.
MIMALLOC_ENV = {"MIMALLOC_PURGE_DELAY": "-1"}


def rust_time(bench_once, impl, op, path, repeat, min_time, env=None):
    cmd = [bench_once, impl, op, path, "--repeat", str(repeat), "--min-time", str(min_time)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    try:
        res = json.loads(line)
    except ValueError:
        res = {"error": (proc.stderr.strip() or "no output").splitlines()[-1]}
    return res


def time_v(cmd):
    """Runs cmd under /usr/bin/time -v: (wall seconds, peak RSS bytes, exit code, CPU seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = int(m.group(1)) * 1024 if m else None
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr))
    if proc.returncode != 0:
        sys.stderr.write("command failed: %s\n%s\n" % (" ".join(cmd), proc.stderr.strip().splitlines()[0]))
    return wall, rss, proc.returncode, cpu


def fmt_t(s):
    if s is None:
        return "n/a"
    if s < 1e-6:
        return "%.0f ns" % (s * 1e9)
    if s < 1e-3:
        return "%.3g µs" % (s * 1e6)
    if s < 1:
        return "%.3g ms" % (s * 1e3)
    return "%.3g s" % s


def fmt_size(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


def ratio(base, other):
    """How many times faster `other` is than `base` (base / other)."""
    if base is None or other is None or other == 0:
        return "n/a"
    r = base / other
    return ("**%.2f×**" % r) if r >= 3 else ("%.2f×" % r)


def best(res):
    return None if res is None or "error" in res else res["best_s"]


def run_inprocess(args, flist):
    rows = []
    for name, p, large, path in flist:
        repeat, min_time = (3, 0.0) if large else (args.repeat, args.min_time)
        if args.quick:
            repeat, min_time = (2, 0.0) if large else (3, 0.05)
        with open(path, "rb") as f:
            data = f.read()
        row = {"case": name, "protocol": p, "size": len(data), "file": os.path.basename(path)}
        obj = pickle.loads(data)
        row["cpython_loads"] = py_time(lambda: pickle.loads(data), repeat, min_time)
        row["cpython_dumps"] = py_time(lambda: pickle.dumps(obj, p), repeat, min_time)
        del obj
        gc.collect()
        row["pikl_loads"] = rust_time(args.bench_once, "pikl", "loads", path, repeat, min_time)
        row["pikl_loads_reader"] = rust_time(args.bench_once, "pikl", "loads_reader", path, repeat, min_time)
        row["pikl_dumps"] = rust_time(args.bench_once, "pikl", "dumps", path, repeat, min_time)
        if args.bench_once_mimalloc:
            for op in ("loads", "dumps"):
                row["pikl_mi_" + op] = rust_time(
                    args.bench_once_mimalloc, "pikl", op, path, repeat, min_time, MIMALLOC_ENV
                )
        row["serde_loads"] = rust_time(args.bench_once, "serde", "loads", path, repeat, min_time)
        if "error" in row["serde_loads"]:
            row["serde_dumps"] = {"error": "not loaded"}
        else:
            row["serde_dumps"] = rust_time(args.bench_once, "serde", "dumps", path, repeat, min_time)
        if name == "bytes":
            row["memcpy"] = rust_time(args.bench_once, "memcpy", "loads", path, repeat, min_time)
        rows.append(row)
        sys.stderr.write(
            "%-18s loads cpy %-9s pikl %-9s | dumps cpy %-9s pikl %-9s\n"
            % (
                row["file"],
                fmt_t(best(row["cpython_loads"])),
                fmt_t(best(row["pikl_loads"])),
                fmt_t(best(row["cpython_dumps"])),
                fmt_t(best(row["pikl_dumps"])),
            )
        )
    return rows


def merge_best(rows, again):
    """Keeps, in each of `rows`, the better of its measurement and `again`'s of the same file."""
    by_file = {r["file"]: r for r in again}
    for row in rows:
        other = by_file.get(row["file"])
        if other is None:
            continue
        for key, res in other.items():
            if isinstance(res, dict) and "best_s" in res:
                mine = row.get(key)
                if best(mine) is None or res["best_s"] < mine["best_s"]:
                    row[key] = res


def run_process(args, flist):
    rows = []
    runs = 2 if args.quick else 3
    py = [sys.executable, "-c", 'import pickle,sys; pickle.dump(pickle.load(open(sys.argv[1],"rb")), open("/dev/null","wb"), 5)']
    for name, p, large, path in flist:
        if not large:
            continue
        row = {"case": name, "protocol": p, "size": os.path.getsize(path), "file": os.path.basename(path)}
        for key, cmd in (("pikl", [args.pikl, "convert", "--protocol", "5", path, "-o", "/dev/null"]), ("cpython", py + [path])):
            results = [time_v(cmd) for _ in range(runs)]
            ok = [r for r in results if r[2] == 0]
            if not ok:
                row[key] = {"error": "exit %d" % results[0][2]}
                continue
            row[key] = {
                "wall_s": min(r[0] for r in ok),
                "cpu_s": min(r[3] for r in ok),
                "rss": min(r[1] for r in ok if r[1] is not None),
            }
        rows.append(row)
        sys.stderr.write(
            "%-18s convert pikl %-9s %s | python %-9s %s\n"
            % (
                row["file"],
                fmt_t(row["pikl"].get("wall_s")),
                fmt_size(row["pikl"].get("rss") or 0),
                fmt_t(row["cpython"].get("wall_s")),
                fmt_size(row["cpython"].get("rss") or 0),
            )
        )
    return rows


def read_criterion(root):
    """{(group, function, param): median seconds} from criterion's output directory."""
    out = {}
    if not root or not os.path.isdir(root):
        return out
    for dirpath, _dirs, fnames in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in fnames:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            meta = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        key = (meta.get("group_id"), meta.get("function_id"), meta.get("value_str"))
        out[key] = est["median"]["point_estimate"] / 1e9
    return out


def markdown(inproc, proc, crit):
    lines = []
    lines.append("### loads and dumps, in process (best CPU time per call)")
    lines.append("")
    lines.append(
        "Speedup columns are CPython's time over pikl's (or serde-pickle's): above 1 is faster than "
        "CPython, **bold** is at least 3×. *pikl* is `pikl::loads` on a slice, which borrows strs "
        "and bytes; *pikl reader* is `pikl::load` through the `BufRead` path (owning every str and "
        "bytes). Both use the system allocator (glibc malloc); *pikl + mimalloc* is the same "
        "`pikl::loads` / `pikl::dumps` in a binary whose global allocator is mimalloc, as the "
        "`pikl` command's is, run with `MIMALLOC_PURGE_DELAY=-1` (freed memory is kept for reuse "
        "rather than returned to the kernel between iterations). CPython allocates its objects "
        "with its own pymalloc. *pikl vs serde* is serde-pickle's time over pikl's (both system "
        "allocator): above 1, pikl is faster."
    )
    lines.append("")
    lines.append("#### loads")
    lines.append("")
    lines.append(
        "| case | size | CPython | pikl | pikl × | pikl + mimalloc | mimalloc × | pikl reader | reader × "
        "| serde-pickle | serde × | pikl vs serde |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for r in inproc:
        cl = best(r["cpython_loads"])
        pl, pr, pm = best(r["pikl_loads"]), best(r["pikl_loads_reader"]), best(r.get("pikl_mi_loads"))
        sl = best(r["serde_loads"])
        for key in ("pikl_loads", "pikl_loads_reader", "pikl_dumps", "pikl_mi_loads", "pikl_mi_dumps"):
            if key in r and "error" in r[key]:
                notes.append("%s %s: %s" % (r["file"], key, r[key]["error"]))
        if "error" in r["serde_loads"]:
            notes.append("serde-pickle cannot load %s: `%s`" % (r["file"], r["serde_loads"]["error"]))
        elif "error" in r["serde_dumps"]:
            notes.append("serde-pickle cannot dump %s: `%s`" % (r["file"], r["serde_dumps"]["error"]))
        lines.append(
            "| %s p%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (
                r["case"], r["protocol"], fmt_size(r["size"]),
                fmt_t(cl), fmt_t(pl), ratio(cl, pl), fmt_t(pm), ratio(cl, pm),
                fmt_t(pr), ratio(cl, pr), fmt_t(sl), ratio(cl, sl), ratio(sl, pl),
            )
        )
    lines.append("")
    lines.append("#### dumps (at the file's protocol; serde-pickle always writes protocol 3)")
    lines.append("")
    lines.append("| case | CPython | pikl | pikl × | pikl + mimalloc | mimalloc × | serde-pickle | serde × | pikl vs serde |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in inproc:
        cd, pd, pm, sd = best(r["cpython_dumps"]), best(r["pikl_dumps"]), best(r.get("pikl_mi_dumps")), best(r["serde_dumps"])
        lines.append(
            "| %s p%d | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (
                r["case"], r["protocol"], fmt_t(cd), fmt_t(pd), ratio(cd, pd), fmt_t(pm), ratio(cd, pm),
                fmt_t(sd), ratio(cd, sd), ratio(sd, pd),
            )
        )
    for r in inproc:
        if "memcpy" in r and "error" not in r["memcpy"]:
            m = r["memcpy"]["best_s"]
            lines.append("")
            lines.append(
                "memcpy baseline for %s: copying its %s into a fresh buffer takes %s (%.2f GB/s); "
                "pikl reader loads it in %s, CPython in %s, and dumps take %s (pikl) / %s (CPython)."
                % (
                    r["file"], fmt_size(r["size"]), fmt_t(m), r["size"] / m / 1e9,
                    fmt_t(best(r["pikl_loads_reader"])), fmt_t(best(r["cpython_loads"])),
                    fmt_t(best(r["pikl_dumps"])), fmt_t(best(r["cpython_dumps"])),
                )
            )
    if notes:
        lines.append("")
        lines.append("Not measured:")
        lines.append("")
        for n in sorted(set(notes)):
            lines.append("- " + n)
    if proc:
        lines.append("")
        lines.append("### Whole process: convert to protocol 5 (best of 3; peak RSS)")
        lines.append("")
        lines.append(
            "`pikl convert --protocol 5 F -o /dev/null` (reads through `BufRead`) against "
            "`python3 -c 'import pickle,sys; pickle.dump(pickle.load(open(F,\"rb\")), open(\"/dev/null\",\"wb\"), 5)'`; "
            "both include process start-up (python3's is about 15 ms). *cpu* is user + system time."
        )
        lines.append("")
        lines.append(
            "| file | size | pikl wall | python3 wall | pikl × | pikl cpu | python3 cpu | pikl × "
            "| pikl peak RSS | ÷ size | python3 peak RSS | ÷ size |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in proc:
            pk, cp = r["pikl"], r["cpython"]
            lines.append(
                "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                % (
                    r["file"], fmt_size(r["size"]),
                    fmt_t(pk.get("wall_s")), fmt_t(cp.get("wall_s")), ratio(cp.get("wall_s"), pk.get("wall_s")),
                    fmt_t(pk.get("cpu_s")), fmt_t(cp.get("cpu_s")), ratio(cp.get("cpu_s"), pk.get("cpu_s")),
                    fmt_size(pk.get("rss") or 0), "%.2f" % ((pk.get("rss") or 0) / r["size"]),
                    fmt_size(cp.get("rss") or 0), "%.2f" % ((cp.get("rss") or 0) / r["size"]),
                )
            )
    if crit:
        lines.append("")
        lines.append("### criterion (`cargo bench -p pikl --bench loads_dumps`, median CPU time per call)")
        lines.append("")
        lines.append("| case | loads pikl | loads serde-pickle | dumps pikl | dumps serde-pickle |")
        lines.append("|---|---:|---:|---:|---:|")
        for r in inproc:
            key = "p%d" % r["protocol"]
            cells = []
            for op in ("loads", "dumps"):
                for lib in ("pikl", "serde_pickle"):
                    cells.append(fmt_t(crit.get(("%s/%s" % (op, r["case"]), lib, key))))
            lines.append("| %s %s | %s |" % (r["case"], key, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="target/bench-data")
    ap.add_argument("--bench-once", default="target/release/examples/bench_once")
    ap.add_argument("--bench-once-mimalloc", help="bench_once built with mimalloc, for the mimalloc columns")
    ap.add_argument("--pikl", default="target/release/pikl")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--md", help="write the Markdown tables here (default: stdout)")
    ap.add_argument("--criterion", help="criterion's output directory (target/criterion) for a table of its medians")
    ap.add_argument("--repeat", type=int, default=15, help="repeats for the small files (large: 3)")
    ap.add_argument("--min-time", type=float, default=0.05, help="CPU seconds per repeat for the small files")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    ap.add_argument("--no-process", action="store_true", help="skip the whole-process measurements")
    ap.add_argument("--case", action="append", help="only these cases (repeatable)")
    args = ap.parse_args()

    flist = files(args.data, args.case)
    inproc = run_inprocess(args, flist)
    proc = [] if args.no_process else run_process(args, flist)
    if not args.quick:
        sys.stderr.write("-- every file again (each cell keeps the better of the two passes)\n")
        merge_best(inproc, run_inprocess(args, flist))
    crit = read_criterion(args.criterion)
    md = markdown(inproc, proc, crit)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"inprocess": inproc, "process": proc}, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    else:
        sys.stdout.write(md)


if __name__ == "__main__":
    main()
