#!/usr/bin/env python3
"""The disk's sync floor, the way a log store meets it: one small write and an fdatasync, by 1, 2
and 3 writers (three nodes on one disk) that start each write at the same moment.

  python3 benches/fsync.py [BYTES] [WRITES]      # default: 180 bytes, 1500 writes a writer
  DIR=/var/lib/raft python3 benches/fsync.py     # on another file system (default: /tmp)

Each writer has its own file, in one of four ways:

  append     the file grows with each write (RocksDB's write-ahead log): each sync must also
             write the file's new size, an ext4 journal commit of its own
  keep-size  space allocated ahead with FALLOC_FL_KEEP_SIZE (what RocksDB asks for its WAL):
             the size still grows with each write
  allocated  space allocated ahead with posix_fallocate, which sets the size (raft-storage-file's
             journal): writes then land inside the file
  zeroed     the file written with zeros and synced first: each write overwrites written blocks

Prints one line per way and writer count: the p50 and mean of write + fdatasync, in µs.
"""

import ctypes
import os
import sys
import time
from multiprocessing import Barrier, Process, Queue

FALLOC_FL_KEEP_SIZE = 1


def writer(results, barrier, path, way, size, writes):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    total = size * writes
    if way == "keep-size":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(total)) != 0:
            raise OSError(ctypes.get_errno(), "fallocate")
        os.fsync(fd)
    elif way == "allocated":
        os.posix_fallocate(fd, 0, total)
        os.fsync(fd)
    elif way == "zeroed":
        os.write(fd, b"\0" * total)
        os.fsync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
    record = b"x" * size
    latencies = []
    for _ in range(writes):
        barrier.wait()
        start = time.perf_counter()
        os.write(fd, record)
        os.fdatasync(fd)
        latencies.append(time.perf_counter() - start)
    os.close(fd)
    os.unlink(path)
    results.put(latencies)


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 180
    writes = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    directory = os.environ.get("DIR", "/tmp")
    print(f"{size} B a write, {writes} writes a writer, in {directory}")
    for way in ("append", "keep-size", "allocated", "zeroed"):
        for count in (1, 2, 3):
            results, barrier = Queue(), Barrier(count)
            paths = [os.path.join(directory, f"fsync-probe-{os.getpid()}-{i}") for i in range(count)]
            procs = [Process(target=writer, args=(results, barrier, p, way, size, writes)) for p in paths]
            for p in procs:
                p.start()
            latencies = sorted(sum((results.get() for _ in procs), []))
            for p in procs:
                p.join()
            p50 = latencies[len(latencies) // 2] * 1e6
            mean = sum(latencies) / len(latencies) * 1e6
            print(f"{way:10} writers={count}  p50 {p50:5.0f} µs  mean {mean:5.0f} µs")


if __name__ == "__main__":
    main()
