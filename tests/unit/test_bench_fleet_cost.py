"""The arithmetic of issue 21's headline figure (bench.fleet_cost): GPU hosts per core."""

import dataclasses

import pytest

from bench.fleet_cost import Repeat, fleet_scale, hosts_per_core, spread, work_per_file


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
