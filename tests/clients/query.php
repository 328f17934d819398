<?php
// CometQL test driver for PHP mysqli (mysqlnd): the client most existing users run.
// Protocol (same for query.py and query.mjs): see README.md next to this file.
// Exit code 0 whenever the driver ran: server and connection errors are reported as data.
declare(strict_types=1);

// Warnings must never end up in the JSON on stdout.
ini_set('display_errors', 'stderr');
ini_set('log_errors', '0');
error_reporting(E_ALL);
// PHP >= 8.1 default; set explicitly so that every failure is an exception we can report.
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

const CLIENT_ERROR = 2000;

function fail(string $why): never
{
    fwrite(STDERR, "query.php: $why\n");
    exit(2);
}

function emit(array $response): void
{
    // Invalid UTF-8 from the server is replaced (U+FFFD) rather than aborting the whole response.
    $json = json_encode(
        $response,
        JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE
    );
    if ($json === false) {
        fail('json_encode: ' . json_last_error_msg());
    }
    fwrite(STDOUT, $json . "\n");
}

function error_of(Throwable $e): array
{
    if ($e instanceof mysqli_sql_exception) {
        return ['error' => ['code' => (int)$e->getCode(), 'message' => $e->getMessage()]];
    }
    // Not a server error, but still something the driver did against the server: data, not a crash.
    return ['error' => ['code' => CLIENT_ERROR, 'message' => get_class($e) . ': ' . $e->getMessage()]];
}

function ok_of(int|string $affected, int|string $insertId): array
{
    return ['ok' => ['affected_rows' => (int)$affected, 'insert_id' => (int)$insertId]];
}

function cell(mixed $v): ?string
{
    // The binary protocol (prepared statements) gives native ints/floats; the contract is strings.
    return ($v === null || is_string($v)) ? $v : (string)$v;
}

function result_of(mysqli $db, mysqli_result|bool $res): array
{
    if ($res === true) {
        return ok_of($db->affected_rows, $db->insert_id);
    }
    if ($res === false) {
        return ['error' => ['code' => $db->errno, 'message' => $db->error]];
    }
    $columns = array_map(fn($f) => $f->name, $res->fetch_fields());
    $rows = array_map(fn($row) => array_map('cell', $row), $res->fetch_all(MYSQLI_NUM));
    $res->free();
    return ['rows' => $rows, 'columns' => $columns];
}

function bool_result(mysqli $db, bool $done): array
{
    return $done ? ok_of(0, 0) : ['error' => ['code' => $db->errno, 'message' => $db->error]];
}

function run_prepared(mysqli $db, string $sql): array
{
    $stmt = $db->prepare($sql);
    $stmt->execute();
    $res = $stmt->get_result();
    if ($res === false) {
        $out = ok_of($stmt->affected_rows, $stmt->insert_id);
        $stmt->close();
        return $out;
    }
    $stmt->close();
    return result_of($db, $res);
}

function run_step(mysqli $db, array $step): array
{
    if (array_key_exists('sql', $step)) {
        return result_of($db, $db->query((string)$step['sql']));
    }
    if (array_key_exists('init_db', $step)) {
        return bool_result($db, $db->select_db((string)$step['init_db']));
    }
    if (array_key_exists('change_user', $step)) {
        $cu = $step['change_user'];
        $database = isset($cu['database']) ? (string)$cu['database'] : null;
        return bool_result($db, $db->change_user((string)$cu['user'], (string)$cu['password'], $database));
    }
    if (array_key_exists('prepare', $step)) {
        return run_prepared($db, (string)$step['prepare']);
    }
    if (array_key_exists('ping', $step)) {
        return bool_result($db, $db->ping());
    }
    fail('unknown step: ' . json_encode($step));
}

$input = stream_get_contents(STDIN);
$req = json_decode($input === false ? '' : $input, true);
if (!is_array($req) || !isset($req['host'], $req['port'], $req['user']) || !is_array($req['steps'] ?? null)) {
    fail('bad request on stdin');
}

