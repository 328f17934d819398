//! The generated cases: server settings, clients and their pipes, and a list of operations, all from one
//! seed. The generator is a splitmix64 of its own (not `rand`), so that a seed names the same case on every
//! machine and after any dependency update: a failure report's seed is enough to run the case again.

/// splitmix64: tiny, and its output depends on the seed alone.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.range(0, from.len() as u64 - 1) as usize]
    }
}

/// One step of a case. Clients and pipes are indices into the case's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `count` messages on the pipe over CometQL, as one multi-row INSERT or one INSERT each.
    Publish {
        pipe: usize,
        count: usize,
        one_statement: bool,
    },
    /// The client processes up to `frames` of the frames already sent to it.
    Read { client: usize, frames: usize },
    /// A WebSocket close handshake; frames still on their way are never processed.
    Close { client: usize },
    /// The socket is closed without a close frame (FIN), as a tab that is killed.
    Drop { client: usize },
    /// The socket is reset (RST, SO_LINGER 0): a network that went away.
    Reset { client: usize },
    /// A new connection, `subscription2` with the client's positions.
    Reconnect { client: usize },
    /// `subscription2` with its positions again on the open connection (what the SDK does after a `gap`).
    Resubscribe { client: usize },
    /// `count` messages on the pipe from a second CometQL session while the client reconnects (when it is
    /// gone) or resubscribes (when it is connected): publishes racing the replay and the join.
    Race {
        client: usize,
        pipe: usize,
        count: usize,
    },
    /// The server restarts: every stream begins a new epoch.
    Restart,
    /// Waits past `window_secs`: every message published so far has aged out of the windows.
    Age,
    /// A cluster's Redis closes every pub/sub connection (`CLIENT KILL TYPE pubsub`): messages on their
    /// way to the nodes are lost, to be repaired from the windows or told as `gap`.
    KillPubsub,
    /// A cluster's Redis restarts empty: every pipe's numbering starts anew (a new epoch).
    RestartRedis,
}

/// Which faults a case's server can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faults {
    /// One server: it restarts (`Op::Restart`).
    Server,
    /// A cluster: its Redis drops the nodes' pub/sub connections or restarts (`Op::KillPubsub`,
    /// `Op::RestartRedis`); the nodes stay up.
    Redis,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub seed: u64,
    pub pipes: usize,
    /// The pipes of each client (indices), subscribed together with one `subscription2`.
    pub clients: Vec<Vec<usize>>,
    pub window_messages: usize,
    pub replay_max: u64,
    /// `Some(secs)`: a short window that `Age` steps outlive; `None`: a window far longer than the case,
    /// so that only the message count trims it and every `recovered` can be predicted.
    pub window_secs: Option<u64>,
    pub ops: Vec<Op>,
}

impl Case {
    /// A case for one server (the same seed always gives the same case).
    pub fn generate(seed: u64) -> Case {
        Self::generate_for(seed, Faults::Server)
    }

    /// A case with `faults`; `Faults::Server` cases are those of [`Case::generate`].
    pub fn generate_for(seed: u64, faults: Faults) -> Case {
        let mut rng = Rng::new(seed);
        let pipes = rng.range(2, 3) as usize;
        let clients = (0..rng.range(2, 4))
            .map(|_| {
                let set: Vec<usize> = (0..pipes).filter(|_| rng.chance(70)).collect();
                if set.is_empty() {
                    vec![rng.range(0, pipes as u64 - 1) as usize]
                } else {
                    set
                }
            })
            .collect::<Vec<_>>();
        let window_messages = rng.range(1, 8) as usize;
        let replay_max = rng.range(1, 10);
        let window_secs = rng.chance(20).then_some(1);
        let mut connected = vec![true; clients.len()];
        let (mut restarts, mut ages, mut redis_restarts) = (0, 0, 0);
        let mut ops = Vec::new();
        for _ in 0..rng.range(25, 50) {
            let on: Vec<usize> = (0..clients.len()).filter(|&c| connected[c]).collect();
            let off: Vec<usize> = (0..clients.len()).filter(|&c| !connected[c]).collect();
            // Redis faults take a roll of their own (a server-fault case draws exactly as before).
            if faults == Faults::Redis && rng.chance(8) {
                ops.push(if redis_restarts < 2 && rng.chance(35) {
                    redis_restarts += 1;
                    Op::RestartRedis
                } else {
                    Op::KillPubsub
                });
                continue;
            }
            let roll = rng.range(0, 99);
            let op = match roll {
                0..=34 => Op::Publish {
                    pipe: rng.range(0, pipes as u64 - 1) as usize,
                    count: rng.range(1, 4) as usize,
                    one_statement: rng.chance(30),
                },
                35..=54 if !on.is_empty() => Op::Read {
                    client: rng.pick(&on),
                    frames: rng.range(1, 6) as usize,
                },
                55..=60 if !on.is_empty() => Op::Close {
                    client: rng.pick(&on),
                },
                61..=65 if !on.is_empty() => Op::Drop {
                    client: rng.pick(&on),
                },
                66..=71 if !on.is_empty() => Op::Reset {
                    client: rng.pick(&on),
                },
                72..=75 if !on.is_empty() => Op::Resubscribe {
                    client: rng.pick(&on),
                },
                76..=77 if faults == Faults::Server && restarts < 2 => {
                    restarts += 1;
                    Op::Restart
                }
                79..=80 if window_secs.is_some() && ages < 1 => {
                    ages += 1;
                    Op::Age
                }
                81..=86 => Op::Race {
                    client: rng.range(0, clients.len() as u64 - 1) as usize,
                    pipe: rng.range(0, pipes as u64 - 1) as usize,
                    count: rng.range(2, 6) as usize,
                },
                _ if !off.is_empty() => Op::Reconnect {
                    client: rng.pick(&off),
                },
                _ => continue,
            };
            match op {
                Op::Close { client } | Op::Drop { client } | Op::Reset { client } => {
                    connected[client] = false
                }
                Op::Reconnect { client } | Op::Race { client, .. } => connected[client] = true,
                Op::Restart => connected.iter_mut().for_each(|c| *c = false),
                _ => {}
            }
            ops.push(op);
        }
        Case {
            seed,
            pipes,
            clients,
            window_messages,
            replay_max,
            window_secs,
            ops,
        }
    }
}
