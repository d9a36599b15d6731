"""Random Python values pickled by CPython at every protocol (the oracle for
pikl-cli/tests/random_values.rs).

    python3 gen_random_values.py SEED COUNT [objects]

Values are nests of None, bools, ints (every width, big ones too), floats (specials too),
strs (non-ASCII, astral, lone surrogates), bytes, bytearrays, tuples, lists, dicts, sets and
frozensets, with shared references and cycles through lists and dicts; with `objects`, also
instances (plain, dataclass, slotted, namedtuple), classes and functions, and values of
well-known library types (datetime, Decimal, Fraction, complex, OrderedDict, deque, Counter,
range). Prints one line per
value and protocol: `PROTOCOL PICKLE_HEX REPICKLE_HEX REPR_HEX` (the repickle: what CPython
writes for the value it loads from the pickle), the repr only for values without sets
(whose order pikl keeps as loaded and CPython's repr shows by hash) and without recursion
(`[...]`), else `-`. Run with a fixed PYTHONHASHSEED so the pickles of sets are stable.
"""
import collections
import dataclasses
import enum
import functools
import datetime
import decimal
import fractions
import pickle
import random
import sys


# Attribute names are longer than one character: whether CPython's loader interns a
# one-character key as the latin-1 singleton or as a distinct identifier object depends on
# what the interpreter interned before (pikl takes the singleton).
class Plain:
    """An instance with a `__dict__` (BUILD with a dict state)."""

    def __init__(self, first, second):
        self.first, self.second = first, second


@dataclasses.dataclass
class Point:
    xx: object
    yy: object


class Slotted:
    __slots__ = ("pp", "qq")

    def __init__(self, pp, qq):
        self.pp, self.qq = pp, qq


Pair = collections.namedtuple("Pair", "left right")


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


class Tags(set):
    """A set subclass with an attribute (reduced with `list(self)` and a `__dict__`)."""


class Items(list):
    pass


class Table(dict):
    pass


class Name(str):
    pass


class Count(int):
    pass


class Outer:
    class Inner:
        def __init__(self, v):
            self.value = v


def rand_object(rng, depth, pool):
    """An instance, a class or function, or a value of a well-known library type."""
    leaf = lambda: rand_value(rng, depth + 1, pool)
    return rng.choice([
        lambda: Plain(leaf(), leaf()),
        lambda: Point(leaf(), leaf()),
        lambda: Slotted(leaf(), leaf()),
        lambda: Pair(leaf(), leaf()),
        lambda: complex(rand_float(rng), rand_float(rng)),
        lambda: datetime.date(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28)),
        lambda: datetime.datetime(2024, rng.randint(1, 12), 3, rng.randint(0, 23), 4, 5, rng.randint(0, 999999)),
        lambda: datetime.timedelta(days=rng.randint(-999, 999), seconds=rng.randint(0, 86399)),
        lambda: decimal.Decimal(rng.choice(["1.5", "-0", "NaN", "1E+400", "3.14159"])),
        lambda: fractions.Fraction(rng.randint(-99, 99), rng.randint(1, 99)),
        lambda: collections.OrderedDict((rand_str(rng), leaf()) for _ in range(rng.randint(0, 3))),
        lambda: collections.deque(leaf() for _ in range(rng.randint(0, 3))),
        lambda: collections.Counter(rand_str(rng) for _ in range(rng.randint(0, 4))),
        lambda: range(rng.randint(-5, 5), rng.randint(5, 50), rng.randint(1, 4)),
        lambda: rng.choice([len, print, dict, Plain, Point, int, collections.OrderedDict, decimal.Decimal]),
        lambda: rng.choice([Color.RED, Color.GREEN]),
        lambda: functools.partial(max, leaf(), key=None),
        lambda: tags(rng),
        lambda: Items(leaf() for _ in range(rng.randint(0, 3))),
        lambda: Table((rand_str(rng), leaf()) for _ in range(rng.randint(0, 3))),
        # At least two characters: a one-character str subclass's `str(self)` is a fresh
        # object in CPython, where every loaded one-character str is the shared one.
        lambda: Name("n" + rand_str(rng) + "m"),
        lambda: Count(rand_int(rng)),
        lambda: Outer.Inner(leaf()),
        lambda: collections.defaultdict(list, {rand_str(rng): [leaf()]}),
        lambda: rng.choice([Ellipsis, NotImplemented, type(None)]),
    ])()


def tags(rng):
    t = Tags(rand_key(rng, 0) for _ in range(rng.randint(0, 3)))
    t.label = rand_str(rng)
    return t


def rand_int(rng):
    width = rng.choice([1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 100, 300])
    v = rng.getrandbits(width)
    return -v if rng.random() < 0.4 else v


def rand_float(rng):
    r = rng.random()
    if r < 0.05:
        return rng.choice([float("inf"), float("-inf"), float("nan"), -0.0, 0.0, 1e308, 5e-324])
    if r < 0.3:
        return float(rng.randint(-1000, 1000))
    return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-20, 20)


ALPHABET = "ab\u00e9\u00ff\u0100\u20ac\u4e2d\U0001f600 \\\n\r\x00\x1a'\""


