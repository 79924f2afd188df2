//! Who is acting: the role in effect outside any SECURITY DEFINER function.

use pgrx::prelude::*;
use std::ffi::CStr;

/// The role of the caller as set by login or SET ROLE, unchanged inside
/// SECURITY DEFINER functions (unlike current_user). Admin checks, identity
/// and the audit log use it, so a definer function still sees who called it.
#[pg_extern(stable, parallel_safe)]
fn acting_role() -> String {
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), false);
        CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

extension_sql!(
    "GRANT EXECUTE ON FUNCTION usage_analytics.acting_role TO PUBLIC;",
    name = "acting_role_grants",
    requires = ["roles", acting_role]
);
