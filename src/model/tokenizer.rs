//! Prompt tokenizers, one per `text.tokenizer` kind of `model.json`: prompt in, exactly
//! `max_tokens` ids out.
//!
//! - `words`: lowercase, split on whitespace and punctuation, one id per word, padded (the
//!   project's own models).
//! - `huggingface`: a Hugging Face `tokenizer.json` from the package (CLIP's BPE, T5/umT5's
//!   unigram, ...), called the way diffusers calls it: `tokenizer(prompt, padding="max_length",
//!   max_length=max_tokens, truncation=True)`.

use std::collections::HashMap;

use super::package::{ModelError, ModelPackage, TextSpec, TokenizerKind};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizeError {
    #[error("unknown word `{word}` in prompt \"{prompt}\"; the model knows: {vocabulary}{grammar}")]
    UnknownWord { word: String, prompt: String, vocabulary: String, grammar: String },
    #[error("the prompt \"{prompt}\" has {words} words but the model reads at most {max}{grammar}")]
    TooLong { prompt: String, words: usize, max: usize, grammar: String },
    #[error("the prompt \"{prompt}\" has no words, only punctuation{grammar}")]
    NoWords { prompt: String, grammar: String },
    #[error("the tokenizer cannot encode the prompt \"{prompt}\": {message}")]
    Encoding { prompt: String, message: String },
}

/// The tokenizer a package's `text` names.
#[derive(Clone, Debug)]
pub enum Tokenizer {
    Words(WordsTokenizer),
    HuggingFace(HuggingFaceTokenizer),
}

impl Tokenizer {
    /// The tokenizer of `package.text`, its file (if it has one) read from wherever the package
    /// lives: its folder or its files in memory.
    pub fn load(package: &ModelPackage) -> Result<Self, ModelError> {
        let spec = &package.text;
        let invalid = |message| ModelError::Invalid { path: package.display_path("model.json"), message };
        match spec.kind().map_err(invalid)? {
            TokenizerKind::Words => WordsTokenizer::new(spec).map(Self::Words).map_err(invalid),
            TokenizerKind::HuggingFace { file } => {
                let bytes = package.read(file)?;
                HuggingFaceTokenizer::from_bytes(&bytes, spec)
                    .map(Self::HuggingFace)
                    .map_err(|e| e.into_model_error(package.display_path(file), invalid))
            }
        }
    }

    pub fn max_tokens(&self) -> usize {
        match self {
            Self::Words(t) => t.max_tokens,
            Self::HuggingFace(t) => t.max_tokens,
        }
    }

    /// Exactly `max_tokens` ids for the text encoder.
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>, TokenizeError> {
        match self {
            Self::Words(t) => t.encode(prompt),
            Self::HuggingFace(t) => t.encode(prompt),
        }
    }
}

/// The `words` tokenizer: lowercase, split on whitespace and punctuation, one id per word, padded.
#[derive(Clone, Debug)]
pub struct WordsTokenizer {
    ids: HashMap<String, i64>,
    /// Words a prompt may use (special tokens like `<pad>` left out), for error messages.
    words: Vec<String>,
    /// Punctuation some word contains (a hyphenated word stays whole); any other separates words.
    word_punctuation: Vec<char>,
    max_tokens: usize,
    pad_id: i64,
    empty_id: i64,
    grammar: Option<String>,
}

impl WordsTokenizer {
    /// `Err` when `spec` lacks `empty_id` (model.json validation refuses that already).
    pub fn new(spec: &TextSpec) -> Result<Self, String> {
        let empty_id = spec.empty_id.ok_or("`text.empty_id` is missing; the `words` tokenizer needs it")?;
        let ids = spec.vocabulary.iter().enumerate().map(|(i, w)| (w.to_lowercase(), i as i64)).collect();
        let words: Vec<String> = spec
            .vocabulary
            .iter()
            .enumerate()
            .filter(|&(i, w)| i as i64 != spec.pad_id && i as i64 != empty_id && !w.starts_with('<'))
            .map(|(_, w)| w.clone())
            .collect();
        let word_punctuation: Vec<char> =
            words.iter().flat_map(|w| w.chars()).filter(|c| c.is_ascii_punctuation()).collect();
        Ok(Self {
            ids,
            words,
            word_punctuation,
            max_tokens: spec.max_tokens,
            pad_id: spec.pad_id,
            empty_id,
            grammar: spec.grammar.clone(),
        })
    }

