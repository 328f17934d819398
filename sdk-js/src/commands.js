// Browser -> server commands: `<command>\n<arguments...>` text frames, as the server reads them.

/** Replaces the connection's whole subscription set (an empty list unsubscribes from everything). */
export function subscriptionCommand(pipes) {
  return "subscription\n" + pipes.join("\n");
}

/** Publishes to a web_ / @web_ / webauth_ pipe; `*` is the auth_type the original always sends. */
export function webPipeCommand(pipe, event, text) {
  return "web_pipe2\n" + pipe + "\n" + event + "\n*\n" + text;
}

export function pipeLogCommand(pipe, marker) {
  return "pipe_log\n" + pipe + "\n" + marker + "\n";
}

export function pipeCountCommand(pipe, marker) {
  return "pipe_count\n" + pipe + "\n" + marker + "\n";
}

export function trackPipeUsersCommand(pipe, marker) {
  return "track_pipe_users\n" + pipe + "\n" + marker;
}

export function userDataCommand(userId, marker) {
  return "user_data\n" + marker + "\n" + userId;
}

export function statisticsCommand(payload) {
  return "statistics\n" + JSON.stringify(payload);
}

/**
 * `subscription` with positions (Halley): one line per pipe, `<pipe>` or `<pipe>\t<epoch>\t<offset>` (the last
 * message processed), so the server replays what was missed or says it could not.
 */
export function subscription2Command(lines) {
  return "subscription2\n" + lines.join("\n");
}
