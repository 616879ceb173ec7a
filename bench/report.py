"""Figures -> markdown tables (absolute, ratio to HAProxy nbthread 1, ratio to direct), the
machine's description, and one PNG chart of the ratios to HAProxy nbthread 1."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.targets import FLOOR, REFERENCE, TargetSpec
from bench.workloads import SpliceCheck


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    digits: int


METRICS = [
    Metric("bulk1", "iperf3, 1 stream", "Gbit/s", True, 2),
    Metric("bulk4", "iperf3, 4 streams", "Gbit/s", True, 2),
    Metric("get_rps", "redis GET, 50 persistent clients", "req/s", True, 0),
    Metric("get_p50", "redis GET p50 latency", "ms", False, 3),
    Metric("get_p99", "redis GET p99 latency", "ms", False, 3),
    Metric("set_rps", "redis SET, 50 persistent clients", "req/s", True, 0),
    Metric("set_p50", "redis SET p50 latency", "ms", False, 3),
    Metric("set_p99", "redis SET p99 latency", "ms", False, 3),
    Metric("conn_rps", "redis GET, new connection per request (-k 0)", "req/s", True, 0),
    Metric("idle_rss", "idle sessions: proxy RSS per session", "KB", False, 2),
    Metric("idle_fds", "idle sessions: proxy fds per session", "fds", False, 2),
    Metric("cpu_gb1", "proxy CPU per GB moved, iperf3 1 stream", "CPU s/GB", False, 3),
    Metric("cpu_gb4", "proxy CPU per GB moved, iperf3 4 streams", "CPU s/GB", False, 3),
    Metric("cpu_req", "proxy CPU per request, 50 persistent clients (GET+SET)", "us", False, 1),
    Metric("cpu_req_user", "... of which user time (the proxy's own code)", "us", False, 1),
    Metric("cpu_conn", "proxy CPU per new connection (-k 0)", "us", False, 1),
    Metric("cpu_conn_user", "... of which user time (the proxy's own code)", "us", False, 1),
]


@dataclass
class Results:
    targets: list[TargetSpec]
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    splice: dict[str, SpliceCheck] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, target: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(metric, {}).setdefault(target, []).append(value)

    def median(self, metric: str, target: str) -> float | None:
        vals = self.values.get(metric, {}).get(target)
        return statistics.median(vals) if vals else None

    def spread(self, metric: str, target: str) -> tuple[float, float] | None:
        vals = self.values.get(metric, {}).get(target)
        return (min(vals), max(vals)) if vals else None

    def ratio(self, metric: str, target: str, ref: str) -> float | None:
        value, base = self.median(metric, target), self.median(metric, ref)
        if value is None or not base:
            return None
        return value / base


# --- machine ----------------------------------------------------------------------------------

def write_result(directory: Path, stem: str, text: str, tool: str) -> Path:
    """Print a run's markdown and write it to directory/stem.md (a bench/results file)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{stem}.md"
    out.write_text(text)
    print(text)
    print(f"{tool}: wrote {out}", file=sys.stderr)
    return out


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


_REPO = str(Path(__file__).resolve().parents[1])


def _uncommitted() -> str:
    """" + uncommitted changes in relay/ (diff <hash>)", or "" when relay/ is as committed:
    the working tree is what runs, and other people may be editing it."""
    diff = subprocess.run(["git", "-C", _REPO, "diff", "HEAD", "--", "relay"],
                          capture_output=True, timeout=10).stdout
    untracked = subprocess.run(["git", "-C", _REPO, "ls-files", "--others", "--exclude-standard",
                                "--", "relay"], capture_output=True, timeout=10).stdout
    if not (diff or untracked):
        return ""
    digest = hashlib.sha1(diff + untracked, usedforsecurity=False).hexdigest()[:8]
    return f" + uncommitted changes in relay/ (diff {digest})"


def relay_version() -> str:
    """The commit, plus a hash of relay/'s uncommitted changes if any."""
    return _first_line(["git", "-C", _REPO, "rev-parse", "--short", "HEAD"]) + _uncommitted()


def relay_tree() -> str:
    """What relay/ holds: its tree in HEAD plus a hash of its uncommitted changes (a commit
    elsewhere, docs or bench/, leaves it as it was)."""
    return _first_line(["git", "-C", _REPO, "rev-parse", "--short", "HEAD:relay"]) + _uncommitted()


def machine(relay: str) -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    haproxy = _first_line(["haproxy", "-v"])
    m = re.search(r"version (\S+)", haproxy)
    redis = _first_line(["redis-server", "--version"])
    r = re.search(r"v=(\S+)", redis)
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable by this run)",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "HAProxy": m.group(1) if m else haproxy,
        "iperf3": _first_line(["iperf3", "--version"]),
        "redis-server / redis-benchmark": r.group(1) if r else redis,
        "relay": relay,
    }


# --- markdown ---------------------------------------------------------------------------------

def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}" if digits == 0 else f"{value:.{digits}f}"


def _cell(res: Results, metric: Metric, target: str) -> str:
    med = res.median(metric.key, target)
    if med is None:
        return "—"
    lo, hi = res.spread(metric.key, target) or (med, med)
    return f"{_num(med, metric.digits)} [{_num(lo, metric.digits)}-{_num(hi, metric.digits)}]"


def _better(metric: Metric) -> str:
    return "higher" if metric.higher_is_better else "lower"