    fn grammar_hint(&self) -> String {
        self.grammar.as_ref().map(|g| format!(" (prompts look like \"{g}\")")).unwrap_or_default()
    }

    /// `max_tokens` ids; the empty (or all-whitespace) prompt is `[empty_id, pad, ...]`, the
    /// unconditional input of classifier-free guidance. Punctuation separates words like
    /// whitespace ("a red circle, moving right." reads as its six words).
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>, TokenizeError> {
        let lower = prompt.to_lowercase();
        let separates =
            |c: char| c.is_whitespace() || (c.is_ascii_punctuation() && !self.word_punctuation.contains(&c));
        let words: Vec<&str> = lower.split(separates).filter(|w| !w.is_empty()).collect();
        let mut ids = vec![self.pad_id; self.max_tokens];
        if words.is_empty() && !prompt.trim().is_empty() {
            return Err(TokenizeError::NoWords { prompt: prompt.into(), grammar: self.grammar_hint() });
        }
        if words.is_empty() {
            ids[0] = self.empty_id;
            return Ok(ids);
        }
        if words.len() > self.max_tokens {
            return Err(TokenizeError::TooLong {
                prompt: prompt.into(),
                words: words.len(),
                max: self.max_tokens,
                grammar: self.grammar_hint(),
            });
        }
        for (slot, word) in ids.iter_mut().zip(&words) {
            *slot = match self.ids.get(*word) {
                Some(&id) if id != self.pad_id && id != self.empty_id => id,
                _ => {
                    return Err(TokenizeError::UnknownWord {
                        word: word.to_string(),
                        prompt: prompt.into(),
                        vocabulary: self.words.join(", "),
                        grammar: self.grammar_hint(),
                    })
                }
            };
        }
        Ok(ids)
    }
}

/// A Hugging Face `tokenizer.json` tokenizer, truncating and padding to `max_tokens` as diffusers
/// asks transformers to: special tokens added, the sequence cut to leave room for them (so the
/// post-processor's EOS survives truncation), then `pad_id` up to `max_tokens`.
#[derive(Clone, Debug)]
pub struct HuggingFaceTokenizer {
    /// Boxed: the value is 1.5 kB, which every `Tokenizer` would carry.
    tokenizer: Box<tokenizers::Tokenizer>,
    max_tokens: usize,
    pad_id: i64,
}

/// Why a `tokenizer.json` cannot serve a package: a fault of the file or of model.json.
#[derive(Debug)]
enum HuggingFaceLoadError {
    File(String),
    Spec(String),
}

impl HuggingFaceLoadError {
    fn into_model_error(self, file: String, spec_error: impl FnOnce(String) -> ModelError) -> ModelError {
        match self {
            Self::File(message) => ModelError::Tokenizer { file, message },
            Self::Spec(message) => spec_error(message),
        }
    }
}

