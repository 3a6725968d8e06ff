//! The summary of the requests one call sent to its vendor, kept in the delivery's history.

use reqwest::Method;

/// The requests one call sent to its vendor, summarised for the delivery's history: method,
/// host and path only (the query and headers, which may carry credentials, are left out).
/// Keeps the first three and the last, so a long conversation stays short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    first: Vec<String>,
    last: Option<String>,
    count: usize,
    /// The status of the latest answer.
    pub status: Option<u16>,
}

impl Trail {
    const FIRST: usize = 3;

    pub(super) fn sent(&mut self, method: &Method, url: &url::Url) {
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let entry = format!(
            "{method} {}{port}{}",
            url.host_str().unwrap_or(""),
            url.path()
        );
        self.count += 1;
        if self.first.len() < Self::FIRST {
            self.first.push(entry);
        } else {
            self.last = Some(entry);
        }
    }

    /// Adds the requests of a later call, as if this trail had sent them.
    pub fn append(&mut self, later: Trail) {
        let hidden = later.count - later.first.len() - usize::from(later.last.is_some());
        for entry in later.first {
            self.count += 1;
            if self.first.len() < Self::FIRST {
                self.first.push(entry);
            } else {
                self.last = Some(entry);
            }
        }
        self.count += hidden;
        if let Some(last) = later.last {
            self.count += 1;
            self.last = Some(last);
        }
        self.status = later.status.or(self.status);
    }

    /// `POST host/a, GET host/b` (with `… N more …` before the last when there were many),
    /// or `None` when nothing was sent.
    pub fn summary(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut parts = self.first.clone();
        let hidden = self.count - self.first.len() - usize::from(self.last.is_some());
        if hidden > 0 {
            parts.push(format!("… {hidden} more …"));
        }
        parts.extend(self.last.clone());
        Some(parts.join(", "))
    }
}
