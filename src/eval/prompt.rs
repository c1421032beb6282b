//! Prompts of the grammar `a {colour} {shape} moving {direction} on a {background} background`
//! and the prompt of every frame of a video (one prompt, a schedule, or one per frame).

use super::world::World;
use super::EvalError;
use crate::fifo::PromptSchedule;

/// What a prompt asks for, as indices into the [`World`]'s lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub colour: usize,
    pub shape: usize,
    pub direction: usize,
    pub background: usize,
}

const GRAMMAR: &str = "a {colour} {shape} moving {direction} on a {background} background";

impl Prompt {
    pub fn parse(world: &World, text: &str) -> Result<Prompt, EvalError> {
        let bad = |problem: String| EvalError::Prompt { prompt: text.to_string(), problem };
        let w: Vec<&str> = text.split_whitespace().collect();
        if w.len() != 9 || w[0] != "a" || w[3] != "moving" || w[5..7] != ["on", "a"] || w[8] != "background" {
            return Err(bad(format!("expected `{GRAMMAR}`")));
        }
        let find = |what: &str, word: &str, names: Vec<&str>| {
            names
                .iter()
                .position(|n| *n == word)
                .ok_or_else(|| bad(format!("unknown {what} '{word}'; known: {}", names.join(", "))))
        };
        Ok(Prompt {
            colour: find("colour", w[1], world.colours.iter().map(|c| c.name.as_str()).collect())?,
            shape: find("shape", w[2], world.shapes.iter().map(|s| s.as_str()).collect())?,
            direction: find("direction", w[4], world.directions.iter().map(|d| d.name.as_str()).collect())?,
            background: find(
                "background",
                w[7],
                world.backgrounds.iter().map(|b| b.name.as_str()).collect(),
            )?,
        })
    }
}

/// The prompt of every frame: an index into `texts`/`parsed`, or `None` for frames inside a blend
/// between two prompts (they are not scored for adherence).
#[derive(Clone, Debug)]
pub struct FramePrompts {
    pub texts: Vec<String>,
    pub parsed: Vec<Prompt>,
    pub per_frame: Vec<Option<usize>>,
}

impl FramePrompts {
    fn intern(&mut self, world: &World, text: &str) -> Result<usize, EvalError> {
        let text = text.trim();
        if let Some(i) = self.texts.iter().position(|t| t == text) {
            return Ok(i);
        }
        self.parsed.push(Prompt::parse(world, text)?);
        self.texts.push(text.to_string());
        Ok(self.texts.len() - 1)
    }

    fn empty() -> FramePrompts {
        FramePrompts { texts: Vec::new(), parsed: Vec::new(), per_frame: Vec::new() }
    }

    /// One prompt for all `frames` frames.
    pub fn single(world: &World, text: &str, frames: usize) -> Result<FramePrompts, EvalError> {
        let mut p = Self::empty();
        let id = p.intern(world, text)?;
        p.per_frame = vec![Some(id); frames];
        Ok(p)
    }

    /// One prompt per frame.
    pub fn per_frame<S: AsRef<str>>(world: &World, texts: &[S]) -> Result<FramePrompts, EvalError> {
        let mut p = Self::empty();
        for t in texts {
            let id = p.intern(world, t.as_ref())?;
            p.per_frame.push(Some(id));
        }
        Ok(p)
    }

    /// The prompts of a schedule (`fifo generate --prompt-schedule`); blend frames get `None`.
    pub fn from_schedule(
        world: &World,
        schedule: &PromptSchedule,
        frames: usize,
    ) -> Result<FramePrompts, EvalError> {
        let mut p = Self::empty();
        // Prompt 0 of a schedule is the unconditional "", never the prompt of a frame.
        let ids: Vec<Option<usize>> = schedule
            .prompts()
            .iter()
            .map(|t| if t.is_empty() { Ok(None) } else { p.intern(world, t).map(Some) })
            .collect::<Result<_, _>>()?;
        for f in 0..frames {
            let c = schedule.at(f as i64);
            // The first frame of a blend is still all the previous prompt (mix 0).
            p.per_frame.push(if c.from == c.to || c.mix == 0.0 { ids[c.from as usize] } else { None });
        }
        Ok(p)
    }

    /// Maximal runs of frames with the same prompt: `(prompt, start, end)`.
    pub fn segments(&self) -> Vec<(usize, usize, usize)> {
        let mut out: Vec<(usize, usize, usize)> = Vec::new();
        for (f, p) in self.per_frame.iter().enumerate() {
            let Some(p) = *p else { continue };
            match out.last_mut() {
                Some(last) if last.0 == p && last.2 == f => last.2 = f + 1,
                _ => out.push((p, f, f + 1)),
            }
        }
        out
    }
}
