#!/usr/bin/env python3
"""Collect malformed (and a few tricky well-formed) pickles, with CPython's
verdict on each.

Usage: gen_bad.py OUTDIR

Writes OUTDIR/<name>.pkl and OUTDIR/bad_manifest.json (see README.md).

Sources:
  * every input that CPython 3.11's test.pickletester.AbstractUnpickleTests
    feeds to its unpickler (bad ones through check_unpickling_error, good ones
    through plain loads calls), captured by running that class's tests in a
    harness whose loads/check_unpickling_error record the data;
  * a few bad inputs from other pickletester classes;
  * generated hostile inputs (huge length prefixes, huge memo indices, deep
    nesting, frame violations, unknown opcodes, unsupported protocols);
  * every truncation of four small pickles, plus those pickles as seeds for
    mutation on the Rust side.

Each input is run through pickle.loads (the C unpickler, "cpython"),
pickle._loads (the pure-Python one, "cpython_py") and
pickle.Unpickler(io.BytesIO(data)).load() ("cpython_file").  The address
space is capped at 3 GiB so inputs that make CPython allocate huge buffers
fail with MemoryError deterministically instead of exhausting the machine.
"""

import os
import sys

if __name__ == '__main__' and os.environ.get('PYTHONHASHSEED') != '0':
    env = dict(os.environ, PYTHONHASHSEED='0')
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import io
import json
import pickle
import pickletools
import resource
import struct
import unittest
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/corpus free of __pycache__
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pikl_corpus_classes  # noqa: E402,F401  (seeds reference it)

MEM_LIMIT = 3 << 30
DEEP = 10 ** 6


def limit_memory():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > MEM_LIMIT:
        resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, hard))
    else:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def exc_name(e):
    t = type(e)
    if t.__module__ in ('builtins', 'pickle', '_pickle'):
        return t.__name__
    return '%s.%s' % (t.__module__, t.__qualname__)


