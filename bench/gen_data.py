#!/usr/bin/env python3
"""Writes the benchmark pickles: gen_data.py OUTDIR [--small-only].

Every file is `<case>.p<protocol>.pkl`, written by CPython's own pickle.dumps, deterministically
(fixed seeds, no clock): rerunning writes the same bytes. Files that already exist with the
expected content hash are kept, so reruns are cheap.

Cases:
  pyperformance bm_pickle's objects (protocols 0, 2 and 5):
    dict        DICT, a 33-key user record (ints, strs, a list, a datetime.date)
    tuple       TUPLE, a 20-int list and an int
    dict_group  DICT_GROUP, 3 copies of DICT with every value replaced by str(random)
    list        LIST, 10 x [range(10) list, range(10) list]
    micro_dict  MICRO_DICT, 100 keys -> dict.fromkeys(range(10))
  large (protocols 2 and 5):
    ints        5M ints of mixed widths (1, 2, 4, 8 bytes and a few beyond 64 bits)
    floats      3M floats
    strs        2M distinct short strs (4 to 16 chars, some non-ASCII)
    nested      400k small nested containers (tuple / list / dict / set mix)
    records     150k records: a list of dicts with shared keys
    bytes       200 x 1 MiB bytes objects (200 MiB)
"""

import datetime
import hashlib
import json
import os
import pickle
import random
import sys

# ---- pyperformance bm_pickle's shapes ----

DICT = {
    "ads_flags": 0,
    "age": 18,
    "birthday": datetime.date(1980, 5, 7),
    "bulletin_count": 0,
    "comment_count": 0,
    "country": "BR",
    "encrypted_id": "G9urXXAJwjE",
    "favorite_count": 9,
    "first_name": "",
    "flags": 412317970704,
    "friend_count": 0,
    "gender": "m",
    "gender_for_display": "Male",
    "id": 302935349,
    "is_custom_profile_icon": 0,
    "last_name": "",
    "locale_preference": "pt_BR",
    "member": 0,
    "tags": ["a", "b", "c", "d", "e", "f", "g"],
    "profile_foo_id": 827119638,
    "secure_encrypted_id": "Z_xxx2dYx3t4YAdnmfgyKw",
    "session_number": 2,
    "signup_id": "201-19225-223",
    "status": "A",
    "theme": 1,
    "time_created": 1225237014,
    "time_updated": 1233134493,
    "unread_message_count": 0,
    "user_group": "0",
    "username": "collinwinter",
    "play_count": 9,
    "view_count": 7,
    "zip": "",
}

TUPLE = (
    [
        265867233, 265868503, 265252341, 265243910, 265879514, 266219766, 266021701,
        265843726, 265592821, 265246784, 265853180, 45526486, 265463699, 265848143,
        265863062, 265392591, 265877490, 265823665, 265828884, 265753032,
    ],
    60,
)


def _mutate(orig, rng):
    # As the benchmark does: every (str) key gets str(random * maxsize) as its value.
    new = dict(orig)
    for key in new:
        val = rng.random() * sys.maxsize
        if isinstance(key, (int, bytes, str)):
            new[key] = type(key)(val)
    return new


def small_cases():
    rng = random.Random(5)
    dict_group = [_mutate(DICT, rng) for _ in range(3)]
    lst = [[list(range(10)), list(range(10))] for _ in range(10)]
    micro = dict((k, dict.fromkeys(range(10))) for k in range(100))
    return {
        "dict": DICT,
        "tuple": TUPLE,
        "dict_group": dict_group,
        "list": lst,
        "micro_dict": micro,
    }


# ---- large cases ----


def gen_ints(n=5_000_000):
    rng = random.Random(1)
    out = []
    append = out.append
    for i in range(n):
        r = i % 16
        if r < 5:
            append(rng.randrange(256))  # BININT1
        elif r < 8:
            append(rng.randrange(256, 65536))  # BININT2
        elif r < 13:
            append(rng.randrange(-(2**31), 2**31))  # BININT
        elif r < 15:
            append(rng.randrange(-(2**63), 2**63))  # LONG1, 8 bytes
        else:
            append(rng.randrange(2**64, 2**80) if i % 1024 == 15 else rng.randrange(2**40))
    return out


