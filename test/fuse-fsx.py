#!/usr/bin/env python3
# fsx-style checker for ext4kit's FUSE tests: seeded random pwrite / pread / truncate /
# fallocate (keep-size, punch-hole, zero-range) / mmap read and write on one file, every result
# compared with a shadow copy in memory. Exit 0 when every read matched; 1 with the first
# difference. Usage: fuse-fsx.py FILE SEED OPS [MAXLEN]
import mmap, os, random, sys

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 0x10

def main():
    path, seed, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    maxlen = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 20
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    shadow = bytearray()
    log = []

    def fail(msg):
        print(f'fsx: seed {seed}: {msg}', file=sys.stderr)
        print('fsx: last operations:\n  ' + '\n  '.join(log[-12:]), file=sys.stderr)
        sys.exit(1)

    def check(off, got, what):
        want = bytes(shadow[off:off + len(got)])
        if got != want:
            i = next(k for k in range(len(got)) if k >= len(want) or got[k] != want[k])
            fail(f'{what} at {off}: byte {off + i} is {got[i]:#x}, expected {want[i] if i < len(want) else "EOF"}')

    for n in range(ops):
        op = rng.choice(['write', 'write', 'read', 'read', 'trunc', 'falloc', 'mapread', 'mapwrite', 'fsync'])
        size = len(shadow)
        off = rng.randrange(0, maxlen)
        ln = rng.randrange(1, 65536 * 2)
        if op == 'write':
            data = bytes(rng.getrandbits(8) | 1 for _ in range(min(ln, 4096))) * (ln // 4096 + 1)
            data = data[:ln]
            log.append(f'{n} pwrite {off} {ln}')
            if os.pwrite(fd, data, off) != ln: fail('short write')
            if off > size: shadow.extend(bytes(off - size))
            shadow[off:off + ln] = data
        elif op == 'read':
            log.append(f'{n} pread {off} {ln}')
            got = os.pread(fd, ln, off)
            if len(got) != max(0, min(ln, size - off)): fail(f'pread {off} {ln} returned {len(got)} bytes, size {size}')
            check(off, got, 'pread')
        elif op == 'trunc':
            new = rng.randrange(0, maxlen)
            log.append(f'{n} truncate {new}')
            os.ftruncate(fd, new)
            if new < size: del shadow[new:]
            else: shadow.extend(bytes(new - size))
        elif op == 'falloc':
            mode = rng.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE])
            log.append(f'{n} fallocate mode={mode:#x} {off} {ln}')
            fallocate(fd, mode, off, ln)
            end = off + ln
            if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
                lo, hi = min(off, size), min(end, size)
                shadow[lo:hi] = bytes(hi - lo)
            if not (mode & FALLOC_FL_KEEP_SIZE) and end > len(shadow):
                shadow.extend(bytes(end - len(shadow)))
        elif op in ('mapread', 'mapwrite') and size > 0:
            off = rng.randrange(0, size)
            ln = min(ln, size - off)
            log.append(f'{n} {op} {off} {ln}')
            with mmap.mmap(fd, size) as m:
                if op == 'mapread':
                    check(off, m[off:off + ln], 'mmap read')
                else:
                    data = bytes([rng.getrandbits(8) | 1]) * ln
                    m[off:off + ln] = data
                    shadow[off:off + ln] = data
                    m.flush()
        elif op == 'fsync':
            log.append(f'{n} fsync')
            os.fsync(fd)
        if os.fstat(fd).st_size != len(shadow):
            fail(f'after {log[-1] if log else op}: size {os.fstat(fd).st_size}, expected {len(shadow)}')
    os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    got = b''
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk: break
        got += chunk
    check(0, got, 'final read')
    if len(got) != len(shadow): fail(f'final size {len(got)}, expected {len(shadow)}')
    print(f'fsx: seed {seed}: {ops} operations ok, final size {len(shadow)}')

def fallocate(fd, mode, off, ln):
    import ctypes, ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, mode, off, ln) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

main()
