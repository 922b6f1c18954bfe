"""The process metrics every function exports beside its own: CPU, memory, descriptors, GC, memory limit."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from common import metrics


def exposed() -> set[str]:
    text = metrics.exposition()[0].decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_registry_exports_process_and_python_runtime_metrics() -> None:
    names = exposed()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "python_gc_collections_total",
        "python_info",
    ):
        assert name in names


def test_the_memory_limit_is_read_from_cgroup_v2_then_v1(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert metrics.memory_limit((v2, v1)) is None  # neither file: not in a container
    v1.write_text("536870912\n")
    assert metrics.memory_limit((v2, v1)) == 536870912
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    assert metrics.memory_limit((v2, v1)) is None
    v2.write_text("max\n")  # cgroup v2's "no limit" wins over v1
    v1.write_text("536870912\n")
    assert metrics.memory_limit((v2, v1)) is None
    v2.write_text("268435456\n")
    assert metrics.memory_limit((v2, v1)) == 268435456


def test_the_memory_limit_series_exists_only_where_there_is_a_limit() -> None:
    limited = metrics.MemoryLimitCollector(268435456).collect()
    assert [(s.name, s.value) for family in limited for s in family.samples] == [
        ("victor_memory_limit_bytes", 268435456.0)
    ]
    assert metrics.MemoryLimitCollector(None).collect() == []
