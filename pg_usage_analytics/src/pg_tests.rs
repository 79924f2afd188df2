//! In-database tests (`cargo pgrx test`): what needs a real backend.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

#[pg_test]
fn tracks_and_prices_a_request() {
    let id = Spi::get_one::<pgrx::Uuid>(
        "SELECT usage_analytics.track_detailed_usage('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'agent-1', 'Agent', \
         'LangChain', 'OpenAI', 'chat', 1234, 567, 850, true, NULL, '{\"action\":\"x\"}', 'gpt-4o-2024-08-06')",
    )
    .unwrap()
    .unwrap();
    let (cost, model) = Spi::get_two_with_args::<String, String>(
        "SELECT cost_usd::text, model FROM usage_analytics.agent_usage_detailed WHERE id = $1",
        &[id.into()],
    )
    .unwrap();
    assert_eq!(cost.as_deref(), Some("0.008755"));
    assert_eq!(model.as_deref(), Some("gpt-4o"));
}
}
