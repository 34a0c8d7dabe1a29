//! Errors of the model crate: each variant names the file, tensor or input that went wrong, so that the
//! CLI can print one line the user can act on.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running a ColQwen model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the checkpoint is malformed or lacks a field.
    #[error("{path} is not a valid {what}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the file should be (e.g. "model config").
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A file that every ColQwen checkpoint has is missing from the model folder.
    #[error("{dir} has no {file}")]
    MissingFile {
        /// The model folder.
        dir: PathBuf,
        /// The missing file.
        file: String,
    },
    /// `config.json` names a model family this crate does not implement.
    #[error(
        "{path}: model_type {model_type:?} is not a model family colqwen runs; it runs {}",
        crate::Family::supported()
    )]
    UnsupportedModelType {
        /// The config file.
        path: PathBuf,
        /// The model type it names.
        model_type: String,
    },
    /// A config value is out of the range the model can run with.
    #[error("{path}: {reason}")]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors file is truncated or corrupt.
    #[error("{path} is not a readable safetensors file (truncated or corrupt download?): {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: candle_core::Error,
    },
    /// A tensor the model needs is in none of the checkpoint files.
    #[error("tensor {name} is missing from the checkpoint ({files})")]
    MissingTensor {
        /// Tensor name after the renaming of fact sheet §1.1.
        name: String,
        /// The files that were searched, comma-separated.
        files: String,
    },
    /// A tensor has another shape than the config implies.
    #[error("{path}: tensor {name} has shape {actual:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// The file holding the tensor.
        path: PathBuf,
        /// Tensor name (as stored).
        name: String,
        /// Shape implied by config.json.
        expected: Vec<usize>,
        /// Shape found in the file.
        actual: Vec<usize>,
    },
    /// The LoRA adapter is inconsistent with itself or with the base model.
    #[error("{path}: {reason}")]
    Adapter {
        /// The adapter file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer.json` could not be loaded or lacks a token the prompts need.
    #[error("{path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Text could not be tokenized.
    #[error("cannot tokenize {text:?}: {reason}")]
    Encode {
        /// The text (truncated to 80 chars).
        text: String,
        /// The cause.
        reason: String,
    },
    /// An image cannot be fed to the model (fact sheet §2.3).
    #[error("image of {width}x{height} px: {reason}")]
    Image {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// What is wrong.
        reason: String,
    },
    /// Downloading from the Hugging Face Hub failed.
    #[error("cannot download {file} of {repo} from the Hugging Face Hub: {reason}")]
    Hub {
        /// Model id.
        repo: String,
        /// File in the repository.
        file: String,
        /// The cause.
        reason: String,
    },
    /// Offline and the file is not in the local Hugging Face cache.
    #[error("{file} of {repo} is not in the Hugging Face cache ({cache}) and downloads are off")]
    NotCached {
        /// Model id.
        repo: String,
        /// File in the repository.
        file: String,
        /// The cache folder searched.
        cache: PathBuf,
    },
    /// A tensor operation failed (a bug or an out-of-memory, not bad input).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

impl colqwen_core::Hint for Error {
    fn hint(&self) -> Option<String> {
        Some(match self {
            Self::NotCached { .. } => {
                "run once with network access to download the model, or pass --model with a local folder".into()
            }
            Self::Hub { .. } => "check the network and the model id; gated models need HF_TOKEN".into(),
            Self::MissingFile { .. }
            | Self::Safetensors { .. }
            | Self::ShapeMismatch { .. }
            | Self::MissingTensor { .. } => "the model folder is incomplete or damaged: download it again".into(),
            Self::UnsupportedModelType { .. } => {
                "pass a ColQwen2.5 checkpoint (e.g. vidore/colqwen2.5-v0.2) or a ColQwen3 one (e.g. TomoroAI/tomoro-colqwen3-embed-4b)".into()
            }
            _ => return None,
        })
    }

    /// Everything but a failing tensor operation (a bug or a device failure) is about the user's model files,
    /// network or flags.
    fn user_fixable(&self) -> bool {
        !matches!(self, Self::Tensor(_))
    }
}
