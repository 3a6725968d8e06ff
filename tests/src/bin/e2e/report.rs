//! What the run reports: the lines printed, the Markdown report and the latency chart.

use std::path::Path;

use crate::measure::memory_mib;
use crate::processes::Processes;
use crate::rate::RateResult;

/// Prints one rate's results and the CPU each process spent on it.
pub fn print_rate(r: &RateResult) {
    println!(
        "offered {:>6.0}/s (sent {:>6.0}/s): acked {:>6.0}/s (p50 {:>6.1} ms, p99 {:>7.1} ms), reached the CRM {:>6.0}/s in the window, \
         event→CRM p50 {:>7.1} ms p99 {:>8.1} ms, backlog mid/end {}/{}, drained {:.1} s after, \
         not arrived {}, doubled {}, shed {}, failed {}, not sent {}, {:.2} ms CPU per event{}",
        r.offered,
        r.sent_rate,
        r.ack_rate,
        r.ack_p50,
        r.ack_p99,
        r.delivery_rate,
        r.e2e_p50,
        r.e2e_p99,
        r.backlog_mid,
        r.backlog_end,
        r.drain_seconds,
        r.lost,
        r.doubled,
        r.shed,
        r.failed,
        r.not_sent,
        r.cpu_ms_per_event,
        r.statements_per_event
            .map(|n| format!(", {n:.1} SQL statements per event"))
            .unwrap_or_default()
    );
    let cpu: Vec<String> = r
        .cpu_lines
        .iter()
        .map(|(n, s)| format!("{n} {s:.1} s"))
        .collect();
    println!("    CPU: {}", cpu.join(", "));
}

/// The line comparing the ingest ceiling with pgbench's, when there is one.
pub fn ceiling_line(
    ingest: f64,
    refused: usize,
    pg: Option<f64>,
    clients: usize,
    size: usize,
) -> String {
    match pg {
        Some(tps) => format!(
            "ingest, {} closed-loop senders: {ingest:.0} events/s ({refused} refused); pgbench, {} clients, one {size}-byte row per transaction: {tps:.0} tps; ratio {:.2}",
            clients,
            clients,
            ingest / tps
        ),
        None => format!(
            "ingest, {} closed-loop senders: {ingest:.0} events/s ({refused} refused)",
            clients
        ),
    }
}

/// The line giving each process's peak and current memory.
pub fn memory_line(processes: &Processes) -> String {
    let memory: Vec<String> = processes
        .pids()
        .into_iter()
        .map(|(n, pid)| {
            format!(
                "{n} peak {:.0} MiB (now {:.0} MiB)",
                memory_mib(pid, "VmHWM"),
                memory_mib(pid, "VmRSS")
            )
        })
        .collect();
    format!("memory: {}", memory.join(", "))
}

/// Writes `e2e.md` (the header, the unloaded latency, a table of the rates, the ceiling and the
/// memory) and the chart `e2e.svg` to `out`, and says so.
pub fn write_report(
    out: &Path,
    header: &str,
    unloaded_line: &str,
    results: &[RateResult],
    ceiling_line: &str,
    memory_line: &str,
) {
    std::fs::create_dir_all(out).unwrap();
    let mut md = format!(
        "{header}\n\n{unloaded_line}\n\n| offered/s | acked/s | ack p99 ms | reached CRM/s | event→CRM p50 ms | p99 ms | backlog mid/end | not arrived | doubled | shed | CPU ms/event | SQL/event |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in results {
        md += &format!(
            "| {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {}/{} | {} | {} | {} | {:.2} | {} |\n",
            r.offered,
            r.ack_rate,
            r.ack_p99,
            r.delivery_rate,
            r.e2e_p50,
            r.e2e_p99,
            r.backlog_mid,
            r.backlog_end,
            r.lost,
            r.doubled,
            r.shed,
            r.cpu_ms_per_event,
            r.statements_per_event
                .map(|n| format!("{n:.1}"))
                .unwrap_or_else(|| "–".into())
        );
    }
    md += &format!("\n{ceiling_line}\n\n{memory_line}\n");
    std::fs::write(out.join("e2e.md"), md).unwrap();
    std::fs::write(
        out.join("e2e.svg"),
        chart(results, &format!("Tributary end to end — {header}")),
    )
    .unwrap();
    println!(
        "wrote {} and {}",
        out.join("e2e.md").display(),
        out.join("e2e.svg").display()
    );
}

