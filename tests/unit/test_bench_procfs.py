import pytest

from bench.procfs import cpu_seconds, machine_busy_seconds, memory_kib

# A real /proc/<pid>/stat line, with a command name holding a space and a parenthesis.
STAT = (
    "4242 (python (x) y) S 1 4242 4242 0 -1 4194304 9000 0 0 0 "
    "250 75 0 0 20 0 3 0 123456 300000000 20000 18446744073709551615 1 1 0 0 0 0 0 "
    "16781312 17642 0 0 0 17 1 0 0 0 0 0"
)

STATUS = """Name:\tpython
State:\tS (sleeping)
VmPeak:\t  300000 kB
VmHWM:\t   81234 kB
VmRSS:\t   80000 kB
Threads:\t3
"""


def test_cpu_time_is_user_plus_system_ticks_counted_after_the_command_name() -> None:
    assert cpu_seconds(STAT, ticks_per_s=100) == pytest.approx(3.25)


def test_rss_and_its_high_water_mark_are_read_in_kib() -> None:
    assert memory_kib(STATUS) == (80000, 81234)


def test_a_status_without_memory_lines_is_refused() -> None:
    with pytest.raises(ValueError, match="VmRSS"):
        memory_kib("Name:\tkthreadd\nState:\tS (sleeping)\n")


def test_machine_busy_time_leaves_out_idle_and_iowait() -> None:
    stat = "cpu  100 20 30 5000 40 5 5 0 0 0\ncpu0 50 10 15 2500 20 2 3 0 0 0\n"
    assert machine_busy_seconds(stat, ticks_per_s=100) == pytest.approx(1.6)
