//! A Mold request's parameters as the API server sees them: names matched without regard to
//! case (third-party clients send `apiKey`, `signatureVersion`), `details[0].key=value` maps.

use std::collections::BTreeMap;

use super::world::ApiError;

#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Decodes a query string or form body.
    pub fn parse(raw: &str) -> Self {
        Self(
            url::form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A parameter the command cannot run without (431 otherwise, as the framework says).
    pub fn required(&self, command: &str, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::missing(command, name))
    }

    /// `name[0].key=value` pairs of a MAP parameter (`details`).
    pub fn map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let prefix = format!("{}[", name.to_lowercase());
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            let lower = k.to_lowercase();
            if let Some(rest) = lower.strip_prefix(&prefix)
                && let Some((_, key)) = rest.split_once("].")
            {
                // Keep the key's own spelling after the index.
                let offset = k.len() - key.len();
                out.insert(k[offset..].to_string(), v.clone());
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The entries of a MAP parameter sent as a list (`tags[0].key=K&tags[0].value=V`), in
    /// index order, each its fields by name (the field names as sent: Mold does not
    /// lower-case what follows the index).
    pub fn entries(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let prefix = format!("{}[", name.to_lowercase());
        let mut by_index: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
        for (k, v) in &self.0 {
            let Some(rest) = k.to_lowercase().strip_prefix(&prefix).map(str::to_string) else {
                continue;
            };
            let Some((index, _)) = rest.split_once("].") else {
                continue;
            };
            let Ok(index) = index.parse::<u64>() else {
                continue;
            };
            let field = &k[k.len() - (rest.len() - index.to_string().len() - 2)..];
            by_index
                .entry(index)
                .or_default()
                .insert(field.to_string(), v.clone());
        }
        by_index.into_values().collect()
    }

    /// `true`/`false` flags.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_names_and_maps() {
        let p = Params::parse(
            "command=updateDisasterRecoveryCluster&apiKey=K&details%5B0%5D.mirrorscheduleinterval=30m&details[0].drclusterapikey=x&forced=TRUE",
        );
        assert_eq!(p.get("apikey"), Some("K"));
        assert_eq!(p.get("COMMAND"), Some("updateDisasterRecoveryCluster"));
        let d = p.map("details").unwrap();
        assert_eq!(d["mirrorscheduleinterval"], "30m");
        assert_eq!(d["drclusterapikey"], "x");
        assert!(p.flag("forced"));
        assert!(p.map("other").is_none());
        let p = Params::parse("tags%5B1%5D.key=b&tags[0].key=a&TAGS[0].value=1&tags[1].Value=x");
        let e = p.entries("tags");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].get("key").map(String::as_str), Some("a"));
        assert_eq!(e[0].get("value").map(String::as_str), Some("1"));
        assert_eq!(e[1].get("key").map(String::as_str), Some("b"));
        // The field's own spelling: `Value` is not `value`.
        assert!(!e[1].contains_key("value") && e[1].contains_key("Value"));
        assert_eq!(
            p.required("listVirtualMachines", "id")
                .unwrap_err()
                .errortext,
            "Unable to execute API command listvirtualmachines due to missing parameter id"
        );
    }
}