/// The chart: end-to-end and ack p99 against what reached the CRM.
pub fn chart(results: &[RateResult], title: &str) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 70.0, 50.0, 40.0, 20.0);
    let x_max = results
        .iter()
        .map(|r| r.offered.max(r.delivery_rate))
        .fold(1.0, f64::max)
        * 1.1;
    let y_values: Vec<f64> = results
        .iter()
        .flat_map(|r| [r.e2e_p99, r.ack_p99])
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let y_min = y_values.iter().copied().fold(f64::MAX, f64::min).max(0.1) / 2.0;
    let y_max = y_values.iter().copied().fold(1.0, f64::max) * 2.0;
    let x = |v: f64| left + (w - left - right) * v / x_max;
    let y = |v: f64| {
        let f = (v.max(y_min).ln() - y_min.ln()) / (y_max.ln() - y_min.ln());
        h - bottom - (h - bottom - top) * f
    };
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="22" font-size="14">{title}</text>
<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{xl}" text-anchor="middle">events/s that reached the CRM (labels: offered/s)</text>
<text x="16" y="{cy}" transform="rotate(-90 16 {cy})" text-anchor="middle">p99 latency, ms (log)</text>
"#,
        b = h - bottom,
        r = w - right,
        cx = (w + left) / 2.0,
        xl = h - 12.0,
        cy = (h - bottom + top) / 2.0,
    );
    let mut tick = 10f64.powf(y_min.log10().floor());
    while tick <= y_max {
        if tick >= y_min {
            svg += &format!(
                r##"<line x1="{left}" y1="{yy}" x2="{r}" y2="{yy}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{tick}</text>
"##,
                yy = y(tick),
                r = w - right,
                tx = left - 4.0,
                ty = y(tick) + 4.0,
            );
        }
        tick *= 10.0;
    }
    let steps = 5;
    for s in 0..=steps {
        let v = x_max * s as f64 / steps as f64;
        svg += &format!(
            r#"<text x="{xx}" y="{yy}" text-anchor="middle">{v:.0}</text>
"#,
            xx = x(v),
            yy = h - bottom + 16.0
        );
    }
    for (label, color, pick) in [
        ("event → CRM p99", "#c0392b", 0),
        ("acknowledgement p99", "#2471a3", 1),
    ] {
        let points: Vec<(f64, f64, f64)> = results
            .iter()
            .map(|r| {
                let v = if pick == 0 { r.e2e_p99 } else { r.ack_p99 };
                let along = if pick == 0 {
                    r.delivery_rate
                } else {
                    r.ack_rate
                };
                (x(along), y(v), r.offered)
            })
            .filter(|(_, yy, _)| yy.is_finite())
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(a, b, _)| format!("{a:.1},{b:.1}"))
            .collect();
        svg += &format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>
"#,
            path.join(" ")
        );
        for (a, b, offered) in &points {
            svg += &format!(
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/><text x="{tx:.1}" y="{ty:.1}" fill="{color}">{offered:.0}</text>
"#,
                tx = a + 5.0,
                ty = b - 5.0
            );
        }
        let ly = if pick == 0 { top + 8.0 } else { top + 24.0 };
        svg += &format!(
            r#"<rect x="{lx}" y="{ry}" width="12" height="3" fill="{color}"/><text x="{tx}" y="{ty}">{label}</text>
"#,
            lx = w - right - 190.0,
            ry = ly - 4.0,
            tx = w - right - 172.0,
            ty = ly
        );
    }
    svg + "</svg>\n"
}
