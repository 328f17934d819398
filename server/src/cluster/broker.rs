//! The Redis broker behind the hub's seam: a publish is one script (`scripts::PUBLISH`) and is done when
//! Redis returned; a positioned join is ordered by the receiver (`receiver.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::metrics::Metrics;
use super::scripts::PUBLISH;
use super::wire::{self, Body, Header};
use super::{Shared, COMMAND_TIMEOUT, LISTEN_TIMEOUT};
use crate::browser::json::Value;
use crate::hub::broker::{Broker, Pending};
use crate::hub::outgoing::pusher_channel;
use crate::hub::pusher::CACHE_TTL;
use crate::hub::{BrokerError, Join, Publication, Sent};
use crate::ids::{DevId, EventName, PipeName, UserId};
use crate::pusher::channel::is_cache_name;

/// A pipe's meta (epoch, top) outlives an idle pipe's window by this much: subscribers of a quiet pipe
/// keep their numbering for a day.
const META_TTL: Duration = Duration::from_secs(24 * 3600);

pub(super) struct RedisBroker {
    pub(super) shared: Arc<Shared>,
}

impl RedisBroker {
    pub(super) fn new(shared: Arc<Shared>) -> RedisBroker {
        RedisBroker { shared }
    }
}

/// A pipe message's content, read off its typed frame (the shapes `outgoing::pipe_message` makes).
fn body_of(p: &Publication) -> Option<Body> {
    let frame = p.frame.frame()?;
    let Some(Value::Str(text)) = frame.get("data") else {
        return None;
    };
    let sent_at = match frame.get("message_send_time") {
        Some(Value::Int(t)) => *t,
        _ => return None,
    };
    let sender = match frame.get("user_id") {
        Some(Value::UInt(u)) => Some(UserId(*u)),
        None => None,
        _ => return None,
    };
    // A Pusher event name (`App\\Events\\OrderShipped`) where the comet rule refuses it: kind `n`.
    let event = EventName::parse(frame.event())
        .or_else(|_| EventName::pusher(frame.event()).map_err(|_| ()))
        .ok()?;
    Some(Body {
        sent_at,
        sender,
        event,
        text: text.clone(),
        socket: p.socket.as_deref().map(str::to_owned),
    })
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("Redis: {e}"))
}

impl Broker for RedisBroker {
    fn publish(&self, p: Publication) -> Sent {
        let Some(body) = body_of(&p) else {
            // Not a pipe message (nothing else is published through the broker in this slice): local.
            return Sent::Delivered(self.shared.registry.deliver(&p));
        };
        let shared = self.shared.clone();
        Sent::Pending(Box::pin(async move {
            let s = &shared;
            let head = wire::head(&Header {
                kind: wire::kind_of(&body),
                origin: s.node.clone(),
                except: p.except,
                dev_id: p.dev_id,
                pipe: p.pipe.clone(),
            });
            let (epoch, durable) = match &p.position {
                Some((epoch, offset)) => (epoch.to_string(), offset.to_string()),
                None => (crate::hub::new_epoch(), String::new()),
            };
            let mut conn = s.conn.clone();
            let mut call = PUBLISH.key(s.keys.meta(p.dev_id, &p.pipe));
            call.key(s.keys.window(p.dev_id, &p.pipe))
                .key(s.keys.channel(p.dev_id, &p.pipe))
                .key(s.keys.cached(p.dev_id, &p.pipe))
                .key(s.keys.cached_index(p.dev_id))
                .arg(head)
                .arg(wire::body(&body))
                .arg(epoch)
                .arg(durable)
                .arg(s.windows.messages)
                .arg(s.windows.max_age.as_millis().max(1) as u64)
                .arg(META_TTL.max(s.windows.max_age).as_millis() as u64)
                .arg(match is_cache_name(pusher_channel(&p.pipe)) {
                    true => CACHE_TTL.as_millis().to_string(),
                    false => String::new(),
                })
                .arg(s.cache_per_tenant);
            let done = tokio::time::timeout(
                COMMAND_TIMEOUT,
                call.invoke_async::<(String, u64)>(&mut conn),
            )
            .await;
            match done {
                Ok(Ok(_)) => {
                    Metrics::add(&s.metrics.published, 1);
                    Ok(0)
                }
                Ok(Err(e)) => {
                    Metrics::add(&s.metrics.publish_failures, 1);
                    Err(unavailable(e))
                }
                Err(_) => {
                    Metrics::add(&s.metrics.publish_failures, 1);
                    Err(unavailable("no answer in time"))
                }
            }
        }))
    }

    fn listen(&self, dev_id: DevId, pipe: &PipeName) -> Option<Pending<()>> {
        let waiting = self.shared.channels.wait(&(dev_id, pipe.clone()))?;
        Some(Box::pin(async move {
            match tokio::time::timeout(LISTEN_TIMEOUT, waiting).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(unavailable("the pipe's channel is not subscribed")),
            }
        }))
    }

    fn join(&self, join: Join) -> Option<Pending<bool>> {
        Some(Box::pin(super::join::join(self.shared.clone(), join)))
    }

    fn revoke(&self, revoke: crate::hub::Revoke) -> Option<Pending<()>> {
        Some(super::control::publish(self.shared.clone(), revoke))
    }

    fn stale(&self, stale: crate::hub::Stale) -> Option<Pending<()>> {
        super::stale::publish(self.shared.clone(), stale)
    }

    fn limits(&self) -> Option<&dyn crate::hub::SharedLimits> {
        Some(self)
    }

    fn users(&self) -> Option<&dyn crate::hub::UserRoute> {
        Some(self)
    }

    fn pusher(&self) -> Option<&dyn crate::hub::PusherRoute> {
        Some(self)
    }

    fn ready(&self) -> bool {
        self.shared.ready()
    }

    fn render_metrics(&self, out: &mut String) {
        let s = &self.shared;
        s.metrics.render(out, s.ready(), s.channels.count());
    }

    fn presence(&self) -> Option<Arc<dyn crate::hub::SharedPresence>> {
        Some(Arc::new(super::presence::RedisPresence {
            shared: self.shared.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outgoing;

    fn publication(sender: Option<UserId>) -> Publication {
        let pipe = PipeName::parse("web_chat").unwrap();
        let event = EventName::parse("ev").unwrap();
        Publication {
            dev_id: DevId(1),
            frame: outgoing::pipe_message(&pipe, &event, "hi", 1_700_000_000, sender),
            pipe,
            except: None,
            position: None,
            presence: false,
            socket: None,
        }
    }

    #[test]
    fn a_pipe_message_s_content_is_read_off_its_frame() {
        let b = body_of(&publication(None)).unwrap();
        assert_eq!(
            (b.sent_at, b.sender, b.event.as_str(), b.text.as_str()),
            (1_700_000_000, None, "ev", "hi")
        );
        let b = body_of(&publication(Some(UserId(5)))).unwrap();
        assert_eq!(b.sender, Some(UserId(5)));
        let mut other = publication(None);
        other.frame = outgoing::shared(crate::browser::frames::user_online(3));
        assert!(body_of(&other).is_none());
    }
}
