//! Einsum for the contractions torch exports (attention's "bhid,bhjd->bhij" and
//! "bhij,bhjd->bhid", batched matrix products, and one-operand permutations), lowered to a
//! permutation and a batched MatMul. Other equations are a clear error at session build.

use super::matmul::batched_matmul;
use crate::ops::layout::transpose::permute;
use crate::ops::registry::{NodeContext, OpDef, MANY};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::{DType, Tensor};

const SUPPORTED: &str = "two operands whose every index is kept, contracted or a batch index \
     (e.g. \"bhid,bhjd->bhij\"), or a one-operand permutation (\"ij->ji\"); no ellipsis, \
     repeated indices or sums over one operand";

#[derive(Clone, Debug, PartialEq)]
pub struct Einsum {
    pub equation: String,
    pub operands: Vec<Vec<char>>,
    pub output: Vec<char>,
}

fn unsupported(equation: &str) -> OpError {
    OpError::unsupported(format!("Einsum equation '{equation}'"), SUPPORTED)
}

impl Einsum {
    pub fn parse(equation: &str) -> Result<Einsum, OpError> {
        let compact: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("...") {
            return Err(unsupported(equation));
        }
        let (lhs, rhs) = match compact.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (compact.clone(), None),
        };
        let operands: Vec<Vec<char>> = lhs.split(',').map(|s| s.chars().collect()).collect();
        let letters_ok = |s: &[char]| {
            s.iter().all(|c| c.is_ascii_alphabetic())
                && s.iter().enumerate().all(|(i, c)| !s[..i].contains(c))
        };
        let output: Vec<char> = match rhs {
            Some(r) => r.chars().collect(),
            None => {
                // Implicit form: the indices that appear once, in alphabetical order.
                let all: Vec<char> = operands.concat();
                let mut once: Vec<char> =
                    all.iter().copied().filter(|c| all.iter().filter(|d| *d == c).count() == 1).collect();
                once.sort_unstable();
                once
            }
        };
        if !(1..=2).contains(&operands.len())
            || !operands.iter().all(|o| letters_ok(o))
            || !letters_ok(&output)
            || !output.iter().all(|c| operands.iter().any(|o| o.contains(c)))
        {
            return Err(unsupported(equation));
        }
        let every_index_kept_or_shared = operands
            .concat()
            .iter()
            .all(|c| output.contains(c) || operands.iter().filter(|o| o.contains(c)).count() == 2);
        if !every_index_kept_or_shared {
            return Err(unsupported(equation));
        }
        Ok(Einsum { equation: equation.to_string(), operands, output })
    }

    /// Size of every index, checking that operands agree.
    fn sizes(&self, shapes: &[&[usize]]) -> Result<Vec<(char, usize)>, OpError> {
        let mut sizes: Vec<(char, usize)> = Vec::new();
        if shapes.len() != self.operands.len() {
            return Err(OpError::invalid(format!(
                "Einsum '{}' needs {} inputs, got {}",
                self.equation,
                self.operands.len(),
                shapes.len()
            )));
        }
        for (letters, shape) in self.operands.iter().zip(shapes) {
            if letters.len() != shape.len() {
                return Err(OpError::invalid(format!(
                    "Einsum '{}': operand of shape {shape:?} does not have {} dimensions",
                    self.equation,
                    letters.len()
                )));
            }
            for (&c, &d) in letters.iter().zip(shape.iter()) {
                match sizes.iter().find(|(l, _)| *l == c) {
                    Some(&(_, known)) if known != d => {
                        return Err(OpError::invalid(format!(
                            "Einsum '{}': index '{c}' is {known} in one operand and {d} in another",
                            self.equation
                        )))
                    }
                    Some(_) => {}
                    None => sizes.push((c, d)),
                }
            }
        }
        Ok(sizes)
    }

    fn output_shape(&self, shapes: &[&[usize]]) -> Result<Vec<usize>, OpError> {
        let sizes = self.sizes(shapes)?;
        Ok(self.output.iter().map(|c| sizes.iter().find(|(l, _)| l == c).map_or(1, |s| s.1)).collect())
    }

    fn contract(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
        let (la, lb) = (&self.operands[0], &self.operands[1]);
        let sizes = self.sizes(&[a.shape(), b.shape()])?;
        let size = |c: &char| sizes.iter().find(|(l, _)| l == c).map_or(1, |s| s.1);
        let batch: Vec<char> =
            self.output.iter().filter(|c| la.contains(c) && lb.contains(c)).copied().collect();
        let a_free: Vec<char> =
            self.output.iter().filter(|c| la.contains(c) && !lb.contains(c)).copied().collect();
        let b_free: Vec<char> =
            self.output.iter().filter(|c| lb.contains(c) && !la.contains(c)).copied().collect();
        let summed: Vec<char> =
            la.iter().filter(|c| lb.contains(c) && !self.output.contains(c)).copied().collect();
        let position = |letters: &[char], c: &char| letters.iter().position(|l| l == c).unwrap_or(0);
        let perm_a: Vec<usize> =
            batch.iter().chain(&a_free).chain(&summed).map(|c| position(la, c)).collect();
        let perm_b: Vec<usize> =
            batch.iter().chain(&summed).chain(&b_free).map(|c| position(lb, c)).collect();
        let prod = |cs: &[char]| cs.iter().map(size).product::<usize>();
        let (nb, m, k, n) = (prod(&batch), prod(&a_free), prod(&summed), prod(&b_free));
        // Borrowed, not copied, when a permutation is the identity (permute shares the data).
        let (a_t, b_t) = (permute(a, &perm_a)?, permute(b, &perm_b)?);
        let (_, out) = batched_matmul(&[nb, m, k], &a_t.f32s(), &[nb, k, n], &b_t.f32s())?;
        let grouped: Vec<char> = batch.iter().chain(&a_free).chain(&b_free).copied().collect();
        let grouped_shape: Vec<usize> = grouped.iter().map(size).collect();
        let result = Tensor::from_f32(grouped_shape, out)?;
        let to_output: Vec<usize> = self.output.iter().map(|c| position(&grouped, c)).collect();
        let out = permute(&result, &to_output)?;
        Ok(if a.dtype() == DType::F32 { out } else { out.cast(a.dtype()) })
    }
}

