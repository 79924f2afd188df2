//! The row id, which is also the dedupe key, and the user id: UUIDv5 in namespaces of their
//! own, which the README documents so that others can compute the same ids.

use uuid::Uuid;

use super::columns::Context;
use super::text::hex;

/// Namespace of the row ids: id = UUIDv5(SPAN_NAMESPACE, trace_id (16 bytes) || span_id (8 bytes)).
pub const SPAN_NAMESPACE: Uuid = Uuid::from_u128(0x1b671a64_40d5_491e_99b0_da01ff1f3341);
/// Namespace of user ids made from a `user.id` / `enduser.id` that is not a UUID:
/// user_id = UUIDv5(USER_NAMESPACE, the attribute's UTF-8 text, trimmed).
pub const USER_NAMESPACE: Uuid = Uuid::from_u128(0x7c0f4b7e_5a3c_5b8e_9d1a_6f2e8c4b1d30);

/// The row id and dedupe key: UUIDv5(SPAN_NAMESPACE, trace_id || span_id).
pub fn row_id(trace_id: &[u8], span_id: &[u8]) -> Result<Uuid, String> {
    if trace_id.len() != 16 || trace_id.iter().all(|&b| b == 0) {
        return Err(format!(
            "invalid trace_id {:?} (16 bytes, not all zero)",
            hex(trace_id)
        ));
    }
    if span_id.len() != 8 || span_id.iter().all(|&b| b == 0) {
        return Err(format!(
            "invalid span_id {:?} (8 bytes, not all zero)",
            hex(span_id)
        ));
    }
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(trace_id);
    key[16..].copy_from_slice(span_id);
    Ok(Uuid::new_v5(&SPAN_NAMESPACE, &key))
}

/// user.id, else enduser.id (span, then resource): a UUID as is, another value → UUIDv5 in
/// USER_NAMESPACE of its trimmed text; none → the nil UUID.
pub fn user_id(ctx: &Context<'_>) -> Uuid {
    let raw = ctx.text("user.id").or_else(|| ctx.text("enduser.id"));
    match raw {
        None => Uuid::nil(),
        Some(s) => {
            let s = s.trim();
            Uuid::parse_str(s).unwrap_or_else(|_| Uuid::new_v5(&USER_NAMESPACE, s.as_bytes()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::fixtures::{i, kv, row, s, span};

    #[test]
    fn uuid_users_are_kept_as_they_are() {
        let u = "6f1c1d9e-8c1b-4c43-9d0e-6b7a3e2f1a00";
        let sp = span(vec![
            kv("user.id", s(&format!(" {u} "))),
            kv("enduser.id", s("ignored")),
            kv("gen_ai.usage.input_tokens", i(1)),
        ]);
        assert_eq!(row(&sp, &[]).user_id, Uuid::parse_str(u).unwrap());
    }

    #[test]
    fn namespaces_are_the_documented_ones() {
        assert_eq!(SPAN_NAMESPACE.to_string(), "1b671a64-40d5-491e-99b0-da01ff1f3341");
        assert_eq!(USER_NAMESPACE.to_string(), "7c0f4b7e-5a3c-5b8e-9d1a-6f2e8c4b1d30");
    }
}