$db = mysqli_init();
$db->options(MYSQLI_OPT_CONNECT_TIMEOUT, 10);
$db->options(MYSQLI_OPT_READ_TIMEOUT, 10);
// TLS when asked: with a CA, mysqli_ssl_set + certificate and host name verification; without, encrypted
// but unverified (MYSQLI_CLIENT_SSL alone). mysqlnd then fails rather than fall back to plaintext.
$tls = isset($req['tls']) && is_array($req['tls']) ? $req['tls'] : null;
$flags = 0;
if ($tls !== null) {
    $flags = MYSQLI_CLIENT_SSL;
    if (isset($tls['ca'])) {
        $db->ssl_set(null, null, (string)$tls['ca'], null, null);
        $db->options(MYSQLI_OPT_SSL_VERIFY_SERVER_CERT, true);
    } else {
        $flags |= MYSQLI_CLIENT_SSL_DONT_VERIFY_SERVER_CERT;
    }
}
try {
    $db->real_connect(
        (string)$req['host'],
        (string)$req['user'],
        (string)($req['password'] ?? ''),
        isset($req['database']) ? (string)$req['database'] : null,
        (int)$req['port'],
        null,
        $flags
    );
} catch (Throwable $e) {
    emit(['connect' => error_of($e)]);
    exit(0);
}

// PDO with emulated prepares: placeholders are filled in on the client with PDO::quote (pdo_mysql over
// mysqlnd). Opened on the first `params` step, with the same credentials.
$pdo = null;
function pdo_of(array $req): PDO
{
    $dsn = sprintf('mysql:host=%s;port=%d', (string)$req['host'], (int)$req['port']);
    if (isset($req['database'])) {
        $dsn .= ';dbname=' . (string)$req['database'];
    }
    $options = [
        PDO::ATTR_EMULATE_PREPARES => true,
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_TIMEOUT => 10,
    ];
    // TLS as for mysqli: PDO::MYSQL_ATTR_SSL_CA verifies the certificate against the CA.
    if (isset($req['tls']) && is_array($req['tls'])) {
        if (isset($req['tls']['ca'])) {
            $options[PDO::MYSQL_ATTR_SSL_CA] = (string)$req['tls']['ca'];
            $options[PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT] = true;
        } else {
            // pdo_mysql asks for TLS once any SSL option is set; this one alone means "unverified".
            $options[PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT] = false;
        }
    }
    return new PDO($dsn, (string)$req['user'], (string)($req['password'] ?? ''), $options);
}

function run_params(PDO $pdo, array $params): array
{
    try {
        $stmt = $pdo->prepare((string)$params['sql']);
        $stmt->execute(array_map('strval', $params['values']));
        if ($stmt->columnCount() === 0) {
            return ok_of($stmt->rowCount(), (int)$pdo->lastInsertId());
        }
        $columns = [];
        for ($i = 0; $i < $stmt->columnCount(); $i++) {
            $columns[] = $stmt->getColumnMeta($i)['name'];
        }
        $rows = array_map(fn($row) => array_map('cell', $row), $stmt->fetchAll(PDO::FETCH_NUM));
        return ['rows' => $rows, 'columns' => $columns];
    } catch (PDOException $e) {
        $code = is_array($e->errorInfo) && isset($e->errorInfo[1]) ? (int)$e->errorInfo[1] : CLIENT_ERROR;
        $message = is_array($e->errorInfo) && isset($e->errorInfo[2]) ? (string)$e->errorInfo[2] : $e->getMessage();
        return ['error' => ['code' => $code, 'message' => $message]];
    }
}

$results = [];
foreach ($req['steps'] as $step) {
    if (!is_array($step)) {
        fail('step is not an object');
    }
    try {
        if (array_key_exists('params', $step)) {
            $pdo ??= pdo_of($req);
            $results[] = run_params($pdo, $step['params']);
        } elseif (array_key_exists('template', $step)) {
            $escaped = match ($step['escaper'] ?? null) {
                null => $db->real_escape_string((string)$step['escape']),
                'addslashes' => addslashes((string)$step['escape']),
                default => fail('unknown escaper: ' . json_encode($step['escaper'])),
            };
            // The escaped text is reported even when the query then fails.
            try {
                $out = result_of($db, $db->query(str_replace('%s', $escaped, (string)$step['template'])));
            } catch (Throwable $e) {
                $out = error_of($e);
            }
            $results[] = $out + ['escaped' => $escaped];
        } else {
            $results[] = run_step($db, $step);
        }
    } catch (Throwable $e) {
        $results[] = error_of($e);
    }
}
emit(['connect' => ['ok' => true, 'server_version' => $db->server_info], 'results' => $results]);
try {
    $db->close();
} catch (Throwable) {
}
exit(0);
