"""Small SVG charts drawn on the server: no JavaScript, no CDN."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 720, 160, 24
COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828"}


def bars(series: dict[str, list[tuple[str, int]]], label_every: int = 10) -> Markup:
    """Grouped bars of succeeded/failed per bucket, with the bucket time as a tooltip."""
    names = [name for name in ("succeeded", "failed") if name in series]
    buckets = len(series[names[0]]) if names else 0
    peak = max([count for name in names for _, count in series[name]] + [1])
    slot = (WIDTH - 2 * PAD) / max(buckets, 1)
    bar = max(slot / max(len(names), 1) - 1, 1)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="jobs per interval">']
    parts.append(f'<text x="{PAD}" y="12" class="axis">max {peak}</text>')
    for n, name in enumerate(names):
        for i, (moment, count) in enumerate(series[name]):
            height = (HEIGHT - 2 * PAD) * count / peak
            x = PAD + i * slot + n * bar
            y = HEIGHT - PAD - height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" fill="{COLOURS[name]}">'
                f"<title>{escape(moment)} {escape(name)}: {count}</title></rect>"
            )
    for i, (moment, _) in enumerate(series[names[0]] if names else []):
        if i % label_every == 0:
            parts.append(
                f'<text x="{PAD + i * slot:.1f}" y="{HEIGHT - 6}" class="axis">{escape(moment[11:16])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
