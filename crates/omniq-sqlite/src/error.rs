//! The one place sqlx errors become [`StorageError`] kinds.

use omniq_core::{SerializationError, StorageError, StorageErrorKind};

/// The backend name every error carries.
pub(crate) const BACKEND: &str = "sqlite";

// Primary SQLite result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_NOMEM: i64 = 7;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_PROTOCOL: i64 = 15;

/// Maps a sqlx error to a storage error kind:
/// pool closed → `Closed`; pool timeout / I/O / crashed worker, `SQLITE_BUSY` and `SQLITE_LOCKED`
/// (and other transient codes) → `Unavailable`; decode failures → `Serialization`;
/// unique-constraint violations → `Conflict`; everything else → `Backend`.
pub(crate) fn map_sqlx(err: sqlx::Error) -> StorageError {
    use sqlx::Error as E;
    let kind = match &err {
        // The pool is only closed by `close()`: a call that raced it is Closed, not
        // something to retry.
        E::PoolClosed => StorageErrorKind::Closed,
        E::PoolTimedOut | E::Io(_) | E::WorkerCrashed => StorageErrorKind::Unavailable,
        E::Decode(_) | E::ColumnDecode { .. } => StorageErrorKind::Serialization,
        E::Database(db) => {
            let code = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match code {
                Some(
                    SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_IOERR | SQLITE_FULL
                    | SQLITE_CANTOPEN | SQLITE_PROTOCOL,
                ) => StorageErrorKind::Unavailable,
                _ if db.is_unique_violation() => StorageErrorKind::Conflict,
                _ => StorageErrorKind::Backend,
            }
        }
        _ => StorageErrorKind::Backend,
    };
    StorageError::new(kind, BACKEND, err.to_string()).with_source(err)
}

/// Errors opening a local database file are configuration problems (bad path,
/// permissions), not a server being down: `Config`, naming the path.
pub(crate) fn open_error(err: StorageError, path: &std::path::Path) -> StorageError {
    let cant_open = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<sqlx::Error>())
        .and_then(|e| match e {
            sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i64>().ok()),
            _ => None,
        })
        .is_some_and(|code| code & 0xff == SQLITE_CANTOPEN);
    if cant_open {
        StorageError::config(
            BACKEND,
            format!(
                "cannot open SQLite database {}: {}",
                path.display(),
                err.message()
            ),
        )
        .with_source(err)
    } else {
        err
    }
}

/// A codec failure on a stored blob.
pub(crate) fn serialization(err: SerializationError) -> StorageError {
    StorageError::serialization(BACKEND, err)
}

/// A stored value that cannot be turned back into the model (corrupt row).
pub(crate) fn corrupt(message: impl Into<String>) -> StorageError {
    StorageError::new(StorageErrorKind::Serialization, BACKEND, message)
}

/// A configuration problem (invalid namespace, queue name, builder value).
pub(crate) fn config(message: impl Into<String>) -> StorageError {
    StorageError::config(BACKEND, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_errors_are_temporary() {
        assert!(map_sqlx(sqlx::Error::PoolTimedOut).is_temporary());
        assert_eq!(
            map_sqlx(sqlx::Error::PoolClosed).kind(),
            StorageErrorKind::Closed
        );
        let io = std::io::Error::other("disk gone");
        assert!(map_sqlx(sqlx::Error::Io(io)).is_temporary());
    }

    #[test]
    fn decode_errors_are_serialization_and_others_backend() {
        let e = map_sqlx(sqlx::Error::Decode("bad".into()));
        assert_eq!(e.kind(), StorageErrorKind::Serialization);
        assert_eq!(e.backend(), "sqlite");
        let e = map_sqlx(sqlx::Error::RowNotFound);
        assert_eq!(e.kind(), StorageErrorKind::Backend);
    }
}
