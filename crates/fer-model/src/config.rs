use serde::{Deserialize, Serialize};

use crate::{CnnConfig, DnnConfig, ModelError};

/// Either architecture, tagged so a saved model says which it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelConfig {
    Cnn(CnnConfig),
    Dnn(DnnConfig),
}

impl ModelConfig {
    /// The report's CNN or DNN by name (`cnn`, `dnn`), with the report's defaults.
    pub fn by_name(name: &str) -> Result<ModelConfig, ModelError> {
        match name.to_ascii_lowercase().as_str() {
            "cnn" => Ok(ModelConfig::Cnn(CnnConfig::new())),
            "dnn" => Ok(ModelConfig::Dnn(DnnConfig::new())),
            other => Err(ModelError::InvalidConfig(format!("unknown model {other:?}; valid models: cnn, dnn"))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Cnn(_) => "cnn",
            ModelConfig::Dnn(_) => "dnn",
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        match self {
            ModelConfig::Cnn(c) => c.validate(),
            ModelConfig::Dnn(c) => c.validate(),
        }
    }
}
