//! Keeps the schema within the Citus scale-out plan (docs/scaling.md, issue
//! 15 item 4), without Citus: a fresh database's catalog is checked against
//! the rules Citus imposes on the plan's table classes.
//!
//! The classification below mirrors the table in docs/scaling.md (the test
//! checks the mirror). Known violations that the plan changes are listed in
//! `TO_CHANGE` with the plan's item id and a reason; anything else that
//! breaks a rule fails, and so does an entry that no longer matches a
//! violation (remove it here and in the plan when the schema is fixed).
//!
//! Rules:
//!  1. every table of schema usage_analytics is classified, and every
//!     classified table exists;
//!  2. a distributed table's distribution column exists, is NOT NULL and not
//!     generated; tables co-located with agent_usage_detailed have user_id uuid;
//!  3. every primary key, unique constraint, unique index and exclusion
//!     constraint of a distributed table (partitions included) contains the
//!     distribution column;
//!  4. distributed tables are partitioned at most one level deep;
//!  5. foreign keys only where Citus supports them (distributed -> reference,
//!     co-located distributed -> distributed on the distribution column,
//!     reference -> reference, coordinator -> coordinator/reference,
//!     node-local -> node-local);
//!  6. identity and sequence-default columns of distributed and reference
//!     tables are bigint;
//!  7. reference tables are small after install;
//!  8. trigger code that runs on a worker (triggers on distributed, reference
//!     and node-local tables, and every function they reach) writes only
//!     node-local tables and, from tables co-located by user_id, co-located
//!     tables; reads only those and reference tables; takes no row locks,
//!     advisory locks or NOTIFY;
//!  9. row-level security policies on distributed and reference tables (run
//!     on the workers) read only reference and co-located tables.

use integration_tests::{cluster, text_rows};
use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    /// Distributed by user_id, co-located with agent_usage_detailed.
    ByUser,
    /// Distributed by the named column, in a colocation group of its own.
    DistributedBy(&'static str),
    /// Citus reference table: a full copy on every node.
    Reference,
    /// On the coordinator only (plain or Citus local table).
    Coordinator,
    /// A plain table on every node, written by that node's shard triggers,
    /// summed by the coordinator over all nodes.
    NodeLocal,
}

impl Class {
    fn label(self) -> String {
        match self {
            Class::ByUser => "distributed by user_id".into(),
            Class::DistributedBy(col) => format!("distributed by {col}"),
            Class::Reference => "reference".into(),
            Class::Coordinator => "coordinator-local".into(),
            Class::NodeLocal => "node-local".into(),
        }
    }

    fn distribution_column(self) -> Option<&'static str> {
        match self {
            Class::ByUser => Some("user_id"),
            Class::DistributedBy(col) => Some(col),
            _ => None,
        }
    }

    /// Whether the table's triggers fire on the workers (on shards,
    /// placements, or the node's own copy).
    fn triggers_run_on_workers(self) -> bool {
        self != Class::Coordinator
    }
}

/// The plan's classification (docs/scaling.md, "How the tables distribute").
/// Partitions of a table share its class.
const TABLES: &[(&str, Class)] = &[
    ("agent_usage_detailed", Class::ByUser),
    ("agent_performance_metrics", Class::ByUser),
    ("usage_daily_user", Class::ByUser),
    ("collector_spans", Class::DistributedBy("id")),
    ("model_pricing", Class::Reference),
    ("provider_default_model", Class::Reference),
    ("model_tiers", Class::Reference),
    ("user_role_map", Class::Reference),
    ("admin_roles", Class::Reference),
    ("budgets", Class::Reference),
    ("usage_counters", Class::NodeLocal),
    ("usage_series", Class::NodeLocal),
    ("usage_daily_totals", Class::NodeLocal),
    ("active_user_sketches", Class::NodeLocal),
    ("search_texts", Class::NodeLocal),
    ("budget_spend", Class::NodeLocal),
    ("system_analytics", Class::Coordinator),
    ("admin_audit_log", Class::Coordinator),
    ("rollup_state", Class::Coordinator),
    ("maintenance_lock", Class::Coordinator),
    ("retention_policy", Class::Coordinator),
    ("usage_repriced", Class::Coordinator),
    ("budget_reservations", Class::Coordinator),
    ("budget_events", Class::Coordinator),
];

