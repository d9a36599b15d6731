#!/usr/bin/env python3
"""Write a corpus of pickles for the `pikl dis` / `pikl optimize` tests.

Usage: gen_corpus.py OUTDIR

Writes OUTDIR/good/<name>.pkl (pickles pickletools lists without complaint, across
protocols 0-5, plus hand-written Python 2 style and unusual-opcode pickles) and
OUTDIR/bad/<name>.pkl (pickles on which pickletools.dis raises: truncations, memo misuse,
stack and mark errors, undecodable arguments). Only the standard library is needed.
"""

import collections
import datetime
import decimal
import fractions
import io
import os
import pickle
import struct
import sys


class Plain:
    def __init__(self, x):
        self.x = x
        self.y = [x, x]


class Slots:
    __slots__ = ("a", "b")

    def __init__(self):
        self.a = 1
        self.b = "two"


class WithState:
    def __init__(self):
        self.v = 3

    def __getstate__(self):
        return ("state", self.v)

    def __setstate__(self, s):
        self.v = s[1]


class NewArgsEx:
    def __new__(cls, *args, **kw):
        return super().__new__(cls)

    def __init__(self, *args, **kw):
        self.args = args
        self.kw = kw

    def __getnewargs_ex__(self):
        return self.args, self.kw


class OldStyleInit:
    """Pickled at protocols 0/1 with REDUCE of copyreg._reconstructor."""

    def __init__(self):
        self.z = None


Point = collections.namedtuple("Point", "x y")


class PersPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, str) and obj.startswith("pid:"):
            return obj[4:]
        if isinstance(obj, int) and obj == 4242:
            return 4242
        return None


def values():
    shared = [1, 2, 3]
    rec_list = []
    rec_list.append(rec_list)
    rec_dict = {}
    rec_dict["self"] = rec_dict
    rec_tuple_holder = []
    rec_tuple = (rec_tuple_holder,)
    rec_tuple_holder.append(rec_tuple)
    big_str = "x" * 70000 + "\u20ac"
    v = {
        "none": None,
        "true": True,
        "false": False,
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, 2**63, -(2**63) - 1, 2**64],
        "bigint": 2**1000 + 12345,
        "negbigint": -(3**700),
        "hugeint": 7**3000,
        "floats": [0.0, -0.0, 1.5, -2.25, 0.1, 1e16, 1e-5, 1e300, 5e-324, float("inf"), float("-inf"), float("nan")],
        "strs": ["", "a", "it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\tnl\ncr\r", "\x00\x7f\x80\xa0\xad\xff"],
        "unicode": ["\u20ac", "\u00e9t\u00e9", "\U0001f600", "\u0301", "\u200b\u2028", "\ud800", "a\udfffb", "\uffff"],
        "str_long": "y" * 300,
        "str_big": big_str,
        "bytes": [b"", b"abc", b"it's", b'"q"', b"\x00\xff\x80\n\t\\", bytes(range(256))],
        "bytes_big": b"z" * 70000,
        "bytearray": bytearray(b"ba\x00\xff"),
        "bytearray_empty": bytearray(),
        "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((), ((),))],
        "lists": [[], [[]], [1, [2, [3, [4, [5]]]]]],
        "dicts": [{}, {"a": 1}, {1: "a", (1, 2): [3], None: {}}],
        "sets": [set(), {1}, {1, 2, 3}, frozenset(), frozenset({"a"})],
        "nested": {"k": [(1, {"x": [b"b", 2.5]}), {frozenset({1})}]},
        "shared": [shared, shared, (shared, shared)],
        "recursive_list": rec_list,
        "recursive_dict": rec_dict,
        "recursive_tuple": rec_tuple,
        "big_list": list(range(2500)),
        "big_dict": {i: str(i) for i in range(1200)},
        "big_set": set(range(2100)),
        "many_strs": ["s%d" % i for i in range(12000)],
        "ordereddict": collections.OrderedDict([("b", 1), ("a", [2])]),
        "defaultdict": collections.defaultdict(list, {"a": [1]}),
        "counter": collections.Counter("abracadabra"),
        "deque": collections.deque([1, 2, 3], maxlen=5),
        "namedtuple": Point(1, y=[2]),
        "datetime": datetime.datetime(2024, 2, 29, 12, 30, 45, 123456),
        "datetime_tz": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
        "date": datetime.date(1999, 12, 31),
        "time": datetime.time(23, 59, 59),
        "timedelta": datetime.timedelta(days=-1, seconds=5),
        "decimal": decimal.Decimal("3.14159"),
        "fraction": fractions.Fraction(22, 7),
        "complex": complex(1.5, -2),
        "range": range(1, 10, 3),
        "slice": slice(1, None, 2),
        "types": [int, dict, type(None), Ellipsis, NotImplemented],
        "functions": [len, pickle.dumps, os.path.join],
        "plain": Plain(5),
        "plain_shared": [Plain(1)] * 3,
        "slots": Slots(),
        "with_state": WithState(),
        "newargs_ex": NewArgsEx(1, 2, k="w"),
        "oldstyle": OldStyleInit(),
        "mixed": [None, True, 1, 1.0, "1", b"1", (1,), [1], {1: 1}, {1}, frozenset([1])],
    }
    return v


