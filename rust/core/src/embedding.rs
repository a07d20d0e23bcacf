//! Embedding tables over integer columns of the input, as `torch.nn.Embedding`: each chosen
//! column holds an index (stored in the float row) whose table row replaces it; the other
//! columns pass through as numbers, in column order. `Embedding` is the case where every column
//! is looked up in one table ((L,) → (L, dim)); `Embeddings` gives chosen columns tables of
//! their own and keeps the numeric ones, so that a table of categorical and numeric columns
//! goes into one network.
//!
//! Backward: the output copies table rows, so ∂L/∂table[r] sums the output gradients of every
//! position that copied row r (torch's dense gradient). The indices get no gradient.

use crate::rng::Rng;
use crate::{Error, Real, Result};

/// One table: `rows × dim` values at `offset` in the parameter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub rows: usize,
    pub dim: usize,
    pub offset: usize,
}

/// The columns of an input row and the table each one is looked up in (`None`: a number that
/// passes through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embeddings {
    pub columns: Vec<Option<usize>>,
    pub tables: Vec<Table>,
}

impl Embeddings {
    /// Values of one input row.
    pub fn in_len(&self) -> usize {
        self.columns.len()
    }

    /// Values of one output row: a number per numeric column, a table row per embedded one.
    pub fn out_len(&self) -> usize {
        self.columns
            .iter()
            .map(|c| c.map_or(1, |t| self.tables[t].dim))
            .sum()
    }

    /// All parameters: the tables, one after another.
    pub fn n_params(&self) -> usize {
        self.tables.iter().map(|t| t.rows * t.dim).sum()
    }

    /// Refuses a value of an embedded column that is not an index of its table, naming the
    /// column and the row (of `n` rows of `x`).
    pub fn check_indices<T: Real>(&self, x: &[T], n: usize) -> Result<()> {
        let width = self.in_len();
        for r in 0..n {
            for (c, table) in self.columns.iter().enumerate() {
                let Some(t) = table else { continue };
                let v = x[r * width + c].f64();
                let rows = self.tables[*t].rows;
                if !(v >= 0.0 && v < rows as f64 && v.fract() == 0.0) {
                    return Err(Error::value(
                        "X",
                        format!(
                            "column {c} of row {r} is {v}, not an index of its embedding \
                             (an integer in [0, {rows}))"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Draws every table from N(0, 1), as torch.
    pub fn init<T: Real>(&self, rng: &mut Rng, params: &mut [T]) {
        for t in &self.tables {
            for p in &mut params[t.offset..t.offset + t.rows * t.dim] {
                // Box-Muller: 1 - u is in (0, 1], so its logarithm is finite.
                let (u, v) = (rng.uniform(), rng.uniform());
                let normal = (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                *p = T::of(normal);
            }
        }
    }

    /// The output rows of `n` input rows (indices already checked).
    pub fn forward<T: Real>(&self, params: &[T], x: &[T], n: usize, z: &mut [T]) {
        let (width, out) = (self.in_len(), self.out_len());
        for s in 0..n {
            let (xs, zs) = (
                &x[s * width..(s + 1) * width],
                &mut z[s * out..(s + 1) * out],
            );
            let mut at = 0;
            for (&v, table) in xs.iter().zip(&self.columns) {
                match table {
                    None => {
                        zs[at] = v;
                        at += 1;
                    }
                    Some(t) => {
                        let t = self.tables[*t];
                        let row = t.offset + index(v) * t.dim;
                        zs[at..at + t.dim].copy_from_slice(&params[row..row + t.dim]);
                        at += t.dim;
                    }
                }
            }
        }
    }

    /// ∂L/∂tables into `grads` from δ = ∂L/∂z (n × out) and the forward's input `x`.
    pub fn backward<T: Real>(&self, x: &[T], n: usize, delta: &[T], grads: &mut [T]) {
        for t in &self.tables {
            grads[t.offset..t.offset + t.rows * t.dim].fill(T::zero());
        }
        let (width, out) = (self.in_len(), self.out_len());
        for s in 0..n {
            let (xs, ds) = (
                &x[s * width..(s + 1) * width],
                &delta[s * out..(s + 1) * out],
            );
            let mut at = 0;
            for (&v, table) in xs.iter().zip(&self.columns) {
                match table {
                    None => at += 1,
                    Some(t) => {
                        let t = self.tables[*t];
                        let row = t.offset + index(v) * t.dim;
                        grads[row..row + t.dim]
                            .iter_mut()
                            .zip(&ds[at..at + t.dim])
                            .for_each(|(g, &d)| *g += d);
                        at += t.dim;
                    }
                }
            }
        }
    }
}

/// A checked index stored as a float.
fn index<T: Real>(v: T) -> usize {
    v.f64() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_concatenation_and_gradient_by_hand() {
        // Column 0 a number, column 1 an index of a 3 × 2 table.
        let layer = Embeddings {
            columns: vec![None, Some(0)],
            tables: vec![Table {
                rows: 3,
                dim: 2,
                offset: 0,
            }],
        };
        let params = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0];
        let x = [0.5, 2.0, -1.0, 2.0];
        let mut z = [0.0; 6];
        layer.forward(&params, &x, 2, &mut z);
        assert_eq!(z, [0.5, 20.0, 21.0, -1.0, 20.0, 21.0]);
        let mut grads = [9.0; 6];
        layer.backward(&x, 2, &[1.0, 1.0, 2.0, 1.0, 3.0, 4.0], &mut grads);
        assert_eq!(grads, [0.0, 0.0, 0.0, 0.0, 4.0, 6.0]);
        let e = layer.check_indices(&[0.0, 1.5], 1).unwrap_err();
        assert!(e.to_string().contains("column 1 of row 0 is 1.5"));
        assert!(layer.check_indices(&[0.0, 3.0], 1).is_err());
        assert!(layer.check_indices(&[7.5, 0.0, 1.0, 2.0], 2).is_ok());
    }
}
