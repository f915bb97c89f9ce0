//! Keeping pull secrets in place (filled in below).
