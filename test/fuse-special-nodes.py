# Seeded random mknod/rename/link/unlink/chmod/chown calls on FIFOs, sockets and devices, run
# in directory argv[1] with seed argv[2]; prints each call's outcome (ok or errno name) and,
# at the end, every entry's type, mode, links, owner and device numbers. The FUSE differential
# runs it on a kernel ext4 mount and on an ext4kit mount and compares the two outputs.
import errno, os, random, stat, sys

root, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
os.umask(0)
listOnly = count < 0  # list an existing tree only
NAMES = ['n1', 'n2', 'n3', 'g/n4', 'g/n5', 'missing/n6', 'reg']
TYPES = [stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFREG, 0]
DEVS = [(0, 0), (1, 3), (8, 1), (255, 255), (256, 0), (300, 5), (259, 100000), (4095, 1048575), (0, 256)]
MODES = [0o644, 0o600, 0o755, 0o6755, 0o2711, 0o1777, 0o000]
if not listOnly and not os.path.exists(os.path.join(root, 'g')):  # an unprivileged run finds g made by root
    os.mkdir(os.path.join(root, 'g'))
    os.chown(os.path.join(root, 'g'), 0, 1234)
    os.chmod(os.path.join(root, 'g'), 0o2777)

def p(n): return os.path.join(root, n)

def call(desc, fn):
    try:
        fn(); print(desc, 'ok')
    except OSError as e:
        print(desc, errno.errorcode.get(e.errno, str(e.errno)))

for i in range(max(count, 0)):
    k = r.choice(['mknod'] * 5 + ['unlink', 'rename', 'link', 'chmod', 'chown', 'stat'])
    a, b = r.choice(NAMES), r.choice(NAMES)
    if k == 'mknod':
        t, m, (ma, mi) = r.choice(TYPES), r.choice(MODES), r.choice(DEVS)
        call(f'mknod {a} {t:o} {m:o} {ma}:{mi}', lambda: os.mknod(p(a), t | m, os.makedev(ma, mi)))
    elif k == 'unlink': call(f'unlink {a}', lambda: os.unlink(p(a)))
    elif k == 'rename': call(f'rename {a} {b}', lambda: os.rename(p(a), p(b)))
    elif k == 'link': call(f'link {a} {b}', lambda: os.link(p(a), p(b)))
    elif k == 'chmod':
        m = r.choice(MODES)
        call(f'chmod {a} {m:o}', lambda: os.chmod(p(a), m))
    elif k == 'chown':
        u, g = r.choice([(0, 0), (5, 6), (-1, 1234), (1000, -1)])
        call(f'chown {a} {u} {g}', lambda: os.lchown(p(a), u, g))
    else:
        def st():
            s = os.lstat(p(a))
            print(f'  {a} {stat.filemode(s.st_mode)} {s.st_nlink} {os.major(s.st_rdev)}:{os.minor(s.st_rdev)} {s.st_size}')
        call(f'stat {a}', st)

for d, dirs, files in sorted(os.walk(root)):
    dirs[:] = [x for x in dirs if x != 'lost+found']
    for f in sorted(files):
        s = os.lstat(os.path.join(d, f))
        print(os.path.relpath(os.path.join(d, f), root), stat.filemode(s.st_mode), s.st_nlink, s.st_uid, s.st_gid,
              f'{os.major(s.st_rdev)}:{os.minor(s.st_rdev)}', s.st_size, s.st_blocks)