def rand_str(rng):
    n = rng.choice([0, 1, 1, 2, 5, 20, 300])
    s = "".join(rng.choice(ALPHABET) for _ in range(n))
    if rng.random() < 0.05:
        s += "\ud800"  # a lone surrogate
    return s


def rand_bytes(rng):
    n = rng.choice([0, 1, 2, 10, 300])
    return bytes(rng.getrandbits(8) for _ in range(n))


def rand_key(rng, depth):
    r = rng.random()
    if r < 0.3:
        return rand_int(rng)
    if r < 0.6:
        return rand_str(rng)
    if r < 0.7:
        return rand_bytes(rng)
    if r < 0.8:
        return rand_float(rng)
    if r < 0.85:
        return rng.choice([None, True, False])
    if r < 0.95 and depth < 3:
        return tuple(rand_key(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return frozenset(rand_key(rng, depth + 1) for _ in range(rng.randint(0, 3))) if depth < 3 else 0


def rand_value(rng, depth, pool):
    r = rng.random()
    if pool and r < 0.08:
        return rng.choice(pool)  # a shared reference
    if depth >= 4 or r < 0.45:
        return rng.choice([
            lambda: None, lambda: rng.random() < 0.5, lambda: rand_int(rng), lambda: rand_float(rng),
            lambda: rand_str(rng), lambda: rand_bytes(rng), lambda: bytearray(rand_bytes(rng)),
        ])()
    if OBJECTS and r < 0.55:
        v = rand_object(rng, depth, pool)
        pool.append(v)
        return v
    n = rng.randint(0, 6)
    kind = rng.choice(["list", "tuple", "dict", "set", "frozenset", "list", "dict"])
    if kind == "list":
        v = []
        pool.append(v)
        v.extend(rand_value(rng, depth + 1, pool) for _ in range(n))
        if rng.random() < 0.05:
            v.append(v)  # a cycle
    elif kind == "tuple":
        v = tuple(rand_value(rng, depth + 1, pool) for _ in range(n))
        pool.append(v)
    elif kind == "dict":
        v = {}
        pool.append(v)
        for _ in range(n):
            v[rand_key(rng, 0)] = rand_value(rng, depth + 1, pool)
    elif kind == "set":
        v = {rand_key(rng, 0) for _ in range(n)}
        pool.append(v)
    else:
        v = frozenset(rand_key(rng, 0) for _ in range(n))
        pool.append(v)
    return v


def plain(v, seen=None):
    """True when pikl's repr must equal CPython's: no sets, no recursion, only builtins."""
    seen = set() if seen is None else seen
    if isinstance(v, (set, frozenset)):
        return False
    if type(v) not in (type(None), bool, int, float, str, bytes, bytearray, list, tuple, dict):
        return False
    if isinstance(v, (list, tuple, dict)):
        if id(v) in seen:
            return False
        seen = seen | {id(v)}
        items = list(v.items()) if isinstance(v, dict) else list(v)
        flat = [x for kv in items for x in (kv if isinstance(v, dict) else (kv,))]
        return all(plain(x, seen) for x in flat)
    return True


def has_set(v, seen=None):
    """True when a set or frozenset is reachable from `v` (also through instances)."""
    seen = set() if seen is None else seen
    if id(v) in seen:
        return False
    seen.add(id(v))
    if isinstance(v, (set, frozenset)):
        return True
    if isinstance(v, dict):
        return any(has_set(k, seen) or has_set(x, seen) for k, x in v.items())
    if isinstance(v, (list, tuple, collections.deque)):
        return any(has_set(x, seen) for x in v)
    state = getattr(v, "__dict__", None)
    if isinstance(state, dict) and has_set(state, seen):
        return True
    slots = [getattr(v, n, None) for n in getattr(type(v), "__slots__", ())]
    return any(has_set(x, seen) for x in slots) or isinstance(v, functools.partial) and (
        has_set(v.args, seen) or has_set(v.keywords, seen))


OBJECTS = False


def main():
    global OBJECTS
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    OBJECTS = sys.argv[3:] == ["objects"]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        value = rand_value(rng, 0, [])
        text = repr(value).encode("utf-8", "surrogatepass").hex() if plain(value) else "-"
        for proto in range(6):
            try:
                data = pickle.dumps(value, proto)
            except (TypeError, pickle.PicklingError):
                continue  # a slotted instance below protocol 2
            # What CPython writes for the value it loads back, the other valid re-dump (loading
            # makes every one-character str the shared one, where the value written may have
            # held distinct equal ones; a reloaded set may iterate in another order).
            again = pickle.dumps(pickle.loads(data), proto)
            # And at the other protocol of its pair (0-1, 2-3, 4-5), as `pikl convert -p` does:
            # across pairs pikl cannot know what CPython would learn by importing (that a
            # class reduced with NEWOBJ subclasses list, that `getattr(Outer, 'Inner')` is a
            # nested class). No set in the value: its reloaded order may differ from the
            # pickled one pikl keeps.
            other = proto ^ 1
            try:
                conv = pickle.dumps(pickle.loads(data), other).hex() if not has_set(value) else "-"
            except (TypeError, pickle.PicklingError):
                conv = "-"
            out.append("%d %s %s %s %d %s" % (proto, data.hex(), again.hex(), text, other, conv))
    sys.stdout.write("\n".join(out) + "\n")


main()
