//! A rollup row's `popular_actions`: how often each action occurred in the
//! row's group, and the five most frequent. Counted as an aggregate's state
//! while `rollup_daily` groups the day's rows by its own key, so the day is
//! not grouped a second time, by action, to rank them.
//!
//! Ranking: most requests first; equal counts by action name, byte order (as
//! `COLLATE "C"`), so the five are the same whatever the database's collation.
//!
//! Serialized (for parallel aggregation) as repeated records, little-endian:
//! `u32` name length, the name's UTF-8 bytes, `i64` count.

use std::collections::HashMap;

/// How many actions a rollup row keeps.
pub const TOP: usize = 5;

/// Up to this many distinct actions, a name is found by comparing it with
/// each (a group has a handful, and this runs for every row of the day: no
/// hashing); past it, through an index by name, so a group with many
/// distinct actions still costs one lookup a row.
const SCAN_LIMIT: usize = 16;

#[derive(Clone, Debug, Default)]
pub struct ActionCounts {
    counts: Vec<(String, i64)>,
    /// Positions in `counts` by name, once there are more than SCAN_LIMIT.
    index: Option<HashMap<String, usize>>,
}

/// Equal when they count the same actions the same, in whatever order.
impl PartialEq for ActionCounts {
    fn eq(&self, other: &Self) -> bool {
        self.counts.len() == other.counts.len()
            && self
                .counts
                .iter()
                .all(|(action, n)| other.get(action) == Some(*n))
    }
}

impl Eq for ActionCounts {}

impl ActionCounts {
    fn position(&self, action: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(action).copied(),
            None => self.counts.iter().position(|(a, _)| a == action),
        }
    }

    fn get(&self, action: &str) -> Option<i64> {
        self.position(action).map(|i| self.counts[i].1)
    }

    /// Adds `n` requests with this action.
    fn add_n(&mut self, action: &str, n: i64) {
        if let Some(i) = self.position(action) {
            self.counts[i].1 += n;
            return;
        }
        self.counts.push((action.to_owned(), n));
        let at = self.counts.len() - 1;
        match &mut self.index {
            Some(index) => {
                index.insert(action.to_owned(), at);
            }
            None if self.counts.len() > SCAN_LIMIT => {
                self.index = Some(
                    self.counts
                        .iter()
                        .enumerate()
                        .map(|(i, (a, _))| (a.clone(), i))
                        .collect(),
                );
            }
            None => {}
        }
    }

    /// One more request with this action.
    pub fn add(&mut self, action: &str) {
        self.add_n(action, 1);
    }

    /// Adds another state's counts (parallel workers' partial states).
    pub fn merge(&mut self, other: &ActionCounts) {
        for (action, n) in &other.counts {
            self.add_n(action, *n);
        }
    }

    /// The `n` most frequent actions with their counts, in rank order.
    pub fn top(&self, n: usize) -> Vec<(&str, i64)> {
        let mut ranked: Vec<(&str, i64)> = self.counts.iter().map(|(a, n)| (a.as_str(), *n)).collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
        ranked.truncate(n);
        ranked
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.counts.iter().map(|(a, _)| a.len() + 12).sum());
        for (action, n) in &self.counts {
            out.extend_from_slice(&(action.len() as u32).to_le_bytes());
            out.extend_from_slice(action.as_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// The inverse of [`ActionCounts::to_bytes`]; refuses anything else.
    pub fn from_bytes(mut bytes: &[u8]) -> Result<Self, String> {
        let mut counts = ActionCounts::default();
        while !bytes.is_empty() {
            let (len, rest) = split(bytes, 4)?;
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            let (name, rest) = split(rest, len)?;
            let (n, rest) = split(rest, 8)?;
            let name = std::str::from_utf8(name).map_err(|e| format!("action name is not UTF-8: {e}"))?;
            counts.add_n(name, i64::from_le_bytes(n.try_into().expect("8 bytes")));
            bytes = rest;
        }
        Ok(counts)
    }
}

fn split(bytes: &[u8], at: usize) -> Result<(&[u8], &[u8]), String> {
    if bytes.len() < at {
        return Err(format!(
            "truncated action counts: {} bytes left, {at} needed",
            bytes.len()
        ));
    }
    Ok(bytes.split_at(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(actions: &[&str]) -> ActionCounts {
        let mut c = ActionCounts::default();
        actions.iter().for_each(|a| c.add(a));
        c
    }

    #[test]
    fn ranks_by_count_then_name_in_byte_order() {
        let c = counts(&["b", "a", "b", "Z", "c", "a", "d", "e", "f"]);
        assert_eq!(c.top(TOP), vec![("a", 2), ("b", 2), ("Z", 1), ("c", 1), ("d", 1)]);
    }

    #[test]
    fn refuses_damaged_bytes() {
        let bytes = counts(&["summarize"]).to_bytes();
        assert!(ActionCounts::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(ActionCounts::from_bytes(&[1, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn bytes_round_trip(actions in proptest::collection::vec("[a-z]{0,6}", 0..40)) {
            let all: Vec<&str> = actions.iter().map(String::as_str).collect();
            let c = counts(&all);
            prop_assert_eq!(ActionCounts::from_bytes(&c.to_bytes()).unwrap(), c);
        }

        // Few distinct actions (compared one by one) and many (found through
        // the index, past SCAN_LIMIT): every count is the plain tally's.
        #[test]
        fn counts_equal_a_plain_tally(actions in proptest::collection::vec("[a-z]{1,2}", 0..400)) {
            let all: Vec<&str> = actions.iter().map(String::as_str).collect();
            let c = counts(&all);
            let mut tally: HashMap<&str, i64> = HashMap::new();
            all.iter().for_each(|a| *tally.entry(a).or_insert(0) += 1);
            prop_assert_eq!(c.counts.len(), tally.len());
            for (action, n) in &tally {
                prop_assert_eq!(c.get(action), Some(*n));
            }
            let mut merged = counts(&all[..all.len() / 2]);
            merged.merge(&counts(&all[all.len() / 2..]));
            prop_assert_eq!(merged, c);
        }

        #[test]
        fn merged_partial_states_equal_one_state(actions in proptest::collection::vec("[a-d]{1,2}", 0..60),
                                                 cut in 0usize..60) {
            let cut = cut.min(actions.len());
            let all: Vec<&str> = actions.iter().map(String::as_str).collect();
            let mut left = counts(&all[..cut]);
            left.merge(&counts(&all[cut..]));
            let whole = counts(&all);
            prop_assert_eq!(left.top(TOP), whole.top(TOP));
        }
    }
}
