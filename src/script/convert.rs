//! Between script values and Rust: wherever a primitive takes a site, a DR cluster or a VM it
//! accepts the object or its name (a VM also its id); option maps; durations as `"30s"` or
//! seconds; results as script values.

use std::time::Duration;

use rhai::{Array, Dynamic, Map};
use serde::Serialize;

use super::error::{RhaiResult, usage as script_error};
use crate::dr::{DrCluster, SiteInfo, Vm};

/// A site given as a `Site` or its name.
pub fn site(d: &Dynamic) -> RhaiResult<String> {
    if let Some(s) = d.clone().try_cast::<SiteInfo>() {
        return Ok(s.name);
    }
    text(d, "a site (a Site or its name)")
}

/// A DR cluster given as a `DrCluster` or its name.
pub fn cluster(d: &Dynamic) -> RhaiResult<String> {
    if let Some(c) = d.clone().try_cast::<DrCluster>() {
        return Ok(c.name);
    }
    text(d, "a DR cluster (a DrCluster or its name)")
}

/// A VM given as a `Vm`, its name or its id.
pub fn vm(d: &Dynamic) -> RhaiResult<String> {
    if let Some(v) = d.clone().try_cast::<Vm>() {
        return Ok(v.name);
    }
    text(d, "a VM (a Vm, its name or its id)")
}

/// An array of VMs.
pub fn vms(a: &Array) -> RhaiResult<Vec<String>> {
    a.iter().map(vm).collect()
}

/// An array of RBD images (`pool/name` each).
pub fn images(a: &Array) -> RhaiResult<Vec<String>> {
    a.iter()
        .map(|d| text(d, "an RBD image (pool/name)"))
        .collect()
}

fn text(d: &Dynamic, what: &str) -> RhaiResult<String> {
    if d.is_string() {
        let s = d.clone().into_string().unwrap_or_default();
        if s.trim().is_empty() {
            return Err(script_error(format!(
                "expected {what}, got an empty string"
            )));
        }
        return Ok(s);
    }
    Err(script_error(format!(
        "expected {what}, got {}",
        d.type_name()
    )))
}

/// A duration given as `"1h30m"`-style text or as whole seconds.
pub fn duration(d: &Dynamic) -> RhaiResult<Duration> {
    if let Ok(secs) = d.as_int() {
        return u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| script_error(format!("a duration cannot be negative ({secs})")));
    }
    if let Ok(f) = d.as_float() {
        if f >= 0.0 && f.is_finite() {
            return Ok(Duration::from_secs_f64(f));
        }
        return Err(script_error(format!("not a duration: {f}")));
    }
    if d.is_string() {
        let s = d.clone().into_string().unwrap_or_default();
        return crate::duration::parse(&s).map_err(|e| script_error(e.to_string()));
    }
    Err(script_error(format!(
        "expected a duration (\"30s\", \"1h30m\" or seconds), got {}",
        d.type_name()
    )))
}

/// Option maps: unknown keys are an error naming the ones allowed, so a typo does not pass
/// silently.
pub struct Options<'a> {
    map: &'a Map,
}

impl<'a> Options<'a> {
    pub fn new(map: &'a Map, allowed: &[&str], function: &str) -> RhaiResult<Self> {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(script_error(format!(
                    "{function}: unknown option {key:?} (options: {})",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Self { map })
    }

    pub fn duration(&self, key: &str, default: Duration) -> RhaiResult<Duration> {
        self.map.get(key).map_or(Ok(default), duration)
    }

    pub fn usize(&self, key: &str, default: usize) -> RhaiResult<usize> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_int()
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| script_error(format!("option {key:?} must be a positive integer"))),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> RhaiResult<bool> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .map_err(|_| script_error(format!("option {key:?} must be true or false"))),
        }
    }

    pub fn string(&self, key: &str) -> RhaiResult<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.clone().into_string().unwrap_or_default())),
            Some(v) => Err(script_error(format!(
                "option {key:?} must be a string, not {}",
                v.type_name()
            ))),
        }
    }

    pub fn u32(&self, key: &str) -> RhaiResult<Option<u32>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_int()
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| script_error(format!("option {key:?} must be a positive integer"))),
        }
    }
}

