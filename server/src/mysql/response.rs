//! What the server sends back: OK, ERR, EOF and text result sets (column count, column definitions, EOF,
//! rows, EOF). Every packet goes through a [`PacketWriter`], which numbers it and splits payloads of
//! 16 MiB and more into continuation packets.

use super::packet::PacketWriter;
use super::wire::{put_lenenc_bytes, put_lenenc_int, put_u16, put_u32};
use super::{ErrorPacket, Reply, ResultSet, RowStream, CHARSET_UTF8MB4, SERVER_STATUS};

const TYPE_VAR_STRING: u8 = 0xFD;
const FLAG_NOT_NULL: u16 = 0x0001;
/// Declared column width when every value is shorter.
const MIN_COLUMN_LENGTH: u32 = 256;

/// OK packet (protocol 4.1): affected rows, last insert id, status flags, warnings.
pub(crate) fn ok(w: &mut PacketWriter, affected_rows: u64, last_insert_id: u64) {
    w.packet_with(|out| {
        out.push(0x00);
        put_lenenc_int(out, affected_rows);
        put_lenenc_int(out, last_insert_id);
        put_u16(out, SERVER_STATUS);
        put_u16(out, 0);
    });
}

/// ERR packet: 0xFF, code, '#', SQLSTATE "HY000", message.
pub(crate) fn err(w: &mut PacketWriter, e: &ErrorPacket) {
    w.packet_with(|out| {
        out.push(0xFF);
        put_u16(out, e.code);
        out.extend_from_slice(b"#HY000");
        out.extend_from_slice(e.message.as_bytes());
    });
}

/// EOF packet: 0xFE, warnings, status flags.
pub(crate) fn eof(w: &mut PacketWriter) {
    w.packet_with(|out| {
        out.push(0xFE);
        put_u16(out, 0);
        put_u16(out, SERVER_STATUS);
    });
}

pub(crate) fn reply(w: &mut PacketWriter, r: &Reply) {
    match r {
        Reply::Ok {
            affected_rows,
            last_insert_id,
        } => ok(w, *affected_rows, *last_insert_id),
        Reply::Error(e) => err(w, e),
        Reply::Rows(rs) => result_set(w, rs),
        Reply::Stream(s) => {
            stream_start(w, s);
            eof(w);
        }
    }
}

/// A text result set. Rows are written with exactly one value per column (see [`ResultSet`]). A result set
/// without columns cannot be sent (its column-count packet would read as an OK), so it is sent as OK(0, 0).
pub(crate) fn result_set(w: &mut PacketWriter, rs: &ResultSet) {
    if rs.columns.is_empty() {
        ok(w, 0, 0);
        return;
    }
    let widths: Vec<u32> = (0..rs.columns.len())
        .map(|i| {
            let longest = rs
                .rows
                .iter()
                .filter_map(|row| row.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0);
            u32::try_from(longest).unwrap_or(u32::MAX)
        })
        .collect();
    head(w, &rs.columns, &widths);
    rows(w, &rs.rows, rs.columns.len());
    eof(w);
}

/// The start of a streamed result: column definitions with the declared widths, EOF, the first rows. The
/// caller adds the later rows ([`rows`]) and ends with [`eof`] (or [`err`]). Needs at least one column.
pub(crate) fn stream_start(w: &mut PacketWriter, s: &RowStream) {
    head(w, &s.columns, &s.widths);
    rows(w, &s.rows, s.columns.len());
}

/// Column count, one definition per column (declared at least [`MIN_COLUMN_LENGTH`] wide), EOF.
fn head(w: &mut PacketWriter, columns: &[String], widths: &[u32]) {
    w.packet_with(|out| put_lenenc_int(out, columns.len() as u64));
    for (i, name) in columns.iter().enumerate() {
        let length = widths.get(i).copied().unwrap_or(0).max(MIN_COLUMN_LENGTH);
        w.packet_with(|out| column_definition(out, name, length));
    }
    eof(w);
}

/// Row packets, each with exactly `width` values.
pub(crate) fn rows(w: &mut PacketWriter, rows: &[Vec<String>], width: usize) {
    for row in rows {
        w.packet_with(|out| {
            for i in 0..width {
                let value = row.get(i).map_or("", String::as_str);
                put_lenenc_bytes(out, value.as_bytes());
            }
        });
    }
}

