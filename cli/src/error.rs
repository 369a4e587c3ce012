//! One error type for the CLI: a sentence, an optional hint, and the exit
//! code documented in docs/cli.md. Never holds a plaintext value. In the
//! library because every module and command returns it.

use std::fmt;

/// Exit codes (docs/cli.md).
pub mod code {
    /// Something failed that is not the user's input or the cluster.
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap also exits 2).
    pub const USAGE: u8 = 2;
    /// A file, manifest or the kubeconfig could not be read or is invalid.
    pub(crate) const INPUT: u8 = 3;
    /// The cluster could not be reached or refused the request.
    pub(crate) const CLUSTER: u8 = 4;
    /// A value did not open (verify, recover) or a check failed (inspect).
    pub(crate) const REFUSED: u8 = 5;
}

#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub(crate) hint: Option<String>,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            hint: None,
        }
    }
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(code::INPUT, message)
    }
    pub fn cluster(message: impl Into<String>) -> Self {
        Self::new(code::CLUSTER, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(code::USAGE, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(code::REFUSED, message)
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl From<kube::Error> for Failure {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 403 => {
                Failure::cluster(format!("the cluster refused the request: {}", s.message))
                    .hint("ask a cluster admin for the permission named above")
            }
            kube::Error::Api(s) => {
                Failure::cluster(format!("the cluster refused the request: {}", s.message))
            }
            _ => Failure::cluster(format!("could not reach the cluster: {e}"))
                .hint("check --kubeconfig/--context, or seal offline with --recipients FILE"),
        }
    }
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;