def gen_floats(n=3_000_000):
    rng = random.Random(2)
    out = []
    for i in range(n):
        if i % 10 == 0:
            out.append(float(i))
        else:
            out.append(rng.uniform(-1e6, 1e6))
    return out


_ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_NON_ASCII = "éüßøñçåäö€λжЯ中文"


def gen_strs(n=2_000_000):
    rng = random.Random(3)
    out = []
    for i in range(n):
        length = rng.randrange(4, 17)
        s = "".join(rng.choice(_ALPHA) for _ in range(length - 4)) + format(i % 65536, "04x")
        if i % 20 == 0:
            s = s[:-1] + rng.choice(_NON_ASCII)
        out.append(s)
    return out


def gen_nested(n=400_000):
    rng = random.Random(4)
    out = []
    for i in range(n):
        k = i % 5
        if k == 0:
            out.append((i, rng.random(), None))
        elif k == 1:
            out.append([i, [i + 1, i + 2], True])
        elif k == 2:
            out.append({"a": i, "b": (i, "x")})
        elif k == 3:
            out.append([(i,), {"k": [i]}, False])
        else:
            out.append({i % 97, i % 89, "s"})
    return out


def gen_records(n=150_000):
    rng = random.Random(6)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    out = []
    for i in range(n):
        out.append(
            {
                "id": i,
                "name": "user%d" % i,
                "email": "user%d@example.com" % i,
                "age": rng.randrange(18, 90),
                "score": rng.random() * 100.0,
                "active": i % 3 != 0,
                "tags": [rng.choice(words) for _ in range(rng.randrange(0, 4))],
                "balance": rng.randrange(-(10**6), 10**9),
                "parent": None if i % 7 else i // 7,
                "location": (rng.uniform(-90, 90), rng.uniform(-180, 180)),
            }
        )
    return out


def gen_bytes(n=200, size=1 << 20):
    rng = random.Random(7)
    return [rng.randbytes(size) for _ in range(n)]


LARGE = {
    "ints": gen_ints,
    "floats": gen_floats,
    "strs": gen_strs,
    "nested": gen_nested,
    "records": gen_records,
    "bytes": gen_bytes,
}

SMALL_PROTOCOLS = (0, 2, 5)
LARGE_PROTOCOLS = (2, 5)
# Bump when a generator changes, so stale files are rewritten.
VERSION = 1


def write(outdir, name, obj, protocols, manifest):
    for p in protocols:
        path = os.path.join(outdir, "%s.p%d.pkl" % (name, p))
        data = pickle.dumps(obj, p)
        digest = hashlib.sha256(data).hexdigest()
        entry = {"file": os.path.basename(path), "case": name, "protocol": p, "size": len(data), "sha256": digest}
        manifest.append(entry)
        old = None
        if os.path.exists(path) and os.path.getsize(path) == len(data):
            with open(path, "rb") as f:
                old = hashlib.sha256(f.read()).hexdigest()
        if old != digest:
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        print("  %-28s %12d bytes" % (os.path.basename(path), len(data)), flush=True)


def main(argv):
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Set iteration order of strs depends on the hash seed: fix it so the bytes are stable.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + argv)
    if len(argv) < 2:
        print("usage: gen_data.py OUTDIR [--small-only]", file=sys.stderr)
        return 2
    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    manifest = []
    for name, obj in small_cases().items():
        write(outdir, name, obj, SMALL_PROTOCOLS, manifest)
    if "--small-only" not in argv:
        for name, gen in LARGE.items():
            obj = gen()
            write(outdir, name, obj, LARGE_PROTOCOLS, manifest)
            del obj
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({"version": VERSION, "python": sys.version.split()[0], "files": manifest}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
