//! The server crate's integration tests, as one test binary: the `halley` binary as an operator runs it
//! (`cli`), the MySQL connection loop driven byte by byte through a toy handler (`mysql_raw_bytes`),
//! secrets kept out of the logs (`secrets_in_logs`), and the layout rule of `server/src` (`floors`). They use the library's internal API, which is why
//! they live here and not in `halley-tests`; one binary links the server once for all three.

mod cli;
mod floors;
mod mysql_raw_bytes;
mod secrets_in_logs;
