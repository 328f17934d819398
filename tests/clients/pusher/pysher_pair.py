"""A second, independent Pusher client pair, driven by tests/tests/it/pusher_python.rs: PyPI `pysher`
subscribes (a public, a private and a presence channel, signed by pysher itself with the secret), PyPI
`pusher` triggers and reads the channels' state through the HTTP API.

Reads one JSON request on stdin: {"host", "port", "app_id", "key", "secret", "channels": [...]};
prints one JSON object: {"received": [{"channel", "event", "data"}...], "info": {...}, "users": [...]}.
Exit code 2 when something did not arrive in time (the reason on stderr).
"""

import json
import os
import sys
import threading
import time

import pusher
import pysher

TIMEOUT = 10


def wait_for(predicate, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    print(f"timed out waiting for {what}", file=sys.stderr)
    sys.exit(2)


def main():
    req = json.load(sys.stdin)
    channels = req["channels"]
    received = []
    lock = threading.Lock()
    subscribed = set()

    client = pysher.Pusher(
        req["key"],
        secure=False,
        custom_host=req["host"],
        port=req["port"],
        secret=req["secret"],
        user_data={"user_id": "py-1", "user_info": {"name": "Py"}},
        log_level=40,
    )

    def on_event(channel):
        def handler(data, *args):
            with lock:
                received.append({"channel": channel, "event": "shipped", "data": json.loads(data)})
        return handler

    def on_subscribed(channel):
        def handler(*args):
            with lock:
                subscribed.add(channel)
        return handler

    def connected(_data):
        for name in channels:
            ch = client.subscribe(name)
            ch.bind("pusher_internal:subscription_succeeded", on_subscribed(name))
            ch.bind("shipped", on_event(name))

    client.connection.bind("pusher:connection_established", connected)
    client.connect()
    wait_for(lambda: len(subscribed) == len(channels), f"subscriptions to {channels}")

    server = pusher.Pusher(
        app_id=str(req["app_id"]),
        key=req["key"],
        secret=req["secret"],
        ssl=False,
        host=req["host"],
        port=req["port"],
    )
    server.trigger(channels, "shipped", {"id": 7})
    wait_for(lambda: len(received) == len(channels), "the triggered events")
    presence = [c for c in channels if c.startswith("presence-")]
    info = server.channels_info(prefix_filter="presence-", attributes=["user_count"])
    users = server.users_info(presence[0]) if presence else None
    print(json.dumps({"received": sorted(received, key=lambda r: r["channel"]), "info": info, "users": users}))
    sys.stdout.flush()
    # pysher's disconnect() waits for its reconnect thread; the process is done.
    os._exit(0)


if __name__ == "__main__":
    main()
