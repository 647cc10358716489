//! Datastore URLs: which driver a `--datastore` argument selects.

use std::path::PathBuf;
use std::str::FromStr;

/// A parsed `--datastore` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreUrl {
    /// `file:DIR` — a directory of YAML/JSON manifests, watched live.
    File(PathBuf),
}

/// Why a datastore URL was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("datastore URL is empty")]
    Empty,
    #[error("`file:` datastore needs a directory, e.g. file:examples/mesh/cluster-a")]
    MissingPath,
    #[error("unsupported datastore `{0}`: supported is file:DIR")]
    Unsupported(String),
}

impl FromStr for DatastoreUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some(rest) = s.strip_prefix("file:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(UrlError::MissingPath);
            }
            return Ok(DatastoreUrl::File(PathBuf::from(path)));
        }
        Err(UrlError::Unsupported(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_urls() {
        assert_eq!(
            "file:examples/a".parse(),
            Ok(DatastoreUrl::File("examples/a".into()))
        );
        assert_eq!(
            "file:///tmp/x".parse(),
            Ok(DatastoreUrl::File("/tmp/x".into()))
        );
        assert_eq!("file:".parse::<DatastoreUrl>(), Err(UrlError::MissingPath));
        assert!(matches!(
            "etcd2://x".parse::<DatastoreUrl>(),
            Err(UrlError::Unsupported(_))
        ));
    }
}
