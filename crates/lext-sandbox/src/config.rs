//! The function's configuration: the settings Lambda gives a function and
//! that the environment needs (name, memory, timeout, region, handler), with
//! Lambda's defaults. A leaf: it depends on nothing else in the crate.

use std::time::Duration;

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    /// Function name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// `$LATEST` or a number.
    pub version: String,
    /// Memory, MB (128 to 10,240).
    pub memory_mb: u32,
    /// Function timeout (1 s to 900 s).
    pub timeout: Duration,
    /// Region, for the ARN and `AWS_REGION`.
    pub region: String,
    /// Account id, for the ARN and the `accountId` feature.
    pub account_id: String,
    /// `_HANDLER`.
    pub handler: String,
    /// The Init limit (10 s for on-demand functions, AWS: "Lambda execution
    /// environment lifecycle", Init phase).
    pub init_timeout: Duration,
}

impl Default for FunctionConfig {
    /// The settings `lext run` uses when given none: 128 MB and 3 s, as the
    /// Lambda console creates a function.
    fn default() -> Self {
        Self {
            name: "lext-function".to_owned(),
            version: "$LATEST".to_owned(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
            handler: "bootstrap".to_owned(),
            init_timeout: Duration::from_secs(10),
        }
    }
}

impl FunctionConfig {
    /// The unqualified function ARN.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}
