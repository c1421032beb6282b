//! Prompt contexts: each distinct prompt of a run encoded once, then blended per frame.

use crate::fifo::FrameConditioning;

/// One `[max_tokens * dim]` context per prompt, indexed by [`crate::fifo::PromptId`].
#[derive(Clone, Debug, PartialEq)]
pub struct PromptContexts {
    len: usize,
    contexts: Vec<f32>,
}

impl PromptContexts {
    /// `contexts` holds `prompts * len` values, prompt-major.
    pub fn new(len: usize, contexts: Vec<f32>) -> Self {
        assert!(len > 0 && contexts.len().is_multiple_of(len), "contexts must be whole prompts");
        Self { len, contexts }
    }

    /// Values in one prompt's context (`max_tokens * dim`).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// Every context, prompt-major.
    pub fn data(&self) -> &[f32] {
        &self.contexts
    }

    pub fn prompts(&self) -> usize {
        self.contexts.len() / self.len
    }

    pub fn get(&self, prompt: u32) -> &[f32] {
        let at = prompt as usize * self.len;
        &self.contexts[at..at + self.len]
    }

    /// Appends a frame's context: `(1 - mix) * E[from] + mix * E[to]`.
    pub fn extend_blend(&self, conditioning: FrameConditioning, out: &mut Vec<f32>) {
        let (from, to, mix) = (self.get(conditioning.from), self.get(conditioning.to), conditioning.mix);
        if conditioning.from == conditioning.to || mix == 0.0 {
            out.extend_from_slice(from);
        } else {
            out.extend(from.iter().zip(to).map(|(&a, &b)| (1.0 - mix) * a + mix * b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blends_linearly() {
        let c = PromptContexts::new(2, vec![0.0, 0.0, 1.0, 2.0, 3.0, 6.0]);
        let mut out = Vec::new();
        c.extend_blend(FrameConditioning::prompt(2), &mut out);
        c.extend_blend(FrameConditioning { from: 1, to: 2, mix: 0.5 }, &mut out);
        assert_eq!(out, [3.0, 6.0, 2.0, 4.0]);
    }
}
