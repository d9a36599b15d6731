#!/usr/bin/env python3
"""Check a generated corpus against CPython (self-test of the generators).

Usage: check_corpus.py CORPUS_DIR [BAD_DIR]

CORPUS_DIR holds manifest.json from gen_corpus.py; BAD_DIR (optional) holds
bad_manifest.json from gen_bad.py.  Every entry is reloaded in this process
(deliberately *without* fixing PYTHONHASHSEED) and compared with what the
manifest claims: repr, re-pickled bytes (for repickle_exact entries), and
the exception names for the bad inputs.  Exits non-zero on any mismatch.
"""

import io
import json
import os
import pickle
import resource
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep tests/corpus free of __pycache__
sys.path.insert(0, HERE)

import gen_bad  # noqa: E402  (verdicts(), limit_memory())
import gen_corpus as G  # noqa: E402  (PersPickler, PersUnpickler, repickle)


def check_corpus(d):
    bad = 0
    m = json.load(open(os.path.join(d, 'manifest.json')))
    for e in m:
        data = open(os.path.join(d, e['file']), 'rb').read()
        case = dict(name=e['name'], data=data, count=e['count'],
                    encoding=e['encoding'], errors=e['errors'],
                    persistent=e.get('persistent', False),
                    separate=e.get('separate', False))
        try:
            objs, pids = G.load_stream(case)
        except BaseException as ex:
            print('FAIL load', e['name'], type(ex).__name__, ex)
            bad += 1
            continue
        if e['repr'] is not None and [repr(o) for o in objs] != e['repr']:
            print('FAIL repr', e['name'])
            bad += 1
        if e.get('persistent') and [repr(p) for p in pids] != e['persistent_ids']:
            print('FAIL persistent_ids', e['name'])
            bad += 1
        for p in range(6):
            want = e['repickle'][str(p)]
            try:
                got = G.repickle(objs, p, case['persistent'],
                                 case['separate']).hex()
            except Exception:
                got = None
            if (want is None) != (got is None):
                print('FAIL repickle error mismatch', e['name'], p)
                bad += 1
            elif e['repickle_exact'] and got != want:
                print('FAIL repickle bytes', e['name'], p)
                bad += 1
            elif want is not None and not e['repickle_exact']:
                # at least the bytes must load to something equal
                u = G.PersUnpickler if case['persistent'] else pickle.Unpickler
                f = io.BytesIO(bytes.fromhex(want))
                up = u(f)
                for o in objs:
                    if case['separate']:
                        up = u(f)
                    if type(up.load()) is not type(o):
                        print('FAIL inexact repickle reload', e['name'], p)
                        bad += 1
    print('corpus: %d entries checked, %d failures' % (len(m), bad))
    return bad


def check_bad(d):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            from test import pickletester  # noqa: F401  (__main__.C etc.)
    except ImportError:
        pass
    gen_bad.limit_memory()
    bad = 0
    m = json.load(open(os.path.join(d, 'bad_manifest.json')))
    for e in m:
        data = open(os.path.join(d, e['file']), 'rb').read()
        v = gen_bad.verdicts(data, e['encoding'], e['errors'])
        for k in ('cpython', 'cpython_py', 'cpython_file'):
            if v[k] != e[k]:
                print('FAIL', e['name'], k, 'manifest', e[k], 'now', v[k])
                bad += 1
    print('bad: %d entries checked, %d failures' % (len(m), bad))
    return bad


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    n = check_corpus(argv[1])
    if len(argv) == 3:
        n += check_bad(argv[2])
    return 1 if n else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