/// Known violations the plan changes: (plan item id, violation, reason).
/// A violation is spelled as the test reports it.
const TO_CHANGE: &[(&str, &str, &str)] = &[
    (
        "C1",
        "agent_usage_detailed: key (id, timestamp) lacks user_id",
        "every partition's primary key becomes (user_id, id, \"timestamp\")",
    ),
    (
        "C2",
        "agent_performance_metrics: key (id) lacks user_id",
        "the surrogate key becomes (user_id, id)",
    ),
    (
        "C3",
        "_budget_book_usage (trigger on agent_usage_detailed): writes budget_reservations (coordinator-local)",
        "reservations are released by a node-local consumption record, not by deleting coordinator rows",
    ),
    (
        "C3",
        "_budget_book_usage (trigger on agent_usage_detailed): reads budget_reservations (coordinator-local)",
        "same change as above",
    ),
    (
        "C3",
        "_budget_book_usage (trigger on agent_usage_detailed): takes row locks",
        "the row locks are on budget_reservations, which the worker no longer touches",
    ),
    (
        "M1",
        "_budget_record_crossings (trigger on budget_spend): writes budget_events (coordinator-local)",
        "threshold events move to a coordinator job summing every node's ledger",
    ),
    (
        "M1",
        "_budget_record_crossings (trigger on budget_spend): sends NOTIFY",
        "NOTIFY is node-local: the coordinator job notifies, where listeners connect",
    ),
    (
        "M1",
        "_budget_commit_check (trigger on budget_spend): takes row locks",
        "it locks budgets (a reference table) from a worker; the coordinator job takes these locks",
    ),
    (
        "M2",
        "_audit (trigger on model_pricing): writes admin_audit_log (coordinator-local)",
        "admin changes to reference tables are audited by the admin functions on the coordinator",
    ),
    (
        "M2",
        "_audit (trigger on provider_default_model): writes admin_audit_log (coordinator-local)",
        "as above",
    ),
    (
        "M2",
        "_audit (trigger on user_role_map): writes admin_audit_log (coordinator-local)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on model_pricing): writes model_pricing (reference)",
        "restore-only path (pg_dump restore); a Citus cluster is restored from per-node backups",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on model_pricing): writes model_tiers (reference)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on model_pricing): writes provider_default_model (reference)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on model_tiers): writes model_pricing (reference)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on model_tiers): writes model_tiers (reference)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on model_tiers): writes provider_default_model (reference)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on provider_default_model): writes model_pricing (reference)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on provider_default_model): writes model_tiers (reference)",
        "as above",
    ),
    (
        "M3",
        "_keep_installed_rows_restorable (trigger on provider_default_model): writes provider_default_model (reference)",
        "as above",
    ),
];

/// Reference tables are copied to every node and written with two-phase
/// commit on all of them: they must stay small.
const REFERENCE_MAX_ROWS: i64 = 10_000;

fn class_of(name: &str) -> Option<Class> {
    TABLES.iter().find(|(t, _)| *t == name).map(|(_, c)| *c)
}

fn rows(client: &mut Client, sql: &str) -> Vec<Vec<String>> {
    text_rows(client, sql)
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect()
}

/// Every table of the schema (not partitions) and, for partitions, the
/// table at the root of their tree.
fn schema_tables(client: &mut Client) -> (Vec<String>, BTreeMap<String, String>) {
    let tables = rows(
        client,
        "SELECT c.relname FROM pg_class c
          WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relkind IN ('r', 'p')
            AND NOT c.relispartition ORDER BY 1",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let roots = rows(
        client,
        "SELECT c.relname, coalesce((SELECT r.relname FROM pg_partition_ancestors(c.oid) a
                                       JOIN pg_class r ON r.oid = a.relid
                                      WHERE NOT r.relispartition), c.relname)
           FROM pg_class c
          WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relkind IN ('r', 'p')
          ORDER BY 1",
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect();
    (tables, roots)
}

