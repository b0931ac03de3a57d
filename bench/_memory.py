"""Peak memory of the current process, for the bench scripts: measured so that a child never reports its parent's.

`getrusage(RUSAGE_SELF).ru_maxrss` is the wrong figure for a bench's child processes: Linux carries the high-water
mark over from the process that forked the child, so a child of a parent that had generated 10M rows reported the
parent's 3 GB as its own peak. `VmHWM` in /proc/self/status is the peak resident size of the process's own address
space, which starts afresh when the child execs.
"""
import resource

HOW = "peak RSS: VmHWM of each process's own address space (/proc/self/status), which starts afresh at exec (not ru_maxrss, which a child inherits from its parent)"


def peak_rss() -> int:
    "Bytes: the peak resident set size of this process's own address space."
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024
    except OSError: pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: the best there is
