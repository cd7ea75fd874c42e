//! Network namespaces behind a guard (in progress)
