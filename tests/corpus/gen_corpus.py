#!/usr/bin/env python3
"""Generate the differential pickle corpus for pikl, with CPython as oracle.

Usage: gen_corpus.py OUTDIR

Writes OUTDIR/<name>.pkl files and OUTDIR/manifest.json (see README.md).
Deterministic: the script re-executes itself with PYTHONHASHSEED=0 so that
set iteration order (and therefore the bytes of pickled sets) is stable.
Needs only the standard library of CPython 3.11.
"""

import os
import sys

if __name__ == '__main__' and os.environ.get('PYTHONHASHSEED') != '0':
    env = dict(os.environ, PYTHONHASHSEED='0')
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import array
import collections
import datetime
import decimal
import enum
import fractions
import functools
import io
import ipaddress
import json
import math
import operator
import pathlib
import pickle
import pickletools
import re
import time
import types
import uuid
import zoneinfo

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/corpus free of __pycache__
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pikl_corpus_classes as K  # noqa: E402

PROTOCOLS = range(6)


# ---------------------------------------------------------------------------
# Picklers / unpicklers used for persistent-id cases.

class PersPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if type(obj) is K.PersRef:
            return obj.pid
        return None


class PersUnpickler(pickle.Unpickler):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.pids = []

    def persistent_load(self, pid):
        self.pids.append(pid)
        return K.PersRef(pid)


# ---------------------------------------------------------------------------
# Value analysis.

_REPR_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray)


def builtin_only(obj):
    """True if repr(obj) only involves builtin types a Rust impl can render:
    None/bool/int/float/complex/str/bytes/bytearray/list/tuple/dict and
    sets/frozensets of at most one item (exact types, no subclasses)."""
    seen = set()
    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t in _REPR_ATOMS:
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        if t is list or t is tuple:
            stack.extend(o)
        elif t is dict:
            for k, v in o.items():
                stack.append(k)
                stack.append(v)
        elif t is set or t is frozenset:
            if len(o) >= 2:
                return False
            stack.extend(o)
        else:
            return False
    return True


def has_multi_set(obj):
    """True if obj (transitively, also through instance state) contains a
    set/frozenset with 2+ items: CPython writes those in hash order."""
    seen = set()
    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t in _REPR_ATOMS or isinstance(o, type):
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, (set, frozenset)):
            if len(o) >= 2:
                return True
            stack.extend(o)
            continue
        if isinstance(o, (list, tuple, collections.deque)):
            stack.extend(o)
        if isinstance(o, dict):
            for k, v in o.items():
                stack.append(k)
                stack.append(v)
        d = getattr(o, '__dict__', None)
        if isinstance(d, dict):
            stack.append(d)
        for cls in type(o).__mro__:
            for s in cls.__dict__.get('__slots__', ()):
                if s not in ('__dict__', '__weakref__') and hasattr(o, s):
                    stack.append(getattr(o, s))
        if isinstance(o, functools.partial):
            stack.extend([o.func, o.args, o.keywords])
    return False


# ---------------------------------------------------------------------------
# Case registry.

SKIPPED = []        # 'name_pP: error' for values CPython can't pickle at P
CASES = []          # list of dicts: name, data, protocol, count, encoding, ...
_NAMES = set()


def _register(name, data, protocol, count=1, encoding='ASCII',
              errors='strict', persistent=False, exact=None, note=None,
              separate=False):
    if name in _NAMES:
        raise SystemExit('duplicate case name %r' % name)
    _NAMES.add(name)
    CASES.append(dict(name=name, data=data, protocol=protocol, count=count,
                      encoding=encoding, errors=errors,
                      persistent=persistent, exact=exact, note=note,
                      separate=separate))


def dump_stream(objs, proto, persistent=False, fast=False, pure=False,
                clear_between=False, separate=False):
    f = io.BytesIO()
    if pure:
        cls = pickle._Pickler
    elif persistent:
        cls = PersPickler
    else:
        cls = pickle.Pickler
    p = cls(f, proto)
    if pure and persistent:
        p.persistent_id = PersPickler.persistent_id.__get__(p)
    if fast:
        p.fast = True
    for i, o in enumerate(objs):
        if clear_between and i:
            p.clear_memo()
        if separate and i:
            # One pickle.dump(o, f) per value: a fresh Pickler, memo numbered from 0.
            p = cls(f, proto)
        p.dump(o)
    return f.getvalue()


def add(name, value, protocols=PROTOCOLS, **kw):
    """One value, pickled at each protocol: cases NAME_pP."""
    add_stream(name, [value], protocols, **kw)


def add_stream(name, values, protocols=PROTOCOLS, persistent=False,
               fast=False, pure=False, clear_between=False, exact=None,
               note=None, allow_fail=True, separate=False):
    for proto in protocols:
        try:
            data = dump_stream(values, proto, persistent=persistent,
                               fast=fast, pure=pure,
                               clear_between=clear_between,
                               separate=separate)
        except (pickle.PicklingError, TypeError, ValueError,
                RecursionError) as e:
            # CPython itself cannot pickle this value at this protocol.
            if allow_fail:
                SKIPPED.append('%s_p%d: %s: %s'
                               % (name, proto, type(e).__name__, e))
                continue
            raise
        _register('%s_p%d' % (name, proto), data, proto, count=len(values),
                  persistent=persistent, exact=exact, note=note,
                  separate=separate)


