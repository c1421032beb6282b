//! The `words` tokenizer: lowercase, split on whitespace, one id per word, padded.

use std::collections::HashMap;

use super::package::TextSpec;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizeError {
    #[error("unknown word `{word}` in prompt \"{prompt}\"; the model knows: {vocabulary}{grammar}")]
    UnknownWord { word: String, prompt: String, vocabulary: String, grammar: String },
    #[error("the prompt \"{prompt}\" has {words} words but the model reads at most {max}{grammar}")]
    TooLong { prompt: String, words: usize, max: usize, grammar: String },
}

#[derive(Clone, Debug)]
pub struct Tokenizer {
    ids: HashMap<String, i64>,
    /// Words a prompt may use (special tokens like `<pad>` left out), for error messages.
    words: Vec<String>,
    max_tokens: usize,
    pad_id: i64,
    empty_id: i64,
    grammar: Option<String>,
}

impl Tokenizer {
    pub fn new(spec: &TextSpec) -> Self {
        let ids = spec.vocabulary.iter().enumerate().map(|(i, w)| (w.to_lowercase(), i as i64)).collect();
        let words = spec
            .vocabulary
            .iter()
            .enumerate()
            .filter(|&(i, w)| i as i64 != spec.pad_id && i as i64 != spec.empty_id && !w.starts_with('<'))
            .map(|(_, w)| w.clone())
            .collect();
        Self {
            ids,
            words,
            max_tokens: spec.max_tokens,
            pad_id: spec.pad_id,
            empty_id: spec.empty_id,
            grammar: spec.grammar.clone(),
        }
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn grammar_hint(&self) -> String {
        self.grammar.as_ref().map(|g| format!(" (prompts look like \"{g}\")")).unwrap_or_default()
    }

    /// `max_tokens` ids; the empty (or all-whitespace) prompt is `[empty_id, pad, ...]`, the
    /// unconditional input of classifier-free guidance.
    pub fn encode(&self, prompt: &str) -> Result<Vec<i64>, TokenizeError> {
        let lower = prompt.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let mut ids = vec![self.pad_id; self.max_tokens];
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TextSpec {
        TextSpec {
            tokenizer: "words".into(),
            vocabulary: ["<pad>", "<empty>", "a", "red", "circle"].map(String::from).to_vec(),
            max_tokens: 4,
            dim: 8,
            pad_id: 0,
            empty_id: 1,
            grammar: Some("a {colour} {shape}".into()),
        }
    }

    #[test]
    fn encodes_pads_and_refuses() {
        let t = Tokenizer::new(&spec());
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
    }
}
