"""The machine side of a run: CPU pinning, free ports, process trees, RSS, and other load.

Everything here reads Linux's /proc; nothing in this module starts a load run.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """``argv`` run under ``taskset -c CPU`` (unchanged when cpu is None)."""
    if cpu is None:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process is still there after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, alive=lambda: True) -> None:
    """Until a TCP connection to 127.0.0.1:port succeeds; raises if ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("server exited before it accepted connections")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing accepted connections on port {port} within {timeout:.0f}s")


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard one (inherited by servers and load generators)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that still exist."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    """Summed VmRSS of a process and its descendants (a supervisor plus its worker)."""
    return sum(rss_kib(p) for p in process_tree(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads included (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds over all cores since boot, steal seconds)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / CLOCK_TICKS, steal / CLOCK_TICKS


def _own_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class LoadWatch:
    """CPU used on the machine during a run by anything other than the run itself.

    Start it once the server is up; ``stop()`` must run while the server is still alive and after
    the load generator has been waited for (its CPU then shows in RUSAGE_CHILDREN).
    """

    server_pid: int
    started: float = 0.0
    busy0: float = 0.0
    steal0: float = 0.0
    server0: float = 0.0
    children0: float = 0.0
    self0: float = 0.0
    load_before: str = ""
    result: dict = field(default_factory=dict)

    def start(self) -> LoadWatch:
        self.load_before = loadavg()
        self.started = time.monotonic()
        self.busy0, self.steal0 = _machine_busy_seconds()
        self.server0 = tree_cpu_seconds(self.server_pid)
        self.children0 = _own_children_cpu()
        self.self0 = _self_cpu()
        return self

    def stop(self) -> dict:
        busy, steal = _machine_busy_seconds()
        wall = max(time.monotonic() - self.started, 1e-6)
        ours = (
            tree_cpu_seconds(self.server_pid) - self.server0
            + _own_children_cpu() - self.children0
            + _self_cpu() - self.self0
        )
        other = max(0.0, (busy - self.busy0) - ours)
        self.result = {
            "other_cpu": round(other / wall, 3),  # in cores, averaged over the run
            "steal_cpu": round((steal - self.steal0) / wall, 3),
            "server_cpu": round((tree_cpu_seconds(self.server_pid) - self.server0) / wall, 3),
            "loadavg_before": self.load_before,
            "loadavg_after": loadavg(),
        }
        return self.result


def machine_description() -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def wrk_version() -> str:
    path = shutil.which("wrk")
    if not path:
        return "missing"
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def require_tools() -> list[str]:
    """Names of the external tools the suite needs that are not installed."""
    return [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
