//! Issue 11 item 2: CometQL injection through parameterized queries. End-user text is escaped by each real
//! client the way applications do it (PHP mysqli_real_escape_string and addslashes, PDO with emulated
//! prepares, PyMySQL parameters, Node mysql2 `?` placeholders) and sent into an INSERT on pipe `chat` and a
//! history read `WHERE name = ?`. Every attempt must either land as exactly that text on `chat`, or be
//! refused with an error; a subscriber of `victim` receives nothing, and no history read returns `victim`'s
//! history (it is kept: pipes_settings), on SQLite and PostgreSQL.

use halley_tests::browser::subscriber;
use halley_tests::clients::{self, Client, Request, StepResult};
use halley_tests::cometql::{insert_literal_sql, login, quote};
use halley_tests::frames::{check_pipe_frame, expect_pipe_frame};
use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, TestServer};

const INTENDED: &str = "chat";
const VICTIM: &str = "victim";
const SECRET: &str = "SECRET history of victim";

/// What end users type. The first one opens each session, so that it also meets a session that has
/// shown nothing about its escaping; `it's` then shows the backslash escapers' style.
const TEXTS: &[&str] = &[
    "hi'),(victim,evil,pwned)#",
    "it's",
    "hi'),(victim,evil,pwned)#",
    "hi'), ('victim', 'evil', 'pwned') -- ",
    "hi'),('victim','evil','pwned')/*",
    "chat' OR name = victim #",
    "chat' OR name = 'victim",
    "chat', 'victim') #",
    r"x\'),(victim,evil,pwned)#",
    r"x\\'),(victim,evil,pwned)#",
    r"\'),(victim,evil,pwned)#",
    r"chat\' OR name = victim #",
    r"\', 'victim') #",
    "x') # ",
    r"x\') # ",
    "\"),(victim,evil,pwned)#",
    r#"\"),(victim,evil,pwned)#"#,
    "chat\" OR name = victim #",
    "'); DELETE FROM pipes_messages; --",
    r#"say "hi" to 'them'"#,
    r"C:\path\to\ trailing \",
    r#"{"text":"say \"hi\" caf\u00e9 \/path \\ end"}"#,
    "line 1\nline 2\ttab",
    "Привет 😀 ''''",
];

#[derive(Debug, Clone, Copy)]
enum Style {
    MysqliRealEscapeString,
    Addslashes,
    PdoEmulatedPrepares,
    PymysqlParameters,
    Mysql2Placeholders,
}

impl Style {
    const ALL: [Style; 5] = [
        Style::MysqliRealEscapeString,
        Style::Addslashes,
        Style::PdoEmulatedPrepares,
        Style::PymysqlParameters,
        Style::Mysql2Placeholders,
    ];

    fn client(self) -> Client {
        match self {
            Style::MysqliRealEscapeString | Style::Addslashes | Style::PdoEmulatedPrepares => {
                Client::Php
            }
            Style::PymysqlParameters => Client::Python,
            Style::Mysql2Placeholders => Client::Node,
        }
    }

    /// The publish of `text` to the intended pipe, then the history read of the pipe named `text`.
    fn steps(self, req: Request, text: &str) -> Request {
        let insert = "INSERT INTO pipes_messages (name, event, message) VALUES";
        let select = "SELECT name, message FROM pipes_messages WHERE name =";
        match self {
            Style::MysqliRealEscapeString => req
                .template(format!("{insert} ('{INTENDED}', 'msg', '%s')"), text)
                .template(format!("{select} '%s'"), text),
            Style::Addslashes => req
                .template_with(
                    "addslashes",
                    format!("{insert} ('{INTENDED}', 'msg', '%s')"),
                    text,
                )
                .template_with("addslashes", format!("{select} '%s'"), text),
            _ => req
                .params(format!("{insert} (?, ?, ?)"), &[INTENDED, "msg", text])
                .params(format!("{select} ?"), &[text]),
        }
    }
}

/// A refusal: an error the server sent (not the driver), naming the ambiguity.
fn refused(step: &StepResult) -> bool {
    step.error()
        .is_ok_and(|e| e.message.contains("Ambiguous string literal"))
}

