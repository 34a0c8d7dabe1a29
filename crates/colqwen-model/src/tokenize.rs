//! Prompts and token ids (fact sheet §2.7, §3): the document prompt with its `T` image tokens and the query
//! template with its 10 augmentation tokens, tokenized by the checkpoint's own `tokenizer.json`.
//!
//! Inputs are never padded: each sequence keeps its own length and is packed with the others (the
//! reference left-pads; fact sheet §5.2 shows why that makes query numerics batch-dependent).

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// colpali-engine's `visual_prompt_prefix` (CE-P), with the single `<|image_pad|>` that is expanded to `T`
/// copies before tokenization.
pub const DOCUMENT_PROMPT: &str =
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>";
/// The image placeholder token.
pub const IMAGE_TOKEN: &str = "<|image_pad|>";
/// colpali-engine's `query_augmentation_token`.
pub const AUGMENTATION_TOKEN: &str = "<|endoftext|>";
/// Augmentation tokens appended to every query by `process_queries` (§3.1).
pub const AUGMENTATION_COUNT: usize = 10;

/// Query template settings.
#[derive(Debug, Clone)]
pub struct QueryTemplate {
    /// Text put before each query; current colpali-engine uses none (§3.1).
    pub prefix: String,
    /// How many augmentation tokens follow the query (10, §3.1).
    pub augmentation_tokens: usize,
    /// Whether leading and trailing whitespace is cut from the query text first (the TomoroAI processors do;
    /// colpali-engine's do not). Set at load from the checkpoint.
    pub strip: bool,
}

impl Default for QueryTemplate {
    fn default() -> Self {
        Self { prefix: String::new(), augmentation_tokens: AUGMENTATION_COUNT, strip: false }
    }
}

/// Tokenizer plus the pre-tokenized document prompt.
pub struct Prompts {
    tokenizer: Tokenizer,
    path: PathBuf,
    /// Prompt ids before the image tokens (`<|im_start|> user \n <|vision_start|>`).
    doc_prefix: Vec<u32>,
    /// Prompt ids after the image tokens (`<|vision_end|> Describe the image. <|im_end|> <|endoftext|>`).
    doc_suffix: Vec<u32>,
    image_token_id: u32,
    query: QueryTemplate,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts").field("path", &self.path).field("doc_prefix", &self.doc_prefix).finish()
    }
}

impl Prompts {
    /// Loads `tokenizer.json` and checks it against the model config's `image_token_id`.
    pub fn load(path: &Path, image_token_id: u32, query: QueryTemplate) -> Result<Self> {
        let err = |reason: String| Error::Tokenizer { path: path.into(), reason };
        let tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        for token in [IMAGE_TOKEN, AUGMENTATION_TOKEN, "<|im_start|>", "<|vision_start|>", "<|vision_end|>"] {
            if tokenizer.token_to_id(token).is_none() {
                return Err(err(format!("the special token {token} is missing")));
            }
        }
        let found = tokenizer.token_to_id(IMAGE_TOKEN).unwrap_or(u32::MAX);
        if found != image_token_id {
            return Err(err(format!("{IMAGE_TOKEN} has id {found}, config.json says image_token_id {image_token_id}")));
        }
        let ids = encode(&tokenizer, DOCUMENT_PROMPT)?;
        let at: Vec<usize> = ids.iter().enumerate().filter(|(_, t)| **t == image_token_id).map(|(i, _)| i).collect();
        let [at] = at[..] else {
            return Err(err(format!("the document prompt tokenizes to {} image tokens, expected 1", at.len())));
        };
        Ok(Self {
            doc_prefix: ids[..at].to_vec(),
            doc_suffix: ids[at + 1..].to_vec(),
            tokenizer,
            path: path.into(),
            image_token_id,
            query,
        })
    }

    /// Ids of one document with `visual_tokens` image tokens: prefix, `T`×`<|image_pad|>`, suffix (§2.7).
    /// Expanding after tokenization equals the reference's expand-then-tokenize because added tokens are
    /// split out before BPE.
    pub fn document_ids(&self, visual_tokens: usize) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.doc_prefix.len() + visual_tokens + self.doc_suffix.len());
        ids.extend_from_slice(&self.doc_prefix);
        ids.extend(std::iter::repeat_n(self.image_token_id, visual_tokens));
        ids.extend_from_slice(&self.doc_suffix);
        ids
    }

    /// Ids of one query: `prefix + text + 10×<|endoftext|>` (§3.1), no truncation.
    pub fn query_ids(&self, text: &str) -> Result<Vec<u32>> {
        let text = if self.query.strip { text.trim() } else { text };
        let full = format!("{}{text}{}", self.query.prefix, AUGMENTATION_TOKEN.repeat(self.query.augmentation_tokens));
        encode(&self.tokenizer, &full)
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    // add_special_tokens = true mirrors the processor's default; Qwen2's post-processor adds nothing.
    let enc = tokenizer
        .encode(text, true)
        .map_err(|e| Error::Encode { text: text.chars().take(80).collect(), reason: e.to_string() })?;
    Ok(enc.get_ids().to_vec())
}
