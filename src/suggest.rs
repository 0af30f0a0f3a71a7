//! Close matches for a name the operator mistyped, one policy per kind of list, over one edit
//! distance: VM, site and DR cluster names in the domain's errors (`closest`,
//! `all_closest_first`, also for a runbook's vars), function names in `drbook check`
//! (`nearest`), and REPL commands by their start (`same_start`).

/// The names closest to `query`, best first (at most five): those containing it or contained
/// in it (case-insensitive), then those within a small edit distance.
pub fn closest<'a>(query: &str, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let q = query.to_lowercase();
    let tolerance = (q.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .filter_map(|name| {
            let n = name.to_lowercase();
            let distance = edit_distance(&q, &n);
            if !q.is_empty() && (n.contains(&q) || q.contains(&n)) {
                Some((distance.min(1), name.clone()))
            } else if distance <= tolerance {
                Some((distance, name.clone()))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(5).map(|(_, n)| n).collect()
}

/// Every name, the closest to `query` first: for short lists (sites, DR clusters) an error
/// names them all.
pub fn all_closest_first<'a>(
    query: &str,
    names: impl IntoIterator<Item = &'a String> + Clone,
) -> Vec<String> {
    let mut out = closest(query, names.clone());
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Names within a small edit distance, closest first.
pub fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(name.len() / 4) && *c != name)
        .collect();
    scored.sort_unstable();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Names that are a typo away, else names that contain the word or are contained in it
/// (`:help mirror` → `mirror_status`, `mirror_interval`, …).
pub fn related<'a>(word: &str, names: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    let typos = nearest(word, names.clone());
    if !typos.is_empty() {
        return typos;
    }
    names
        .filter(|n| n.contains(word) || word.contains(n))
        .map(str::to_string)
        .collect()
}

/// The names that begin with the first `lead` characters of `name` (a REPL command cut
/// short or mistyped after its start: `:jou` → `:journal`).
pub fn same_start<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
    lead: usize,
) -> Vec<&'a str> {
    let start: String = name.chars().take(lead).collect();
    candidates.filter(|c| c.starts_with(&start)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("dr-centos-1", "dr-centos-1"), 0);
        assert_eq!(edit_distance("재해", "재난"), 1);
    }

    #[test]
    fn closest_prefers_substrings_then_small_typos() {
        let names: Vec<String> = [
            "dr-centos-1",
            "dr-centos-2",
            "dr-win-1",
            "web-frontend",
            "database",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            closest("centos", &names),
            vec!["dr-centos-1".to_string(), "dr-centos-2".to_string()]
        );
        assert_eq!(closest("dr-cento-1", &names)[0], "dr-centos-1");
        assert_eq!(closest("DATABASE", &names), vec!["database".to_string()]);
        assert!(closest("zzzzzz", &names).is_empty());
        let sites = ["site-a".to_string(), "site-b".to_string()];
        assert_eq!(all_closest_first("x", &sites), sites.to_vec());
        assert_eq!(all_closest_first("site-bb", &sites)[0], "site-b");
    }

    #[test]
    fn nearest_names() {
        let names = ["promote", "demote", "resync", "start_vm"];
        assert_eq!(nearest("promte", names.into_iter()), ["promote"]);
        assert_eq!(nearest("strat_vm", names.into_iter()), ["start_vm"]);
        assert!(nearest("frobnicate", names.into_iter()).is_empty());
    }

    #[test]
    fn same_start_matches_the_lead() {
        let commands = [":journal", ":jobs", ":help"];
        assert_eq!(
            same_start(":jou", commands.into_iter(), 3),
            [":journal", ":jobs"]
        );
        assert!(same_start(":x", commands.into_iter(), 3).is_empty());
    }
}
