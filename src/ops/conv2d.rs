//! TODO (helper C)
