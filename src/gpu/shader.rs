//! WGSL variants: a tiny preprocessor (`#ifdef`/`#ifndef`/`#else`/`#endif`, `#include`, whole-word
//! `#define` substitution) and the readable key that names each variant in the pipeline cache.
//! Shapes never enter the text: only dtypes, workgroup sizes, activations and code paths do.

use super::error::{GpuError, GpuResult};

/// The shader files, one per kernel family, compiled into the binary (also on wasm32).
pub(crate) fn family_source(family: &str) -> Option<&'static str> {
    Some(match family {
        "common" => include_str!("../../shaders/common.wgsl"),
        "elementwise" => include_str!("../../shaders/elementwise.wgsl"),
        "copy" => include_str!("../../shaders/copy.wgsl"),
        "transpose" => include_str!("../../shaders/transpose.wgsl"),
        "gather" => include_str!("../../shaders/gather.wgsl"),
        "matmul" => include_str!("../../shaders/matmul.wgsl"),
        "weights" => include_str!("../../shaders/weights.wgsl"),
        "conv" => include_str!("../../shaders/conv.wgsl"),
        "conv_io" => include_str!("../../shaders/conv_io.wgsl"),
        "conv_tiled" => include_str!("../../shaders/conv_tiled.wgsl"),
        "conv_transpose" => include_str!("../../shaders/conv_transpose.wgsl"),
        "pool" => include_str!("../../shaders/pool.wgsl"),
        "reduce" => include_str!("../../shaders/reduce.wgsl"),
        "softmax" => include_str!("../../shaders/softmax.wgsl"),
        "layernorm" => include_str!("../../shaders/layernorm.wgsl"),
        "groupnorm" => include_str!("../../shaders/groupnorm.wgsl"),
        "attention" => include_str!("../../shaders/attention.wgsl"),
        "resize" => include_str!("../../shaders/resize.wgsl"),
        "cast" => include_str!("../../shaders/cast.wgsl"),
        "fifo" => include_str!("../../shaders/fifo.wgsl"),
        _ => return None,
    })
}

/// One compiled variant of a kernel family.
///
/// The key is `family.part.part...` in the order the parts were added, e.g.
/// `matmul.f32.w=i8.rb4x4.wg8x8.act=silu`; the same key always means the same defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShaderVariant {
    pub family: &'static str,
    pub key: String,
    pub defines: Vec<(String, String)>,
}

impl ShaderVariant {
    pub fn new(family: &'static str) -> Self {
        Self { family, key: family.to_string(), defines: Vec::new() }
    }
    /// Adds a part to the key only.
    pub fn tag(mut self, part: &str) -> Self {
        self.key.push('.');
        self.key.push_str(part);
        self
    }
    /// Defines `name` (for `#ifdef`) without touching the key: pair it with a `tag`.
    pub fn flag(mut self, name: &str) -> Self {
        self.defines.push((name.to_string(), String::new()));
        self
    }
    /// Defines `name` as `value`, substituted as a whole word.
    pub fn define(mut self, name: &str, value: impl ToString) -> Self {
        self.defines.push((name.to_string(), value.to_string()));
        self
    }

    /// Defines `name` (no value) unless it already is: for `ENABLE_F16`, which several parts ask for.
    pub fn flag_once(self, name: &str) -> Self {
        if self.defines.iter().any(|(n, _)| n == name) {
            self
        } else {
            self.flag(name)
        }
    }

    /// The WGSL text of this variant.
    pub fn source(&self) -> GpuResult<String> {
        let err = |message: String| GpuError::Shader { key: self.key.clone(), message };
        let text =
            family_source(self.family).ok_or_else(|| err(format!("no shader family '{}'", self.family)))?;
        preprocess(text, &self.defines, 0).map_err(err)
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Replaces whole-word occurrences of defined names (values are not rescanned).
fn substitute(line: &str, defines: &[(String, String)]) -> String {
    if defines.iter().all(|(n, v)| v.is_empty() || !line.contains(n.as_str())) {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match defines.iter().rev().find(|(n, v)| n == word && !v.is_empty()) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in line.chars() {
        if is_ident(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn preprocess(text: &str, defines: &[(String, String)], depth: usize) -> Result<String, String> {
    if depth > 4 {
        return Err("#include nested too deeply".into());
    }
    let defined = |name: &str| defines.iter().any(|(n, _)| n == name);
    let mut out = String::with_capacity(text.len());
    // Each entry: (this branch active, some earlier branch of this #if was taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let active = stack.iter().all(|(a, _)| *a);
        let directive = |d: &str| trimmed.strip_prefix(d).map(str::trim);
        if let Some(name) = directive("#ifdef") {
            stack.push((defined(name), defined(name)));
        } else if let Some(name) = directive("#ifndef") {
            stack.push((!defined(name), !defined(name)));
        } else if trimmed.starts_with("#else") {
            let top = stack.last_mut().ok_or(format!("line {}: #else without #if", number + 1))?;
            *top = (!top.1, true);
        } else if trimmed.starts_with("#endif") {
            stack.pop().ok_or(format!("line {}: #endif without #if", number + 1))?;
        } else if let Some(file) = directive("#include") {
            if active {
                let name = file.trim_matches('"');
                let inner = family_source(name).ok_or(format!("#include of unknown file '{name}'"))?;
                out.push_str(&preprocess(inner, defines, depth + 1)?);
            }
        } else if active {
            out.push_str(&substitute(line, defines));
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err("missing #endif".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn branches_and_substitution() {
        let src = "#ifdef A\nx = WG;\n#else\ny = WG;\n#endif\n#ifndef B\nWGX z;\n#endif\n";
        let out = preprocess(src, &defs(&[("A", ""), ("WG", "64")]), 0).unwrap();
        assert_eq!(out, "x = 64;\nWGX z;\n");
        let out = preprocess(src, &defs(&[("B", ""), ("WG", "8")]), 0).unwrap();
        assert_eq!(out, "y = 8;\n");
    }

    #[test]
    fn nested_and_unbalanced() {
        let src = "#ifdef A\n#ifdef B\nab\n#else\na\n#endif\n#endif\n";
        assert_eq!(preprocess(src, &defs(&[("A", "")]), 0).unwrap(), "a\n");
        assert!(preprocess("#ifdef A\n", &[], 0).is_err());
        assert!(preprocess("#endif\n", &[], 0).is_err());
    }

    #[test]
    fn key_is_readable() {
        let v = ShaderVariant::new("matmul").tag("f32").tag("rb4x4").define("ACT", "x").tag("act=silu");
        assert_eq!(v.key, "matmul.f32.rb4x4.act=silu");
    }
}
