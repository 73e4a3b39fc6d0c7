use thiserror::Error;

/// Everything that can be wrong with a facility, tenant or job description.
/// Messages name the origin (file or preset) and the field, so the user can fix the input.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The parser's message already names line and column; it is not chained again.
    #[error("{origin}: {message}")]
    Toml { origin: String, message: String },
    #[error("{origin}: {field}: {msg}")]
    Invalid { origin: String, field: String, msg: String },
    #[error("unknown facility '{0}': not a file, a preset ({1}) or a shorthand like 80x8:20 or 80x8:20@H100")]
    UnknownFacility(String, String),
}

impl ModelError {
    pub fn invalid(origin: &str, field: impl Into<String>, msg: impl Into<String>) -> Self {
        ModelError::Invalid { origin: origin.to_string(), field: field.into(), msg: msg.into() }
    }
}