impl HuggingFaceTokenizer {
    fn from_bytes(bytes: &[u8], spec: &TextSpec) -> Result<Self, HuggingFaceLoadError> {
        use tokenizers::{PostProcessor, TruncationParams};

        let mut tokenizer = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
            HuggingFaceLoadError::File(format!("not a tokenizer.json this build reads ({e})"))
        })?;
        let vocabulary = tokenizer.get_vocab_size(true);
        if spec.pad_id < 0 || spec.pad_id as usize >= vocabulary {
            return Err(HuggingFaceLoadError::Spec(format!(
                "`text.pad_id` {} is outside the tokenizer's vocabulary ({vocabulary} tokens)",
                spec.pad_id
            )));
        }
        // tokenizers subtracts these from `max_length` unchecked: fewer would underflow.
        let special = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
        if spec.max_tokens <= special {
            return Err(HuggingFaceLoadError::Spec(format!(
                "`text.max_tokens` {} leaves no room for a prompt beside the tokenizer's {special} special tokens",
                spec.max_tokens
            )));
        }
        // model.json decides length and padding, whatever the file says. `encode` pads, with
        // model.json's `pad_id` (and so without the crate's padding, which runs through rayon).
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: spec.max_tokens, ..Default::default() }))
            .map_err(|e| HuggingFaceLoadError::Spec(format!("cannot truncate to `text.max_tokens` ({e})")))?;
        tokenizer.with_padding(None);
        Ok(Self { tokenizer: Box::new(tokenizer), max_tokens: spec.max_tokens, pad_id: spec.pad_id })
    }

    /// `max_tokens` ids. The empty prompt is encoded like any other (CLIP: `[BOS, EOS, pad...]`),
    /// which is diffusers' unconditional input.
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>, TokenizeError> {
        let failed = |message: String| TokenizeError::Encoding { prompt: prompt.into(), message };
        let encoding = self.tokenizer.encode(prompt, true).map_err(|e| failed(e.to_string()))?;
        let mut ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
        if ids.len() > self.max_tokens {
            return Err(failed(format!("{} ids after truncation to {}", ids.len(), self.max_tokens)));
        }
        ids.resize(self.max_tokens, self.pad_id);
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TextSpec {
        TextSpec {
            tokenizer: "words".into(),
            file: None,
            vocabulary: ["<pad>", "<empty>", "a", "red", "circle"].map(String::from).to_vec(),
            max_tokens: 4,
            dim: 8,
            pad_id: 0,
            empty_id: Some(1),
            grammar: Some("a {colour} {shape}".into()),
        }
    }

    #[test]
    fn encodes_pads_and_refuses() {
        let t = Tokenizer::Words(WordsTokenizer::new(&spec()).unwrap());
        assert_eq!(t.max_tokens(), 4);
        assert_eq!(t.encode("A  Red circle").unwrap(), [2, 3, 4, 0]);
        assert_eq!(t.encode("").unwrap(), [1, 0, 0, 0]);
        let e = t.encode("a blue circle").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown word `blue` in prompt \"a blue circle\"; the model knows: a, red, circle \
             (prompts look like \"a {colour} {shape}\")"
        );
        assert!(t.encode("a red red red circle").unwrap_err().to_string().contains("at most 4"));
        assert!(t.encode("<pad>").is_err());
        // Punctuation separates words; punctuation alone is no prompt.
        assert_eq!(t.encode("A red, circle.").unwrap(), [2, 3, 4, 0]);
        assert_eq!(t.encode("\"red\"!circle").unwrap(), [3, 4, 0, 0]);
        assert!(t.encode(" ... ").unwrap_err().to_string().contains("no words"));
        assert!(t.encode("a red circle;blue").unwrap_err().to_string().contains("unknown word `blue`"));
    }

    #[test]
    fn punctuation_inside_a_vocabulary_word_keeps_it_whole() {
        let mut spec = spec();
        spec.vocabulary.push("light-blue".into());
        let t = WordsTokenizer::new(&spec).unwrap();
        assert_eq!(t.encode("a light-blue, circle").unwrap(), [2, 5, 4, 0]);
        assert!(t.encode("a red-circle").unwrap_err().to_string().contains("unknown word `red-circle`"));
    }

    #[test]
    fn words_without_empty_id_is_an_error() {
        let spec = TextSpec { empty_id: None, ..spec() };
        assert!(WordsTokenizer::new(&spec).unwrap_err().contains("empty_id"));
    }
}
