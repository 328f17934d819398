//! The nginx configuration the Nchan comparison runs with, generated into a temporary directory: loopback
//! only, foreground, its own pid/log/temp paths, WebSocket subscribers on `/sub/<channel>` and HTTP
//! publishing on `/pub?id=<channel>`. Messages are not kept (Halley keeps no history for these pipes
//! either), and both servers get room for 20,000 connections.

use std::net::SocketAddr;
use std::path::Path;

/// The module as Debian's libnginx-mod-nchan installs it.
pub const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

pub struct NchanConf<'a> {
    pub dir: &'a Path,
    pub listen: SocketAddr,
    pub workers: usize,
    pub run_as_root: bool,
}

impl NchanConf<'_> {
    pub fn render(&self) -> String {
        let d = self.dir.display();
        let user = if self.run_as_root { "user root;\n" } else { "" };
        format!(
            "load_module {MODULE};\n\
             {user}daemon off;\n\
             master_process on;\n\
             worker_processes {workers};\n\
             worker_rlimit_nofile 20000;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{\n    worker_connections 20000;\n    multi_accept on;\n}}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   client_body_temp_path {d}/body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   keepalive_requests 1000000;\n\
             \x20   nchan_shared_memory_size 256m;\n\
             \x20   server {{\n\
             \x20       listen {listen} backlog=4096;\n\
             \x20       location = /pub {{\n\
             \x20           nchan_publisher http;\n\
             \x20           nchan_channel_id $arg_id;\n\
             \x20           nchan_store_messages off;\n\
             \x20       }}\n\
             \x20       location ~ ^/sub/(\\w+)$ {{\n\
             \x20           nchan_subscriber websocket;\n\
             \x20           nchan_channel_id $1;\n\
             \x20           nchan_subscriber_first_message newest;\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n",
            workers = self.workers,
            listen = self.listen,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_and_private_paths() {
        let conf = NchanConf {
            dir: Path::new("/tmp/x"),
            listen: "127.0.0.1:8080".parse().unwrap(),
            workers: 2,
            run_as_root: true,
        }
        .render();
        assert!(conf.contains("listen 127.0.0.1:8080 backlog=4096;"));
        assert!(conf.contains("pid /tmp/x/nginx.pid;"));
        assert!(conf.contains("worker_processes 2;"));
        assert!(conf.contains("location ~ ^/sub/(\\w+)$ {"));
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
        assert_eq!(conf.matches("listen ").count(), 1);
    }
}
