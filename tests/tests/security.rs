//! Roles × entry points: who sees and may do what (issue: security).

use integration_tests::{cluster, db_error, load_sample, scalar, text_rows, USERS};
use postgres::Client;

struct Setup {
    db: String,
    prefix: String,
}

impl Setup {
    fn role(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }
    fn connect(&self, name: &str) -> Client {
        cluster().connect_as(&self.db, &self.role(name))
    }
}

/// Two mapped readers (alice = USERS[0], bob = USERS[1]), an unmapped
/// trusted app (member of usage_analytics_app), an unmapped reader that is
/// not an app (spoofer), a writer, an admin, a monitor and a role with no
/// grants.
fn setup(name: &str) -> (Setup, Client) {
    let c = cluster();
    let db = c.fresh_db(name);
    let setup = Setup {
        prefix: db.clone(),
        db,
    };
    let mut owner = c.connect(&setup.db);
    load_sample(&mut owner, 6000, 2);
    let sql = format!(
        "CREATE ROLE {alice} LOGIN; GRANT usage_analytics_reader TO {alice};
         CREATE ROLE {bob} LOGIN; GRANT usage_analytics_reader TO {bob};
         CREATE ROLE {app} LOGIN; GRANT usage_analytics_reader, usage_analytics_app TO {app};
         CREATE ROLE {spoofer} LOGIN; GRANT usage_analytics_reader TO {spoofer};
         CREATE ROLE {writer} LOGIN; GRANT usage_analytics_writer TO {writer};
         CREATE ROLE {admin} LOGIN; SELECT usage_analytics.grant_admin('{admin}');
         CREATE ROLE {monitor} LOGIN; GRANT usage_analytics_monitor TO {monitor};
         CREATE ROLE {nobody} LOGIN;
         INSERT INTO usage_analytics.user_role_map VALUES ('{alice}', '{u0}'), ('{bob}', '{u1}');
         SELECT usage_analytics.rollup_range((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date);",
        alice = setup.role("alice"),
        bob = setup.role("bob"),
        app = setup.role("app"),
        spoofer = setup.role("spoofer"),
        writer = setup.role("writer"),
        admin = setup.role("admin"),
        monitor = setup.role("monitor"),
        nobody = setup.role("nobody"),
        u0 = USERS[0],
        u1 = USERS[1],
    );
    owner.batch_execute(&sql).unwrap();
    (setup, owner)
}

fn count(client: &mut Client, sql: &str) -> i64 {
    scalar(client, sql).unwrap().parse().unwrap()
}

fn refused(client: &mut Client, sql: &str) -> String {
    let err = client
        .batch_execute(sql)
        .err()
        .unwrap_or_else(|| panic!("expected {sql} to be refused"));
    let (code, message) = db_error(&err);
    assert!(
        matches!(code.as_str(), "42501" | "0A000" | "22023"),
        "{sql}: unexpected {code} {message}"
    );
    message
}

fn partitions(owner: &mut Client) -> Vec<String> {
    text_rows(
        owner,
        "SELECT inhrelid::regclass::text FROM pg_inherits
          WHERE inhparent = 'usage_analytics.agent_usage_detailed'::regclass",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

#[test]
fn readers_see_exactly_their_own_rows_everywhere() {
    let (s, mut owner) = setup("readers");
    let own = |owner: &mut Client, user: &str| {
        count(
            owner,
            &format!("SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE user_id = '{user}'"),
        )
    };
    let total = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
    for (who, user) in [("alice", USERS[0]), ("bob", USERS[1])] {
        let expected = own(&mut owner, user);
        assert!(expected > 0 && expected < total);
        let mut c = s.connect(who);
        assert_eq!(
            scalar(&mut c, "SELECT usage_analytics.current_user_id()::text").as_deref(),
            Some(user)
        );
        for sql in [
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed".to_string(),
            "SELECT count(*) FROM usage_analytics.get_usage_records('{}', 1000000)".to_string(),
            "SELECT count(*) FROM usage_analytics.usage_export()".to_string(),
            "SELECT (usage_analytics.get_usage_summary() ->> 'total_requests')::bigint".to_string(),
            "SELECT sum(requests) FROM usage_analytics.usage_trend('day')".to_string(),
            "SELECT array_length(string_to_array(usage_analytics.export_usage_csv(), E'\\r\\n'), 1) - 2"
                .to_string(),
            "SELECT sum(total_requests) FROM usage_analytics.agent_performance_metrics".to_string(),
            format!(
                "SELECT count(*) FROM usage_analytics.get_usage_records('{{\"user_id\": \"{}\"}}', 1000000)",
                USERS[2]
            ),
        ] {
            let got = count(&mut c, &sql);
            let want = if sql.contains(USERS[2]) { 0 } else { expected };
            assert_eq!(got, want, "{who}: {sql}");
        }
        assert_eq!(
            count(
                &mut c,
                "SELECT count(DISTINCT user_id) FROM usage_analytics.agent_usage_detailed"
            ),
            1
        );
        // Spoofing: settings and JWT claims do not move a mapped role.
        let other = if who == "alice" { USERS[1] } else { USERS[0] };
        for spoof in [
            format!("SET usage_analytics.user_id = '{other}'"),
            format!("SET request.jwt.claims = '{{\"sub\": \"{other}\"}}'"),
            "SET ROLE usage_analytics_reader".to_string(),
        ] {
            c.batch_execute(&spoof).unwrap();
            assert_eq!(
                count(
                    &mut c,
                    "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
                ),
                expected,
                "{who} after {spoof}"
            );
            c.batch_execute("RESET ALL; RESET ROLE").unwrap();
        }
        // What readers may not do.
        for sql in [
            "SELECT count(*) FROM usage_analytics.system_analytics".to_string(),
            "SELECT count(*) FROM usage_analytics.admin_audit_log".to_string(),
            "SELECT count(*) FROM usage_analytics.usage_counters".to_string(),
            "SELECT count(*) FROM usage_analytics.usage_daily_user".to_string(),
            "SELECT * FROM usage_analytics.metrics_usage_counters()".to_string(),
            "UPDATE usage_analytics.agent_usage_detailed SET cost_usd = 0".to_string(),
            "DELETE FROM usage_analytics.agent_usage_detailed".to_string(),
            format!("INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id) VALUES ('{user}', 'x')"),
            format!("SELECT usage_analytics.track_detailed_usage('{user}', 'a', NULL, 'f', 'openai', 'chat', 1, 1, 1, true)"),
            "SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 0, 0)".to_string(),
            format!("SELECT usage_analytics.grant_admin('{}')", s.role(who)),
            "SELECT usage_analytics.rollup_daily()".to_string(),
            "SELECT usage_analytics.ensure_partitions()".to_string(),
            "INSERT INTO usage_analytics.model_pricing (provider, model, input_usd_per_1k, output_usd_per_1k) VALUES ('x', 'y', 0, 0)".to_string(),
            format!("INSERT INTO usage_analytics.user_role_map VALUES ('{}', '{other}')", s.role("app")),
        ] {
            refused(&mut c, &sql);
        }
        for partition in partitions(&mut owner) {
            refused(&mut c, &format!("SELECT count(*) FROM {partition}"));
        }
        assert!(!scalar(&mut c, "SELECT usage_analytics.is_admin()::text")
            .unwrap()
            .starts_with('t'));
        // Prices are readable: every row the owner sees.
        assert_eq!(
            count(&mut c, "SELECT count(*) FROM usage_analytics.model_pricing"),
            count(&mut owner, "SELECT count(*) FROM usage_analytics.model_pricing")
        );
    }
}

#[test]
fn trusted_app_acts_for_the_user_in_the_setting_or_jwt() {
    let (s, mut owner) = setup("app");
    let expected = count(
        &mut owner,
        &format!(
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE user_id = '{}'",
            USERS[3]
        ),
    );
    let mut app = s.connect("app");
    assert_eq!(
        count(
            &mut app,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        0,
        "no identity sees nothing"
    );
    app.batch_execute(&format!(
        "BEGIN; SET LOCAL usage_analytics.user_id = '{}'",
        USERS[3]
    ))
    .unwrap();
    assert_eq!(
        count(
            &mut app,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        expected
    );
    assert_eq!(
        count(
            &mut app,
            "SELECT (usage_analytics.get_usage_summary() ->> 'total_requests')::bigint"
        ),
        expected
    );
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(
        count(
            &mut app,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        0,
        "SET LOCAL ends with the transaction"
    );
    app.batch_execute(&format!(
        "SET request.jwt.claims = '{{\"sub\": \"{}\", \"role\": \"authenticated\"}}'",
        USERS[3]
    ))
    .unwrap();
    assert_eq!(
        count(
            &mut app,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        expected
    );
    let err = app.batch_execute(
        "SET usage_analytics.user_id = 'not-a-uuid'; SELECT usage_analytics.current_user_id()",
    );
    assert!(db_error(&err.unwrap_err()).1.contains("usage_analytics.user_id"));
}

#[test]
fn identity_fails_closed_for_roles_that_are_not_trusted_apps() {
    let (s, mut owner) = setup("spoof");
    let victim = USERS[3];
    assert!(
        count(
            &mut owner,
            &format!("SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE user_id = '{victim}'")
        ) > 0
    );
    let reads = [
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
        "SELECT count(*) FROM usage_analytics.agent_performance_metrics",
        "SELECT count(*) FROM usage_analytics.get_usage_records('{}', 1000)",
        "SELECT (usage_analytics.get_usage_summary() ->> 'total_requests')::bigint",
        "SELECT count(*) FROM usage_analytics.usage_export('{}')",
    ];
    // An unmapped reader that is not a member of usage_analytics_app: neither
    // the setting nor a JWT claim makes it anyone.
    let mut spoofer = s.connect("spoofer");
    for spoof in [
        format!("SET usage_analytics.user_id = '{victim}'"),
        format!("SET request.jwt.claims = '{{\"sub\": \"{victim}\"}}'"),
    ] {
        spoofer.batch_execute(&spoof).unwrap();
        assert_eq!(
            scalar(&mut spoofer, "SELECT usage_analytics.current_user_id()::text"),
            None,
            "{spoof} must not give an identity"
        );
        for read in reads {
            assert_eq!(count(&mut spoofer, read), 0, "{spoof}; {read}");
        }
        spoofer.batch_execute("RESET ALL").unwrap();
    }
    // A mapped reader stays itself whatever it sets, including via SET ROLE
    // to a trusted app role it does not belong to (refused) or the group.
    let mut alice = s.connect("alice");
    alice
        .batch_execute(&format!("SET usage_analytics.user_id = '{victim}'"))
        .unwrap();
    assert_eq!(
        scalar(&mut alice, "SELECT usage_analytics.current_user_id()::text").as_deref(),
        Some(USERS[0])
    );
    refused(&mut alice, "SET ROLE usage_analytics_app");
    // self_test shows readers no counts across all users.
    assert_eq!(
        count(
            &mut alice,
            "SELECT count(*) FROM usage_analytics.self_test() WHERE detail ~ '[0-9]+ rows'"
        ),
        0
    );
}

#[test]
fn writers_record_but_cannot_read() {
    let (s, mut owner) = setup("writer");
    let before = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
    let mut writer = s.connect("writer");
    writer
        .batch_execute(&format!(
            "SELECT usage_analytics.track_detailed_usage('{}', 'w', NULL, 'langchain', 'openai', 'chat', 10, 10, 10, true);
             INSERT INTO usage_analytics.agent_usage_detailed (user_id, agent_id, provider) VALUES ('{}', 'w2', 'google');",
            USERS[5], USERS[6]
        ))
        .unwrap();
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        before + 2
    );
    for sql in [
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
        "SELECT count(*) FROM usage_analytics.get_usage_records()",
        "SELECT usage_analytics.export_usage_csv()",
        "UPDATE usage_analytics.agent_usage_detailed SET success = false",
        "DELETE FROM usage_analytics.agent_usage_detailed",
        "SELECT count(*) FROM usage_analytics.agent_performance_metrics",
    ] {
        refused(&mut writer, sql);
    }
    // COPY FROM is refused under row-level security unless the login has
    // BYPASSRLS; with it the writer still cannot read (no SELECT privilege).
    owner
        .batch_execute(&format!("ALTER ROLE {} BYPASSRLS", s.role("writer")))
        .unwrap();
    let mut writer = s.connect("writer");
    let mut copy = writer
        .copy_in("COPY usage_analytics.agent_usage_detailed (user_id, agent_id, provider, model, input_tokens) FROM STDIN")
        .unwrap();
    std::io::Write::write_all(
        &mut copy,
        format!("{}\tcopied\topenai\tgpt-4o\t1000\n", USERS[7]).as_bytes(),
    )
    .unwrap();
    copy.finish().unwrap();
    assert_eq!(
        scalar(
            &mut owner,
            "SELECT cost_usd::text FROM usage_analytics.agent_usage_detailed WHERE agent_id = 'copied'"
        )
        .as_deref(),
        Some("0.0025")
    );
    refused(
        &mut writer,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
}

#[test]
fn admins_see_everything_and_every_action_is_audited() {
    let (s, mut owner) = setup("admin");
    let total = count(
        &mut owner,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
    let mut admin = s.connect("admin");
    assert_eq!(
        scalar(&mut admin, "SELECT usage_analytics.is_admin()::text").as_deref(),
        Some("true")
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        total
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM usage_analytics.get_usage_records('{}', 1000000)"
        ),
        total
    );
    assert!(
        count(
            &mut admin,
            "SELECT count(*) FROM usage_analytics.system_analytics"
        ) >= 1
    );
    admin
        .batch_execute(&format!(
            "SELECT usage_analytics.set_model_price('openai', 'gpt-4o', 0.003, 0.012, now() + interval '1 day');
             SELECT usage_analytics.grant_admin('{bob}');
             SELECT usage_analytics.rollup_daily();",
            bob = s.role("bob")
        ))
        .unwrap();
    // bob is now an admin and sees everything; then demoted again.
    let mut bob = s.connect("bob");
    assert_eq!(
        count(
            &mut bob,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ),
        total
    );
    admin
        .batch_execute(&format!(
            "SELECT usage_analytics.revoke_admin('{}')",
            s.role("bob")
        ))
        .unwrap();
    let mut bob = s.connect("bob");
    assert!(
        count(
            &mut bob,
            "SELECT count(*) FROM usage_analytics.agent_usage_detailed"
        ) < total
    );
    refused(
        &mut bob,
        &format!("SELECT usage_analytics.revoke_admin('{}')", s.role("admin")),
    );

    let audit = text_rows(
        &mut admin,
        "SELECT actor_role::text, action, target FROM usage_analytics.admin_audit_log
          WHERE action IN ('grant_admin', 'revoke_admin', 'insert model_pricing') ORDER BY id",
    );
    let admin_role = s.role("admin");
    let bob_role = s.role("bob");
    let expected = vec![
        // The setup: a superuser made the first admin of this database.
        vec![
            Some("postgres".into()),
            Some("grant_admin".into()),
            Some(admin_role.clone()),
        ],
        vec![
            Some(admin_role.clone()),
            Some("insert model_pricing".into()),
            Some("openai/gpt-4o".into()),
        ],
        vec![
            Some(admin_role.clone()),
            Some("grant_admin".into()),
            Some(bob_role.clone()),
        ],
        vec![
            Some(admin_role.clone()),
            Some("revoke_admin".into()),
            Some(bob_role.clone()),
        ],
    ];
    assert_eq!(audit, expected);

    // Append-only: privileges stop admins, the trigger stops even the owner.
    for sql in [
        "UPDATE usage_analytics.admin_audit_log SET action = 'nothing'",
        "DELETE FROM usage_analytics.admin_audit_log",
        "TRUNCATE usage_analytics.admin_audit_log",
        "INSERT INTO usage_analytics.admin_audit_log (action) VALUES ('forged')",
    ] {
        refused(&mut admin, sql);
    }
    for sql in [
        "UPDATE usage_analytics.admin_audit_log SET action = 'nothing'",
        "DELETE FROM usage_analytics.admin_audit_log",
        "TRUNCATE usage_analytics.admin_audit_log",
    ] {
        assert!(refused(&mut owner, sql).contains("append-only"));
    }
    // Admins cannot update or delete usage rows either (owner only).
    refused(
        &mut admin,
        "UPDATE usage_analytics.agent_usage_detailed SET cost_usd = 0",
    );
    refused(&mut admin, "DELETE FROM usage_analytics.agent_usage_detailed");
    let err = admin
        .batch_execute("SELECT usage_analytics.grant_admin('no_such_role_xyz')")
        .unwrap_err();
    assert!(db_error(&err).1.contains("does not exist"));
}

#[test]
fn monitor_and_roleless_logins_get_only_what_they_need() {
    let (s, _owner) = setup("monitor");
    let mut monitor = s.connect("monitor");
    assert!(
        count(
            &mut monitor,
            "SELECT count(*) FROM usage_analytics.metrics_usage_counters()"
        ) > 0
    );
    assert_eq!(
        count(
            &mut monitor,
            "SELECT count(*) FROM usage_analytics.metrics_active_users()"
        ),
        3
    );
    monitor
        .batch_execute("SELECT * FROM usage_analytics.metrics_top_users(5)")
        .unwrap();
    refused(
        &mut monitor,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
    refused(
        &mut monitor,
        "SELECT count(*) FROM usage_analytics.agent_performance_metrics",
    );
    let mut nobody = s.connect("nobody");
    refused(
        &mut nobody,
        "SELECT count(*) FROM usage_analytics.agent_usage_detailed",
    );
    refused(
        &mut nobody,
        "SELECT * FROM usage_analytics.metrics_usage_counters()",
    );
    refused(&mut nobody, "SELECT usage_analytics.get_usage_summary()");
}

#[test]
fn a_readers_query_on_a_large_table_is_an_index_scan() {
    let (s, mut owner) = setup("explain");
    load_sample(&mut owner, 60000, 2);
    owner
        .batch_execute("ANALYZE usage_analytics.agent_usage_detailed")
        .unwrap();
    let mut alice = s.connect("alice");
    let plan: String = text_rows(
        &mut alice,
        "EXPLAIN SELECT * FROM usage_analytics.agent_usage_detailed ORDER BY \"timestamp\" DESC LIMIT 50",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect::<Vec<_>>()
    .join("\n");
    assert!(
        plan.contains("InitPlan"),
        "identity should be computed once per query:\n{plan}"
    );
    assert!(plan.contains("Index"), "{plan}");
    let plan: String = text_rows(
        &mut alice,
        "EXPLAIN SELECT count(*) FROM usage_analytics.agent_usage_detailed WHERE \"timestamp\" > now() - interval '1 hour'",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect::<Vec<_>>()
    .join("\n");
    assert!(plan.contains("user_id_timestamp_idx"), "{plan}");
}

/// Roles are cluster-wide, admin rights are not: grant_admin in one database
/// makes no admin of the same role in another (issue: what a new user hits).
#[test]
fn admin_rights_are_per_database() {
    let c = cluster();
    let here = c.fresh_db("admin_here");
    let there = c.fresh_db("admin_there");
    let dba = format!("{here}_dba");
    let mut owner_here = c.connect(&here);
    let mut owner_there = c.connect(&there);
    load_sample(&mut owner_there, 200, 1);
    owner_here
        .batch_execute(&format!(
            "CREATE ROLE {dba} LOGIN; SELECT usage_analytics.grant_admin('{dba}');"
        ))
        .unwrap();
    let mut a = c.connect_as(&here, &dba);
    assert_eq!(
        scalar(&mut a, "SELECT usage_analytics.is_admin()::text").as_deref(),
        Some("true")
    );
    a.batch_execute("SELECT usage_analytics.set_model_price('openai', 'here-model', 0.001, 0.002)")
        .unwrap();
    assert!(count(&mut a, "SELECT count(*) FROM usage_analytics.admin_audit_log") > 0);

    // The same role in the other database: a member of the group, no admin.
    let mut b = c.connect_as(&there, &dba);
    assert_eq!(
        scalar(&mut b, "SELECT usage_analytics.is_admin()::text").as_deref(),
        Some("false")
    );
    refused(
        &mut b,
        "SELECT usage_analytics.set_model_price('openai', 'there-model', 0.001, 0.002)",
    );
    refused(&mut b, "SELECT usage_analytics.grant_admin('postgres')");
    for table in [
        "admin_audit_log",
        "agent_usage_detailed",
        "system_analytics",
        "usage_daily_totals",
    ] {
        assert_eq!(
            count(&mut b, &format!("SELECT count(*) FROM usage_analytics.{table}")),
            0,
            "{table} in a database where {dba} is no admin"
        );
    }
    assert_eq!(
        count(
            &mut b,
            "SELECT (usage_analytics.get_usage_summary() ->> 'total_requests')::bigint"
        ),
        0
    );
    // A superuser checking with SET ROLE sees the role's rights, not its own
    // (with some admin listed there, so the login's own membership could leak).
    owner_there
        .batch_execute(&format!(
            "CREATE ROLE {there}_dba; SELECT usage_analytics.grant_admin('{there}_dba'); SET ROLE {dba}"
        ))
        .unwrap();
    assert_eq!(
        scalar(&mut owner_there, "SELECT usage_analytics.is_admin()::text").as_deref(),
        Some("false"),
        "SET ROLE {dba} from a superuser in a database where it is no admin"
    );
    owner_there.batch_execute("RESET ROLE").unwrap();
    let there_self_test = scalar(
        &mut owner_there,
        "SELECT detail FROM usage_analytics.self_test() WHERE check_name = 'admin_scope'",
    )
    .unwrap();
    assert!(!there_self_test.contains(&dba), "{there_self_test}");

    // Revoking here leaves the group membership, and no admin right anywhere.
    owner_here
        .batch_execute(&format!("SELECT usage_analytics.revoke_admin('{dba}')"))
        .unwrap();
    let mut a = c.connect_as(&here, &dba);
    assert_eq!(
        scalar(&mut a, "SELECT usage_analytics.is_admin()::text").as_deref(),
        Some("false")
    );
    let audited = scalar(
        &mut owner_here,
        &format!(
            "SELECT string_agg(action, ',' ORDER BY id) FROM usage_analytics.admin_audit_log
              WHERE target = '{dba}'"
        ),
    );
    assert_eq!(audited.as_deref(), Some("grant_admin,revoke_admin"));
}
