"""Random short opcode sequences and CPython's verdict on each (the oracle for
pikl-cli/tests/random_ops.rs).

    python3 gen_random_ops.py SEED COUNT [containers]

`containers` draws from a smaller alphabet of container opcodes and hashable or unhashable
values (lists, dicts, sets, bytearrays, tuples of them, a class), so that dict keys, set items
and bytearray APPENDs come up often. No instances: pikl lets any APPEND or SETITEM onto one
through, since it cannot know the class.

Prints one line per pickle: its hex, then `OK <repr>` when `pickle.loads` returns a value made
only of None, bools, ints, floats, strs, bytes, lists, tuples and dicts; `OK *` when it returns
anything else (sets, classes: pikl prints those differently by design); `ERR <exception type>`
when it raises; `SKIP` when it fails only for want of a module or attribute, or with a TypeError
from calling a builtin (pikl keeps globals and calls as data: it never imports or calls; in
`containers` mode, which calls nothing, every TypeError is an ERR).
"""
import pickle
import random
import sys

OPS = [
    b"N", b"\x88", b"\x89", b"K\x01", b"K\x05", b"J\xff\xff\xff\xff", b"M\x00\x01",
    b"G?\xf0\x00\x00\x00\x00\x00\x00", b"]", b"}", b")", b"\x8f", b"(", b"e", b"u", b"\x90",
    b"\x91", b"a", b"s", b"t", b"l", b"d", b"\x85", b"\x86", b"\x87", b"\x94", b"h\x00", b"h\x01",
    b"q\x00", b"q\x02", b"0", b"1", b"2", b"\x8c\x01a", b"\x8c\x01b", b"X\x02\x00\x00\x00xy",
    b"C\x01z", b"B\x01\x00\x00\x00w", b"\x8a\x01\xff", b"\x8a\x00", b"\x8a\x09" + b"\x00" * 8 + b"\x01",
    b"c__builtin__\nset\n", b"cbuiltins\nfrozenset\n", b"R", b"b", b"I1\n", b"I01\n", b"I010\n",
    b"L5L\n", b"F1.5\n", b"Vab\n", b"S'q'\n", b"p3\n", b"g3\n", b"\x81", b"\x92", b"\x96",
    b"\x97", b"\x98", b"\x93", b"\x8c\x08builtins", b"\x8c\x03set", b"o", b"io\nx\n",
    b"T\x01\x00\x00\x00q", b"U\x02ab", b"\x8b\x02\x00\x00\x00\x01\x80",
    b"\x96\x01\x00\x00\x00\x00\x00\x00\x00Z", b"\x80\x02", b"Fnan\n", b"F-inf\n", b"L-12L\n",
    b"I-0\n", b"I 5\n", b"aa", b"Vx\\u1234\n", b"cbuiltins\nobject\n",
]
# `containers`: values (one push each), opcodes on the stack's top, and MARK batches.
VALUES = [
    b"}", b"]", b")", b"\x8f", b"K\x01", b"M\x00\x01", b"\x88", b"N", b"\x8c\x01a", b"C\x01z",
    b"\x96\x01\x00\x00\x00\x00\x00\x00\x00Z", b"cbuiltins\nobject\n", b"h\x00",
]
TOP_OPS = [b"\x85", b"\x86", b"\x87", b"s", b"a", b"\x94", b"0", b"\x98"]
CLOSERS = [b"t", b"l", b"d", b"u", b"e", b"\x90", b"\x91"]


def container_body(rng):
    parts = []
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.5:
            parts.append(rng.choice(VALUES))
        elif r < 0.8:
            parts.append(rng.choice(TOP_OPS))
        else:
            items = b"".join(rng.choice(VALUES) for _ in range(rng.randint(0, 4)))
            parts.append(b"(" + items + rng.choice(CLOSERS))
    return b"".join(parts)


SIMPLE = (type(None), bool, int, float, str, bytes)


def simple(v, depth=0):
    if depth > 50:
        return False
    if isinstance(v, SIMPLE):
        return True
    if type(v) in (list, tuple):
        return all(simple(x, depth + 1) for x in v)
    if type(v) is dict:
        return all(simple(k, depth + 1) and simple(x, depth + 1) for k, x in v.items())
    return False


def verdict(data, calls=True):
    try:
        v = pickle.loads(data)
    except ImportError:
        return "SKIP"
    except AttributeError as e:
        # find_class's "Can't get attribute 'x' on <module ...>": a missing global.
        return "SKIP" if str(e).startswith("Can't get attribute") else "ERR AttributeError"
    except TypeError as e:
        # Calling a builtin with the wrong arguments (REDUCE, NEWOBJ, OBJ): pikl records
        # calls as data and cannot know a callable's signature.
        return "SKIP" if calls and b"builtin" in data else "ERR " + type(e).__name__
    except Exception as e:  # noqa: BLE001 - every exception is a verdict
        return "ERR " + type(e).__name__
    try:
        return "OK " + repr(v) if simple(v) else "OK *"
    except RecursionError:
        return "OK *"


def main():
    rng = random.Random(int(sys.argv[1]))
    containers = sys.argv[3:] == ["containers"]
    for _ in range(int(sys.argv[2])):
        if containers:
            body = container_body(rng)
        else:
            body = b"".join(rng.choice(OPS) for _ in range(rng.randint(1, 14)))
        data = rng.choice([b"\x80\x04", b"\x80\x02", b""]) + body + b"."
        # `containers` calls nothing: its TypeErrors are the data's.
        print(data.hex(), verdict(data, calls=not containers))


if __name__ == "__main__":
    main()
