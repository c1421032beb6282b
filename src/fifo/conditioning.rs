//! Per-frame conditioning: which prompt each frame of the video is made from.
//!
//! Every slot carries the conditioning of the output frame it will become, so a prompt schedule
//! changes content as new frames enter the queue instead of switching the whole queue at once.

use serde::{Deserialize, Serialize};

/// Index into [`PromptSchedule::prompts`]. Prompt 0 is always the empty prompt `""`, the
/// unconditional input of classifier-free guidance.
pub type PromptId = u32;

/// The conditioning of one frame: `(1 - mix) * E[from] + mix * E[to]` for prompt embeddings `E`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameConditioning {
    pub from: PromptId,
    pub to: PromptId,
    pub mix: f32,
}

impl FrameConditioning {
    pub const UNCONDITIONAL: Self = Self::prompt(0);

    pub const fn prompt(id: PromptId) -> Self {
        Self { from: id, to: id, mix: 0.0 }
    }
}

/// One change of prompt: from `start` on, blending linearly from the previous prompt over `blend`
/// frames (0 = a hard cut).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptChange {
    pub start: u64,
    pub blend: u64,
    pub prompt: PromptId,
}

/// Frame-indexed prompts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSchedule {
    /// Distinct prompt texts; index 0 is `""`.
    prompts: Vec<String>,
    /// Sorted by `start`; the first starts at frame 0.
    changes: Vec<PromptChange>,
}

impl PromptSchedule {
    /// One prompt for the whole video.
    pub fn single(prompt: &str) -> Result<Self, PromptScheduleError> {
        Self::from_entries([(0, 0, prompt.to_string())])
    }

