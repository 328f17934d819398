// CometQL test driver for Node mysql2. Protocol (same for query.php and query.py): see README.md.
// Exit code 0 whenever the driver ran: server and connection errors are reported as data.
import { readFileSync } from 'node:fs';
import mysql from 'mysql2';

const CLIENT_ERROR = 2000;
const TIMEOUT_MS = 10_000;

function fail(why) {
  process.stderr.write(`query.mjs: ${why}\n`);
  process.exit(2);
}

function errorOf(err) {
  // Server errors carry sqlState; socket-level ones (ECONNREFUSED, PROTOCOL_CONNECTION_LOST, ...) do not.
  if (err && err.sqlState !== undefined && typeof err.errno === 'number') {
    return { error: { code: err.errno, message: err.sqlMessage ?? err.message } };
  }
  const prefix = err && err.code ? `${err.code}: ` : '';
  return { error: { code: CLIENT_ERROR, message: `${prefix}${err && err.message ? err.message : String(err)}` } };
}

function okOf(affected, insertId) {
  return { ok: { affected_rows: Number(affected ?? 0), insert_id: Number(insertId ?? 0) } };
}

function cell(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  // Binary-charset columns arrive as Buffers; the contract is text.
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return String(v);
}

function resultOf(rows, fields) {
  if (Array.isArray(rows)) {
    return {
      rows: rows.map((row) => row.map(cell)),
      columns: (fields ?? []).map((f) => f.name),
    };
  }
  return okOf(rows.affectedRows, rows.insertId);
}

// Wraps a callback-style mysql2 call; resolves to a result entry, never rejects.
function call(fn) {
  return new Promise((resolve) => {
    try {
      fn((err, rows, fields) => resolve(err ? errorOf(err) : resultOf(rows ?? {}, fields)));
    } catch (err) {
      resolve(errorOf(err));
    }
  });
}

// mysql2's escape() adds the surrounding quotes, which the template supplies itself.
// It always escapes with backslashes: unlike mysqli and PyMySQL it ignores NO_BACKSLASH_ESCAPES.
function escapeBare(conn, value) {
  const quoted = conn.escape(value);
  if (quoted.length < 2 || !quoted.startsWith("'") || !quoted.endsWith("'")) {
    throw new Error(`unexpected escape() output ${quoted}`);
  }
  return quoted.slice(1, -1);
}

async function runStep(conn, step) {
  if ('sql' in step) {
    return call((cb) => conn.query({ sql: step.sql, timeout: TIMEOUT_MS }, cb));
  }
  if ('template' in step) {
    let escaped;
    try {
      escaped = escapeBare(conn, step.escape);
    } catch (err) {
      return errorOf(err);
    }
    const sql = step.template.split('%s').join(escaped);
    const out = await call((cb) => conn.query({ sql, timeout: TIMEOUT_MS }, cb));
    return { ...out, escaped };
  }
  if ('params' in step) {
    // Client-side placeholders: mysql2 escapes each value (with backslashes) into the query text.
    const { sql, values } = step.params;
    const out = await call((cb) => conn.query({ sql, values, timeout: TIMEOUT_MS }, cb));
    return { ...out, escaped: conn.format(sql, values) };
  }
  if ('init_db' in step) {
    // mysql2 has no COM_INIT_DB: changing the database goes through COM_CHANGE_USER (re-authenticates).
    const out = await call((cb) => conn.changeUser({ database: step.init_db }, cb));
    return 'error' in out ? out : okOf(0, 0);
  }
  if ('change_user' in step) {
    const cu = step.change_user;
    const opts = { user: cu.user, password: cu.password ?? '' };
    if (cu.database != null) opts.database = cu.database;
    const out = await call((cb) => conn.changeUser(opts, cb));
    return 'error' in out ? out : okOf(0, 0);
  }
  if ('prepare' in step) {
    // execute() = COM_STMT_PREPARE + COM_STMT_EXECUTE.
    return call((cb) => conn.execute({ sql: step.prepare, timeout: TIMEOUT_MS }, cb));
  }
  if ('ping' in step) {
    const out = await call((cb) => conn.ping(cb));
    return 'error' in out ? out : okOf(0, 0);
  }
  return fail(`unknown step: ${JSON.stringify(step)}`);
}

function emit(response) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(response)}\n`, resolve));
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function main() {
  let req;
  try {
    req = JSON.parse(await readStdin());
  } catch (err) {
    fail(`bad request on stdin: ${err.message}`);
  }
  if (!req || typeof req.host !== 'string' || !Array.isArray(req.steps)) fail('bad request on stdin');

  const conn = mysql.createConnection({
    host: req.host,
    port: Number(req.port),
    user: String(req.user),
    password: req.password ?? '',
    database: req.database ?? undefined,
    connectTimeout: TIMEOUT_MS,
    rowsAsArray: true,
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    // TLS when asked: with the CA, verified: the chain (rejectUnauthorized, mysql2's default) and the host
    // name, which mysql2 checks only with verifyIdentity. Without a CA, rejectUnauthorized off.
    ssl: req.tls == null ? undefined
      : req.tls.ca ? { ca: readFileSync(req.tls.ca), verifyIdentity: true } : { rejectUnauthorized: false },
  });
  // A fatal error with no command waiting is emitted here; without a listener it would crash the script.
  conn.on('error', () => {});

  const connected = await call((cb) => conn.connect(cb));
  if ('error' in connected) {
    await emit({ connect: connected });
    conn.destroy();
    return;
  }
  const results = [];
  for (const step of req.steps) {
    if (!step || typeof step !== 'object') fail('step is not an object');
    results.push(await runStep(conn, step));
  }
  await emit({ connect: { ok: true, server_version: conn._handshakePacket?.serverVersion ?? null }, results });
  // end() waits for the server to close after COM_QUIT; a test must not depend on that.
  conn.destroy();
}

main().then(
  () => process.exit(0),
  (err) => fail(err && err.stack ? err.stack : String(err)),
);