def add_raw(name, data, protocol, count=1, encoding='ASCII', errors='strict',
            exact=None, note=None):
    """A literal pickle (e.g. what Python 2 wrote)."""
    _register(name, data, protocol, count=count, encoding=encoding,
              errors=errors, exact=exact, note=note)


# ---------------------------------------------------------------------------
# The corpus.

def build_builtins():
    add('none', None)
    add('true', True)
    add('false', False)

    ints = [
        ('0', 0), ('1', 1), ('neg1', -1), ('2', 2), ('127', 127),
        ('128', 128), ('neg128', -128), ('neg129', -129),
        ('255', 255), ('256', 256), ('neg256', -256),
        ('65535', 65535), ('65536', 65536), ('neg65536', -65536),
        ('2p31m1', 2**31 - 1), ('2p31', 2**31), ('2p31p1', 2**31 + 1),
        ('neg2p31m1', -2**31 - 1), ('neg2p31', -2**31),
        ('neg2p31p1', -2**31 + 1),
        ('2p32', 2**32), ('neg2p32', -2**32),
        ('2p63m1', 2**63 - 1), ('2p63', 2**63), ('2p63p1', 2**63 + 1),
        ('neg2p63m1', -2**63 - 1), ('neg2p63', -2**63),
        ('neg2p63p1', -2**63 + 1),
        ('2p64m1', 2**64 - 1), ('2p64', 2**64), ('2p64p1', 2**64 + 1),
        ('neg2p64m1', -2**64 - 1), ('neg2p64', -2**64),
        ('neg2p64p1', -2**64 + 1),
        ('2p1000', 2**1000), ('neg3p700', -(3**700)),
        ('2p2040', 2**2040),  # LONG1 length 256 -> LONG4
        ('neg2p2039', -2**2039),  # exactly 255 bytes two's complement
        ('neg2p2040', -2**2040),
    ]
    for n, v in ints:
        add('int_' + n, v)
    add('ints_list', [v for _, v in ints])

    floats = [
        ('0', 0.0), ('neg0', -0.0), ('5em324', 5e-324), ('1e16', 1e16),
        ('1em7', 1e-7), ('1_5', 1.5), ('1e22', 1e22),
        ('123456789_123', 123456789.123), ('inf', math.inf),
        ('neginf', -math.inf), ('nan', math.nan), ('2_5em310', 2.5e-310),
        ('0_1', 0.1), ('neg2_5', -2.5), ('1e100', 1e100),
        ('max', sys.float_info.max), ('min', sys.float_info.min),
        ('1', 1.0), ('1e15', 1e15), ('1em4', 1e-4), ('1em5', 1e-5),
        ('2p53', 2.0**53), ('third', 1 / 3),
    ]
    for n, v in floats:
        add('float_' + n, v)
    add('floats_list', [v for _, v in floats])

    add('complex_1p2j', 1 + 2j)
    add('complex_1j', 1j)
    add('complex_neg0', complex(-0.0, -0.0))
    add('complex_inf_nan', complex(math.inf, math.nan))
    add('complex_list', [0j, -1.5 + 0.25j, complex(1e300, -1e-300)])

    strs = [
        ('empty', ''), ('a', 'a'), ('one_e_acute', '\xe9'),
        ('one_euro', '\u20ac'), ('one_emoji', '\U0001f600'),
        ('one_nul', '\x00'), ('one_newline', '\n'), ('one_backslash', '\\'),
        ('ascii', 'hello world'),
        ('squote', "it's"), ('dquote', 'say "hi"'),
        ('both_quotes', 'it\'s "both"'),
        ('backslashes', 'a\\b\\\\c\\'),
        ('newlines', 'line1\nline2\n'), ('cr', 'a\rb\r\n'),
        ('nul', 'a\x00b'), ('del', 'a\x7fb'),
        ('controls', ''.join(chr(i) for i in range(32)) + '\x7f'),
        ('latin1', 'caf\xe9 na\xefve \xff\xa0\x80'),
        ('bmp', '\u20ac \u4e2d\u6587 \uffff \u0100'),
        ('nonbmp', 'emoji \U0001f600 \U0010ffff \U00010000'),
        ('lone_high', '\ud800'), ('lone_low_mid', 'a\udfffb'),
        ('surrogate_pair_cps', '\ud83d\ude00'),
        ('escapes_literal', 'a\\u0041 \\x41 \\n'),
        ('raw_unicode_tricky', '\\u20ac\\\n\\'),
        ('len255', 'x' * 255), ('len256', 'y' * 256),
        ('len255_utf8', '\xe9' * 127 + 'z'),   # 255 bytes of UTF-8
        ('len256_utf8', '\xe9' * 128),          # 256 bytes of UTF-8
        ('mixed', 'A\xe9\u20ac\U0001f600\x00\n\\\'"'),
    ]
    for n, v in strs:
        add('str_' + n, v)
    add('strs_list', [v for _, v in strs])

    big = ('The quick brown fox \xe9\u20ac\U0001f600 jumps 0123456789\n' * 8000)
    big = big[:300000]
    add('str_300k', big)

    byts = [
        ('empty', b''), ('one', b'a'), ('nul', b'\x00'), ('ff', b'\xff'),
        ('ascii', b'hello'), ('quotes', b'it\'s "q" \\ \n'),
        ('all256', bytes(range(256))), ('len255', b'b' * 255),
        ('len256', b'c' * 256),
    ]
    for n, v in byts:
        add('bytes_' + n, v)
    add('bytes_list', [v for _, v in byts])
    add('bytes_100k', bytes((i * 7 + 3) % 256 for i in range(100000)))

    add('bytearray_empty', bytearray())
    add('bytearray_small', bytearray(b'abc\x00\xff'))
    add('bytearray_all256', bytearray(range(256)))
    add('bytearray_pair', [bytearray(b'x'), bytearray(b'x')])

    # lists
    add('list_empty', [])
    add('list_one', [1])
    add('list_mixed', [1, 'a', None, True, 1.5, b'b', (), [], {}])
    add('list_nested', [[1, [2, [3, [4, []]]]], [[[]]]])
    add('list_999', list(range(999)))
    add('list_1000', list(range(1000)))
    add('list_1001', list(range(1001)))
    add('list_2500', list(range(2500)))
    add('list_2500_strs', ['s%d' % i for i in range(2500)])
    add('list_of_empties', [[] for _ in range(5)])

    # tuples
    add('tuple_empty', ())
    add('tuple_1', (1,))
    add('tuple_2', (1, 2))
    add('tuple_3', (1, 2, 3))
    add('tuple_4', (1, 2, 3, 4))
    add('tuple_nested', ((), ((),), (1, (2, (3,)))))
    add('tuple_2500', tuple(range(2500)))
    add('tuple_of_lists', ([1], [2], [3]))

    # dicts
    add('dict_empty', {})
    add('dict_one', {'a': 1})
    add('dict_nested', {'a': [1, 2], 'b': {'c': {'d': None}}})
    add('dict_keys_str', {'x': 1, 'y': 2, '\xe9': 3, '': 4})
    add('dict_keys_int', {0: 'a', -1: 'b', 2**70: 'c', 255: 'd'})
    add('dict_keys_float', {1.5: 'a', -0.0: 'b', 1e300: 'c'})
    add('dict_keys_tuple', {(1, 2): 'a', (): 'b', ('x', (1,)): 'c'})
    add('dict_keys_frozenset', {frozenset(): 'a', frozenset([1]): 'b'})
    add('dict_keys_frozenset_multi', {frozenset([1, 2, 3]): 'a'})
    add('dict_keys_none', {None: 'a', True: 'b'})
    add('dict_keys_bytes', {b'k': 1, b'': 2, b'\xff': 3})
    add('dict_keys_mixed', {'s': 1, 2: 2, 3.5: 3, (4,): 4, None: 5, b'6': 6,
                            frozenset(['x']): 7, False: 8, 1j: 9})
    add('dict_999', {i: -i for i in range(999)})
    add('dict_1000', {i: -i for i in range(1000)})
    add('dict_1001', {i: -i for i in range(1001)})
    add('dict_2500', {'k%d' % i: i for i in range(2500)})

    # sets
    add('set_empty', set())
    add('set_one', {1})
    add('set_one_str', {'only'})
    add('set_ints', {1, 2, 3})
    add('set_strs', {'a', 'b', 'c'})
    add('set_2500', set(range(2500)))
    add('frozenset_empty', frozenset())
    add('frozenset_one', frozenset([1]))
    add('frozenset_ints', frozenset([1, 2, 3]))
    add('frozenset_2500', frozenset(range(2500)))
    add('frozenset_pair_empty', [frozenset(), frozenset()])
    add('set_of_frozensets', {frozenset(), frozenset([1])})
    add('frozenset_nested', frozenset([frozenset([1])]))

    # everything at once
    add('kitchen_sink', {
        'none': None, 'bools': [True, False], 'int': -7, 'big': 2**100,
        'float': -1.25, 'complex': 2 - 3j, 'str': 'h\xe9\u20ac\U0001f600',
        'bytes': b'\x00\x01', 'bytearray': bytearray(b'ba'),
        'tuple': (1, ('n',)), 'list': [[], [1]], 'dict': {1: {2: {}}},
        'set': {5}, 'frozenset': frozenset(['f']),
    })