def dumps(obj, proto, **kw):
    f = io.BytesIO()
    pickle.Pickler(f, proto, **kw).dump(obj)
    return f.getvalue()


def write(d, name, data):
    with open(os.path.join(d, name + ".pkl"), "wb") as f:
        f.write(data)


# Hand-written pickles: Python 2 style, rare opcodes, odd arguments that pickletools accepts.
HANDWRITTEN = {
    "py2_str": b"S'abc'\np0\n.",
    "py2_str_dq": b'S"it\'s"\np0\n.',
    "py2_str_escapes": b"S'a\\n\\t\\\\\\x41\\101\\q'\n.",
    "py2_bool": b"(I01\nI00\nI1\nI-5\nI+7\nI 12 \nI1_000\nt.",
    "py2_long": b"(L123L\nL-99999999999999999999999999999L\nL0\nL12\nt.",
    "py2_float": b"(F1.5\nF-0.0\nFinf\nF-Infinity\nFnan\nF1e400\nF 2.5 \nF1_0.5\nt.",
    "py2_unicode": b"(V\\u20acuro\nVa\\U0001f600b\nVlatin\xe9\nV\\ud800\nVback\\\\slash\nt.",
    "binstring": b"(U\x03abcT\x04\x00\x00\x00\xe9\xa0\x80\xffU\x00t.",
    "binbytes": b"\x80\x03(C\x03abcB\x04\x00\x00\x00\x00\x01\x02\x03t.",
    "binbytes8": b"\x80\x04(\x8e\x02\x00\x00\x00\x00\x00\x00\x00hi\x8d\x02\x00\x00\x00\x00\x00\x00\x00ok\x96\x01\x00\x00\x00\x00\x00\x00\x00\x07t.",
    "longs": b"\x80\x02(\x8a\x00\x8a\x01\xff\x8a\x02\x00\x80\x8b\x00\x00\x00\x00\x8b\x03\x00\x00\x00\x01\x02\x03t.",
    "binints": b"(J\xff\xff\xff\xffJ\x00\x00\x00\x80K\x00M\xff\xffM\x00\x01t.",
    "binfloat": b"(G\x7f\xf0\x00\x00\x00\x00\x00\x00G\x80\x00\x00\x00\x00\x00\x00\x00G?\xb9\x99\x99\x99\x99\x99\x9at.",
    "persid": b"(Pkey1\nPkey\\x41\nK\x05Qt.",
    "ext": b"\x80\x02(\x82\x01\x83\x01\x02\x84\x01\x02\x03\x04t.",
    "inst": b"(c__main__\nC\nq\x00(K\x01i__main__\nX\n(dq\x01bo.",
    "obj": b"(c__main__\nC\nK\x01o}b.",
    "newobj_ex": b"\x80\x04\x8c\x03mod\x8c\x03Cls\x93)}\x92.",
    "dup_pop": b"K\x012\x86N0.",
    "pop_mark": b"((K\x01K\x021N.",
    "pop_mark_via_pop": b"(K\x010N0N.",
    "memoize_mix": b"\x80\x04]\x94q\x05\x94h\x01h\x05j\x02\x00\x00\x00\x86\x86.",
    "put_get_text": b"(lp0\nI1\nag0\nap99999999999999999999999\ng99999999999999999999999\na.",
    "put_bool_key": b"Np01\ng1\n0.",
    "long_binput": b"]r\x00\x01\x00\x00j\x00\x01\x00\x00\x86.",
    "frame_inline": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a.",
    "frame_bad_len": b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.",
    "proto_high": b"\x80\x07N.",
    "proto_mid": b"N\x80\x02.",
    "next_buffer": b"\x80\x05\x97\x98.",
    "empty_set_additems": b"\x80\x04\x8f(K\x01K\x02\x90.",
    "frozenset_op": b"\x80\x04(K\x01\x91.",
    "stack_global": b"\x80\x04\x8c\x08builtins\x8c\x03len\x93.",
    "trailing_junk": b"N.garbage\xff\xff",
    "two_pickles": b"\x80\x02]q\x00.\x80\x02h\x00.",
    "mark_stop": b"(.",
    "global_odd": b"cmod with space\nname.with.dots\n.",
    "long_lines": b"V" + b"w" * 100000 + b"\n.",
    "nested_marks": b"(((((((((((K\x01tttttttttt.",
}

