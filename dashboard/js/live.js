// The live view's subscription, kept to this one file so it can switch to the browser SDK (/sdk/halley.js)
// once that is served: the rest of the dashboard only calls `subscribe` and gets messages and states.
// It speaks the comet-server protocol directly: the classic connect URL, `subscription\n<pipe>`, and JSON
// frames {"data", "event", "message_send_time", "pipe"}.

function uuid32() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Listens to `pipe` of tenant `devId`. onMessage({pipe, event, data, time}); onState("connecting" | "open" |
 * "error"). Reconnects with a growing delay. Returns {close()}.
 */
export function subscribe(devId, pipe, onMessage, onState) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws/sesion=&myid=0&devid=${devId}&v=4.08&uuid=${uuid32()}&api=js`;
  let socket = null;
  let closed = false;
  let delay = 500;
  let timer = null;

  function connect() {
    onState("connecting");
    socket = new WebSocket(url);
    socket.onopen = () => {
      delay = 500;
      socket.send(`subscription\n${pipe}`);
      onState("open");
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && frame.pipe === pipe && typeof frame.event === "string" && "data" in frame) {
        onMessage({ pipe: frame.pipe, event: frame.event, data: frame.data, time: frame.message_send_time });
      }
    };
    socket.onclose = () => {
      if (closed) return;
      onState("error");
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (socket) socket.close();
    },
  };
}