def build_sharing():
    # shared references
    lst = [1, 2]
    add('shared_list_in_tuple', (lst, lst))
    add('shared_list_in_list', [lst, lst, [lst]])
    s = ''.join(['shared', '-str'])
    add('shared_str', [s, s, {s: s}])
    s1 = ''.join(['dup', 'str'])
    s2 = ''.join(['dup', 'str'])
    assert s1 is not s2
    add('equal_unshared_strs', [s1, s2])
    b = bytes(bytearray(b'shared-bytes'))
    add('shared_bytes', [b, b])
    add('shared_bytes_short', [b'x', b'x', b'yz', b'yz'])
    t = (1, 'two')
    add('shared_tuple', [t, t, (t, t)])
    d = {'k': 'v'}
    add('shared_dict', {'a': d, 'b': d, 'c': [d]})
    fs = frozenset([1])
    add('shared_frozenset', [fs, fs])
    st = {7}
    add('shared_set', [st, st])
    ba = bytearray(b'ba')
    add('shared_bytearray', [ba, ba])
    # DAG
    leaf = ['leaf']
    mid1 = [leaf, 'm1']
    mid2 = (leaf, 'm2')
    add('dag', {'root': [mid1, mid2, leaf], 'm': mid1})
    # the same object reachable through many paths (diamonds)
    x = {'x': []}
    add('diamond', [(x, [x]), {'k': (x,)}])
    # Strings/bytes that CPython's unpickler turns into shared singletons:
    # pickled without memo (fast mode), so every occurrence is written out.
    add('fast_singletons', ['a', 'a', '\xe9', '\xe9', '', '', 'ab', 'ab',
                            b'x', b'x', b'', b'', (), (), '\u20ac', '\u20ac',
                            frozenset(), frozenset()], fast=True)
    add('fast_nested', [[1, [2]], ([3],), {'k': ['v']}], fast=True)
    # BUILD interns the keys of a dict state (PyUnicode_InternInPlace).  A key
    # that is already interned in the interpreter (any identifier that occurs
    # in code, like 'name') is replaced by the interned object, so after
    # loading it is no longer the same object as an equal value string: the
    # re-pickle writes it twice.  A key nobody interned keeps its identity.
    add('build_key_interned', [K.Plain(name='name'), K.Plain(name=2)])
    odd = ''.join(['not', ' an ', 'identifier'])
    # ...but whether it is "already interned" depends on what else is alive
    # in the interpreter (a second load while the first is alive differs), so
    # bytes are not comparable.
    add('build_key_not_interned', [K.Plain(**{odd: odd}), K.Plain(**{odd: 2})],
        exact=False, note='BUILD interning depends on interpreter state')
    add('dict_key_value_same_str', {'name': 'name'})