BAD = {
    "empty": b"",
    "no_stop": b"\x80\x02N",
    "unknown_ff": b"\x80\x02\xff.",
    "unknown_nul": b"N\x00.",
    "trunc_uint1": b"K",
    "trunc_uint2": b"M\x01",
    "trunc_int4": b"J\x01\x02",
    "trunc_float8": b"G\x01\x02\x03",
    "trunc_uint8": b"\x95\x01\x00",
    "trunc_bytes1": b"C\x05ab",
    "trunc_bytes4": b"B\x05\x00\x00\x00ab",
    "trunc_bytes8": b"\x8e\x05\x00\x00\x00\x00\x00\x00\x00ab",
    "trunc_bytearray8": b"\x96\x05\x00\x00\x00\x00\x00\x00\x00ab",
    "trunc_string1": b"U\x05ab",
    "trunc_string4": b"T\x05\x00\x00\x00ab",
    "trunc_unicode1": b"\x8c\x05ab",
    "trunc_unicode4": b"X\x05\x00\x00\x00ab",
    "trunc_unicode8": b"\x8d\x05\x00\x00\x00\x00\x00\x00\x00ab",
    "trunc_long1": b"\x8a\x05ab",
    "trunc_long4": b"\x8b\x05\x00\x00\x00ab",
    "trunc_stringnl": b"S'abc",
    "trunc_unicodenl": b"Vabc",
    "trunc_global": b"cmod\nna",
    "trunc_after_ops": b"\x80\x02]q\x00(K\x01K\x02",
    "neg_string4": b"T\xff\xff\xff\xffab.",
    "neg_long4": b"\x8b\xfe\xff\xff\xffab.",
    "huge_bytes8": b"\x8e\xff\xff\xff\xff\xff\xff\xff\xffab.",
    "get_undefined": b"]h\x05.",
    "get_undefined_text": b"N(g7\n.",
    "get_bool_undefined": b"Ng01\n.",
    "put_twice": b"]q\x00q\x00.",
    "put_twice_text": b"Np00\np0\n.",
    "memoize_collides": b"\x80\x04Nq\x00q\x01\x94\x94.",
    "memoize_after_put2": b"\x80\x04Nq\x01\x94\x94.",
    "put_empty_stack": b"q\x00N.",
    "memoize_empty_stack": b"\x80\x04\x94N.",
    "put_mark": b"(q\x00.",
    "underflow_append": b"]a.",
    "underflow_pop": b"0.",
    "underflow_stop": b".",
    "underflow_tuple3": b"K\x01\x87.",
    "underflow_setitems_after_mark": b"(u.",
    "no_mark_appends": b"]K\x01e.",
    "no_mark_tuple": b"t.",
    "no_mark_pop_mark": b"1.",
    "stack_left": b"K\x01K\x02.",
    "stack_left_mark": b"((.",
    "stack_left_many": b"(]}N\x88.",
    "mark_desync": b"N(NNst.",
    "stringnl_noquotes": b"Sabc\n.",
    "stringnl_badquote": b"S'abc\n.",
    "stringnl_badquote_dq": b'S"abc\'\n.',
    "stringnl_empty": b"S\n.",
    "stringnl_one_quote": b"S'\n.",
    "stringnl_badx": b"S'\\x4'\n.",
    "stringnl_trailing_bs": b"S'ab\\'\n.",
    "stringnl_nonascii": b"S'\\x80'\n.",
    "stringnl_nonascii_raw": b"S'\xe9'\n.",
    "persid_nonascii": b"P\xe9\n.",
    "global_nonascii": b"cmod\n\xff\n.",
    "int_invalid": b"Iabc\n.",
    "int_L": b"I12L\n.",
    "int_double_underscore": b"I1__2\n.",
    "int_too_long": b"I" + b"1" * 4301 + b"\n.",
    "long_invalid": b"L12x\n.",
    "float_invalid": b"Fabc\n.",
    "float_hex": b"F0x10\n.",
    "unicode_bad_utf8": b"X\x02\x00\x00\x00\xff\xfe.",
    "unicode_bad_cont": b"\x8c\x03\xe4\xb8x.",
    "unicode_trunc_seq": b"\x8c\x02\xe4\xb8.",
    "unicodenl_bad_escape": b"V\\u12\n.",
    "unicodenl_bad_U": b"V\\U00110000\n.",
    "long4_too_big": b"\x80\x02\x8b\x08\x07\x00\x00" + b"\x11" * 0x708 + b".",
}