    /// `(start, blend, text)` entries, in increasing order of `start`, the first at frame 0.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (u64, u64, String)>,
    ) -> Result<Self, PromptScheduleError> {
        let mut schedule = Self { prompts: vec![String::new()], changes: Vec::new() };
        for (start, blend, text) in entries {
            let text = text.trim().to_string();
            if text.is_empty() {
                return Err(PromptScheduleError::EmptyPrompt { frame: start });
            }
            match schedule.changes.last() {
                None if start != 0 => return Err(PromptScheduleError::FirstNotAtZero(start)),
                Some(last) if start <= last.start => {
                    return Err(PromptScheduleError::NotIncreasing { previous: last.start, frame: start })
                }
                None if blend != 0 => return Err(PromptScheduleError::BlendIntoFirst),
                _ => {}
            }
            let prompt = schedule.intern(text);
            schedule.changes.push(PromptChange { start, blend, prompt });
        }
        if schedule.changes.is_empty() {
            return Err(PromptScheduleError::NoPrompt);
        }
        Ok(schedule)
    }

    /// Parses one change per line: `FRAME: prompt` for a cut, `FRAME..END: prompt` to blend from
    /// the previous prompt over frames `FRAME..END`. Blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, PromptScheduleError> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let at = |column: usize, message: String| PromptScheduleError::Syntax {
                line: number + 1,
                column: column + 1,
                message,
            };
            let indent = line.len() - line.trim_start().len();
            let body = line.trim();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let colon = body
                .find(':')
                .ok_or_else(|| at(indent, "expected `FRAME: prompt` or `FRAME..END: prompt`".into()))?;
            let (range, prompt) = (&body[..colon], &body[colon + 1..]);
            let number_at = |s: &str, offset: usize| {
                s.trim().parse::<u64>().map_err(|_| {
                    at(indent + offset, format!("`{}` is not a frame number (0, 1, 2, ...)", s.trim()))
                })
            };
            let (start, blend) = match range.split_once("..") {
                Some((a, b)) => {
                    let (start, end) = (number_at(a, 0)?, number_at(b, a.len() + 2)?);
                    if end <= start {
                        return Err(at(indent, format!("blend end {end} must come after its start {start}")));
                    }
                    (start, end - start)
                }
                None => (number_at(range, 0)?, 0),
            };
            if prompt.trim().is_empty() {
                return Err(at(indent + colon + 1, "the prompt after `:` is empty".into()));
            }
            entries.push((start, blend, prompt.to_string()));
        }
        Self::from_entries(entries).map_err(|e| match e {
            PromptScheduleError::Syntax { .. } => e,
            other => PromptScheduleError::Invalid(other.to_string()),
        })
    }

    fn intern(&mut self, text: String) -> PromptId {
        match self.prompts.iter().position(|p| *p == text) {
            Some(i) => i as PromptId,
            None => {
                self.prompts.push(text);
                (self.prompts.len() - 1) as PromptId
            }
        }
    }

    /// Every prompt the run needs encoded, index 0 being the unconditional `""`.
    pub fn prompts(&self) -> &[String] {
        &self.prompts
    }

    pub fn changes(&self) -> &[PromptChange] {
        &self.changes
    }

    /// The conditioning of output frame `frame`; warm-up frames (negative ids) take frame 0's.
    pub fn at(&self, frame: i64) -> FrameConditioning {
        let frame = frame.max(0) as u64;
        let current = self.changes.partition_point(|c| c.start <= frame) - 1;
        let change = &self.changes[current];
        let offset = frame - change.start;
        if current == 0 || offset >= change.blend {
            return FrameConditioning::prompt(change.prompt);
        }
        let previous = self.changes[current - 1].prompt;
        FrameConditioning { from: previous, to: change.prompt, mix: offset as f32 / change.blend as f32 }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptScheduleError {
    #[error("no prompt given: a video needs at least one prompt")]
    NoPrompt,
    #[error("the prompt for frame {frame} is empty")]
    EmptyPrompt { frame: u64 },
    #[error("the first prompt must start at frame 0, not {0}")]
    FirstNotAtZero(u64),
    #[error("prompt starts must increase: frame {frame} comes after frame {previous}")]
    NotIncreasing { previous: u64, frame: u64 },
    #[error("the first prompt cannot blend: there is nothing before it to blend from")]
    BlendIntoFirst,
    #[error("prompt schedule, line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("prompt schedule: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cuts_and_blends() {
        let s = PromptSchedule::parse(
            "# a schedule\n0: a red circle moving right\n\n120..150: a blue square moving up\n200: a red circle moving right\n",
        )
        .unwrap();
        assert_eq!(s.prompts(), ["", "a red circle moving right", "a blue square moving up"]);
        assert_eq!(s.at(-5), FrameConditioning::prompt(1));
        assert_eq!(s.at(119), FrameConditioning::prompt(1));
        assert_eq!(s.at(120), FrameConditioning { from: 1, to: 2, mix: 0.0 });
        assert_eq!(s.at(135), FrameConditioning { from: 1, to: 2, mix: 0.5 });
        assert_eq!(s.at(150), FrameConditioning::prompt(2));
        assert_eq!(s.at(10_000), FrameConditioning::prompt(1));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = |text: &str| PromptSchedule::parse(text).unwrap_err().to_string();
        assert_eq!(
            err("0: a\n  x1: b"),
            "prompt schedule, line 2, column 3: `x1` is not a frame number (0, 1, 2, ...)"
        );
        assert_eq!(
            err("0: a\n5..9 b"),
            "prompt schedule, line 2, column 1: expected `FRAME: prompt` or `FRAME..END: prompt`"
        );
        assert_eq!(
            err("0: a\n9..5: b"),
            "prompt schedule, line 2, column 1: blend end 5 must come after its start 9"
        );
        assert_eq!(err("0:   "), "prompt schedule, line 1, column 3: the prompt after `:` is empty");
        assert_eq!(err("3: a"), "prompt schedule: the first prompt must start at frame 0, not 3");
        assert_eq!(
            err("0: a\n0: b"),
            "prompt schedule: prompt starts must increase: frame 0 comes after frame 0"
        );
        assert_eq!(err("# nothing"), "prompt schedule: no prompt given: a video needs at least one prompt");
    }

    #[test]
    fn empty_single_prompt_is_rejected() {
        assert_eq!(PromptSchedule::single("  ").unwrap_err(), PromptScheduleError::EmptyPrompt { frame: 0 });
    }
}
