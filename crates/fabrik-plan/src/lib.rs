//! fabrik-plan: capacity and training planning as pure functions. Every result carries the
//! assumptions it rests on, each with its source (../shared/reference/) or marked as an
//! assumption.

pub mod checkpoint;
pub mod facility;
pub mod inputs;
pub mod train;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn positive(field: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(PlanError::Invalid(format!("{field}: must be positive, got {v}")))
    }
}

pub(crate) fn non_negative(field: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(PlanError::Invalid(format!("{field}: must be zero or positive, got {v}")))
    }
}
