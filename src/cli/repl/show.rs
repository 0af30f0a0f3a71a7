//! A REPL result as an operator reads it: `mirror_status(...)` as a table, maps and arrays
//! indented one entry per line, drbook's own types by their readable text.

use std::fmt::Write as _;

use comfy_table::{Table, presets};
use rhai::Dynamic;

use crate::dr::{DrCluster, DrillReport, Fact, MirrorStatus, SiteInfo, Vm, VmMirror};
use crate::report::RunReport;
use crate::script::types::Time;

/// An array of plain values shorter than this stays on one line.
const INLINE_WIDTH: usize = 72;

/// The text of a command's result; `None` for `()` (a `let`, a loop, a print).
pub fn render(v: &Dynamic) -> Option<String> {
    if v.is_unit() {
        return None;
    }
    if let Some(m) = v.read_lock::<MirrorStatus>() {
        return Some(mirror_table(&m));
    }
    if v.is_string() {
        return Some(v.to_string());
    }
    let mut out = String::new();
    block(v, 0, &mut out);
    Some(out.trim_end().to_string())
}

/// One line for a value in `:vars`, cut to `width` characters.
pub fn short(v: &Dynamic, width: usize) -> String {
    let text = inline(v)
        .unwrap_or_else(|| render(v).unwrap_or_else(|| "()".into()))
        .replace('\n', " ");
    if text.chars().count() > width {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A value that fits on one line as it is: scalars, drbook's one-line types, short arrays
/// of those. `None` for what needs lines of its own.
fn inline(v: &Dynamic) -> Option<String> {
    if v.is_unit() {
        return Some("()".into());
    }
    if v.is_string() {
        return Some(format!("{:?}", v.to_string()));
    }
    if v.is_int() || v.is_float() || v.is_bool() || v.is_char() {
        return Some(v.to_string());
    }
    if let Some(text) = own_type(v) {
        return (!text.contains('\n')).then_some(text);
    }
    if v.is_array() {
        let items = v.read_lock::<rhai::Array>()?;
        if items.is_empty() {
            return Some("[]".into());
        }
        let parts: Option<Vec<String>> = items
            .iter()
            .map(|i| {
                if i.is_array() || i.is_map() {
                    None
                } else {
                    inline(i)
                }
            })
            .collect();
        let text = format!("[{}]", parts?.join(", "));
        return (text.chars().count() <= INLINE_WIDTH).then_some(text);
    }
    if v.is_map() {
        let map = v.read_lock::<rhai::Map>()?;
        return map.is_empty().then(|| "#{}".into());
    }
    Some(v.to_string())
}

/// drbook's script types, by their readable text.
fn own_type(v: &Dynamic) -> Option<String> {
    macro_rules! as_text {
        ($($t:ty),*) => {
            $(if let Some(x) = v.read_lock::<$t>() {
                return Some(x.to_string());
            })*
        };
    }
    as_text!(SiteInfo, DrCluster, Vm, DrillReport, Time, MirrorStatus);
    if let Some(r) = v.read_lock::<RunReport>() {
        return Some(r.render());
    }
    if let Some(m) = v.read_lock::<VmMirror>() {
        return Some(format!(
            "{}: {} ({} volumes)",
            m.name,
            match m.synced {
                Fact::Known(true) => "synced",
                Fact::Known(false) => "NOT synced",
                Fact::Unknown(_) => "synced unknown",
            },
            m.volumes.len()
        ));
    }
    None
}

fn block(v: &Dynamic, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    if let Some(text) = inline(v) {
        let _ = writeln!(out, "{pad}{}", text.replace('\n', &format!("\n{pad}")));
        return;
    }
    if let Some(m) = v.read_lock::<MirrorStatus>() {
        let _ = writeln!(
            out,
            "{pad}{}",
            mirror_table(&m).replace('\n', &format!("\n{pad}"))
        );
        return;
    }
    if let Some(text) = own_type(v) {
        let _ = writeln!(out, "{pad}{}", text.replace('\n', &format!("\n{pad}")));
        return;
    }
    if let Some(items) = v.read_lock::<rhai::Array>() {
        for item in items.iter() {
            if let Some(text) = inline(item) {
                let _ = writeln!(out, "{pad}- {}", text.replace('\n', &format!("\n{pad}  ")));
            } else {
                let mut inner = String::new();
                block(item, indent + 2, &mut inner);
                // The first line carries the dash.
                let inner = inner.strip_prefix(&format!("{pad}  ")).unwrap_or(&inner);
                let _ = write!(out, "{pad}- {inner}");
            }
        }
        return;
    }
    if let Some(map) = v.read_lock::<rhai::Map>() {
        for (k, item) in map.iter() {
            match inline(item) {
                Some(text) if !text.contains('\n') => {
                    let _ = writeln!(out, "{pad}{k}: {text}");
                }
                _ => {
                    let _ = writeln!(out, "{pad}{k}:");
                    block(item, indent + 2, out);
                }
            }
        }
        return;
    }
    let _ = writeln!(out, "{pad}{v}");
}

fn yes_no(f: &Fact<bool>) -> &'static str {
    match f {
        Fact::Known(true) => "yes",
        Fact::Known(false) => "NO",
        Fact::Unknown(_) => "unknown",
    }
}

/// `mirror_status("DR")`: the summary line, then one row per volume.
pub fn mirror_table(m: &MirrorStatus) -> String {
    let mut out = format!(
        "DR cluster {} ({} → {}) at {}: {}\n",
        m.cluster,
        m.primary_site,
        m.dr_site,
        m.taken_at.format("%Y-%m-%d %H:%M:%S UTC"),
        m.summary
    );
    for u in &m.unknown {
        let _ = writeln!(out, "  UNKNOWN: {u}");
    }
    let mut table = Table::new();
    table.load_preset(presets::UTF8_BORDERS_ONLY);
    table.set_header(vec![
        "VM".to_string(),
        "volume".to_string(),
        format!("{} (protected)", m.primary_site),
        format!("{} (DR)", m.dr_site),
        "synced".to_string(),
        "lag".to_string(),
        "last snapshot".to_string(),
    ]);
    for vm in &m.vms {
        let state = |v: &Option<Vm>| {
            v.as_ref()
                .map_or_else(String::new, |v| format!(" [{}]", v.state))
        };
        for (i, vol) in vm.volumes.iter().enumerate() {
            let name = if i == 0 {
                format!("{}{}", vm.name, state(&vm.primary_vm))
            } else {
                String::new()
            };
            table.add_row(vec![
                name,
                vol.kind.clone(),
                vol.primary_state.clone(),
                vol.dr_state.clone(),
                yes_no(&vol.synced).to_string(),
                match &vol.lag {
                    Fact::Known(Some(l)) => format!("{}s", l.num_seconds()),
                    Fact::Known(None) => "-".into(),
                    Fact::Unknown(_) => "unknown".into(),
                },
                match &vol.last_snapshot {
                    Fact::Known(Some(t)) => t.format("%H:%M:%S").to_string(),
                    Fact::Known(None) => "-".into(),
                    Fact::Unknown(_) => "unknown".into(),
                },
            ]);
        }
        if vm.volumes.is_empty() {
            table.add_row(vec![
                vm.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                yes_no(&vm.synced).into(),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    if m.vms.is_empty() {
        out.push_str("  no mirrored VMs");
        return out;
    }
    out.push_str(&table.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_arrays_indent() {
        let mut inner = rhai::Map::new();
        inner.insert("ok".into(), Dynamic::from(true));
        inner.insert("reason".into(), Dynamic::from("fine".to_string()));
        let mut m = rhai::Map::new();
        m.insert("test".into(), Dynamic::from(inner));
        m.insert(
            "vms".into(),
            Dynamic::from(vec![Dynamic::from("a".to_string()), Dynamic::from(2_i64)]),
        );
        let text = render(&Dynamic::from(m)).unwrap();
        assert_eq!(
            text,
            "test:\n  ok: true\n  reason: \"fine\"\nvms: [\"a\", 2]"
        );
    }

    #[test]
    fn arrays_of_maps_take_a_dash_each() {
        let mut a = rhai::Map::new();
        a.insert("vm".into(), Dynamic::from("x".to_string()));
        a.insert("ok".into(), Dynamic::from(false));
        let arr: rhai::Array = vec![Dynamic::from(a.clone()), Dynamic::from(a)];
        let text = render(&Dynamic::from(arr)).unwrap();
        assert_eq!(text, "- ok: false\n  vm: \"x\"\n- ok: false\n  vm: \"x\"");
    }

    #[test]
    fn unit_prints_nothing_and_strings_print_bare() {
        assert_eq!(render(&Dynamic::UNIT), None);
        assert_eq!(
            render(&Dynamic::from("hi".to_string())).as_deref(),
            Some("hi")
        );
        assert_eq!(short(&Dynamic::from("x".repeat(50)), 10), "\"xxxxxxxx…");
    }
}
