//! Values of the per-user tables that are keyed by `id` (a tenant's user id).

use super::{CommandError, ErrorCode};
use crate::cometql::Value;
use crate::ids::UserId;

pub fn id_error() -> CommandError {
    CommandError::new(ErrorCode::Invalid, "The id field must be non-negative")
}

/// A user id from an INSERT: a positive integer (0 only where `allow_zero`), else ERR 12.
pub fn insert_id(text: &str, allow_zero: bool) -> Result<UserId, CommandError> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 || (allow_zero && n == 0) => Ok(UserId(n as u64)),
        _ => Err(id_error()),
    }
}

/// The valid ids of a WHERE list; the rest are skipped, as in the reference.
pub fn where_ids(values: &[Value]) -> Vec<UserId> {
    values
        .iter()
        .filter_map(|v| v.as_text())
        .filter_map(|t| t.trim().parse::<i64>().ok())
        .filter(|&n| n > 0)
        .map(|n| UserId(n as u64))
        .collect()
}