def build_cycles():
    l = []
    l.append(l)
    add('cycle_list_self', l)
    d = {}
    d['self'] = d
    add('cycle_dict_self', d)
    l = []
    t = (l,)
    l.append(t)
    add('cycle_tuple_list', l)
    add('cycle_tuple_list_tuple_top', t)
    l = []
    t = (l, l, 1)
    l.append(t)
    add('cycle_tuple3_list', t)
    l = []
    t = (l, 1, 2, 3)
    l.append(t)
    add('cycle_tuple4_list', t)
    d = {}
    t = (d,)
    d['t'] = t
    add('cycle_tuple_dict', t)
    a = []
    b = [a]
    a.append(b)
    add('cycle_two_lists', a)
    o = K.Plain(name='self')
    o.me = o
    add('cycle_object_dict', o)
    o = K.Plain()
    o.lst = [o]
    add('cycle_object_list', [o])
    ml = K.MyList([1])
    ml.append(ml)
    ml.attr = ml
    # protocols 0/1 recurse forever (copyreg._reconstructor gets list(ml))
    add('cycle_list_subclass', ml, allow_fail=True)
    md = K.MyDict()
    md['me'] = md
    add('cycle_dict_subclass', md, allow_fail=True)
    # set containing a tuple... cannot be cyclic; set reachable via a cycle
    o = K.Plain()
    o.s = {(1, 2)}
    o.back = [o]
    add('cycle_object_set', o)


def build_stdlib():
    add('date', datetime.date(2015, 1, 2))
    add('time', datetime.time(3, 4, 5, 6))
    add('time_tz', datetime.time(3, 4, 5, tzinfo=datetime.timezone.utc))
    add('datetime', datetime.datetime(2015, 1, 2, 3, 4, 5, 6))
    add('datetime_tz', datetime.datetime(
        2020, 2, 29, 23, 59, 59,
        tzinfo=datetime.timezone(datetime.timedelta(hours=-5), 'EST')))
    add('datetime_fold', datetime.datetime(2021, 11, 7, 1, 30, fold=1))
    add('timedelta', datetime.timedelta(days=-1, seconds=5, microseconds=7))
    add('timezone_utc', datetime.timezone.utc)
    add('timezone_offset', datetime.timezone(datetime.timedelta(hours=5,
                                                                minutes=30)))
    add('decimal', decimal.Decimal('3.14159'))
    add('decimal_specials', [decimal.Decimal('NaN'), decimal.Decimal('-Inf'),
                             decimal.Decimal('-0.000')])
    add('fraction', fractions.Fraction(22, 7))
    add('ordereddict', collections.OrderedDict([('b', 1), ('a', 2)]))
    dd = collections.defaultdict(list)
    dd['x'].append(1)
    dd['y']
    add('defaultdict_list', dd)
    add('deque', collections.deque([1, 2, 3]))
    add('deque_maxlen', collections.deque([1, 2], maxlen=5))
    add('counter', collections.Counter('abracadabra'))
    add('namedtuple', K.Point(1, 2))
    add('namedtuple_nested', [K.Point(K.Point(0, 0), 'x')])
    add('enum_member', K.Color.RED)
    add('enum_members', [K.Color.GREEN, K.Color.BLUE, K.Color.GREEN])
    add('intflag', K.Perm.R | K.Perm.W)
    add('re_pattern', re.compile(r'a+(b|c)*\d', re.IGNORECASE))
    add('re_pattern_bytes', re.compile(rb'x\s'))
    add('partial', functools.partial(K.make_thing, 1, b=2))
    add('uuid', uuid.UUID('12345678-1234-5678-1234-567812345678'))
    add('purepath', pathlib.PurePosixPath('/usr/lib/python3'))
    add('range', range(1, 10, 3))
    add('range_empty', range(0))
    add('slice', slice(1, None, 2))
    add('type_int', int)
    add('type_objects', [int, str, bytes, list, dict, set, frozenset, tuple,
                         float, complex, bool, type(None), object, type,
                         bytearray, range, slice])
    add('func_len', len)
    add('funcs', [len, print, repr, functools.reduce, K.make_thing])
    add('ellipsis_notimpl', [Ellipsis, NotImplemented])
    add('exception', ValueError('bad', 42))
    add('exception_attrs', KeyError('k'))
    # array.array reduces differently below protocol 3 (typecode, list) and from 3 on
    # (_array_reconstructor, machine format, bytes), and its module name 'array' is two str
    # objects in CPython: written twice at protocols 4 and 5.
    add('array', [array.array('i', [1, -2, 3]), array.array('d', [1.5])])
    add('zoneinfo', [zoneinfo.ZoneInfo('UTC'),
                     datetime.datetime(2024, 3, 31, 2, 30,
                                       tzinfo=zoneinfo.ZoneInfo('UTC'))])
    add('namespace', types.SimpleNamespace(a=1, b=[2]))
    add('operator_getters', [operator.itemgetter(1, 'x'),
                             operator.attrgetter('a.b', 'c'),
                             operator.methodcaller('split', ',', maxsplit=1)])
    add('ipaddress', [ipaddress.IPv4Address('10.0.0.1'),
                      ipaddress.ip_network('2001:db8::/32')])
    add('chainmap', collections.ChainMap({'a': 1}, {'b': 2}))
    add('struct_time', time.gmtime(0))
    add('stat_result', os.stat_result(tuple(range(10))))
    add('user_collections', [collections.UserDict(x=1),
                             collections.UserList([1, 2])])
    add('struct_seq_global', sys.float_info)
    add('exceptions', [StopIteration(5), OSError(13, 'denied')])