/// ColumnDefinition41 for a VAR_STRING utf8mb4 NOT NULL column.
fn column_definition(out: &mut Vec<u8>, name: &str, length: u32) {
    put_lenenc_bytes(out, b"def");
    put_lenenc_bytes(out, b""); // schema
    put_lenenc_bytes(out, b""); // table
    put_lenenc_bytes(out, b""); // org_table
    put_lenenc_bytes(out, name.as_bytes());
    put_lenenc_bytes(out, name.as_bytes()); // org_name
    out.push(0x0C); // length of the fixed fields below
    put_u16(out, u16::from(CHARSET_UTF8MB4));
    put_u32(out, length);
    out.push(TYPE_VAR_STRING);
    put_u16(out, FLAG_NOT_NULL);
    out.push(0); // decimals
    out.extend_from_slice(&[0, 0]); // filler
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::packet::{PacketDecoder, MAX_PART};

    fn written(seq: u8, f: impl FnOnce(&mut PacketWriter)) -> Vec<u8> {
        let mut w = PacketWriter::new();
        w.set_seq(seq);
        f(&mut w);
        w.as_bytes().to_vec()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ok_packet_bytes() {
        assert_eq!(
            written(1, |w| ok(w, 1, 7)),
            b"\x07\x00\x00\x01\x00\x01\x07\x02\x02\x00\x00"
        );
        assert_eq!(
            written(2, |w| ok(w, 300, 0x1_0000)),
            b"\x0c\x00\x00\x02\x00\xfc\x2c\x01\xfd\x00\x00\x01\x02\x02\x00\x00"
        );
    }

    #[test]
    fn err_packet_bytes() {
        let e = ErrorPacket::new(16, "Authentication failure");
        let mut want = b"\x1f\x00\x00\x02\xff\x10\x00#HY000".to_vec();
        want.extend_from_slice(b"Authentication failure");
        assert_eq!(written(2, |w| err(w, &e)), want);
    }

    #[test]
    fn eof_packet_bytes() {
        assert_eq!(written(5, eof), b"\x05\x00\x00\x05\xfe\x00\x00\x02\x02");
    }

    #[test]
    fn small_result_set_bytes() {
        let rs = ResultSet {
            columns: strings(&["a"]),
            rows: vec![strings(&["x"]), vec![]],
        };
        let mut want = Vec::new();
        want.extend_from_slice(b"\x01\x00\x00\x01\x01");
        want.extend_from_slice(b"\x18\x00\x00\x02\x03def\x00\x00\x00\x01a\x01a\x0c\x2d\x00");
        want.extend_from_slice(b"\x00\x01\x00\x00\xfd\x01\x00\x00\x00\x00");
        want.extend_from_slice(b"\x05\x00\x00\x03\xfe\x00\x00\x02\x02");
        want.extend_from_slice(b"\x02\x00\x00\x04\x01x");
        // A row without values still has one (empty) value per column.
        want.extend_from_slice(b"\x01\x00\x00\x05\x00");
        want.extend_from_slice(b"\x05\x00\x00\x06\xfe\x00\x00\x02\x02");
        assert_eq!(written(1, |w| result_set(w, &rs)), want);
    }

    #[test]
    fn a_result_set_without_columns_is_an_ok() {
        let rs = ResultSet {
            columns: vec![],
            rows: vec![strings(&["x"])],
        };
        assert_eq!(
            written(1, |w| result_set(w, &rs)),
            written(1, |w| ok(w, 0, 0))
        );
    }

    #[test]
    fn extra_values_are_cut_to_the_column_count() {
        let rs = ResultSet {
            columns: strings(&["a"]),
            rows: vec![strings(&["x", "y"])],
        };
        let bytes = written(1, |w| result_set(w, &rs));
        assert!(bytes.windows(6).any(|win| win == b"\x02\x00\x00\x04\x01x"));
    }

    /// Decodes every packet of a reply and returns the payloads.
    fn payloads(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut d = PacketDecoder::new(usize::MAX / 2);
        let mut out = Vec::new();
        let mut expect_seq = 1u8;
        let mut fed = 0;
        while fed < bytes.len() || d.buffered() > 0 {
            let end = (fed + 1_000_000).min(bytes.len());
            d.feed(&bytes[fed..end]).unwrap();
            fed = end;
            while let Some(p) = d.next_packet().unwrap() {
                let parts = p.payload.len() / MAX_PART + 1;
                assert_eq!(p.seq, expect_seq.wrapping_add(parts as u8 - 1));
                expect_seq = p.seq.wrapping_add(1);
                out.push(p.payload.to_vec());
            }
        }
        out
    }

    #[test]
    fn large_values_use_the_right_length_prefix() {
        for (len, prefix) in [
            (250usize, &b"\xfa"[..]),
            (251, b"\xfc\xfb\x00"),
            (65_535, b"\xfc\xff\xff"),
            (65_536, b"\xfd\x00\x00\x01"),
            (100 * 1024, b"\xfd\x00\x90\x01"),
        ] {
            let rs = ResultSet {
                columns: strings(&["v"]),
                rows: vec![vec!["é".repeat(len / 2) + &"a".repeat(len % 2)]],
            };
            let p = payloads(&written(1, |w| result_set(w, &rs)));
            let row = &p[3];
            assert_eq!(&row[..prefix.len()], prefix, "len {len}");
            assert_eq!(row.len(), prefix.len() + len);
            // The declared column length covers the value.
            let def = &p[1];
            let declared =
                u32::from_le_bytes(def[def.len() - 10..def.len() - 6].try_into().unwrap());
            assert_eq!(declared as usize, len.max(256));
        }
    }

    #[test]
    fn a_row_over_16_mib_is_split_into_continuation_packets() {
        let big = "q".repeat(MAX_PART + 10);
        let rs = ResultSet {
            columns: strings(&["a", "b"]),
            rows: vec![vec![big.clone(), "z".into()], strings(&["1", "2"])],
        };
        let bytes = written(1, |w| result_set(w, &rs));
        let p = payloads(&bytes);
        assert_eq!(p.len(), 1 + 2 + 1 + 2 + 1);
        let row = &p[4];
        assert_eq!(&row[..4], b"\xfe\x09\x00\x00");
        assert_eq!(&row[4..9], b"\x01\x00\x00\x00\x00");
        assert_eq!(&row[9..9 + big.len()], big.as_bytes());
        assert_eq!(&row[9 + big.len()..], b"\x01z");
        assert_eq!(p[5], b"\x011\x012");
        assert_eq!(p[6], b"\xfe\x00\x00\x02\x02");
    }

    #[test]
    fn a_streamed_result_is_a_result_set_with_declared_widths() {
        let rs = ResultSet {
            columns: strings(&["a", "b"]),
            rows: vec![strings(&["x", "yy"]), strings(&["z", "w"])],
        };
        let whole = written(1, |w| result_set(w, &rs));
        // Streamed in two parts with the widths the whole result would declare: the same bytes.
        let streamed = written(1, |w| {
            stream_start(
                w,
                &RowStream {
                    columns: rs.columns.clone(),
                    widths: vec![1, 2],
                    rows: rs.rows[..1].to_vec(),
                },
            );
            rows(w, &rs.rows[1..], 2);
            eof(w);
        });
        assert_eq!(streamed, whole);
        // Wider declared widths show in the column definitions only.
        let wide = written(1, |w| {
            stream_start(
                w,
                &RowStream {
                    columns: strings(&["a"]),
                    widths: vec![65_536],
                    rows: vec![],
                },
            );
            eof(w);
        });
        let p = payloads(&wide);
        let def = &p[1];
        let declared = u32::from_le_bytes(def[def.len() - 10..def.len() - 6].try_into().unwrap());
        assert_eq!(declared, 65_536);
        assert_eq!(p.len(), 1 + 1 + 1 + 1);
    }

    #[test]
    fn many_rows_wrap_the_sequence_id() {
        let rs = ResultSet {
            columns: strings(&["n"]),
            rows: (0..300).map(|i| vec![i.to_string()]).collect(),
        };
        let p = payloads(&written(1, |w| result_set(w, &rs)));
        assert_eq!(p.len(), 1 + 1 + 1 + 300 + 1);
        assert_eq!(p[3 + 299], b"\x03299");
    }
}
