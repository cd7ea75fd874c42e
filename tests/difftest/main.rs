//! Differential tests: model vs kernel.