def build_classes():
    add('plain', K.Plain(a=1, b='two', c=[3]))
    add('plain_empty', K.Plain())
    add('reduce_callable', K.ReduceCallable(1, 'x'))
    r5 = K.Reduce5()
    r5.items.extend([1, 2, 3])
    r5.mapping.update({'a': 1, 'b': 2})
    r5.state = {'st': True}
    add('reduce_5tuple', r5)
    r5b = K.Reduce5()
    r5b.items.extend(range(1500))
    add('reduce_5tuple_many_items', r5b)
    add('getsetstate', K.GetSetState(1, [2]))
    add('slots', K.Slots(1, 2))
    add('slots_partial', K.Slots(1))
    add('slots_dict', K.SlotsDict(1, z='zz'))
    add('newargs', K.NewArgs(5, 'five'))
    add('newargs_ex', K.NewArgsEx(1, y=2))
    ml = K.MyList([1, 2, 3])
    ml.extra = 'attr'
    add('list_subclass', ml)
    md = K.MyDict(a=1)
    md.extra = [1]
    add('dict_subclass', md)
    add('dataclass', K.DataPoint(1, 2.5, 'lbl', ['t']))
    objs = [K.Plain(i=i) for i in range(3)]
    add('plain_list', objs + objs)


def build_persistent():
    vals = [K.PersRef('db:1'), {'ref': K.PersRef(('users', 7))},
            [K.PersRef(42), K.PersRef('db:1')]]
    add('persistent_mixed', vals, persistent=True)
    r = K.PersRef('shared')
    add('persistent_shared', [r, r, (r,)], persistent=True)
    add('persistent_top', K.PersRef('top-level'), persistent=True)
    add('persistent_nonascii', [K.PersRef('\xe9t\xe9')], persistent=True,
        allow_fail=True)  # protocol 0 refuses non-ASCII ids
    add_stream('persistent_multi', [K.PersRef('a'), [K.PersRef('a'), 1]],
               persistent=True)


def build_streams():
    shared = [1, 2, 3]
    add_stream('multi_shared_list', [shared, {'x': shared}, shared])
    s = ''.join(['hello', '!'])
    add_stream('multi_shared_str', [s, [s, s], (s,)])
    add_stream('multi_scalars', [1, 'two', 3.0, None, b'four'])
    o = K.Plain(v=1)
    add_stream('multi_objects', [o, [o, K.Plain(v=2)], o])
    add_stream('multi_clear_memo', [shared, shared], clear_between=True)
    add_stream('multi_empty_values', [[], {}, (), '', b''])
    # Separate pickle.dump calls: each pickle numbers its memo from 0, so at
    # protocol 4+ (MEMOIZE) only a fresh memo per pickle reads them right.
    a, b = ['a'], ['b']
    add_stream('multi_separate', [[a, a], [b, b], {'k': b, 'j': [b]}],
               separate=True)
    o1, o2 = K.Plain(v=1), K.Plain(v=[2])
    add_stream('multi_separate_objects', [[o1, o1], (o2, o2.v, o2)],
               separate=True)