/// What the schema breaks; each violation is one line.
fn violations(client: &mut Client) -> Vec<String> {
    let mut found = Vec::new();
    let (tables, roots) = schema_tables(client);
    let root_class = |rel: &str| roots.get(rel).and_then(|root| class_of(root));

    // 1. Classified, and nothing classified that does not exist.
    for t in &tables {
        if class_of(t).is_none() {
            found.push(format!(
                "{t}: not classified (add it to TABLES here and to the table in docs/scaling.md)"
            ));
        }
    }
    for (t, _) in TABLES {
        if !tables.contains(&t.to_string()) {
            found.push(format!("{t}: classified but absent from the schema"));
        }
    }

    // 2. Distribution columns.
    for (t, class) in TABLES {
        let Some(col) = class.distribution_column() else {
            continue;
        };
        let found_col = rows(
            client,
            &format!(
                "SELECT a.attnotnull::text, a.attgenerated::text, format_type(a.atttypid, NULL)
                   FROM pg_attribute a
                  WHERE a.attrelid = to_regclass('usage_analytics.{t}') AND a.attname = '{col}'
                    AND NOT a.attisdropped"
            ),
        );
        match found_col.first() {
            None => found.push(format!("{t}: no distribution column {col}")),
            Some(r) => {
                if r[0] != "true" {
                    found.push(format!("{t}: distribution column {col} is nullable"));
                }
                if !r[1].is_empty() {
                    found.push(format!("{t}: distribution column {col} is generated"));
                }
                if *class == Class::ByUser && r[2] != "uuid" {
                    found.push(format!(
                        "{t}: {col} is {}, not uuid like agent_usage_detailed",
                        r[2]
                    ));
                }
            }
        }
    }

    // 3. Keys contain the distribution column (partitions included). A key
    // is reported once per root table and column list.
    let keys = rows(
        client,
        "SELECT c.relname,
                array_to_string(ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
                                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                                       ORDER BY k.n), ', '),
                (i.indexprs IS NOT NULL)::text
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          WHERE c.relnamespace = 'usage_analytics'::regnamespace
            AND (i.indisunique OR i.indisexclusion)",
    );
    let mut key_violations = BTreeSet::new();
    for k in keys {
        let (rel, cols, has_expr) = (&k[0], &k[1], k[2] == "true");
        let Some(class) = root_class(rel) else { continue };
        let Some(dist) = class.distribution_column() else {
            continue;
        };
        if has_expr || !cols.split(", ").any(|c| c == dist) {
            key_violations.insert(format!(
                "{}: key ({}) lacks {dist}",
                roots[rel],
                cols.replace('"', "")
            ));
        }
    }
    found.extend(key_violations);

    // 4. One level of partitioning under a distributed table.
    for r in rows(
        client,
        "SELECT c.relname FROM pg_class c
          WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relispartition AND c.relkind = 'p'",
    ) {
        if root_class(&r[0]).is_some_and(|c| c.distribution_column().is_some()) {
            found.push(format!(
                "{}: a sub-partitioned partition of a distributed table",
                r[0]
            ));
        }
    }

    // 5. Foreign keys.
    for r in rows(
        client,
        "SELECT f.conname, c.relname, p.relname,
                array_to_string(ARRAY(SELECT a.attname FROM unnest(f.conkey) k JOIN pg_attribute a
                                        ON a.attrelid = f.conrelid AND a.attnum = k), ','),
                array_to_string(ARRAY(SELECT a.attname FROM unnest(f.confkey) k JOIN pg_attribute a
                                        ON a.attrelid = f.confrelid AND a.attnum = k), ',')
           FROM pg_constraint f
           JOIN pg_class c ON c.oid = f.conrelid JOIN pg_class p ON p.oid = f.confrelid
          WHERE f.contype = 'f' AND (c.relnamespace = 'usage_analytics'::regnamespace
                                     OR p.relnamespace = 'usage_analytics'::regnamespace)",
    ) {
        let (from, to) = (root_class(&r[1]), root_class(&r[2]));
        let ok = match (from, to) {
            (Some(Class::ByUser), Some(Class::ByUser)) => {
                r[3].split(',').any(|c| c == "user_id") && r[4].split(',').any(|c| c == "user_id")
            }
            (Some(Class::ByUser | Class::DistributedBy(_)), Some(Class::Reference)) => true,
            (Some(Class::Reference), Some(Class::Reference)) => true,
            (Some(Class::Coordinator), Some(Class::Coordinator | Class::Reference)) => true,
            (Some(Class::NodeLocal), Some(Class::NodeLocal)) => true,
            _ => false,
        };
        if !ok {
            found.push(format!(
                "{}: foreign key {} -> {} ({:?} -> {:?}) is not supported by Citus",
                r[1], r[0], r[2], from, to
            ));
        }
    }

    // 6. Identity and sequence columns are bigint.
    for r in rows(
        client,
        "SELECT c.relname, a.attname, format_type(a.atttypid, NULL)
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE c.relnamespace = 'usage_analytics'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
            AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')",
    ) {
        let class = root_class(&r[0]);
        let cited =
            matches!(class, Some(Class::Reference)) || class.and_then(Class::distribution_column).is_some();
        if cited && r[2] != "bigint" {
            found.push(format!(
                "{}: identity/sequence column {} is {}, not bigint",
                r[0], r[1], r[2]
            ));
        }
    }

    // 7. Reference tables are small.
    for (t, class) in TABLES {
        if *class != Class::Reference || !tables.contains(&t.to_string()) {
            continue;
        }
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM usage_analytics.{t}"), &[])
            .unwrap()
            .get(0);
        if n > REFERENCE_MAX_ROWS {
            found.push(format!(
                "{t}: reference table with {n} rows (more than {REFERENCE_MAX_ROWS})"
            ));
        }
    }

    // 8 and 9. Code that runs on the workers.
    let code = Code::load(client);
    for r in rows(
        client,
        "SELECT c.relname, p.proname
           FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_proc p ON p.oid = g.tgfoid
          WHERE NOT g.tgisinternal AND c.relnamespace = 'usage_analytics'::regnamespace",
    ) {
        let (rel, function) = (&r[0], &r[1]);
        let Some(class) = root_class(rel) else { continue };
        if !class.triggers_run_on_workers() {
            continue;
        }
        let root = &roots[rel];
        for f in code.reachable(function) {
            let at = format!("{f} (trigger on {root})");
            let body = &code.bodies[&f];
            for w in &body.writes {
                let target = class_of(w);
                let ok = target == Some(Class::NodeLocal)
                    || (class == Class::ByUser && target == Some(Class::ByUser));
                if !ok {
                    found.push(format!("{at}: writes {w} ({})", describe(target)));
                }
            }
            for t in &body.reads {
                let target = class_of(t);
                let ok = matches!(target, Some(Class::NodeLocal | Class::Reference))
                    || (class == Class::ByUser && target == Some(Class::ByUser));
                if !ok {
                    found.push(format!("{at}: reads {t} ({})", describe(target)));
                }
            }
            if body.row_locks {
                found.push(format!("{at}: takes row locks"));
            }
            if body.notifies {
                found.push(format!("{at}: sends NOTIFY"));
            }
            if body.advisory_locks {
                found.push(format!("{at}: takes advisory locks"));
            }
        }
    }
    for r in rows(
        client,
        "SELECT c.relname, p.polname,
                coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
          WHERE c.relnamespace = 'usage_analytics'::regnamespace",
    ) {
        let Some(class) = root_class(&r[0]) else { continue };
        if !matches!(class, Class::ByUser | Class::DistributedBy(_) | Class::Reference) {
            continue;
        }
        let expr = Body::parse(&r[2], &code.tables, &code.functions);
        let mut read: BTreeSet<String> = expr.reads.clone();
        for f in &expr.calls {
            for g in code.reachable(f) {
                read.extend(code.bodies[&g].reads.iter().cloned());
            }
        }
        for t in read {
            let target = class_of(&t);
            if !matches!(target, Some(Class::Reference | Class::ByUser)) {
                found.push(format!("{}: policy {} reads {t} ({})", r[0], r[1], describe(target)));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn describe(class: Option<Class>) -> String {
    class.map_or_else(|| "unclassified".into(), Class::label)
}

/// What one function (or policy expression) does, from its source text:
/// the tables it writes and reads, the functions it calls, and whether it
/// locks rows, takes advisory locks or notifies. Dynamic SQL built by
/// format() is read as text, so it is seen too; SQL that only exists at run
/// time (table names from variables) and C functions are not: the plan
/// lists what the Rust functions touch.
#[derive(Default)]
struct Body {
    writes: BTreeSet<String>,
    reads: BTreeSet<String>,
    calls: BTreeSet<String>,
    row_locks: bool,
    notifies: bool,
    advisory_locks: bool,
}

impl Body {
    fn parse(src: &str, tables: &BTreeSet<String>, functions: &BTreeSet<String>) -> Body {
        // Comments out, then identifiers (schema prefix dropped) and parentheses.
        let text: String = src
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase();
        let mut tokens: Vec<String> = Vec::new();
        let mut current = String::new();
        for ch in text.chars() {
            if ch.is_ascii_alphanumeric() || ch == '_' || ch == '.' {
                current.push(ch);
                continue;
            }
            if !current.is_empty() {
                tokens.push(std::mem::take(&mut current));
            }
            if ch == '(' {
                tokens.push("(".into());
            }
        }
        if !current.is_empty() {
            tokens.push(current);
        }
        for t in &mut tokens {
            if let Some(rest) = t.strip_prefix("usage_analytics.") {
                *t = rest.to_string();
            }
        }
        let mut body = Body::default();
        let at = |i: usize| tokens.get(i).map(String::as_str).unwrap_or("");
        for i in 0..tokens.len() {
            let t = at(i);
            let prev = if i > 0 { at(i - 1) } else { "" };
            let prev2 = if i > 1 { at(i - 2) } else { "" };
            let next = at(i + 1);
            if functions.contains(t) && next == "(" {
                body.calls.insert(t.to_string());
            }
            if t == "pg_notify" || (t == "notify" && prev != "do") {
                body.notifies = true;
            }
            if t.starts_with("pg_advisory") || t.starts_with("pg_try_advisory") {
                body.advisory_locks = true;
            }
            if prev == "for" && (t == "update" || t == "share" || (t == "no" && next == "key") || t == "key")
            {
                body.row_locks = true;
            }
            if !tables.contains(t) {
                continue;
            }
            let target = if prev == "only" {
                (prev2, if i > 2 { at(i - 3) } else { "" })
            } else {
                (prev, prev2)
            };
            match target {
                ("into", "insert")
                | ("from", "delete")
                | ("update", _)
                | ("truncate", _)
                | ("table", "truncate") => {
                    body.writes.insert(t.to_string());
                }
                ("from", _) | ("join", _) => {
                    body.reads.insert(t.to_string());
                }
                _ => {}
            }
        }
        body
    }
}

/// The SQL and PL/pgSQL functions of the schema, parsed.
struct Code {
    bodies: BTreeMap<String, Body>,
    tables: BTreeSet<String>,
    functions: BTreeSet<String>,
}

impl Code {
    fn load(client: &mut Client) -> Code {
        let tables: BTreeSet<String> = rows(
            client,
            "SELECT relname FROM pg_class
              WHERE relnamespace = 'usage_analytics'::regnamespace AND relkind IN ('r', 'p', 'v', 'm')",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
        let sources = rows(
            client,
            "SELECT p.proname, l.lanname, p.prosrc FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
              WHERE p.pronamespace = 'usage_analytics'::regnamespace",
        );
        let functions: BTreeSet<String> = sources.iter().map(|r| r[0].clone()).collect();
        let mut joined: BTreeMap<String, String> = BTreeMap::new();
        for r in &sources {
            let src = joined.entry(r[0].clone()).or_default();
            if r[1] == "sql" || r[1] == "plpgsql" {
                src.push_str(&r[2]);
                src.push('\n');
            }
        }
        let bodies = joined
            .into_iter()
            .map(|(name, src)| {
                let body = Body::parse(&src, &tables, &functions);
                (name, body)
            })
            .collect();
        Code {
            bodies,
            tables,
            functions,
        }
    }

    /// The function and every function it calls, transitively.
    fn reachable(&self, function: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![function.to_string()];
        while let Some(f) = todo.pop() {
            if !self.bodies.contains_key(&f) || !seen.insert(f.clone()) {
                continue;
            }
            todo.extend(self.bodies[&f].calls.iter().cloned());
        }
        seen.into_iter().collect()
    }
}

fn fresh() -> Client {
    let c = cluster();
    let db = c.fresh_db("scaling");
    c.connect(&db)
}

fn plan() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/scaling.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rules hold, apart from the plan's known changes, and every known
/// change is still needed.
#[test]
fn schema_stays_within_the_scale_out_constraints() {
    let mut client = fresh();
    let found = violations(&mut client);
    let unexpected: Vec<&String> = found
        .iter()
        .filter(|v| !TO_CHANGE.iter().any(|(_, known, _)| known == v))
        .collect();
    let stale: Vec<&str> = TO_CHANGE
        .iter()
        .filter(|(_, known, _)| !found.iter().any(|v| v == known))
        .map(|(_, known, _)| *known)
        .collect();
    assert!(
        unexpected.is_empty(),
        "the schema breaks the Citus scale-out plan (docs/scaling.md); fix the schema, or add the \
         violation to TO_CHANGE and to the plan's \"what to change\" list with a reason:\n  {}",
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(
        stale.is_empty(),
        "fixed, so remove from TO_CHANGE and from docs/scaling.md:\n  {}",
        stale.join("\n  ")
    );
}

/// docs/scaling.md lists every table with the class used here, and every
/// change item this test allows.
#[test]
fn plan_mirrors_the_classification() {
    let doc = plan();
    for (t, class) in TABLES {
        let row = format!("| `{t}` | {} |", class.label());
        assert!(
            doc.contains(&row),
            "docs/scaling.md lacks the row starting {row:?}"
        );
    }
    for (id, _, reason) in TO_CHANGE {
        assert!(!reason.is_empty());
        assert!(
            doc.contains(&format!("**{id}**")),
            "docs/scaling.md lacks change item **{id}**"
        );
    }
}

/// The checks can fail: a unique key without user_id on a table co-located
/// by user_id, a foreign key from a reference table to a distributed one, a
/// trigger on the usage table writing a coordinator table, an unclassified
/// table, a nullable distribution column and an oversized reference table
/// are each reported.
#[test]
fn violations_are_detected() {
    let mut client = fresh();
    client
        .batch_execute(
            "CREATE UNIQUE INDEX scaling_probe_key ON usage_analytics.agent_usage_detailed_default (agent_id, id);
             ALTER TABLE usage_analytics.usage_daily_user ADD CONSTRAINT scaling_probe_unique UNIQUE (day, shard);
             ALTER TABLE usage_analytics.agent_performance_metrics ADD CONSTRAINT scaling_probe_pkey2 UNIQUE (user_id, id);
             ALTER TABLE usage_analytics.model_tiers ADD COLUMN probe_id uuid
                 REFERENCES usage_analytics.agent_performance_metrics (id);
             CREATE TABLE usage_analytics.scaling_probe (x int);
             ALTER TABLE usage_analytics.agent_performance_metrics ALTER COLUMN user_id DROP NOT NULL;
             CREATE FUNCTION usage_analytics._scaling_probe() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO usage_analytics.rollup_state (day, rolled_at, source_requests, rows_written)
                 VALUES (current_date, now(), 0, 0);
                 PERFORM pg_advisory_xact_lock(1);
                 RETURN NULL;
             END $$;
             CREATE TRIGGER scaling_probe AFTER INSERT ON usage_analytics.agent_usage_detailed
                 FOR EACH STATEMENT EXECUTE FUNCTION usage_analytics._scaling_probe();
             INSERT INTO usage_analytics.user_role_map (role_name, user_id)
             SELECT 'probe_' || g, gen_random_uuid() FROM generate_series(1, 10001) g;",
        )
        .unwrap();
    let found = violations(&mut client);
    for expected in [
        "agent_usage_detailed: key (agent_id, id) lacks user_id",
        "usage_daily_user: key (day, shard) lacks user_id",
        "model_tiers: foreign key model_tiers_probe_id_fkey -> agent_performance_metrics (Some(Reference) -> Some(ByUser)) is not supported by Citus",
        "scaling_probe: not classified (add it to TABLES here and to the table in docs/scaling.md)",
        "agent_performance_metrics: distribution column user_id is nullable",
        "_scaling_probe (trigger on agent_usage_detailed): writes rollup_state (coordinator-local)",
        "_scaling_probe (trigger on agent_usage_detailed): takes advisory locks",
        "user_role_map: reference table with 10001 rows (more than 10000)",
    ] {
        assert!(found.iter().any(|v| v == expected), "not detected: {expected}\nfound:\n  {}", found.join("\n  "));
    }
    // The C2 change itself (a key with user_id) is not a violation.
    assert!(!found.iter().any(|v| v.contains("(user_id, id)")), "{found:#?}");
}
