//! Differential tests: the reference model (rvs-model) and the real XDP program (BPF_PROG_TEST_RUN) get
//! the same maps and the same packets, and must produce the same verdicts, output bytes and map
//! changes. Named fixtures first (fixtures/), then generated sequences (props.rs). Needs root.
#![allow(missing_docs, reason = "test binary")]

mod fixtures;
mod harness;
mod kernel;
mod props;

#[test]
fn dr() {
    harness::run_cases(fixtures::dr::cases());
}

#[test]
fn fwmark() {
    harness::run_cases(fixtures::fwmark::cases());
}

#[test]
fn parse() {
    harness::run_cases(fixtures::parse::cases());
}

#[test]
fn conn() {
    harness::run_cases(fixtures::conn::cases());
}

#[test]
fn ipv6() {
    harness::run_cases(fixtures::ipv6::cases());
}

#[test]
fn nat() {
    harness::run_cases(fixtures::nat::cases());
}

#[test]
fn natports() {
    harness::run_cases(fixtures::natports::cases());
}

#[test]
fn icmp() {
    harness::run_cases(fixtures::icmp::cases());
}

#[test]
fn sched() {
    harness::run_cases(fixtures::sched::cases());
}

#[test]
fn counters() {
    harness::run_cases(fixtures::counters::cases());
}

#[test]
fn countsched() {
    harness::run_cases(fixtures::countsched::cases());
}

#[test]
fn lblc() {
    harness::run_cases(fixtures::lblc::cases());
}

#[test]
fn expire() {
    harness::run_cases(fixtures::expire::cases());
}

#[test]
fn persist() {
    harness::run_cases(fixtures::persist::cases());
}
