//! The MySQL packet codec as the CometQL port sees it: arbitrary bytes off the socket, fed to
//! `PacketDecoder` in chunks the way the connection loop does (take every packet, then read more), then
//! every packet parsed as a handshake response and as a command.
//!
//! Checked beyond "no panic": the packets do not depend on how the bytes were chunked, the buffer stays
//! within its cap, parsed fields are slices of their payload, the capabilities used never exceed what the
//! server advertises, and `PacketWriter` reproduces every packet it is given.
#![no_main]

use halley::mysql::caps;
use halley::mysql::command::{self, Command};
use halley::mysql::handshake::{parse_response, ClientHello};
use halley::mysql::packet::{Packet, PacketDecoder, PacketError, PacketWriter};
use libfuzzer_sys::fuzz_target;

/// `ConnConfig::default().max_packet` (the `[cometql] max_packet_bytes` default).
const MAX_PACKET: usize = 1024 * 1024;
/// `PacketDecoder`'s slack past `max_packet` (one socket read and continuation headers).
const SLACK: usize = 64 * 1024;
/// The connection loop's read size.
const READ_CHUNK: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    // A small limit too, so that refusals from a header alone are exercised with short inputs.
    for max_packet in [MAX_PACKET, data.len() / 3] {
        let whole = decode(data, max_packet, |_| READ_CHUNK);
        let trickle = decode(data, max_packet, |i| [1, 2, 3, 5, 7, 11][i % 6]);
        assert_eq!(whole, trickle, "packets depend on chunking");
        if max_packet == MAX_PACKET {
            parse_packets(&whole.0);
        }
    }
});

/// Feeds `data` in chunks of `chunk(i)` bytes, taking every complete packet before the next feed.
fn decode(
    data: &[u8],
    max_packet: usize,
    mut chunk: impl FnMut(usize) -> usize,
) -> (Vec<Packet>, Option<PacketError>) {
    let mut d = PacketDecoder::new(max_packet);
    let mut packets = Vec::new();
    let mut rest = data;
    let mut i = 0;
    loop {
        loop {
            match d.next_packet() {
                Ok(Some(p)) => {
                    assert!(p.payload.len() <= max_packet);
                    packets.push(p);
                }
                Ok(None) => break,
                Err(e) => return (packets, Some(e)),
            }
        }
        if rest.is_empty() {
            return (packets, None);
        }
        let n = chunk(i).clamp(1, rest.len());
        i += 1;
        let (head, tail) = rest.split_at(n);
        rest = tail;
        if let Err(e) = d.feed(head) {
            return (packets, Some(e));
        }
        assert!(d.buffered() <= max_packet + SLACK);
    }
}

fn parse_packets(packets: &[Packet]) {
    // The connection's capabilities come from the first handshake response, as in `login.rs`.
    let mut conn_caps = caps::SERVER;
    for (i, p) in packets.iter().enumerate() {
        let payload = &p.payload[..];
        if let Ok(ClientHello::Response(r)) = parse_response(payload) {
            assert_eq!(
                r.capabilities & !caps::SERVER,
                0,
                "uses what we never advertised"
            );
            let used = r.user.len()
                + r.auth_response.len()
                + r.database.map_or(0, <[u8]>::len)
                + r.plugin.map_or(0, <[u8]>::len);
            assert!(used <= payload.len());
            let _ = r.needs_auth_switch();
            if i == 0 {
                conn_caps = r.capabilities;
            }
        }
        for caps in [conn_caps, caps::SERVER, caps::PROTOCOL_41, u32::MAX] {
            if let Ok(Command::ChangeUser(cu)) = command::parse(payload, caps) {
                let used = cu.user.len()
                    + cu.auth_response.len()
                    + cu.database.map_or(0, <[u8]>::len)
                    + cu.plugin.map_or(0, <[u8]>::len);
                assert!(used < payload.len());
            }
        }
        round_trip(p);
    }
}

/// What the writer frames, the decoder gives back unchanged, with the same sequence id.
fn round_trip(p: &Packet) {
    let mut w = PacketWriter::new();
    w.set_seq(p.seq);
    w.packet(&p.payload);
    assert_eq!(w.seq(), p.seq.wrapping_add(1));
    let mut d = PacketDecoder::new(p.payload.len());
    d.feed(w.as_bytes())
        .expect("a written packet fits its own limit");
    assert_eq!(d.next_packet(), Ok(Some(p.clone())));
    assert_eq!(d.buffered(), 0);
}