def truncations(data, n):
    """Up to n distinct proper prefixes of data, spread out."""
    cuts = sorted({max(1, len(data) * k // (n + 1)) for k in range(1, n + 1)})
    return [data[:c] for c in cuts if c < len(data)]


def main():
    out = sys.argv[1]
    good = os.path.join(out, "good")
    bad = os.path.join(out, "bad")
    os.makedirs(good, exist_ok=True)
    os.makedirs(bad, exist_ok=True)
    vals = values()
    for name, v in vals.items():
        for proto in range(6):
            try:
                data = dumps(v, proto)
            except (TypeError, pickle.PicklingError):
                continue  # e.g. __slots__ without __getstate__ below protocol 2
            write(good, "%s_p%d" % (name, proto), data)
    for proto in range(6):
        big = ("big_list", "big_dict", "big_set", "many_strs")
        everything = [v for k, v in vals.items() if (proto >= 2 or k != "slots") and k not in big]
        write(good, "everything_p%d" % proto, dumps(everything, proto))
        pf = io.BytesIO()
        PersPickler(pf, proto).dump(["pid:abc", 4242, "plain", ["pid:x\ny"]])
        write(good, "persistent_p%d" % proto, pf.getvalue())
        # fix_imports off: Python 3 names in GLOBAL at protocols < 3.
        write(good, "no_fix_imports_p%d" % proto, dumps([collections.OrderedDict(), range(3)], proto, fix_imports=False))
    for proto in (5,):
        bufs = []
        data = pickle.dumps([pickle.PickleBuffer(b"abc"), pickle.PickleBuffer(bytearray(b"xyz"))], 5,
                            buffer_callback=lambda b: bufs.append(b) and False)
        write(good, "oob_buffers_p5", data)
    # Python refuses ints of more than 4300 digits in int/str conversions.
    write(good, "int_4300_digits_p2", dumps(10**4300 - 1, 2))
    write(good, "hand_long_4300_digits", b"L" + b"9" * 4300 + b"L\n.")
    write(bad, "long4_4301_digits", dumps(10**4300, 2))
    write(bad, "long_text_4301_digits", b"L1" + b"0" * 4300 + b"L\n.")
    # Consecutive pickles of one pickler, one per file (for `-m`).
    multi = os.path.join(out, "multi")
    os.makedirs(multi, exist_ok=True)
    for proto in range(6):
        f = io.BytesIO()
        p = pickle.Pickler(f, proto)
        shared = ["shared", (1, 2)]
        ends = []
        for obj in ([shared, 1], {"again": shared}, [shared, shared[1], "new"]):
            p.dump(obj)
            ends.append(f.tell())
        data = f.getvalue()
        start = 0
        for i, end in enumerate(ends):
            with open(os.path.join(multi, "chain_p%d_%d.pkl" % (proto, i)), "wb") as g:
                g.write(data[start:end])
            start = end
    for name, data in HANDWRITTEN.items():
        write(good, "hand_" + name, data)
    for name, data in BAD.items():
        write(bad, name, data)
    for proto in (0, 2, 4, 5):
        data = dumps(vals["nested"], proto)
        for i, t in enumerate(truncations(data, 6)):
            write(bad, "trunc_nested_p%d_%d" % (proto, i), t)
    data = dumps(vals["big_list"], 4)
    for i, t in enumerate(truncations(data, 3)):
        write(bad, "trunc_big_list_p4_%d" % i, t)


if __name__ == "__main__":
    main()
