//! The bridge-run runtime (being written).
