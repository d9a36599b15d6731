#!/usr/bin/env python3
"""Feed `PIKL dis` a large pickle through a pipe and print the child's peak RSS in KiB.

Usage: rss.py PIKL MEGABYTES

The pickle (a protocol 4 list of 64 KiB bytes objects) is generated on the fly and
never held whole, so only `pikl` could make the RSS grow with its size. The listing goes to
/dev/null. Exits non-zero if `pikl` fails.
"""

import pickle
import resource
import subprocess
import sys


def main():
    pikl, megabytes = sys.argv[1], int(sys.argv[2])
    item = pickle.dumps(b"\xab" * 65536, 4)[2:-1]  # BINBYTES, payload, MEMOIZE
    count = megabytes * 16
    with open("/dev/null", "wb") as null:
        child = subprocess.Popen([pikl, "dis"], stdin=subprocess.PIPE, stdout=null)
        w = child.stdin
        w.write(b"\x80\x04](")
        for _ in range(count):
            w.write(item)
        w.write(b"e.")
        w.close()
        code = child.wait()
    if code != 0:
        sys.exit("pikl dis exited with %d" % code)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


if __name__ == "__main__":
    main()