def build_frames():
    # many medium objects (~80 KB): two frames at protocol 4/5
    many = ['%05d' % i * 40 for i in range(400)]
    add('frames_many_strs', many, protocols=(4, 5))
    # large bytes/str objects are written outside of frames
    mixed = [b'a' * 70000, 'small', b'b' * 10, 'c' * 70000, [1, 2]]
    add('frames_large_mixed', mixed, protocols=(4, 5))
    add('frames_exact_64k', ['z' * (64 * 1024 - 20), 'w' * 5],
        protocols=(4, 5))
    # pure-Python pickler output (pickle._Pickler; framing and memo
    # decisions can differ from the C pickler)
    add('frames_many_strs_pure', many, protocols=(4, 5), pure=True)
    add('frames_large_mixed_pure', mixed, protocols=(4, 5), pure=True)
    add('pure_kitchen', {'a': [1, 2.5, 'x', b'y', (None,), 1 + 1j],
                         'b': K.Plain(z=1), 'c': {3}, 'd': bytearray(b'e')},
        pure=True)
    # protocol 5 in-band buffers
    add('p5_bytearray', bytearray(b'in-band bytearray'), protocols=(5,))
    add('p5_picklebuffer_bytes', pickle.PickleBuffer(b'readonly'),
        protocols=(5,))
    add('p5_picklebuffer_bytearray',
        pickle.PickleBuffer(bytearray(b'writable')), protocols=(5,))
    pb = pickle.PickleBuffer(bytearray(b'twice'))
    add('p5_picklebuffer_shared', [pb, pb], protocols=(5,))
    add('p5_picklebuffer_large', pickle.PickleBuffer(b'L' * 100000),
        protocols=(5,))
    add_stream('p5_picklebuffer_pure', [[pb, pb]], protocols=(5,), pure=True)