class _quiet_stderr:
    """Silence fd 2 around a load: when BYTEARRAY8's allocation fails, the C
    unpickler (3.11) drops a bytearray with an exported buffer, and CPython
    prints 'SystemError: deallocated bytearray object has exported buffers'
    straight to stderr.  The load's own exception is still captured."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


def _outcome(fn, data, kw):
    try:
        with _quiet_stderr():
            fn(data, **kw)
    except RecursionError as e:  # should not happen: unpicklers iterate
        return exc_name(e), str(e)[:200]
    except Exception as e:
        return exc_name(e), str(e)[:200]
    return 'ok', None


def _load_file(data, **kw):
    return pickle.Unpickler(io.BytesIO(data), **kw).load()


def verdicts(data, encoding='ASCII', errors='strict'):
    kw = {}
    if encoding != 'ASCII':
        kw['encoding'] = encoding
    if errors != 'strict':
        kw['errors'] = errors
    c, msg = _outcome(pickle.loads, data, kw)
    py, py_msg = _outcome(pickle._loads, data, kw)
    f, _ = _outcome(_load_file, data, kw)
    return dict(cpython=c, message=msg, cpython_py=py, cpython_py_message=py_msg,
                cpython_file=f)


def _builtin_repr(loads, data, kw):
    """repr() of the loaded value if it is made of plain builtins only."""
    if len(data) > 100000:
        return None
    try:
        v = loads(data, **kw)
    except Exception:
        return None
    ok_atoms = (type(None), bool, int, float, complex, str, bytes, bytearray)
    seen, stack = set(), [v]
    while stack:
        o = stack.pop()
        if type(o) in ok_atoms:
            continue
        if id(o) in seen:
            continue
        seen.add(id(o))
        if type(o) in (list, tuple):
            stack.extend(o)
        elif type(o) is dict:
            stack.extend(o.keys())
            stack.extend(o.values())
        elif type(o) in (set, frozenset) and len(o) < 2:
            stack.extend(o)
        else:
            return None
    try:
        return repr(v)
    except RecursionError:
        return None


# ---------------------------------------------------------------------------

ENTRIES = []
_seen = {}


def record(data, test, expected, encoding='ASCII', errors='strict',
           name=None, extra=None):
    """expected: 'ok' for an input the test expects to load, else the list
    of exception names the test accepts (informational)."""
    data = bytes(data)
    key = (data, encoding, errors)
    if key in _seen:
        return _seen[key]
    if name is None:
        n = sum(1 for e in ENTRIES if e['test'] == test)
        name = '%s_%03d' % (test, n)
    v = verdicts(data, encoding, errors)
    e = dict(name=name, file=name + '.pkl', test=test, expected=expected,
             encoding=encoding, errors=errors, **v)
    kw = dict(encoding=encoding, errors=errors)
    if v['cpython'] == 'ok':
        e['repr'] = _builtin_repr(pickle.loads, data, kw)
    if v['cpython_py'] == 'ok':
        r = _builtin_repr(pickle._loads, data, kw)
        if r != e.get('repr'):
            e['repr_py'] = r
    if extra:
        e.update(extra)
    e['_data'] = data
    ENTRIES.append(e)
    _seen[key] = e
    return e


def names_of(errors):
    if isinstance(errors, type):
        errors = (errors,)
    return sorted(exc_name(t('x')) if t is not struct.error else 'struct.error'
                  for t in errors)


# ---------------------------------------------------------------------------
# Harness around test.pickletester.AbstractUnpickleTests.

def harvest_pickletester():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            from test import pickletester
    except ImportError as e:  # e.g. Debian's python3 without the test suite
        sys.stderr.write('warning: test.pickletester unavailable (%s); '
                         'its inputs are missing from the manifest\n' % e)
        return

    state = {'test': None}

    class Harness(pickletester.AbstractUnpickleTests, unittest.TestCase):
        # as in test_pickle.InMemoryPickleTests (C unpickler)
        bad_stack_errors = (pickle.UnpicklingError, IndexError)
        truncated_errors = (pickle.UnpicklingError, EOFError,
                            AttributeError, ValueError,
                            struct.error, IndexError, ImportError)

        def loads(self, buf, **kw):
            enc = kw.get('encoding', 'ASCII')
            err = kw.get('errors', 'strict')
            record(buf, state['test'], 'ok', enc, err)
            return pickle.loads(buf, **kw)

        def check_unpickling_error(self, errors, data):
            record(data, state['test'], names_of(errors))

    skip = {'test_unpickle_module_race'}  # threads + imports, no bad data
    for name in sorted(n for n in dir(Harness) if n.startswith('test_')):
        if name in skip:
            continue
        state['test'] = name
        t = Harness(name)
        try:
            getattr(t, name)()
        except unittest.SkipTest:
            pass
        except Exception as e:  # keep going; the recorded verdicts rule
            sys.stderr.write('note: %s raised %s: %s\n'
                             % (name, type(e).__name__, e))


def other_pickletester_inputs():
    # AbstractPickleModuleTests.test_incomplete_input
    record(b"X''.", 'test_incomplete_input',
           ['EOFError', 'UnpicklingError', 'struct.error'])
    # AbstractPickleTests.test_protocol0_is_ascii_only
    record(pickle.PERSID + '\N{EMPTY SET}'.encode('utf-8') + b'\n.',
           'test_protocol0_is_ascii_only', ['UnpicklingError'])
    # AbstractPickleTests.test_oob_buffers / test_buffers_error: out-of-band
    # buffer opcodes without a buffers= argument
    record(b'\x80\x05\x95\x02\x00\x00\x00\x00\x00\x00\x00\x97.',
           'test_oob_buffers', ['UnpicklingError'])
    record(b'\x80\x05\x95\x03\x00\x00\x00\x00\x00\x00\x00\x97\x98.',
           'test_oob_buffers', ['UnpicklingError'])
    # the requires_32b tests are skipped on 64-bit; their inputs are still
    # interesting: length prefixes far beyond the data.
    for t, d in [
            ('test_negative_32b_binbytes', b'\x80\x03B\xff\xff\xff\xffxyzq\x00.'),
            ('test_negative_32b_binunicode',
             b'\x80\x03X\xff\xff\xff\xffxyzq\x00.'),
            ('test_large_32b_binbytes8',
             b'\x80\x04\x8e\4\0\0\0\1\0\0\0\xe2\x82\xac\x00.'),
            ('test_large_32b_bytearray8',
             b'\x80\x05\x96\4\0\0\0\1\0\0\0\xe2\x82\xac\x00.'),
            ('test_large_32b_binunicode8',
             b'\x80\x04\x8d\4\0\0\0\1\0\0\0\xe2\x82\xac\x00.'),
            ('test_negative_32b_binput',
             b'\x80\x03X\x01\x00\x00\x00ar\xff\xff\xff\xff.')]:
        record(d, t, ['OverflowError', 'UnpicklingError'])


# ---------------------------------------------------------------------------
# Generated hostile inputs.

def le8(n):
    return n.to_bytes(8, 'little')


def hostile_inputs():
    H = 'hostile'

    def h(name, data, **kw):
        record(data, H, None, name='hostile_' + name, **kw)

    # huge length prefixes in a 20-byte input
    big = 2 ** 40
    h('binbytes8_2p40', b'\x80\x04\x8e' + le8(big) + b'x' * 9)
    h('binunicode8_2p40', b'\x80\x04\x8d' + le8(big) + b'x' * 9)
    h('bytearray8_2p40', b'\x80\x05\x96' + le8(big) + b'x' * 9)
    h('frame_2p40', b'\x80\x04\x95' + le8(big) + b'N.' + b'\x00' * 7)
    h('binbytes8_2p63m1', b'\x80\x04\x8e' + le8(2 ** 63 - 1) + b'x' * 9)
    h('binbytes8_2p64m1', b'\x80\x04\x8e' + le8(2 ** 64 - 1) + b'x' * 9)
    h('binunicode8_2p64m1', b'\x80\x04\x8d' + le8(2 ** 64 - 1) + b'x' * 9)
    h('frame_2p64m1', b'\x80\x04\x95' + le8(2 ** 64 - 1) + b'N.' + b'\x00' * 7)
    h('long4_2p31m1', b'\x80\x02\x8b\xff\xff\xff\x7f' + b'\x00' * 13)
    h('long4_negative', b'\x80\x02\x8b\xff\xff\xff\xff' + b'\x00' * 13)
    h('binstring_negative', b'T\xff\xff\xff\xffabc.' + b'\x00' * 11)
    h('binstring_2p31m1', b'T\xff\xff\xff\x7fabc.' + b'\x00' * 11)
    h('binunicode_2p32m1', b'X\xff\xff\xff\xffabc.' + b'\x00' * 11)
    h('binbytes_2p32m1', b'\x80\x03B\xff\xff\xff\xffabc.' + b'\x00' * 9)
    h('long1_255_short', b'\x80\x02\x8a\xff' + b'\x01' * 16)
    # memo abuse
    h('long_binput_fffffff0', b'\x80\x02Nr\xf0\xff\xff\xff.')
    h('long_binput_7fffffff', b'\x80\x02Nr\xff\xff\xff\x7f.')
    h('long_binget_missing', b'\x80\x02j\x05\x00\x00\x00.')
    h('long_binget_huge', b'\x80\x02j\xf0\xff\xff\xff.')
    h('binget_missing', b'\x80\x02N\x94h\x01.')
    h('get_missing', b'g7\n.')
    h('get_not_int', b'Np0\ngx\n.')
    h('put_huge_text', b'Np99999999999999999999\n.')
    h('memoize_empty_stack', b'\x80\x04\x94N.')
    # deep nesting (CPython's unpickler is iterative: these load fine)
    h('marks_1e6', b'(' * DEEP + b'.')
    h('marks_1e6_lists', b'(' * DEEP + b'l' * DEEP + b'.')
    h('tuple1_1e6', b'\x80\x02)' + b'\x85' * DEEP + b'.')
    h('append_1e6', b'\x80\x02' + b']' * DEEP + b'a' * (DEEP - 1) + b'.')
    h('dict_1e6', b'\x80\x02' + b'}K\x01' * (DEEP - 1) + b'}'
      + b's' * (DEEP - 1) + b'.')
    h('empty_tuples_1e6_stack', b'\x80\x02' + b')' * DEEP + b'.')
    # frames
    frame = lambda body: b'\x95' + le8(len(body)) + body
    h('frame_opcode_straddles_end',
      b'\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00J\x01\x00\x00\x00.')
    h('frame_readline_straddles_end',
      b'\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00I42\n.')
    h('frame_inside_frame',
      b'\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00' + frame(b'N.') + b'..')
    h('frame_longer_than_data', b'\x80\x04' + b'\x95' + le8(10) + b'N.')
    h('frame_after_stop_data', b'\x80\x04' + frame(b'N.N.'))
    h('frame_zero_length', b'\x80\x04' + frame(b'') + b'N.')
    h('frame_in_protocol2', b'\x80\x02' + frame(b'N.'))
    h('frame_without_proto', frame(b'N.'))
    h('frames_two', b'\x80\x04' + frame(b'K\x01') + frame(b'.'))
    h('frame_stop_outside', b'\x80\x04' + frame(b'K\x01') + b'.')
    # protocols
    h('proto_6', b'\x80\x06N.')
    h('proto_255', b'\x80\xffN.')
    h('proto_twice', b'\x80\x02\x80\x04N.')
    h('proto_late', b'N\x80\x02.')
    # encodings
    h('py2_str_nonascii_ascii_strict', b'U\x04caf\xe9.')
    h('py2_str_nonascii_utf8_strict', b'U\x04caf\xe9.', encoding='utf-8')
    h('py2_datetime_ascii', b'\x80\x02cdatetime\ndatetime\nq\x01U\n\x07\xdf'
      b'\x01\x02\x03\x04\x05\x00\x00\x06q\x02\x85q\x03Rq\x04.')
    h('binunicode_bad_utf8', b'X\x02\x00\x00\x00\xff\xfe.')
    h('short_binunicode_bad_utf8', b'\x80\x04\x8c\x01\x80.')
    h('unicode_raw_bad_escape', b'V\\u12\n.')
    h('string_unquoted', b'Sabc\n.')
    h('string_bad_escape', b"S'\\x4'\n.")
    h('int_garbage', b'Iabc\n.')
    h('int_space_1', b'I 1\n.')      # C: True (strtol + length 3)
    h('int_plus_1', b'I+1\n.')
    h('int_minus_0', b'I-0\n.')
    h('int_01_trailing', b'I01 \n.')
    h('int_001', b'I001\n.')
    h('int_hex', b'I0x10\n.')
    h('int_underscore', b'I1_000\n.')
    h('long_underscore', b'L1_000L\n.')
    h('float_underscore', b'F1_0\n.')
    h('float_spaces', b'F 1.5 \n.')
    h('long_garbage', b'L12x\n.')
    h('float_garbage', b'Fabc\n.')
    h('float_empty', b'F\n.')
    # globals / reductions
    h('global_no_module', b'cno_such_module_pikl\nX\n.')
    h('global_no_attr', b'cbuiltins\nno_such_attr_pikl\n.')
    h('global_dotted_proto2', b'\x80\x02cos\npath.join\n.')
    h('global_dotted_proto4', b'\x80\x04\x8c\x02os\x8c\tpath.join\x93.')
    h('stack_global_nonstr', b'\x80\x04K\x01K\x02\x93.')
    h('ext1_unregistered', b'\x80\x02\x82\x01.')
    h('ext2_unregistered', b'\x80\x02\x83\x01\x00.')
    h('ext4_unregistered', b'\x80\x02\x84\x01\x00\x00\x00.')
    h('ext1_zero', b'\x80\x02\x82\x00.')
    h('reduce_non_tuple_args', b'cbuiltins\nlist\nK\x01R.')
    h('build_on_int', b'\x80\x02K\x01}b.')
    h('setitem_on_list', b'\x80\x02]K\x01K\x02s.')
    h('append_on_dict', b'\x80\x02}K\x01a.')
    h('appends_on_tuple', b'\x80\x02)(K\x01e.')
    h('additems_on_list', b'\x80\x04](K\x01\x90.')
    h('dict_odd_items', b'(K\x01K\x02K\x03d.')
    h('setitems_odd', b'\x80\x02}(K\x01K\x02K\x03u.')
    h('unhashable_key', b'\x80\x02}]K\x01s.')
    h('unhashable_set_item', b'\x80\x04\x8f(]\x90.')
    h('frozenset_unhashable', b'\x80\x04(]\x91.')
    h('persid_no_loader', b'Pabc\n.')
    h('binpersid_no_loader', b'\x80\x02K\x01Q.')
    h('stop_with_extra_stack', b'K\x01K\x02.')
    h('stop_with_mark', b'(K\x01.')
    h('pop_mark_without_mark', b'K\x011.')
    h('trailing_garbage_after_stop', b'N.garbage')
    # unknown opcodes
    known = {ord(op.code) for op in pickletools.opcodes}
    for b in range(256):
        if b not in known:
            h('unknown_opcode_%02x' % b, bytes([b]))
            h('unknown_opcode_%02x_p4' % b, b'\x80\x04' + bytes([b]) + b'.')


def truncations():
    """Every prefix of four small pickles (plus the full ones as seeds)."""
    value = {'a': [1, 2.5, 'x\xe9', b'y', (None, True)], 'b': 2 ** 70,
             'c': ('t',), 'd': {}}
    ba = {'ba': bytearray(b'xyz'), 'n': -300}
    seeds = [('p0', pickle.dumps(value, 0)), ('p2', pickle.dumps(value, 2)),
             ('p4', pickle.dumps(value, 4)), ('p5', pickle.dumps(ba, 5))]
    for tag, data in seeds:
        record(data, 'seed', 'ok', name='seed_' + tag, extra={'seed': True})
        for k in range(len(data)):
            record(data[:k], 'truncation', None,
                   name='trunc_%s_%03d' % (tag, k))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    outdir = argv[1]
    if sys.version_info[:2] != (3, 11):
        sys.stderr.write('warning: the oracle is CPython 3.11; this is '
                         '%d.%d, verdicts may differ\n' % sys.version_info[:2])
    os.makedirs(outdir, exist_ok=True)
    limit_memory()
    harvest_pickletester()
    other_pickletester_inputs()
    hostile_inputs()
    truncations()
    manifest = []
    for e in ENTRIES:
        data = e.pop('_data')
        with open(os.path.join(outdir, e['file']), 'wb') as f:
            f.write(data)
        manifest.append(e)
    with open(os.path.join(outdir, 'bad_manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1, ensure_ascii=True)
        f.write('\n')
    print('wrote %d inputs to %s' % (len(manifest), outdir))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