/// Any serialisable value as a script value (maps and arrays).
pub fn to_dynamic<T: Serialize>(value: &T) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

/// A script value as JSON (for the journal and `to_json`). Inside arrays and maps, a value
/// of one of drbook's own types becomes its text (an unknown: `"unknown (…)"`), so one such
/// value does not turn the whole of a step's result into a string.
pub fn to_json(value: &Dynamic) -> serde_json::Value {
    if let Ok(v) = rhai::serde::from_dynamic::<serde_json::Value>(value) {
        return v;
    }
    let value = value.flatten_clone();
    if value.is_array() {
        let items = value.into_array().unwrap_or_default();
        return serde_json::Value::Array(items.iter().map(to_json).collect());
    }
    if value.is_map() {
        let map = value.cast::<Map>();
        return serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        );
    }
    serde_json::Value::String(super::types::value_message(&value))
}

/// JSON back to a script value (a step's recorded result on resume).
pub fn from_json(value: &serde_json::Value) -> RhaiResult<Dynamic> {
    rhai::serde::to_dynamic(value)
}

/// A value handed to a nested run as plain data: copied out of any shared (captured)
/// variable, arrays and maps element by element. `None` when a function pointer or closure
/// is anywhere in it: a closure cannot be journaled, nor called in another run's engine.
pub fn plain_data(value: &Dynamic) -> Option<Dynamic> {
    let v = value.flatten_clone();
    if v.is_fnptr() {
        return None;
    }
    if v.is_array() {
        let items = v.into_array().ok()?;
        return items
            .iter()
            .map(plain_data)
            .collect::<Option<Array>>()
            .map(Dynamic::from_array);
    }
    if v.is_map() {
        let map = v.cast::<Map>();
        return map
            .iter()
            .map(|(k, x)| plain_data(x).map(|x| (k.clone(), x)))
            .collect::<Option<Map>>()
            .map(Dynamic::from_map);
    }
    Some(v)
}

/// A value as a run's journal records its vars: a string as it is, anything else as its
/// JSON text.
pub fn journal_text(value: &Dynamic) -> String {
    if value.is_string() {
        return value.clone().into_string().unwrap_or_default();
    }
    to_json(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::FnPtr;

    #[test]
    fn plain_data_keeps_values_and_refuses_functions() {
        let mut inner = Map::new();
        inner.insert("k".into(), Dynamic::TRUE);
        let list: Array = vec!["a".into(), Dynamic::from(inner.clone())];
        let shared = Dynamic::from(list.clone()).into_shared();
        let copied = plain_data(&shared).unwrap();
        assert!(!copied.is_shared());
        assert_eq!(copied.to_string(), Dynamic::from(list).to_string());
        assert_eq!(plain_data(&Dynamic::from(3_i64)).unwrap().as_int(), Ok(3));

        let f = Dynamic::from(FnPtr::new("f").unwrap());
        assert!(plain_data(&f).is_none());
        inner.insert("pick".into(), f);
        let deep: Array = vec![Dynamic::from(inner)];
        assert!(plain_data(&Dynamic::from(deep)).is_none());
    }

    #[test]
    fn journal_text_is_strings_as_they_are_and_json_otherwise() {
        assert_eq!(journal_text(&"x".into()), "x");
        assert_eq!(journal_text(&Dynamic::from(3_i64)), "3");
        assert_eq!(journal_text(&Dynamic::TRUE), "true");
        let list: Array = vec!["a".into(), "b".into()];
        assert_eq!(journal_text(&Dynamic::from(list)), r#"["a","b"]"#);
        let mut m = Map::new();
        m.insert("k".into(), Dynamic::TRUE);
        assert_eq!(journal_text(&Dynamic::from(m)), r#"{"k":true}"#);
    }

    #[test]
    fn a_time_in_a_step_result_is_journaled_as_rfc_3339() {
        use chrono::TimeZone as _;
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 12, 3, 13, 29, 1)
            .unwrap();
        let mut m = Map::new();
        m.insert(
            "started".into(),
            Dynamic::from(super::super::types::Time(at)),
        );
        assert_eq!(
            to_json(&Dynamic::from(m)),
            serde_json::json!({"started": "2026-12-03T13:29:01Z"})
        );
    }
}
