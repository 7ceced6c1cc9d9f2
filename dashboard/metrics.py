"""Prometheus metrics at /metrics, in the text exposition format (no client library needed)."""

from __future__ import annotations

from flask import Blueprint, Response

from jobs import inspect, timeline

from .views import context

metrics = Blueprint("metrics", __name__)


def _line(name: str, value: float, **labels: str) -> str:
    text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
    return f"{name}{{{text}}} {value}" if labels else f"{name} {value}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _histogram(metric: str, job_name: str, buckets: dict[str, float]) -> list[str]:
    """Prometheus histogram lines (cumulative buckets, _sum, _count) from per-bucket counts."""
    lines, running = [], 0.0
    for edge in [*map(str, timeline.DURATION_BUCKETS), "+Inf"]:
        running += buckets.get(edge, 0)
        lines.append(_line(f"{metric}_bucket", int(running), job=job_name, le=edge))
    lines.append(_line(f"{metric}_sum", round(buckets.get("sum", 0.0), 6), job=job_name))
    lines.append(_line(f"{metric}_count", int(running), job=job_name))
    return lines


@metrics.get("/metrics")
def exposition():
    ctx = context()
    queues = {name: inspect.queue_stats(ctx, name) for name in inspect.queue_names(ctx)}
    lines = ["# HELP jobs_queue_jobs Jobs per queue and state.", "# TYPE jobs_queue_jobs gauge"]
    for name, stats in queues.items():
        lines += [
            _line("jobs_queue_jobs", count, queue=name, state=state) for state, count in stats.counts.items()
        ]
    lines += [
        "# HELP jobs_queue_oldest_age_seconds Seconds the oldest queued job of each queue has waited.",
        "# TYPE jobs_queue_oldest_age_seconds gauge",
    ]
    for name, stats in queues.items():
        if stats.oldest_age is not None:
            lines.append(_line("jobs_queue_oldest_age_seconds", round(stats.oldest_age, 3), queue=name))
    lines += [
        "# HELP jobs_finished_last_day Jobs finished in the last 24 hours, by job name and outcome.",
        "# TYPE jobs_finished_last_day gauge",
    ]
    for status in ("succeeded", "failed"):
        for job_name, count in sorted(timeline.by_name(ctx.redis, ctx.keys, status, "hour", 24).items()):
            lines.append(_line("jobs_finished_last_day", count, job=job_name, status=status))
    lines += [
        "# HELP jobs_duration_seconds Run time of successful jobs over the last 24 hours, by job name.",
        "# TYPE jobs_duration_seconds histogram",
    ]
    for job_name, buckets in sorted(timeline.durations(ctx.redis, ctx.keys, 24).items()):
        lines += _histogram("jobs_duration_seconds", job_name, buckets)
    views = inspect.workers(ctx)
    lines += ["# HELP jobs_processes Live worker and scheduler processes.", "# TYPE jobs_processes gauge"]
    for kind in ("worker", "scheduler"):
        lines.append(
            _line("jobs_processes", sum(1 for v in views if v.kind == kind and not v.dead), kind=kind)
        )
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
