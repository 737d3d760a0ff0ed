"""The arithmetic of issue 21's headline figure (bench.fleet_cost): GPU hosts per core."""

import dataclasses

import pytest

from bench.fleet_check import Check, files_to_submit
from bench.fleet_cost import (
    Repeat,
    fleet_scale,
    fleet_section,
    hosts_per_core,
    spread,
    work_per_file,
)


def test_work_per_file_removes_what_idling_costs_over_the_makespan() -> None:
    # 10 s of batch at 0.1 CPU s/s idle: 1 s of the 5 s is idling, 4 s over 100 files.
    assert work_per_file(5.0, 0.1, 10.0, 100) == pytest.approx(0.04)


def test_work_per_file_is_never_negative_and_needs_files() -> None:
    assert work_per_file(0.5, 0.1, 10.0, 100) == 0.0
    with pytest.raises(ValueError, match="no files"):
        work_per_file(1.0, 0.1, 10.0, 0)


def test_hosts_per_core_divides_the_fleet_by_the_cpu_it_needs_at_real_speed() -> None:
    # 4 hosts: 0.02 s/s idle + 2 ms per file x 4 files/s = 0.028 s/s -> ~143 hosts per core.
    assert hosts_per_core(4, 0.02, 0.002, 4.0) == pytest.approx(4 / 0.028)
    with pytest.raises(ValueError, match="no CPU"):
        hosts_per_core(4, 0.0, 0.0, 4.0)


def test_a_repeat_projects_its_batch_to_real_model_speed() -> None:
    repeat = Repeat(
        hosts=4,
        scale=0.1,
        idle_cpu_per_s=0.1,
        idle_shared_per_s={"kafka broker": 0.05},
        files=100,
        makespan_s=10.0,
        batch_cpu_s=2.0,
        batch_shared_s={"kafka broker": 1.5},
        utilization=0.95,
        other_load=0.3,
    )
    assert repeat.real_files_per_s == pytest.approx(1.0)  # 100 files x 0.1 / 10 s
    # Kept busy, the fleet's pace is its busiest stage's, not the batch's fill and drain.
    paced = dataclasses.replace(repeat, neck_busy_s=5.0)
    assert paced.real_files_per_s == pytest.approx(2.0)
    assert repeat.work_per_file_s == pytest.approx(0.01)
    assert repeat.hosts_per_core == pytest.approx(4 / (0.1 + 0.01))
    assert repeat.shared_per_host("kafka broker") == pytest.approx((0.05 + 0.01) / 4)
    assert repeat.shared_per_host("mariadb") == 0.0


def test_larger_fleets_run_slower_models_up_to_a_real_gpu() -> None:
    assert fleet_scale(4) == pytest.approx(0.1)
    assert fleet_scale(16) == pytest.approx(0.4)
    assert fleet_scale(64) == 1.0


def test_spread_is_median_lowest_highest() -> None:
    assert spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


def test_the_real_speed_check_keeps_the_fleet_busy_past_its_window_and_divides() -> None:
    # 1 file/s over a 60 s fill and a 300 s window, with half as many again still waiting.
    assert files_to_submit(1.0, 60.0, 300.0) == 540
    check = Check(hosts=4, window_s=300.0, cpu_per_s=0.04, files_done=330, other_load=0.0)
    assert check.hosts_per_core == pytest.approx(100.0)
    assert check.files_per_s == pytest.approx(1.1)


def test_the_section_states_the_measured_figure_against_the_target_and_each_process() -> None:
    repeat = Repeat(
        hosts=4,
        scale=0.1,
        idle_cpu_per_s=0.05,
        idle_shared_per_s={},
        files=100,
        makespan_s=10.0,
        batch_cpu_s=1.5,
        batch_shared_s={},
        utilization=0.95,
        other_load=0.0,
        idle_services_per_s={"gpu-127.0.2.2": 0.01, "gpu-127.0.2.3": 0.03, "tracker": 0.01},
        batch_services_s={"gpu-127.0.2.2": 0.5, "gpu-127.0.2.3": 0.7, "tracker": 0.3},
    )
    check = Check(
        hosts=4,
        window_s=300.0,
        cpu_per_s=0.05,
        files_done=300,
        other_load=0.0,
        services_per_s={"gpu-127.0.2.2": 0.01, "gpu-127.0.2.3": 0.02, "simulator": 0.5},
    )
    section = fleet_section({4: [repeat]}, {}, {4: check})
    (measured,) = [f for f in section.figures if "measured at real speed" in f.name]
    assert measured.value == pytest.approx(80.0) and measured.met is False
    text = "\n".join(section.details)
    assert "| 4 | gpu_stage (mean of 2) | 20.0 |" in text  # (10 + 30) / 2 ms/s idle
    assert "| 4 | tracker | 10.0 |" in text
    assert "Per process, ms/s: gpu_stage (mean of 2) 15.0." in text  # the simulator left out
