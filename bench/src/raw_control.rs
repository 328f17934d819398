//! The raw baseline server's publish port: one line per request, one line per answer.
//! `pub <pipe> <event> <payload>` → `ok <receivers>`; `count <pipe>...` → `<subscriptions>`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Publish {
        pipe: &'a str,
        event: &'a str,
        payload: &'a str,
    },
    Count(Vec<&'a str>),
}

pub fn parse_request(line: &str) -> Option<Request<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, rest) = line.split_once(' ')?;
    match verb {
        "pub" => {
            let mut parts = rest.splitn(3, ' ');
            Some(Request::Publish {
                pipe: parts.next()?,
                event: parts.next()?,
                payload: parts.next().unwrap_or(""),
            })
        }
        "count" => Some(Request::Count(
            rest.split(' ').filter(|p| !p.is_empty()).collect(),
        )),
        _ => None,
    }
}

pub struct RawControl {
    stream: BufReader<TcpStream>,
    line: String,
}

impl RawControl {
    pub async fn connect(addr: SocketAddr) -> io::Result<RawControl> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::other("control connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(RawControl {
            stream: BufReader::new(stream),
            line: String::new(),
        })
    }

    async fn call(&mut self, request: String) -> io::Result<String> {
        tokio::time::timeout(TIMEOUT, async {
            self.stream.get_mut().write_all(request.as_bytes()).await?;
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Ok(self.line.trim_end().to_owned())
        })
        .await
        .map_err(|_| io::Error::other("control request timed out"))?
    }

    pub async fn publish(&mut self, pipe: &str, event: &str, payload: &str) -> io::Result<()> {
        let answer = self.call(format!("pub {pipe} {event} {payload}\n")).await?;
        match answer.strip_prefix("ok ") {
            Some(_) => Ok(()),
            None => Err(io::Error::other(format!("raw server said {answer:?}"))),
        }
    }

    pub async fn count(&mut self, pipes: &[String]) -> io::Result<u64> {
        let answer = self.call(format!("count {}\n", pipes.join(" "))).await?;
        answer
            .parse()
            .map_err(|_| io::Error::other(format!("raw server said {answer:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            parse_request("pub chat ev bench:1:2: x\n"),
            Some(Request::Publish {
                pipe: "chat",
                event: "ev",
                payload: "bench:1:2: x"
            })
        );
        assert_eq!(
            parse_request("count a b\n"),
            Some(Request::Count(vec!["a", "b"]))
        );
        assert_eq!(parse_request("nope\n"), None);
    }
}