# Python 2 pickles, written by hand the way Python 2.7's cPickle writes them
# (memo indices start at 1).  (name, protocol, data, [(encoding, errors)...])
LAT = [('latin1', 'strict')]
BYT = [('bytes', 'strict')]
ASC = [('ASCII', 'strict')]
PY2 = [
    # --- protocol 0
    ('str_ascii', 0, b"S'abc'\np1\n.", ASC + LAT + BYT),
    ('str_nonascii', 0, b"S'caf\\xe9'\np1\n.",
     LAT + BYT + [('ASCII', 'replace'), ('utf-8', 'replace'),
                  ('koi8-r', 'strict')]),
    ('str_squote', 0, b'S"it\'s"\np1\n.', ASC + BYT),
    ('str_escapes', 0, b"S'a\\nb\\tc\\\\d\\'e\\x00'\np1\n.", LAT + BYT),
    ('str_empty', 0, b"S''\np1\n.", ASC + BYT),
    ('unicode', 0, b'Vcaf\xe9 \\u20ac\np1\n.', ASC + BYT),
    ('unicode_escaped_bs_nl', 0, b'Va\\u005cb\\u000ac\np1\n.', ASC),
    ('unicode_narrow_nonbmp', 0, b'V\\ud83d\\ude00\np1\n.', ASC),
    ('unicode_wide_nonbmp', 0, b'V\\U0001f600\np1\n.', ASC),
    ('int', 0, b'I42\n.', ASC),
    ('int_neg', 0, b'I-7\n.', ASC),
    ('long', 0, b'L1180591620717411303424L\n.', ASC),
    ('long_neg', 0, b'L-5L\n.', ASC),
    ('long_small', 0, b'L0L\n.', ASC),
    ('float', 0, b'F0.1\n.', ASC),
    ('float_old_repr', 0, b'F0.10000000000000001\n.', ASC),
    ('bool_true', 0, b'I01\n.', ASC),
    ('bool_false', 0, b'I00\n.', ASC),
    ('none', 0, b'N.', ASC),
    ('list', 0, b"(lp1\nI1\naS'a'\np2\naI01\naNa.", ASC + BYT),
    ('tuple', 0, b"(I1\nS'two'\np1\ntp2\n.", ASC + BYT),
    ('dict', 0, b"(dp1\nS'a'\np2\nI1\nsS'b'\np3\n(lp4\nI2\nas.", ASC + BYT),
    ('set', 0, b'c__builtin__\nset\np1\n((lp2\nI1\naI2\natp3\nRp4\n.', ASC),
    ('frozenset', 0,
     b'c__builtin__\nfrozenset\np1\n((lp2\nI3\natp3\nRp4\n.', ASC),
    ('xrange', 0, b'c__builtin__\nxrange\np1\n(I0\nI5\nI1\ntp2\nRp3\n.',
     ASC),
    ('old_instance', 0,
     b"(ipikl_corpus_classes\nOld\np1\n(dp2\nS'x'\np3\nI1\nsb.", ASC + LAT),
    ('copy_reg_reconstructor', 0,
     b"ccopy_reg\n_reconstructor\np1\n(cpikl_corpus_classes\nPlain\np2\n"
     b"c__builtin__\nobject\np3\nNtp4\nRp5\n(dp6\nS'x'\np7\nI1\nsb.",
     ASC + LAT),
    ('exception', 0,
     b"cexceptions\nValueError\np1\n(S'bad'\np2\ntp3\nRp4\n.", ASC + LAT),
    ('exception_standarderror', 0,
     b"cexceptions\nStandardError\np1\n(S'std'\np2\ntp3\nRp4\n.", ASC),
    ('datetime', 0,
     b"cdatetime\ndatetime\np1\n"
     b"(S'\\x07\\xdf\\x01\\x02\\x03\\x04\\x05\\x00\\x00\\x06'\np2\ntp3\nRp4\n.",
     LAT + BYT),
    ('date', 0, b"cdatetime\ndate\np1\n(S'\\x07\\xdf\\x01\\x02'\np2\ntp3\n"
     b"Rp4\n.", LAT + BYT),
    ('shared', 0, b"(lp1\n(lp2\nI1\naag2\na.", ASC),
    # --- protocol 1
    ('str_ascii', 1, b'U\x03abcq\x01.', ASC + BYT),
    ('str_nonascii', 1, b'U\x04caf\xe9q\x01.',
     LAT + BYT + [('ASCII', 'replace')]),
    ('str_long', 1, b'T,\x01\x00\x00' + b'x' * 300 + b'q\x01.', ASC + BYT),
    ('unicode', 1, b'X\x05\x00\x00\x00caf\xc3\xa9q\x01.', ASC + BYT),
    ('list_mixed', 1,
     b"]q\x01(K\x01U\x01aq\x02X\x01\x00\x00\x00bq\x03"
     b"L1180591620717411303424L\nG?\xf8\x00\x00\x00\x00\x00\x00NI01\ne.",
     ASC + LAT + BYT),
    ('dict', 1, b'}q\x01(U\x01aq\x02K\x01U\x01bq\x03]q\x04(K\x01K\x02eu.',
     ASC + BYT),
    ('tuple', 1, b'(K\x01K\x02tq\x01.', ASC),
    ('empty_tuple', 1, b').', ASC),
    ('set', 1, b'c__builtin__\nset\nq\x01(]q\x02(K\x01K\x02etq\x03Rq\x04.',
     ASC),
    ('old_instance', 1,
     b'(cpikl_corpus_classes\nOld\nq\x01oq\x02}q\x03U\x01xq\x04K\x01sb.',
     ASC + LAT),
    ('copy_reg_reconstructor', 1,
     b'ccopy_reg\n_reconstructor\nq\x01(cpikl_corpus_classes\nPlain\nq\x02'
     b'c__builtin__\nobject\nq\x03Ntq\x04Rq\x05}q\x06U\x01xq\x07K\x01sb.',
     ASC + LAT),
    ('datetime', 1,
     b'cdatetime\ndatetime\nq\x01(U\n\x07\xdf\x01\x02\x03\x04\x05\x00\x00'
     b'\x06q\x02tq\x03Rq\x04.', LAT + BYT),
    # --- protocol 2
    ('str_ascii', 2, b'\x80\x02U\x03abcq\x01.', ASC + BYT),
    ('str_nonascii', 2, b'\x80\x02U\x04caf\xe9q\x01.',
     LAT + BYT + [('ASCII', 'replace')]),
    ('unicode', 2, b'\x80\x02X\x02\x00\x00\x00\xcf\x80q\x01.', ASC + BYT),
    ('unicode_nonbmp', 2, b'\x80\x02X\x04\x00\x00\x00\xf0\x9f\x98\x80q\x01.',
     ASC),
    ('long', 2, b'\x80\x02\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@.', ASC),
    ('long_neg', 2, b'\x80\x02\x8a\x01\xfb.', ASC),
    ('long_zero', 2, b'\x80\x02\x8a\x00.', ASC),
    ('bools', 2, b'\x80\x02\x88\x89\x86q\x01.', ASC),
    ('tuple3', 2, b'\x80\x02K\x01K\x02K\x03\x87q\x01.', ASC),
    ('dict_str_keys', 2,
     b'\x80\x02}q\x01(U\x01aq\x02K\x01U\x01bq\x03K\x02u.', ASC + LAT + BYT),
    ('newobj', 2,
     b'\x80\x02cpikl_corpus_classes\nPlain\nq\x01)\x81q\x02}q\x03U\x01xq\x04'
     b'K\x01sb.', ASC + LAT),
    ('old_instance', 2,
     b'\x80\x02(cpikl_corpus_classes\nOld\nq\x01oq\x02}q\x03U\x01xq\x04K\x01sb.',
     ASC + LAT),
    ('set', 2,
     b'\x80\x02c__builtin__\nset\nq\x01]q\x02(K\x01K\x02e\x85q\x03Rq\x04.',
     ASC),
    ('xrange', 2,
     b'\x80\x02c__builtin__\nxrange\nq\x01K\x00K\x05K\x01\x87q\x02Rq\x03.',
     ASC),
    ('datetime', 2,
     b'\x80\x02cdatetime\ndatetime\nq\x01U\n\x07\xdf\x01\x02\x03\x04\x05\x00'
     b'\x00\x06q\x02\x85q\x03Rq\x04.', LAT + BYT),
    ('date', 2, b'\x80\x02cdatetime\ndate\nq\x01U\x04\x07\xdf\x01\x02q\x02'
     b'\x85q\x03Rq\x04.', LAT + BYT),
    ('exception', 2,
     b'\x80\x02cexceptions\nValueError\nq\x01U\x03badq\x02\x85q\x03Rq\x04.',
     ASC + LAT),
    ('exception_noargs', 2, b'\x80\x02cexceptions\nKeyError\nq\x01)Rq\x02.',
     ASC),
    ('unicode_builtin', 2, b'\x80\x02c__builtin__\nunicode\nq\x01.', ASC),
    ('reduce_builtin', 2, b'\x80\x02c__builtin__\nreduce\nq\x01.', ASC),
    ('userdict', 2,
     b'\x80\x02(cUserDict\nUserDict\nq\x01oq\x02}q\x03U\x04dataq\x04}q\x05'
     b'K\x01K\x02ssb.', ASC),
    ('shared', 2, b'\x80\x02]q\x01(]q\x02K\x01ah\x02e.', ASC),
]


