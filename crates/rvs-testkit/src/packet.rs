//! Packet builder on etherparse (in progress)