async fn publish_marker(server: &TestServer, tenant: &halley_tests::Tenant, pipe: &str, m: &str) {
    let resp = clients::run(
        Client::Php,
        &login(server, tenant)
            .request()
            .sql(insert_literal_sql(pipe, "marker", &quote(m))),
    )
    .await
    .expect("php driver ran");
    resp.step(0).unwrap().ok().expect("marker published");
}

async fn expect_marker(ws: &mut WsClient, pipe: &str, marker: &str, style: Style) {
    let text = ws.recv_text(WAIT).await.expect("a frame");
    assert!(
        text.contains(marker),
        "{style:?}: {pipe} received something else before its marker: {text}"
    );
    check_pipe_frame(&text, pipe, "marker", marker);
}

async fn escaped_text_never_becomes_sql(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("injection@example.com").await;
    let mut chat = subscriber(&server, tenant.dev_id, INTENDED, 0).await;
    let mut victim = subscriber(&server, tenant.dev_id, VICTIM, 0).await;

    // Both pipes keep history; the victim's holds a secret.
    let setup = login(&server, &tenant)
        .request()
        .sql(format!(
            "INSERT INTO pipes_settings (name, length) VALUES ('{INTENDED}', 100), ('{VICTIM}', 100)"
        ))
        .sql(insert_literal_sql(VICTIM, "secret", &quote(SECRET)));
    let resp = clients::run(Client::Php, &setup)
        .await
        .expect("php driver ran");
    for i in 0..2 {
        resp.step(i).unwrap().ok().expect("setup");
    }
    expect_pipe_frame(&mut victim, VICTIM, "secret", SECRET).await;

    for style in Style::ALL {
        let mut req = login(&server, &tenant).request();
        for text in TEXTS {
            req = style.steps(req, text);
        }
        let resp = clients::run(style.client(), &req)
            .await
            .expect("driver ran");
        let (mut landed, mut refusals) = (0, 0);
        for (i, text) in TEXTS.iter().enumerate() {
            let publish = resp.step(2 * i).unwrap();
            let sent = publish.escaped.as_deref().unwrap_or("");
            if refused(publish) {
                refusals += 1;
            } else {
                publish
                    .ok()
                    .unwrap_or_else(|e| panic!("{style:?} {text:?} ({sent}): {e}"));
                // Landed: exactly this text, on the intended pipe, next in order.
                let frame = chat.recv_text(WAIT).await.expect("the published frame");
                eprintln!("{style:?} {text:?} landed as {frame}");
                check_pipe_frame(&frame, INTENDED, "msg", text);
                landed += 1;
            }
            let read = resp.step(2 * i + 1).unwrap();
            let sent = read.escaped.as_deref().unwrap_or("");
            if refused(read) {
                continue;
            }
            // The pipe named by this text has no history (or the name is refused as invalid):
            // never the victim's rows.
            match read.rows() {
                Ok(rows) => {
                    for row in rows {
                        let cells: Vec<&str> = row.iter().flatten().map(String::as_str).collect();
                        assert!(
                            !cells.iter().any(|c| c.contains(SECRET) || *c == VICTIM),
                            "{style:?} read {text:?} ({sent}) returned {row:?}"
                        );
                        assert_eq!(cells.first(), Some(text), "{style:?} {text:?} ({sent})");
                    }
                }
                Err(_) => {
                    let e = read.error().unwrap();
                    assert!(
                        e.code < 2000,
                        "{style:?} read {text:?}: not a server error: {e:?}"
                    );
                }
            }
        }
        eprintln!("{style:?}: {landed} landed byte-exact, {refusals} refused");
        // Not a server that refuses everything: most of the corpus lands.
        assert!(landed * 2 > TEXTS.len(), "{style:?}: only {landed} landed");

        // Nothing else reached either pipe: the next frame on each is the marker published now.
        let marker = format!("after {style:?}");
        publish_marker(&server, &tenant, VICTIM, &marker).await;
        expect_marker(&mut victim, VICTIM, &marker, style).await;
        publish_marker(&server, &tenant, INTENDED, &marker).await;
        expect_marker(&mut chat, INTENDED, &marker, style).await;
    }
    server.stop().await;
}

on_both_backends!(escaped_text_never_becomes_sql);