impl OpSpec for Einsum {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let first = required(inputs, 0, "Inputs")?;
        expect_dtype("Inputs", first.dtype(), FLOATS)?;
        let shapes: Vec<&[usize]> = inputs.iter().flatten().map(|v| v.shape()).collect();
        Ok(vec![TensorType::new(first.dtype(), self.output_shape(&shapes)?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = required(inputs, 0, "Inputs")?;
        match inputs.get(1).copied().flatten() {
            Some(b) => Ok(vec![self.contract(a, b)?]),
            None => {
                self.sizes(&[a.shape()])?;
                let perm: Vec<usize> = self
                    .output
                    .iter()
                    .map(|c| self.operands[0].iter().position(|l| l == c).unwrap_or(0))
                    .collect();
                Ok(vec![permute(a, &perm)?])
            }
        }
    }
}

fn parse_einsum(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let equation =
        attrs.string("equation")?.ok_or_else(|| OpError::bad_attribute("equation", "is required"))?;
    Ok(Einsum::parse(&equation)?.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Einsum", (12, 21), (1, MANY), (1, 1), parse_einsum)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_scores_match_a_loop() {
        let op = Einsum::parse("bhid,bhjd->bhij").unwrap();
        let q = Tensor::from_f32(vec![1, 2, 3, 2], (0..12).map(|x| x as f32).collect()).unwrap();
        let k = Tensor::from_f32(vec![1, 2, 4, 2], (0..16).map(|x| (x % 3) as f32).collect()).unwrap();
        let out = op.run(&[Some(&q), Some(&k)]).unwrap().remove(0);
        assert_eq!(out.shape(), &[1, 2, 3, 4]);
        let (qv, kv, ov) = (q.f32s(), k.f32s(), out.f32s());
        for h in 0..2 {
            for i in 0..3 {
                for j in 0..4 {
                    let want: f32 = (0..2).map(|d| qv[h * 6 + i * 2 + d] * kv[h * 8 + j * 2 + d]).sum();
                    assert_eq!(ov[h * 12 + i * 4 + j], want);
                }
            }
        }
    }

    #[test]
    fn unsupported_equations_name_what_works() {
        for eq in ["ii->i", "...ij,...jk->...ik", "ij,jk,kl->il", "ij->"] {
            let err = Einsum::parse(eq).unwrap_err().to_string();
            assert!(err.contains("bhid,bhjd->bhij"), "{eq}: {err}");
        }
    }
}