def build_py2():
    for name, proto, data, encs in PY2:
        for enc, err in encs:
            n = 'py2_%s_p%d_%s' % (name, proto, enc.lower().replace('-', ''))
            if err != 'strict':
                n += '_' + err
            add_raw(n, data, proto, encoding=enc, errors=err)


# ---------------------------------------------------------------------------
# Loading and re-pickling with CPython.

def load_stream(case):
    f = io.BytesIO(case['data'])
    kw = dict(encoding=case['encoding'], errors=case['errors'])
    cls = PersUnpickler if case['persistent'] else pickle.Unpickler
    u = cls(f, **kw)
    objs, pids = [], []
    for i in range(case['count']):
        if case.get('separate') and i:
            # One pickle.load(f) per pickle: each with a memo of its own.
            pids += getattr(u, 'pids', [])
            u = cls(f, **kw)
        objs.append(u.load())
    if f.read() != b'':
        raise SystemExit('%s: trailing data after %d pickles'
                         % (case['name'], case['count']))
    pids = pids + u.pids if case['persistent'] else None
    return objs, pids


def repickle(objs, proto, persistent, separate=False):
    f = io.BytesIO()
    cls = PersPickler if persistent else pickle.Pickler
    p = cls(f, proto)
    for i, o in enumerate(objs):
        if separate and i:
            p = cls(f, proto)
        p.dump(o)
    return f.getvalue()


def check_valid(case):
    """pickletools.dis must accept every pickle of the stream."""
    def run(shared):
        f = io.BytesIO(case['data'])
        memo = {}  # shared: later pickles of a stream may GET earlier PUTs
        for _ in range(case['count']):
            pickletools.dis(f, out=io.StringIO(),
                            memo=memo if shared else {})
    try:
        run(True)
    except ValueError:  # includes UnicodeDecodeError
        try:
            run(False)  # streams written after Pickler.clear_memo()
        except UnicodeDecodeError:
            # pickletools decodes STRING arguments as ASCII after unescaping
            # and so cannot show S'caf\\xe9'; the unpickler accepts it.
            if not case['name'].startswith('py2_'):
                raise
        except ValueError as e:
            raise SystemExit('%s: pickletools.dis: %s' % (case['name'], e))


def describe(case):
    check_valid(case)
    objs, pids = load_stream(case)
    # Analyse a second, independent load: walking instance state can have
    # side effects (e.g. reading BaseException/partial __dict__ creates it,
    # which changes how the object re-pickles).
    probe, _ = load_stream(case)
    entry = {
        'name': case['name'],
        'file': case['name'] + '.pkl',
        'protocol': case['protocol'],
        'count': case['count'],
        'repr': ([repr(o) for o in probe]
                 if all(builtin_only(o) for o in probe) else None),
        'repickle': {},
        'repickle_exact': (not any(has_multi_set(o) for o in probe)
                           if case['exact'] is None else case['exact']),
        'encoding': case['encoding'],
        'errors': case['errors'],
    }
    errs = {}
    for p in PROTOCOLS:
        try:
            entry['repickle'][str(p)] = repickle(
                objs, p, case['persistent'], case['separate']).hex()
        except Exception as e:  # e.g. non-ASCII persistent id at protocol 0
            entry['repickle'][str(p)] = None
            errs[str(p)] = '%s: %s' % (type(e).__name__, e)
    if errs:
        entry['repickle_errors'] = errs
    if case['note']:
        entry['note'] = case['note']
    elif not entry['repickle_exact']:
        entry['note'] = 'contains a set/frozenset of 2+ items (hash order)'
    if case['persistent']:
        entry['persistent'] = True
        entry['persistent_ids'] = [repr(p) for p in pids]
    if case['name'].startswith('py2_'):
        entry['source'] = 'py2'
    if case['separate']:
        entry['separate'] = True
    return entry


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    outdir = argv[1]
    if sys.version_info[:2] != (3, 11):
        sys.stderr.write('warning: the corpus oracle is CPython 3.11; this is '
                         '%d.%d, bytes may differ\n' % sys.version_info[:2])
    os.makedirs(outdir, exist_ok=True)
    build_builtins()
    build_sharing()
    build_cycles()
    build_stdlib()
    build_classes()
    build_persistent()
    build_streams()
    build_frames()
    build_py2()
    manifest = []
    for case in CASES:
        entry = describe(case)
        with open(os.path.join(outdir, entry['file']), 'wb') as f:
            f.write(case['data'])
        manifest.append(entry)
    with open(os.path.join(outdir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, ensure_ascii=True)
        f.write('\n')
    for s in SKIPPED:
        print('not picklable by CPython, skipped: ' + s)
    print('wrote %d cases to %s' % (len(manifest), outdir))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
