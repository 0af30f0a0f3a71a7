//! A run report as one self-contained HTML page — styles inline, the timeline an inline SVG,
//! nothing fetched — so the file opens anywhere, mailed or archived, years after the run:
//! the dated record an auditor asks for after a DR test.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{RunReport, VmMeasure};
use crate::duration::Human;

/// The timeline's geometry, in pixels.
const LABEL_W: f64 = 300.0;
const BARS_W: f64 = 640.0;
const ROW_H: f64 = 22.0;
const AXIS_H: f64 = 24.0;

/// The page for `report`.
pub fn render(report: &RunReport) -> String {
    let title = report
        .record
        .as_ref()
        .map_or_else(|| format!("run of {}", report.script), |r| r.title.clone());
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{} — drbook {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title),
        esc(&report.run)
    );
    let (mark, outcome) = if report.ok {
        ("ok", "finished")
    } else {
        ("failed", "FAILED")
    };
    let _ = write!(
        out,
        "<header><h1>{}</h1>\n<p class=\"outcome {mark}\">{outcome} (exit {})</p>\n<dl>",
        esc(&title),
        report.exit
    );
    let mut facts = vec![
        ("runbook", report.script.clone()),
        ("run", report.run.clone()),
        ("started", stamp(report.started)),
        (
            "took",
            Human(std::time::Duration::from_millis(report.took_ms)).to_string(),
        ),
    ];
    if let Some(c) = report.cluster() {
        facts.push(("DR cluster", c));
    }
    if report.plan {
        facts.push(("mode", "plan: nothing was changed".to_string()));
    }
    for (k, v) in facts {
        let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    out.push_str("</dl></header>\n");

    if !report.errors.is_empty() {
        out.push_str("<section><h2>Errors</h2>\n");
        for e in &report.errors {
            let _ = writeln!(out, "<pre class=\"error\">{}</pre>", esc(e));
        }
        out.push_str("</section>\n");
    }
    if let Some(r) = &report.record {
        if !r.vms.is_empty() {
            out.push_str("<section><h2>Per VM</h2>\n");
            vm_table(&mut out, &r.vms);
            out.push_str("</section>\n");
        }
        if !r.rows.is_empty() {
            out.push_str("<section><h2>Result</h2>\n<table class=\"rows\">\n");
            for row in &r.rows {
                let _ = writeln!(
                    out,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    esc(&row.label),
                    esc(&row.text)
                );
            }
            out.push_str("</table></section>\n");
        }
    }
    if let Some(svg) = timeline(report) {
        out.push_str("<section><h2>Timeline</h2>\n<p class=\"note\">Each step, and each VM's own job in a batch (a start by priority group shows its groups one after the other). Grey: done in an earlier attempt of this run.</p>\n");
        out.push_str(&svg);
        out.push_str("</section>\n");
    }
    if !report.steps.is_empty() {
        out.push_str("<section><h2>Steps</h2>\n<table>\n<tr><th></th><th>step</th><th>started</th><th>took</th><th>error</th></tr>\n");
        for s in &report.steps {
            let (class, mark) = state(s.ok, s.replayed);
            let took = if s.replayed {
                "done in an earlier run".to_string()
            } else {
                Human(std::time::Duration::from_millis(s.took_ms)).to_string()
            };
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td>{mark}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                if s.replayed {
                    String::new()
                } else {
                    clock(s.started)
                },
                esc(&took),
                esc(s.error.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table></section>\n");
    }
    if !report.actions.is_empty() {
        out.push_str("<section><h2>Actions</h2>\n<table>\n<tr><th></th><th>site</th><th>act</th><th>started</th><th>took</th><th>error</th></tr>\n");
        for a in &report.actions {
            let (class, mark) = state(a.ok, a.replayed);
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td>{mark}</td><td>{}</td><td><code>{}({})</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(a.site.as_deref().unwrap_or("-")),
                esc(&a.primitive),
                esc(&a.args),
                if a.replayed {
                    String::new()
                } else {
                    clock(a.started)
                },
                if a.replayed {
                    "in an earlier attempt".to_string()
                } else {
                    Human(std::time::Duration::from_millis(a.took_ms)).to_string()
                },
                esc(a.error.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table></section>\n");
    }
    let _ = write!(
        out,
        "<footer>drbook {} · report of run {} · saved {}</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(&report.run),
        stamp(Utc::now())
    );
    out
}

fn vm_table(out: &mut String, vms: &[VmMeasure]) {
    // Columns beyond RTO and RPO: whatever the runbook gave, in the order first seen.
    let mut extra: Vec<&str> = Vec::new();
    for v in vms {
        for k in v.more.keys() {
            if !extra.contains(&k.as_str()) {
                extra.push(k);
            }
        }
    }
    out.push_str("<table class=\"vms\">\n<tr><th>VM</th><th>RTO</th><th>RPO</th>");
    for k in &extra {
        let _ = write!(out, "<th>{}</th>", esc(k));
    }
    out.push_str("</tr>\n");
    for v in vms {
        let secs = |s: Option<i64>| {
            s.map_or_else(
                || "—".to_string(),
                |s| Human(std::time::Duration::from_secs(s.unsigned_abs())).to_string(),
            )
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&v.vm),
            secs(v.rto_s),
            secs(v.rpo_s)
        );
        for k in &extra {
            let text = match v.more.get(*k) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            let _ = write!(out, "<td>{}</td>", esc(&text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// One bar of the timeline.
struct Bar {
    label: String,
    start: DateTime<Utc>,
    took_ms: u64,
    class: &'static str,
    /// Indented under the act it belongs to.
    item: bool,
}

/// The Gantt of steps and of each batch item's job, in the order they started; `None` when
/// nothing ran in this attempt.
fn timeline(report: &RunReport) -> Option<String> {
    let mut bars: Vec<Bar> = Vec::new();
    for s in report.steps.iter().filter(|s| !s.replayed) {
        bars.push(Bar {
            label: s.name.clone(),
            start: s.started,
            took_ms: s.took_ms,
            class: state(s.ok, false).0,
            item: false,
        });
    }
    for a in &report.actions {
        for i in &a.items {
            bars.push(Bar {
                label: format!(
                    "{} {} on {}",
                    a.primitive,
                    i.name,
                    a.site.as_deref().unwrap_or("-")
                ),
                start: i.started,
                took_ms: i.took_ms,
                class: state(i.ok, a.replayed).0,
                item: true,
            });
        }
    }
    if bars.is_empty() {
        return None;
    }
    bars.sort_by_key(|b| (b.start, b.item));
    let t0 = bars.iter().map(|b| b.start).min()?;
    let end = bars
        .iter()
        .map(|b| b.start + chrono::Duration::milliseconds(ms(b.took_ms)))
        .max()?;
    let span_ms = (end - t0).num_milliseconds().max(1000);
    #[allow(clippy::cast_precision_loss)] // pixels: a few hours in ms is far below 2^52
    let x =
        |t: DateTime<Utc>| LABEL_W + (t - t0).num_milliseconds() as f64 / span_ms as f64 * BARS_W;
    #[allow(clippy::cast_precision_loss)]
    let height = AXIS_H + ROW_H * bars.len() as f64 + 4.0;
    let width = LABEL_W + BARS_W + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"timeline of the run\">"
    );
    // The axis: five ticks, in time since the first bar.
    for k in 0..=4 {
        let at_ms = span_ms * k / 4;
        #[allow(clippy::cast_precision_loss)]
        let px = LABEL_W + at_ms as f64 / span_ms as f64 * BARS_W;
        let _ = writeln!(
            svg,
            "<line x1=\"{px:.1}\" y1=\"{AXIS_H}\" x2=\"{px:.1}\" y2=\"{height}\" class=\"tick\"/><text x=\"{px:.1}\" y=\"14\" class=\"axis\">+{}</text>",
            esc(&tick(at_ms, span_ms))
        );
    }
    for (n, b) in bars.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = AXIS_H + ROW_H * n as f64;
        let x0 = x(b.start);
        let w = (x(b.start + chrono::Duration::milliseconds(ms(b.took_ms))) - x0).max(2.0);
        let indent = if b.item { 16.0 } else { 4.0 };
        let took = Human(std::time::Duration::from_millis(b.took_ms)).to_string();
        let _ = writeln!(
            svg,
            "<g><title>{label}: {start}, {took}</title><text x=\"{indent}\" y=\"{ty:.1}\" class=\"label{item}\">{short}</text><rect x=\"{x0:.1}\" y=\"{ry:.1}\" width=\"{w:.1}\" height=\"{bh:.1}\" rx=\"3\" class=\"bar {class}\"/></g>",
            label = esc(&b.label),
            start = clock(b.start),
            took = esc(&took),
            ty = y + ROW_H * 0.68,
            item = if b.item { " item" } else { "" },
            short = esc(&shorten(&b.label, 44)),
            ry = y + 4.0,
            bh = ROW_H - 8.0,
            class = b.class,
        );
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

/// An axis label: whole seconds once the run is longer than ten.
fn tick(at_ms: i64, span_ms: i64) -> String {
    let at = at_ms.unsigned_abs();
    let d = if span_ms > 10_000 {
        std::time::Duration::from_secs(at / 1000)
    } else {
        std::time::Duration::from_millis(at)
    };
    Human(d).to_string()
}

fn ms(took_ms: u64) -> i64 {
    i64::try_from(took_ms).unwrap_or(i64::MAX / 2)
}

fn state(ok: bool, replayed: bool) -> (&'static str, &'static str) {
    match (ok, replayed) {
        (_, true) => ("replayed", "↺"),
        (true, _) => ("ok", "✓"),
        (false, _) => ("failed", "✗"),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

/// Text made safe inside an element or an attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d232b;margin:2em auto;max-width:1000px;padding:0 1em}
h1{font-size:1.6em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #d5dae0}
.outcome{display:inline-block;padding:.15em .7em;border-radius:1em;font-weight:600;margin:0 0 .8em}
.outcome.ok{background:#dff3e4;color:#11632b}.outcome.failed{background:#fbe0e0;color:#8c1c1c}
dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1.2em;margin:0}dt{color:#5b6673}dd{margin:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #eceff2;vertical-align:top}
table.rows th{width:12em;color:#5b6673;font-weight:500}
tr.failed td{background:#fdf1f1}tr.replayed td{color:#7b8490}
code{font:12px ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
pre.error{background:#fdf1f1;border-left:3px solid #c43b3b;padding:.6em .8em;white-space:pre-wrap;margin:.4em 0}
.note{color:#5b6673;margin:.2em 0 .6em}
svg.timeline{max-width:100%;height:auto}svg .label{font-size:12px;fill:#1d232b}svg .label.item{fill:#46505c}
svg .axis{font-size:11px;fill:#5b6673;text-anchor:middle}svg .tick{stroke:#eceff2}
svg .bar.ok{fill:#3f8f5a}svg .bar.failed{fill:#c43b3b}svg .bar.replayed{fill:#a9b1ba}
footer{margin-top:2em;color:#7b8490;font-size:12px}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ActionReport, ItemSpan, Record, Row, StepReport};

    fn report() -> RunReport {
        let t0 = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut r = RunReport::new("test-failover", "20261203-100000-abcd", false);
        r.started = t0;
        r.took_ms = 9000;
        r.steps.push(StepReport {
            name: "check <everything>".into(),
            started: t0,
            took_ms: 1000,
            ok: true,
            error: None,
            replayed: false,
        });
        r.actions.push(ActionReport {
            primitive: "start_vms".into(),
            site: Some("site-b".into()),
            args: "\"site-b\", [\"a-drtest-1\"]".into(),
            ok: false,
            error: Some("1 of the batch failed".into()),
            started: t0,
            took_ms: 3000,
            replayed: false,
            items: vec![ItemSpan {
                name: "a-drtest-1".into(),
                ok: false,
                started: t0 + chrono::Duration::seconds(2),
                took_ms: 3000,
            }],
        });
        r.record = Some(Record {
            title: "DR test of DR".into(),
            cluster: Some("DR".into()),
            rows: vec![Row {
                label: "cleanup".into(),
                text: "no test artifact remains".into(),
            }],
            vms: vec![VmMeasure {
                vm: "a".into(),
                rto_s: Some(75),
                rpo_s: Some(3),
                more: serde_json::Map::new(),
            }],
        });
        r
    }

    #[test]
    fn the_page_holds_the_record_the_timeline_and_escapes_names() {
        let page = render(&report());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<h1>DR test of DR</h1>"), "{page}");
        assert!(page.contains("check &lt;everything&gt;"), "{page}");
        assert!(!page.contains("check <everything>"), "{page}");
        // One bar per step and per VM job, the VM's failed.
        assert_eq!(page.matches("<rect ").count(), 2, "{page}");
        assert!(page.contains("class=\"bar failed\""), "{page}");
        assert!(page.contains("<td>1m15s</td><td>3s</td>"), "{page}");
        // Nothing is fetched: no external reference of any kind.
        for outside in ["src=", "href=", "@import", "url("] {
            assert!(!page.contains(outside), "{outside} in {page}");
        }
    }

    #[test]
    fn a_run_that_did_nothing_new_has_no_timeline() {
        let mut r = RunReport::new("status", "r", false);
        r.steps.push(StepReport::replayed("check"));
        assert!(!render(&r).contains("<svg"));
    }
}