def table_absolute(res: Results) -> str:
    keys = [t.key for t in res.targets]
    lines = ["| workload | unit | better | " + " | ".join(keys) + " |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in keys) + " |"]
    for m in METRICS:
        if m.key not in res.values:
            continue
        cells = [_cell(res, m, k) for k in keys]
        lines.append(f"| {m.label} | {m.unit} | {_better(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_ratio(res: Results, ref: str) -> str:
    keys = [t.key for t in res.targets]
    lines = ["| workload | better | " + " | ".join(keys) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in keys) + " |"]
    for m in METRICS:
        if m.key not in res.values:
            continue
        cells = []
        for k in keys:
            r = res.ratio(m.key, k, ref)
            cells.append("—" if r is None else f"{r:.2f}x")
        if all(c == "—" for c in cells):
            continue
        lines.append(f"| {m.label} | {_better(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_splice(res: Results) -> str:
    lines = ["| target | method | splice calls | read/write/recv/send calls | spliced? |",
             "| --- | --- | ---: | ---: | --- |"]
    for t in res.targets:
        c = res.splice.get(t.key)
        if c is None:
            continue
        err = f" ({c.error})" if c.error else ""
        lines.append(f"| {t.key} | {c.method}{err} | {c.splice:,} | {c.copy:,} | {c.verdict} |")
    return "\n".join(lines)


def markdown(res: Results, title: str, settings: list[str], mach: dict[str, str]) -> str:
    parts = [f"# {title}", ""]
    parts += [f"- {k}: {v}" for k, v in mach.items()]
    parts += ["", *[f"- {s}" for s in settings], ""]
    parts += ["Targets:", ""] + [f"- `{t.key}`: {t.label}" for t in res.targets] + [""]
    parts += ["## Absolute figures (median [min-max] of the rounds)", "", table_absolute(res), ""]
    parts += [f"## Ratio to HAProxy nbthread 1 (`{REFERENCE}`), medians", "",
              table_ratio(res, REFERENCE), ""]
    parts += ["## Ratio to direct (no proxy), medians", "", table_ratio(res, "direct"), ""]
    if res.splice:
        parts += ["## Did it splice?", "",
                  "Data syscalls of the proxy process (all threads) during one extra iperf3 "
                  "single-stream run, not part of the figures above.", "", table_splice(res), ""]
    if res.notes or res.errors:
        parts += ["## Notes", ""] + [f"- {n}" for n in res.notes]
        parts += [f"- error: {e}" for e in res.errors]
        parts += [""]
    return "\n".join(parts)


# --- chart ------------------------------------------------------------------------------------

def chart(res: Results, path: Path, title: str) -> None:
    """Horizontal bars of each proxy's ratio to HAProxy nbthread 1, on a log2 axis, growing
    from 1.0 (so a bar to the right means "more than HAProxy"); direct is a black diamond
    in its own slot above them.
    Without HAProxy nbthread 1 among the targets (a --targets subset), ratios to direct."""
    keys = [t.key for t in res.targets]
    ref = REFERENCE if REFERENCE in keys else "direct"
    if ref not in keys:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    metrics = [m for m in METRICS if m.key in res.values
               and res.median(m.key, ref) is not None]
    proxies = [t.key for t in res.targets if t.key not in (ref, "direct")]
    slots = (["direct"] if ref != "direct" and "direct" in keys else []) + proxies
    height = 0.84 / max(1, len(slots))
    fig, ax = plt.subplots(figsize=(11, 0.85 * len(metrics) + 2.4))
    colors = plt.get_cmap("tab10").colors
    seen: list[float] = [1.0]
    for i, key in enumerate(slots):
        ys, xs, lo, hi = [], [], [], []
        for row, m in enumerate(metrics):
            r = res.ratio(m.key, key, ref)
            if r is None:
                continue
            base = res.median(m.key, ref) or 1.0
            mn, mx = res.spread(m.key, key) or (r * base, r * base)
            ys.append(row - 0.42 + height * (i + 0.5))
            xs.append(r)
            lo.append(max(0.0, r - mn / base))
            hi.append(max(0.0, mx / base - r))
            seen += [mn / base, mx / base]
        if key == "direct":  # the ceiling, drawn as a marker in its own slot
            ax.scatter(xs, ys, marker="D", s=18, color="black", zorder=3,
                       label="direct (no proxy)")
        else:  # the floor (bench/floor_relay.py, not relay) hatched
            ax.barh(ys, [x - 1.0 for x in xs], left=1.0, height=height * 0.9,
                    color=colors[i % len(colors)], label=key,
                    hatch="///" if key == FLOOR else None, edgecolor="white", linewidth=0)
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="none", ecolor="black", elinewidth=0.7,
                    capsize=1.5, alpha=0.6)
        for x, y, below, above in zip(xs, ys, lo, hi, strict=True):
            # beyond the whisker, on the side the bar grows to
            at = (x + above) * 1.03 if x >= 1 else (x - below) / 1.03
            ax.text(at, y, f"{x:.2f}", va="center", ha="left" if x >= 1 else "right",
                    fontsize=6)
    for row in range(len(metrics) - 1):
        ax.axhline(row + 0.5, color="grey", linewidth=0.4, alpha=0.5)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log", base=2)
    lo_x, hi_x = min(seen) / 1.3, max(seen) * 1.3
    ax.set_xlim(lo_x, hi_x)
    ticks = [t for t in (1 / 64, 1 / 32, 1 / 16, 1 / 8, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8,
                         16, 32, 64) if lo_x <= t <= hi_x]
    ax.xaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_yticks(range(len(metrics)))
    ax.set_yticklabels([f"{m.label}\n({m.unit}, {_better(m)} is better)" for m in metrics],
                       fontsize=8)
    ax.set_ylim(len(metrics) - 0.5, -0.5)
    ax.set_xlabel(f"ratio to {ref} (median / median, log scale; "
                  "whiskers: min-max of the rounds)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07),
              ncol=min(len(slots), 4), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
