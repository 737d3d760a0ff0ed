"""A process's CPU time and memory, read from /proc (psutil is not a dependency)."""

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessUsage:
    cpu_s: float  # user + system, every thread of the process
    rss_kib: int  # resident now
    peak_rss_kib: int  # high-water mark since the process started (VmHWM)


def cpu_seconds(stat: str, ticks_per_s: int = CLOCK_TICKS) -> float:
    """utime + stime from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may hold spaces or parentheses itself,
    so the fields are counted from the last ')'.
    """
    after_name = stat[stat.rindex(")") + 2 :].split()
    # after_name[0] is field 3 (state); utime and stime are fields 14 and 15.
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / ticks_per_s


def memory_kib(status: str) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB from the text of /proc/<pid>/status."""
    values: dict[str, int] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if set(values) != {"VmRSS", "VmHWM"}:
        raise ValueError("no VmRSS/VmHWM in /proc status (a kernel thread or a zombie?)")
    return values["VmRSS"], values["VmHWM"]


def usage(pid: int, proc: Path = Path("/proc")) -> ProcessUsage:
    stat = (proc / str(pid) / "stat").read_text()
    rss, hwm = memory_kib((proc / str(pid) / "status").read_text())
    return ProcessUsage(cpu_s=cpu_seconds(stat), rss_kib=rss, peak_rss_kib=hwm)


def machine_busy_seconds(stat: str, ticks_per_s: int = CLOCK_TICKS) -> float:
    """CPU time every core spent not idle, from the text of /proc/stat (first line)."""
    fields = stat.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("/proc/stat does not start with the aggregate cpu line")
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    values = [int(v) for v in fields[1:9]]
    return (sum(values) - values[3] - values[4]) / ticks_per_s


def machine_busy(proc: Path = Path("/proc")) -> float:
    return machine_busy_seconds((proc / "stat").read_text())


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def pid_from_file(path: Path) -> int | None:
    """The pid a pid file names, if that process is alive."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None
