#![allow(dead_code)] // Each test crate uses part of this module.

//! The shopper's side over HTTP: a browser (reqwest with redirects off and a cookie jar kept
//! by hand, so each hop and each cookie attribute can be asserted), and a check that no row of
//! the hub's SQLite database mentions an openid.

use std::collections::HashMap;
use std::path::Path;

/// A browser: no automatic redirects, cookies kept per name (attributes checked by tests).
pub struct Browser {
    pub http: reqwest::Client,
    pub cookies: HashMap<String, String>,
    /// Every `Set-Cookie` seen, verbatim.
    pub set_cookies: Vec<String>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().unwrap().to_string();
            let (pair, _) = value.split_once(';').unwrap_or((&value, ""));
            let (name, v) = pair.split_once('=').unwrap();
            if value.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), v.to_string());
            }
            self.set_cookies.push(value);
        }
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        // The fragment is the browser's, never sent.
        let url = url.split('#').next().unwrap();
        let response = self
            .http
            .get(url)
            .header("Cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(&response);
        response
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(url)
            .header("Cookie", self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                form.iter()
                    .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .send()
            .await
            .unwrap();
        self.absorb(&response);
        response
    }

    pub fn csrf(&self) -> String {
        self.cookies.get("ms_csrf").cloned().unwrap_or_default()
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", response.status()))
        .to_str()
        .unwrap()
        .to_string()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `table: row` for every row of every table with a text column containing `needle`.
pub fn rows_mentioning(database: &Path, needle: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(database).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut cells = Vec::new();
                for i in 0..columns {
                    let cell: rusqlite::types::Value = r.get(i)?;
                    cells.push(format!("{cell:?}"));
                }
                Ok(cells.join(" | "))
            })
            .unwrap();
        for row in rows {
            let row = row.unwrap();
            if row.contains(needle) {
                found.push(format!("{table}: {row}"));
            }
        }
    }
    found
}
