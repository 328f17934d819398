#!/usr/bin/env python3
"""CometQL test driver for PyMySQL. Protocol (same for query.php and query.mjs): see README.md.

Exit code 0 whenever the driver ran: server and connection errors are reported as data.
"""
import json
import sys

import pymysql
import pymysql.converters

CLIENT_ERROR = 2000
TIMEOUT = 10


def fail(why):
    sys.stderr.write(f"query.py: {why}\n")
    sys.exit(2)


def error_of(exc):
    args = getattr(exc, "args", ())
    if isinstance(exc, pymysql.err.MySQLError) and len(args) >= 2 and isinstance(args[0], int):
        return {"error": {"code": args[0], "message": str(args[1])}}
    # Anything else the driver raised while talking to the server (for example a version string it
    # cannot parse) is still an outcome to report, not a crash of this script.
    return {"error": {"code": CLIENT_ERROR, "message": f"{type(exc).__name__}: {exc}"}}


def ok_of(affected, insert_id):
    return {"ok": {"affected_rows": int(affected or 0), "insert_id": int(insert_id or 0)}}


def cell(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        # Binary-charset columns arrive undecoded; the contract is text.
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def run_sql(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)  # no args: PyMySQL does no %-formatting
        if cur.description is None:
            return ok_of(cur.rowcount, cur.lastrowid)
        columns = [d[0] for d in cur.description]
        rows = [[cell(v) for v in row] for row in cur.fetchall()]
        return {"rows": rows, "columns": columns}


def escape(conn, value):
    # What cursor.execute(sql, (value,)) substitutes: Connection.escape() honours the server's
    # NO_BACKSLASH_ESCAPES flag and adds the surrounding quotes, which the template supplies itself.
    quoted = conn.escape(value)
    if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
        raise ValueError(f"unexpected escape() output {quoted!r}")
    return quoted[1:-1]


def run_step(conn, step):
    if "sql" in step:
        return run_sql(conn, step["sql"])
    if "template" in step:
        escaped = escape(conn, step["escape"])
        try:
            out = run_sql(conn, step["template"].replace("%s", escaped))
        except Exception as exc:  # noqa: BLE001 - every driver failure is data
            out = error_of(exc)
        out["escaped"] = escaped
        return out
    if "params" in step:
        sql, values = step["params"]["sql"], step["params"]["values"]
        # PyMySQL placeholders are %s; the request uses `?` like the other drivers.
        sql = sql.replace("%", "%%").replace("?", "%s")
        with conn.cursor() as cur:
            sent = cur.mogrify(sql, values)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, values)
                if cur.description is None:
                    out = ok_of(cur.rowcount, cur.lastrowid)
                else:
                    columns = [d[0] for d in cur.description]
                    out = {"rows": [[cell(v) for v in row] for row in cur.fetchall()], "columns": columns}
        except Exception as exc:  # noqa: BLE001 - every driver failure is data
            out = error_of(exc)
        out["escaped"] = sent
        return out
    if "init_db" in step:
        conn.select_db(step["init_db"])
        return ok_of(0, 0)
    if "change_user" in step:
        return {"unsupported": "PyMySQL has no COM_CHANGE_USER"}
    if "prepare" in step:
        return {"unsupported": "PyMySQL has no server-side prepared statements"}
    if "ping" in step:
        conn.ping(reconnect=False)
        return ok_of(0, 0)
    fail(f"unknown step: {json.dumps(step)}")


def ssl_of(tls):
    """None: plaintext. With a CA: PyMySQL verifies the certificate and the host name; without: encrypted,
    unverified (an empty dict would mean no TLS at all)."""
    if tls is None:
        return None
    if tls.get("ca"):
        return {"ca": tls["ca"]}
    return {"verify_mode": False}


def emit(response):
    # ASCII JSON: emoji become surrogate-pair escapes, which every JSON parser decodes exactly.
    sys.stdout.write(json.dumps(response, ensure_ascii=True) + "\n")
    sys.stdout.flush()


def main():
    try:
        req = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        host, port, user, steps = req["host"], int(req["port"]), req["user"], req["steps"]
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"bad request on stdin: {exc}")
    # Encoders only (type keys), no decoders (int keys): every value stays the text the server sent.
    conv = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}
    try:
        conn = pymysql.connect(
            host=host,
            port=port,
            user=user,
            password=req.get("password") or "",
            database=req.get("database"),
            connect_timeout=TIMEOUT,
            read_timeout=TIMEOUT,
            write_timeout=TIMEOUT,
            conv=conv,
            ssl=ssl_of(req.get("tls")),
        )
    except Exception as exc:  # noqa: BLE001
        emit({"connect": error_of(exc)})
        return
    results = []
    for step in steps:
        if not isinstance(step, dict):
            fail("step is not an object")
        try:
            results.append(run_step(conn, step))
        except Exception as exc:  # noqa: BLE001
            results.append(error_of(exc))
    server_version = conn.get_server_info()
    emit({"connect": {"ok": True, "server_version": server_version}, "results": results})
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    main()
