"""A process tree's CPU time and memory, read from /proc (Linux).

The benchmark counts the server side as a capacity planner would: every process under the one it
started (``tnca dev``, whose threads run both CT logs and the renewal worker, and its ACME
server's gunicorn master and workers). Memory is read two ways: RSS counts every page a process
maps, so pages the gunicorn workers share with their master since the fork (copy-on-write)
count once per process in a sum; PSS (proportional set size) charges a page shared by N
processes 1/N to each, so the PSS of the tree sums to the memory it really holds.
"""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after "(comm)": state ppid … utime(14) stime(15) …; comm may hold spaces or ")".
    return text[text.rindex(")") + 2:].split()


def process_tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of one process (all its threads), or None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def cpu_by_process(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        seconds = cpu_seconds(pid)
        if seconds is not None:
            found[pid] = seconds
    return found


def rss_kib(pids: list[int]) -> int:
    """The sum of VmRSS over the processes (shared pages count once per process)."""
    return _sum_kib(pids, "status", "VmRSS:")


def pss_kib(pids: list[int]) -> int:
    """The sum of PSS over the processes (/proc/PID/smaps_rollup, Linux 4.14+): each shared page
    counted once in all, split between the processes that map it."""
    return _sum_kib(pids, "smaps_rollup", "Pss:")


def _sum_kib(pids: list[int], file: str, field: str) -> int:
    """The sum of one ``field: N kB`` line of /proc/PID/``file`` over the live processes."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue  # the process ended while we looked
    return total


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Per live thread of ``pid``: (its OS-level name, user + system CPU seconds). Threads named
    with ``ctlog.server.name_os_thread`` show their name; a thread's name is inherited by the
    threads it starts. The CPU of threads that have ended is in :func:`cpu_seconds` only."""
    found = {}
    for stat in Path(f"/proc/{pid}/task").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the thread ended while we looked
        fields = text[text.rindex(")") + 2:].split()
        comm = text[text.index("(") + 1:text.rindex(")")]
        found[int(stat.parent.name)] = (comm, (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND)
    return found


def thread_names(pid: int) -> list[str]:
    """The OS-level names of ``pid``'s live threads."""
    return [name for name, _cpu in thread_cpu(pid).values()]


def children(pid: int) -> dict[int, str]:
    """The live processes whose parent is ``pid``, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        child = int(stat.parent.name)
        if parent(child) == pid:
            found[child] = command_line(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[1])


class TreeSampler(threading.Thread):
    """Every ``interval`` seconds: the server tree's summed RSS and summed PSS (peaks kept), and
    the CPU of each thread of the root process (the last reading of each kept, so that a thread
    that ends in the window still counts up to its last sample)."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True, name="tree-sampler")
        self.root, self.interval = root, interval
        self.peak_rss_kib = self.peak_pss_kib = 0
        self.threads: dict[int, tuple[str, float]] = {}
        self.stopped = threading.Event()

    def sample(self) -> None:
        tree = process_tree([self.root])
        self.peak_rss_kib = max(self.peak_rss_kib, rss_kib(tree))
        self.peak_pss_kib = max(self.peak_pss_kib, pss_kib(tree))
        self.threads.update(thread_cpu(self.root))

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sample()
            self.stopped.wait(self.interval)


def thread_roles(root: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                 process_seconds: float) -> dict[str, float]:
    """The root process's CPU in the window (``process_seconds``) split by what its threads run:
    each log's threads (named ``ctlog NAME``, request threads included), the renewal worker, the
    main thread (supervision, startup); what threads that ended between samples used is the rest."""
    split: dict[str, float] = collections.defaultdict(float)
    for tid, (comm, seconds) in after.items():
        if tid == root:
            role = "supervisor (main thread)"
        elif comm.startswith("ctlog "):
            role = f"ct log {comm[len('ctlog '):]}"
        elif comm == "renewal worker":
            role = comm
        else:
            role = f"other threads ({comm})"
        split[role] += seconds - before.get(tid, (comm, 0.0))[1]
    split["threads ended between samples"] = max(0.0, process_seconds - sum(split.values()))
    return split
